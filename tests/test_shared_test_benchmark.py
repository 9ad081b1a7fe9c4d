"""The VNN-COMP `test` benchmark (../shared): every instance answered as the ground truth says."""

from verikit.apps import bench


def test_all_five_instances_match_ground_truth(shared_benchmarks, tmp_path):
    instances = bench.read_instances(shared_benchmarks / "test")
    assert len(instances) == 5
    truths = bench.read_ground_truth(shared_benchmarks / "ground_truth" / "test.csv")
    rows = bench.run(instances, tmp_path, options=bench.Options())
    summary = bench.summarise(rows, instances, truths)
    assert summary.wrong == []
    assert summary.correct == 5, [(r.vnnlib, r.result, r.message) for r in rows]
