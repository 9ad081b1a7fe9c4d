"""Perturbation specs (verikit-perturbation/1): every verdict checked against brute force on tiny networks —
dense theta grids through onnxruntime for the continuous manipulations, exhaustive enumeration for the
finite families — plus the rotation enclosure, the exact prefixes and the spec's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.onnx_factory import mlp
from verikit.core.errors import PolicyError, SpecError
from verikit.core.property import Box
from verikit.core.result import Falsified, Verdict
from verikit.onnx.load import load_network_bytes
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify
from verikit.spec import manipulations as m
from verikit.spec.load import load_spec, spec_format
from verikit.spec.perturbation import perturbation_property

SIDE = 4


@pytest.fixture(scope="module")
def network():
    return load_network_bytes(mlp((SIDE * SIDE, 12, 3), seed=5), "mlp16")


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(SIDE, SIDE))


def _labels(network, images: np.ndarray) -> np.ndarray:
    """onnxruntime's classes of model inputs (N, n_inputs)."""
    return network.replay(np.asarray(images, dtype=np.float32).reshape(len(images), -1)).argmax(axis=1)


def _decide(network, x, label, manipulation, **kwargs):
    prop = perturbation_property(x, label, [manipulation], num_classes=3, **kwargs)
    return prop, verify(network, prop, Options(timeout=20))


def _check_against_grid(network, prop, result, thetas: np.ndarray, label: int) -> None:
    """Verified: no theta of the grid (all in the one region) changes the label. Falsified: the witness's
    theta lies in its case's box and its image, recomputed in numpy, is misclassified by onnxruntime."""
    region = prop.cases[0].region
    if result.verdict is Verdict.VERIFIED:
        images = np.stack([region.image(theta) for theta in thetas])
        assert (_labels(network, images) == label).all()
    else:
        assert result.verdict is Verdict.FALSIFIED, result.reason
        found = next(c.outcome.counterexample for c in result.cases if isinstance(c.outcome, Falsified))
        case = prop.cases[next(c.index for c in result.cases if isinstance(c.outcome, Falsified))]
        assert found.params is not None and case.region.params.contains(found.params)
        image = case.region.image(found.params)
        assert np.allclose(found.x, image, atol=1e-6)
        assert _labels(network, image[None])[0] != label


def test_brightness_verdicts_agree_with_a_dense_grid(network):
    x = _image(1)
    label = int(_labels(network, x.reshape(1, -1))[0])
    seen = set()
    for radius in (0.05, 0.3, 1.0):
        prop, result = _decide(network, x, label, {"kind": "brightness", "range": [-radius, radius]})
        _check_against_grid(network, prop, result, np.linspace(-radius, radius, 801)[:, None], label)
        seen.add(result.verdict)
    assert seen == {Verdict.VERIFIED, Verdict.FALSIFIED}


def test_joint_brightness_contrast_agrees_with_a_2d_grid(network):
    x = _image(2)
    label = int(_labels(network, x.reshape(1, -1))[0])
    seen = set()
    for width in (0.05, 1.0):
        entry = {"kind": "brightness+contrast", "brightness": [-width, width], "contrast": [1 - width, 1 + width]}
        prop, result = _decide(network, x, label, entry)
        b, c = np.meshgrid(np.linspace(-width, width, 61), np.linspace(1 - width, 1 + width, 61))
        _check_against_grid(network, prop, result, np.stack([b.ravel(), c.ravel()], axis=1), label)
        seen.add(result.verdict)
    assert seen == {Verdict.VERIFIED, Verdict.FALSIFIED}


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.4, 0.3)])
def test_affine_prefix_equals_its_numpy_reference(mean, std):
    image = m.Image(_image(3)[None], 0.0, 1.0, np.asarray(mean), np.asarray(std))
    transform = m.PixelAffine(image, brightness=True, contrast=True, centre=0.5)
    session = ort.InferenceSession(transform.onnx_prefix().SerializeToString(), providers=["CPUExecutionProvider"])
    for theta in np.random.default_rng(0).uniform([-1.0, 0.0], [1.0, 3.0], size=(50, 2)):
        got = session.run(None, {"theta": theta.astype(np.float32)[None]})[0][0]
        want = transform.apply(theta)
        assert np.allclose(got, want, atol=1e-5)
        assert want.min() >= (0.0 - mean) / std - 1e-12 and want.max() <= (1.0 - mean) / std + 1e-12  # clipped


