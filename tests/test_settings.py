"""Every setting that influences a run is reachable (Options, --set, gate policy) and recorded in the report;
an option an engine cannot honour is refused or reported, never silently ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from verikit.cli import main
from verikit.core.settings import SettingError
from verikit.portfolio.options import SETTING_GROUPS, Options
from verikit.portfolio.schedule import notes, plan

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "tiny_relu.onnx"
UNSAT = ROOT / "specs" / "tiny_relu_min_above_neg0.75_unsat.vnnlib"


def test_with_settings_reaches_every_group():
    options = Options().with_settings(["bab.batch_size=512", "attack.restarts=16", "bounds.alpha_iterations=3",
                                       "smt.max_relus=200", "portfolio.attack_share=0.5", "bab.dtype=float64"])
    assert options.bab.batch_size == 512
    assert options.attack.restarts == 16
    assert options.bounds.alpha_iterations == 3
    assert options.smt.max_relus == 200
    assert options.portfolio.attack_share == 0.5
    assert str(options.bab.dtype) == "torch.float64"


@pytest.mark.parametrize("assignment, says", [
    ("bab.no_such_field=1", "unknown setting 'bab.no_such_field'"),
    ("nogroup.x=1", "GROUP.FIELD=VALUE"),
    ("bab.batch_size", "GROUP.FIELD=VALUE"),
    ("bab.batch_size=many", "cannot use 'many'"),
    ("bab.batch_size=-3", "non-negative"),
    ("portfolio.attack_share=nan", "finite"),
    ("portfolio.attack_share=2", "(0, 1]"),
    ("smt.relu_encoding=magic", "is not one of"),
    ("bab.dtype=int8", "float32 or float64"),
])
def test_invalid_settings_are_refused_with_the_reason(assignment, says):
    with pytest.raises(SettingError, match=None) as raised:
        Options().with_settings([assignment])
    assert says in str(raised.value)


def test_report_lists_every_setting_including_engine_settings():
    result = CliRunner().invoke(main, ["verify", str(TINY), str(UNSAT), "--json", "--set", "bab.batch_size=512",
                                       "--set", "attack.steps=7"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    settings = report["settings"]
    for group in SETTING_GROUPS:
        assert settings[group] == {**Options().as_dict()[group], **settings[group]}  # every field recorded
        assert set(settings[group]) == set(Options().as_dict()[group])
    assert settings["bab"]["batch_size"] == 512 and settings["attack"]["steps"] == 7
    assert {"timeout_s", "engines", "methods", "seed", "device", "tolerances"} <= set(settings)
    stages = [stage["stage"] for stage in report["schedule"]]
    assert stages[0] == "attack/pgd" and "bab/crown" in stages
    assert all("seconds" in stage and "settings" in stage for stage in report["schedule"])


def test_unknown_set_is_a_usage_error_in_one_line():
    result = CliRunner().invoke(main, ["verify", str(TINY), str(UNSAT), "--set", "bab.batchsize=4"])
    assert result.exit_code == 2
    assert "unknown setting 'bab.batchsize'" in result.output and "Traceback" not in result.output


def test_settings_command_lists_every_group():
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 0
    for group in SETTING_GROUPS:
        assert f"\n{group}." in "\n" + result.output


def test_options_an_engine_cannot_honour_are_reported():
    said = notes(Options(device="cuda", methods=("crown",)))
    assert any("--device cuda applies to the bounds engine" in note for note in said)
    assert any("--method selects the bounds engine's stages" in note for note in said)
    assert notes(Options()) == []


def test_cuda_without_a_gpu_is_refused_not_ignored():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(main, ["verify", str(TINY), str(UNSAT), "--device", "cuda",
                                       "--engine", "bounds"])
    assert result.exit_code == 2, result.output
    assert "cuda" in result.output


def test_the_schedule_follows_the_options():
    labels = [f"{s.engine.name}/{s.engine.method}" for s in plan(Options(methods=("crown",)))]
    assert labels == ["attack/pgd", "bounds/crown", "bab/crown", "bab/tensor-crown", "smt/z3"]
    never = plan(Options(methods=("crown",)).with_settings(["tensor_bab.when=never"]))
    assert [f"{s.engine.name}/{s.engine.method}" for s in never][-2:] == ["bab/crown", "smt/z3"]
    alone = plan(Options(engines=("smt",)))
    assert alone[0].engine.max_relus is None  # alone, SMT has no automatic size limit
    assert plan(Options())[-1].engine.max_relus == 40
    assert plan(Options().with_settings(["smt.max_relus=7"]))[-1].engine.max_relus == 7
    attack = plan(Options().with_settings(["attack.rounds=1"]))[0]
    assert attack.engine.settings.rounds == 1 and attack.share == 0.1


@pytest.mark.parametrize("bad", [{"engines": ("magic",)}, {"methods": ()}, {"timeout": float("nan")},
                                 {"device": "tpu"}])
def test_options_validate_themselves(bad):
    with pytest.raises(SettingError):
        Options(**bad)


def test_adaptive_schedule_goes_straight_to_branch_and_bound_on_few_inputs():
    from verikit.engines.problem import Problem
    from verikit.onnx.load import load_network

    problem = Problem(load_network(TINY))
    labels = [stage.label for stage in plan(Options(), problem)]
    assert labels == ["attack/pgd", "bab/crown", "smt/z3"]
    assert any("adaptive schedule" in note for note in notes(Options(), problem))
    full = Options().with_settings(["portfolio.schedule=full"])
    assert [stage.label for stage in plan(full, problem)][1:4] == ["bounds/ibp", "bounds/crown", "bounds/alpha-crown"]
    chosen = Options(methods=("crown",))  # the user chose bound methods: they run
    assert "bounds/crown" in [stage.label for stage in plan(chosen, problem)]


def test_adaptive_schedule_keeps_bounds_for_many_inputs():
    from verikit.engines.problem import Problem
    from verikit.onnx.load import load_network

    problem = Problem(load_network(ROOT / "models" / "digits_mlp.onnx"))
    assert "bounds/crown" in [stage.label for stage in plan(Options(), problem)]
