"""ℓ2 balls as input sets: rigorous CROWN over ball ∩ box (chain and graph forms), never looser than the box."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.onnx_factory import mlp
from tests.test_graph_crown import residual_cnn, residual_mlp
from verikit.engines.crown.confirm import ChainForm, confirming_form
from verikit.engines.crown.graph import GraphForm
from verikit.engines.crown.input_set import InputBall, ball_linear_min
from verikit.onnx.load import load_network_bytes


def ball_points(rng: np.random.Generator, centre: np.ndarray, radius: float, count: int,
                lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Points of ball ∩ box: uniform in the ball, on its sphere (shrunk by 1e-12), clipped to the box
    (the box holds the centre, so clipping keeps a point in the ball)."""
    n = centre.size
    direction = rng.normal(size=(2 * count, n))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = radius * np.concatenate([rng.random(count) ** (1.0 / n), np.full(count, 1.0 - 1e-12)])
    return np.clip(centre + direction * length[:, None], lower, upper)


def test_ball_term_is_the_dual_norm_and_never_above_it():
    rng = np.random.default_rng(0)
    lam = torch.tensor(rng.normal(size=(50, 7)))
    centre, radius = rng.normal(size=7), 0.3
    ball = InputBall.of(centre, radius)
    found = ball_linear_min(lam, ball).numpy()
    exact = lam.numpy() @ centre - radius * np.linalg.norm(lam.numpy(), axis=1)
    assert np.all(found <= exact) and np.allclose(found, exact, rtol=1e-12, atol=1e-12)
    # the minimiser x = c - ρ λ/‖λ‖ reaches it (to rounding)
    x = centre - radius * lam.numpy() / np.linalg.norm(lam.numpy(), axis=1, keepdims=True)
    assert np.all(np.einsum("rn,rn->r", lam.numpy(), x) >= found)


def test_a_centre_that_float32_cannot_hold_is_refused():
    with pytest.raises(ValueError):
        InputBall.of(np.array([0.1]), 0.1, dtype=torch.float32)
    assert float(InputBall.of(np.array([0.5]), 0.1, dtype=torch.float32).radius[0]) >= 0.1


def _forms():
    chain = load_network_bytes(mlp((6, 12, 12, 4), seed=3), "mlp")
    yield "chain", chain, confirming_form(chain)
    for build in (residual_mlp, residual_cnn):
        network = load_network_bytes(build(1), "dag")
        yield build.__name__, network, GraphForm.build(network.module)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_points_of_the_ball_stay_inside_its_bounds_and_ball_bounds_beat_the_box(which):
    name, network, form = list(_forms())[which]
    assert isinstance(form, (ChainForm, GraphForm)), form
    rng = np.random.default_rng(which)
    m, n = network.n_outputs, network.n_inputs
    C = np.vstack([np.eye(m), -np.eye(m), rng.normal(size=(3, m))])
    d = np.zeros(len(C))
    tighter = 0
    for trial in range(3):
        centre = rng.uniform(-0.5, 0.5, n)
        radius = rng.uniform(0.05, 0.6)
        lower, upper = centre - radius, centre + radius
        if trial == 2:  # a valid range cutting the ball
            lower = np.maximum(lower, centre - radius / 3)
        ball = InputBall.of(centre, radius)
        over_box = form.lower_bounds(lower, upper, C, d)[0]
        over_ball = form.lower_bounds(lower, upper, C, d, ball=ball)[0]
        assert np.all(over_ball >= over_box), name  # the larger of the two is taken
        tighter += int(np.sum(over_ball > over_box + 1e-9))
        points = ball_points(rng, centre, radius, 1500, lower, upper)
        assert np.all(np.linalg.norm(points - centre, axis=1) <= radius)
        values = network.replay(points.astype(np.float32)).astype(np.float64) @ C.T
        assert np.all(values >= over_ball[None, :] - 1e-4), (name, (values.min(axis=0) - over_ball).min())
        if isinstance(form, GraphForm):
            exact = form.evaluate(points) @ C.T
            assert np.all(exact >= over_ball[None, :])
    assert tighter > 0, f"{name}: the ball never beat its bounding box"