@pytest.mark.parametrize("scaling", [False, True])
def test_rotation_enclosure_contains_every_sampled_image(scaling):
    rng = np.random.default_rng(4)
    image = m.Image(rng.uniform(0, 1, size=(2, 7, 9)), 0.0, 1.0)
    rotation = m.Rotation(image, fill=0.2, scaling=scaling)
    for low in (-40.0, -3.0, 0.0, 170.0):
        params = Box([low, 0.8], [low + 7.0, 1.25]) if scaling else Box([low], [low + 7.0])
        box = rotation.enclose(params)
        thetas = params.sample(300, rng)
        thetas = np.concatenate([thetas, params.lower[None], params.upper[None]])
        for theta in thetas:
            assert box.contains(rotation.apply(theta)), theta


def test_rotation_by_zero_is_the_image_and_its_enclosure_is_tight():
    x = np.random.default_rng(5).uniform(0, 1, size=(1, 6, 6))
    rotation = m.Rotation(m.Image(x, 0.0, 1.0))
    assert np.allclose(rotation.apply(np.zeros(1)), x.reshape(-1))
    box = rotation.enclose(Box([0.0], [0.0]))
    assert np.allclose(box.lower, x.reshape(-1), atol=1e-9) and np.allclose(box.upper, x.reshape(-1), atol=1e-9)
    assert np.allclose(rotation.apply(np.array([90.0])).reshape(6, 6), np.rot90(x[0]), atol=1e-12)


def test_rotation_verdicts_agree_with_a_dense_grid(network):
    x = _image(6)
    label = int(_labels(network, x.reshape(1, -1))[0])
    seen = set()
    for degrees, splits in ((2.0, 4), (180.0, 8)):
        prop, result = _decide(network, x, label, {"kind": "rotation", "range": [-degrees, degrees],
                                                   "splits": splits})
        thetas = np.linspace(-degrees, degrees, 721)
        if result.verdict is Verdict.VERIFIED:
            images = np.stack([prop.cases[0].region.transform.apply(np.array([t])) for t in thetas])
            assert (_labels(network, images) == label).all()
        else:
            assert result.verdict in (Verdict.FALSIFIED, Verdict.UNKNOWN, Verdict.TIMEOUT)
            if result.verdict is Verdict.FALSIFIED:
                _check_against_grid(network, prop, result, thetas[:, None], label)
        seen.add(result.verdict)
    assert Verdict.VERIFIED in seen and Verdict.FALSIFIED in seen


@pytest.mark.parametrize("entry", [
    {"kind": "occlusion", "size": 2, "fill": 0.0},
    {"kind": "occlusion", "size": 2, "fill": 1.0},
    {"kind": "translation", "shift": 1, "fill": 0.0},
    {"kind": "scratch", "length": 3, "stride": 1, "value": 1.0},
])
def test_finite_families_agree_with_exhaustive_enumeration(network, entry):
    for seed in range(3):
        x = _image(10 + seed)
        label = int(_labels(network, x.reshape(1, -1))[0])
        prop, result = _decide(network, x, label, entry)
        members = np.stack([case.box.lower for case in prop.cases])
        assert all(np.array_equal(case.box.lower.astype(np.float32), case.box.upper.astype(np.float32))
                   for case in prop.cases)  # one float32 image each (a fixed pixel widened to its float32 at most)
        broken = _labels(network, members) != label
        expected = Verdict.FALSIFIED if broken.any() else Verdict.VERIFIED
        assert result.verdict is expected, (entry, seed, result.reason)
        if broken.any():
            found = next(c for c in result.cases if isinstance(c.outcome, Falsified))
            assert broken[found.index]


def test_translation_members_and_an_occlusion_fill_range():
    x = np.arange(9, dtype=np.float64).reshape(3, 3) / 8
    image = m.Image(x[None], 0.0, 1.0)
    moved = {(mm.described["dy"], mm.described["dx"]): mm.lower[0] for mm in m.translation_members(image, 1)}
    assert len(moved) == 8 and moved[(1, 0)].tolist() == [[0, 0, 0], x[0].tolist(), x[1].tolist()]
    prop = perturbation_property(x, 0, [{"kind": "occlusion", "size": 2, "fill": [0.25, 0.75]}], num_classes=3)
    assert len(prop.cases) == 4 and prop.details["cases"][3] == {"manipulation": "occlusion", "size": 2,
                                                                 "row": 1, "col": 1}
    box = prop.cases[3].box
    assert box.lower.reshape(3, 3)[1:, 1:].tolist() == [[0.25, 0.25], [0.25, 0.25]]
    assert box.upper.reshape(3, 3)[1:, 1:].tolist() == [[0.75, 0.75], [0.75, 0.75]]
    assert box.lower[0] == box.upper[0] == 0.0


def test_epsilon_and_normalisation_are_folded_into_the_boxes():
    x = np.full((3, 3), 0.5)
    prop = perturbation_property(x, 0, [{"kind": "translation", "shift": 1, "fill": 0.0},
                                        {"kind": "brightness", "range": [-0.1, 0.1]}],
                                 num_classes=3, mean=0.5, std=0.25, epsilon=0.05)
    first = prop.cases[0].box  # shift (-1, -1): the top-left 2x2 is 0.5, the rest filled with 0
    assert np.isclose(first.lower.reshape(3, 3)[0, 0], (0.45 - 0.5) / 0.25)
    assert np.isclose(first.lower.reshape(3, 3)[2, 2], (0.0 - 0.5) / 0.25)   # clipped at 0
    assert np.isclose(first.upper.reshape(3, 3)[2, 2], (0.05 - 0.5) / 0.25)
    region = prop.cases[-1].region
    assert region.eps == pytest.approx(0.05 / 0.25)
    assert np.allclose(prop.cases[-1].box.upper, (0.65 - 0.5) / 0.25)
    assert prop.kind == "perturbation" and len(prop.details["cases"]) == len(prop.cases)


def _write(tmp_path, **overrides):
    spec = {"format": "verikit-perturbation/1", "input": _image(7).tolist(), "label": 0, "num_classes": 3,
            "clip": [0, 1], "manipulations": [{"kind": "brightness", "range": [-0.1, 0.1]}]}
    spec.update(overrides)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("overrides, field", [
    ({"clip": [1, 0]}, "'clip'"),
    ({"manipulations": []}, "'manipulations'"),
    ({"manipulations": [{"kind": "swirl"}]}, "'manipulations[0].kind'"),
    ({"manipulations": [{"kind": "rotation"}]}, "'manipulations[0].range'"),
    ({"manipulations": [{"kind": "occlusion", "size": 2, "fill": 3.0}]}, "'manipulations[0].fill'"),
    ({"manipulations": [{"kind": "brightness", "range": [0, 1], "angle": 2}]}, "'manipulations[0].angle'"),
    ({"epsilon": -1}, "'epsilon'"),
    ({"label": 7}, "'label'"),
])
def test_malformed_specs_name_the_field(tmp_path, overrides, field):
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")) as error:
        load_spec(_write(tmp_path, **overrides))
    assert "\n" not in str(error.value)


def test_cli_verifies_a_perturbation_spec(tmp_path, network):
    from click.testing import CliRunner

    from verikit.cli import main

    model = tmp_path / "net.onnx"
    model.write_bytes(network.onnx_bytes)
    x = _image(7)
    label = int(_labels(network, x.reshape(1, -1))[0])
    path = _write(tmp_path, label=label, manipulations=[{"kind": "brightness", "range": [-0.01, 0.01]},
                                                        {"kind": "occlusion", "size": 4, "fill": 0.0}])
    assert spec_format(path) == "perturbation-json"
    report = tmp_path / "report.json"
    outcome = CliRunner().invoke(main, ["verify", str(model), str(path), "--timeout", "20", "--report", str(report)])
    labels = _labels(network, np.stack([x.reshape(-1), np.zeros(SIDE * SIDE)]))
    assert outcome.exit_code == (0 if (labels == label).all() else 1), outcome.output
    written = json.loads(report.read_text())
    assert written["spec"]["kind"] == "perturbation" and len(written["spec"]["details"]["cases"]) == 2
    bad = CliRunner().invoke(main, ["verify", str(model), str(_write(tmp_path, clip="x")), "--timeout", "5"])
    assert bad.exit_code == 3 and "'clip'" in bad.output


# --- audit and gate ----------------------------------------------------------------------------------

DIGITS = Path(__file__).resolve().parents[1] / "models"