def test_batched_balls_match_one_at_a_time():
    network = load_network_bytes(mlp((5, 10, 10, 3), seed=7), "mlp")
    form = confirming_form(network)
    rng = np.random.default_rng(2)
    centres = rng.uniform(-0.5, 0.5, (4, 5))
    radii = rng.uniform(0.1, 0.5, 4)
    C, d = np.vstack([np.eye(3), -np.eye(3)]), np.zeros(6)
    together = form.lower_bounds(centres - radii[:, None], centres + radii[:, None], C, d,
                                 ball=InputBall.of(centres, radii))
    for b in range(4):
        alone = form.lower_bounds(centres[b] - radii[b], centres[b] + radii[b], C, d,
                                  ball=InputBall.of(centres[b], radii[b]))[0]
        assert np.allclose(together[b], alone, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- through verify and the CLI

from pathlib import Path  # noqa: E402

from verikit.core.property import Box, Case, L2Ball  # noqa: E402
from verikit.core.result import Falsified, Verdict  # noqa: E402
from verikit.engines.regions import region_refusal  # noqa: E402
from verikit.portfolio.options import Options  # noqa: E402
from verikit.portfolio.runner import verify  # noqa: E402
from verikit.spec.robustness import robustness_property  # noqa: E402
from verikit.witness.replay import validate  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"


def _digits():
    data = np.load(MODELS / "data" / "digits_test_100.npz")
    network = load_network_bytes((MODELS / "digits_mlp.onnx").read_bytes(), "digits_mlp")
    right = np.flatnonzero(network.replay(data["x"].astype(np.float32)).argmax(axis=1) == data["y"])
    return network, data["x"], data["y"], right


def test_the_ball_verifies_where_its_box_does_not_and_sampling_never_breaks_it():
    network, x, y, right = _digits()
    i = int(right[1])
    prop = robustness_property(x[i], int(y[i]), 0.4, num_classes=10, norm=2, lower=0.0, upper=1.0)
    result = verify(network, prop, Options(timeout=30))
    assert result.verdict == Verdict.VERIFIED, result.reason
    (case,) = prop.cases
    boxed = Case(case.box, case.disjuncts)  # the same box without the ball: CROWN alone cannot prove it
    form = confirming_form(network)
    C = np.vstack([c.C for c in case.disjuncts])
    assert not np.all(form.lower_bounds(case.box.lower, case.box.upper, C, np.zeros(len(C)))[0].reshape(9, 1) > 0)
    rng = np.random.default_rng(0)
    points = ball_points(rng, case.region.center, case.region.radius * (1 - 1e-9), 3000, case.box.lower, case.box.upper)
    assert (network.replay(points.astype(np.float32)).argmax(axis=1) == y[i]).all()
    from verikit.engines.attack.engine import run as attack

    from verikit.core.result import Budget

    assert not isinstance(attack(network, case, Budget.seconds(3.0)), Falsified)
    assert boxed.is_box


def test_a_counterexample_outside_the_ball_is_refused_and_one_inside_accepted():
    network, x, y, right = _digits()
    i = int(right[0])
    prop = robustness_property(x[i], int(y[i]), 1.0, num_classes=10, norm=2, lower=0.0, upper=1.0)
    result = verify(network, prop, Options(timeout=30))
    assert result.verdict == Verdict.FALSIFIED
    witness = result.cases[0].outcome.counterexample
    (case,) = prop.cases
    assert np.linalg.norm(witness.x.astype(np.float64) - case.region.center) <= case.region.radius
    # stretch it out of the ball, still in the box, still misclassified: no counterexample
    direction = witness.x.astype(np.float64) - case.region.center
    for scale in (1.5, 3.0, 10.0):
        outside = np.clip(case.region.center + scale * direction, case.box.lower, case.box.upper)
        if case.region.distance(outside) > case.region.radius and network.replay(
                outside.astype(np.float32)[None])[0].argmax() != y[i]:
            assert validate(network, case, outside) is None
            assert validate(network, Case(case.box, case.disjuncts), outside) is not None  # the box alone takes it
            break
    else:
        pytest.fail("no misclassified point outside the ball to test with")


def test_engines_that_search_boxes_do_not_run_on_a_ball():
    case = Case(Box(np.zeros(2), np.ones(2)), (), region=L2Ball(np.full(2, 0.5), 0.5))
    assert region_refusal("attack", case) is None and region_refusal("bounds", case) is None
    assert "boxes only" in region_refusal("smt", case) and "boxes only" in region_refusal("bab", case)
    assert region_refusal("smt", Case(Box(np.zeros(2), np.ones(2)), ())) is None


def test_cli_verifies_and_falsifies_an_l2_robustness_spec(tmp_path):
    import json

    from click.testing import CliRunner

    from verikit.cli import main

    network, x, y, right = _digits()
    i = int(right[1])
    verdicts = {}
    for eps in (0.2, 1.5):
        spec = tmp_path / f"l2_{eps}.json"
        spec.write_text(json.dumps({"format": "verikit-robustness/1", "input": x[i].tolist(), "label": int(y[i]),
                                    "epsilon": eps, "num_classes": 10, "clip": [0.0, 1.0], "norm": 2}))
        out = CliRunner().invoke(main, ["verify", str(MODELS / "digits_mlp.onnx"), str(spec), "--json",
                                        "--timeout", "30"])
        report = json.loads(out.output)
        verdicts[eps] = report["verdict"]
        case = report["cases"][0]
        assert case["input"]["input_set"] == "l2-ball", case
    assert verdicts == {0.2: "verified", 1.5: "falsified"}


def test_the_l2_audit_certifies_on_the_ball_at_least_what_the_box_does_and_never_a_broken_sample():
    from verikit.apps.audit import AuditSettings, audit
    from verikit.apps.data import Dataset, Normalization
    from verikit.report.audit import summary

    network, x, y, _ = _digits()
    dataset = Dataset(x[:40].astype(np.float64), y[:40].astype(np.int64))
    settings = AuditSettings(eps=(0.1, 0.3), norm="2", normalization=Normalization(clip_min=0.0, clip_max=1.0))
    result = audit(network, dataset, settings)
    for outcome in result.per_eps:
        on_box = np.nan_to_num(outcome.certified_margin, nan=-np.inf) > 0
        assert outcome.certified_by_ball is not None
        assert np.all(outcome.certified_by_ball >= on_box)  # never looser than the box
        assert not np.any(outcome.certified_by_ball & outcome.broken)
        assert summary(outcome)["certified_by_ball_accuracy"] == float(np.mean(outcome.certified_by_ball))
    assert result.per_eps[0].certified_by_ball.sum() > (np.nan_to_num(result.per_eps[0].certified_margin,
                                                                      nan=-np.inf) > 0).sum()