def test_perturbation_audit_agrees_with_enumeration_and_renders(tmp_path):
    from click.testing import CliRunner

    from verikit.apps.data import load_dataset
    from verikit.cli import main

    out, page = tmp_path / "out", tmp_path / "audit.html"
    run = CliRunner().invoke(main, ["audit", str(DIGITS / "digits_mlp.onnx"), "--data",
                                    str(DIGITS / "data" / "digits_test_100.npz"), "--limit", "6",
                                    "--perturbation", "occlusion:3", "--perturbation", "brightness:0.02,0.05",
                                    "--sample-timeout", "10", "--out", str(out), "--html", str(page)])
    assert run.exit_code == 0, run.output
    report = json.loads((out / "perturbation_audit.json").read_text())
    occlusion, brightness, _ = report["results"]
    network = load_network_bytes((DIGITS / "digits_mlp.onnx").read_bytes(), "digits_mlp")
    data = load_dataset(str(DIGITS / "data" / "digits_test_100.npz")).head(6)
    broken = []
    for index in range(6):
        x, label = data.x[index], int(data.y[index])
        members = m.occlusion_members(m.Image(x.reshape(1, 8, 8), 0.0, 1.0), 3)
        labels = _labels(network, np.stack([member.lower.reshape(-1) for member in members]))
        if _labels(network, x[None])[0] == label and (labels != label).any():
            broken.append(index)
    assert [b["index"] for b in occlusion["broken"]] == broken
    assert occlusion["counts"]["certified"] + len(broken) + occlusion["counts"]["misclassified"] == 6
    assert brightness["certified_accuracy"] <= brightness["empirical_accuracy"] <= brightness["clean_accuracy"]
    html = page.read_text()
    assert "brightness: accuracy against magnitude" in html and "occlusion: accuracy" not in html
    assert ("manipulated →" in html) == bool(broken)
    bad = CliRunner().invoke(main, ["audit", str(DIGITS / "digits_mlp.onnx"), "--data",
                                    str(DIGITS / "data" / "digits_test_100.npz"), "--perturbation", "swirl:3"])
    assert bad.exit_code == 2 and "swirl" in bad.output


def test_gate_checks_a_manipulation_against_its_threshold(tmp_path):
    from verikit.apps.gate.policy import parse_policy
    from verikit.apps.gate.run import run_gate

    def policy(minimum: float, manipulation: str = '"occlusion:3"') -> str:
        return f"""
version = 1
[[model]]
name = "mlp"
path = "{DIGITS / 'digits_mlp.onnx'}"
[[dataset]]
name = "digits"
path = "{DIGITS / 'data' / 'digits_test_100.npz'}"
limit = 6
clip_min = 0.0
clip_max = 1.0
[[property]]
kind = "perturbation"
dataset = "digits"
manipulation = {manipulation}
min_certified_accuracy = {minimum}
sample_timeout = 10
"""
    low = run_gate(parse_policy(policy(0.0), tmp_path / "verikit.toml"), use_baseline=False)
    (check,) = low.checks
    assert check.verdict == "verified" and check.id.endswith("/occlusion:3")
    high = run_gate(parse_policy(policy(1.0), tmp_path / "verikit.toml"), use_baseline=False)
    falsified = high.checks[0].metrics["falsified_samples"]
    assert high.checks[0].verdict == ("falsified" if falsified else "verified")
    with pytest.raises(PolicyError, match=r"manipulation"):
        parse_policy(policy(0.5, '"rotation:x"'), tmp_path / "verikit.toml")


def test_many_members_are_decided_together_and_agree_with_enumeration():
    """25 occlusion members (>= MIN_CASES) go through the batched replay and bounds (portfolio/members.py)."""
    net = load_network_bytes(mlp((36, 10, 3), seed=8), "mlp36")
    seen = set()
    for seed in range(6):
        x = np.random.default_rng(20 + seed).uniform(0, 1, size=(6, 6))
        label = int(_labels(net, x.reshape(1, -1))[0])
        for fill in (0.0, 1.0):
            prop, result = _decide(net, x, label, {"kind": "occlusion", "size": 2, "fill": fill})
            members = np.stack([case.box.lower for case in prop.cases])
            broken = _labels(net, members) != label
            assert len(prop.cases) == 25
            assert result.verdict is (Verdict.FALSIFIED if broken.any() else Verdict.VERIFIED), result.reason
            if result.verdict is Verdict.VERIFIED:
                batched = sum(any(a.get("batched") for a in c.attempts) for c in result.cases)
                assert batched == 25
            seen.add(result.verdict)
    assert seen == {Verdict.VERIFIED, Verdict.FALSIFIED}
