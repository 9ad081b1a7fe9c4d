"""Top-k output conditions (issue 23): normal forms against their direct definitions, the recogniser, spec
errors, soundness of verdicts on tiny ReLU nets against a dense onnxruntime grid (direct method and normal
form alike), VNN-LIB round trips, QuadAttack witnesses, and `verikit spec topk`."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tests.onnx_factory import mlp
from verikit.cli import main
from verikit.core.errors import SpecError
from verikit.core.property import Conjunction
from verikit.core.result import Budget, Falsified, Unknown, Verdict
from verikit.onnx.load import load_network_bytes
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify
from verikit.spec import topk
from verikit.spec.robustness import FORMAT, robustness_from_dict, robustness_property

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]  # osqp's raise_error notice


def _net(seed: int):
    """A 2-input ReLU MLP with 5 outputs (dynamic batch, so a whole grid replays in one onnxruntime call)."""
    return load_network_bytes(mlp((2, 8, 8, 5), seed=seed, batch="dynamic"), f"mlp-{seed}")


# --- the direct definitions of a violation (what each normal form must mean) -------------------------------

def _geq(Y: np.ndarray, a: int, b: int, slack: float) -> np.ndarray:
    """y[a] >= y[b] + slack, per row of Y (N, n). slack 0: the exact violation (ties count against the
    property); slack > 0: a clear violation, beyond float32 rounding."""
    return Y[:, a] >= Y[:, b] + slack


def violates(Y: np.ndarray, kind: str, *, label=None, k=None, classes=None, slack: float = 0.0) -> np.ndarray:
    """Does each output row of Y (N, n) violate the property? Written from the definitions, not the DNF."""
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[1]
    if kind == "top-k":  # label not strictly among the k highest: k others at or above it
        reach = sum(_geq(Y, j, label, slack).astype(int) for j in range(n) if j != label)
        return reach >= k
    outside = [j for j in range(n) if j not in classes]
    if kind == "top-k-set":  # some class of the set is not strictly above every class outside it
        return np.any([_geq(Y, j, i, slack) for i in classes for j in outside], axis=0)
    if kind == "top-k-order":  # not t1 > t2 > ... > tk > every other
        pairs = list(zip(classes[:-1], classes[1:])) + [(classes[-1], j) for j in outside]
        return np.any([_geq(Y, low, high, slack) for high, low in pairs], axis=0)
    if kind == "targeted-order":  # the attacker wins: t1 >= ... >= tK >= every other
        pairs = list(zip(classes[:-1], classes[1:])) + [(classes[-1], j) for j in outside]
        return np.all([_geq(Y, high, low, slack) for high, low in pairs], axis=0)
    raise AssertionError(kind)


def dnf_holds(disjuncts, Y: np.ndarray) -> np.ndarray:
    """Some conjunction `C y <= d` holds (every row), per row of Y."""
    Y = np.asarray(Y, dtype=np.float64)
    held = np.zeros(Y.shape[0], dtype=bool)
    for conjunction in disjuncts:
        assert not np.any(conjunction.strict)
        held |= np.all(Y @ np.asarray(conjunction.C).T <= np.asarray(conjunction.d) + 0.0, axis=1)
    return held


def random_outputs(rng, n: int, count: int = 400) -> np.ndarray:
    """Continuous outputs, and outputs from {0, 1, 2} (many ties), and all-equal ones."""
    return np.concatenate([rng.normal(size=(count, n)), rng.integers(0, 3, size=(count, n)).astype(float),
                           np.zeros((2, n)), np.ones((1, n))])


# --- 1. normal-form sizes and semantics ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 5, 7])
def test_normal_form_sizes(n):
    for k in range(1, n):
        for label in (0, n - 1):
            disjuncts = topk.top_k_disjuncts(label, k, n)
            assert len(disjuncts) == math.comb(n - 1, k) == topk.top_k_disjunct_count(n, k)
            assert all(c.rows == k and c.C.shape == (k, n) for c in disjuncts)
    for size in range(1, n):
        classes = list(range(n - 1, n - 1 - size, -1))
        assert len(topk.top_k_set_disjuncts(classes, n)) == size * (n - size)
        assert len(topk.top_k_order_disjuncts(classes, n)) == n - 1
        (only,) = topk.targeted_order_disjuncts(classes, n)
        assert only.rows == n - 1 and only.C.shape == (n - 1, n)


def test_top_k_normal_form_past_the_cap_names_the_direct_method():
    assert len(topk.top_k_disjuncts(0, 2, 6, cap=10)) == 10  # C(5, 2) = 10: at the cap, allowed
    with pytest.raises(SpecError, match="direct method"):
        topk.top_k_disjuncts(0, 2, 6, cap=9)
    with pytest.raises(SpecError, match="decide_top_k"):
        topk.top_k_disjuncts(3, 5, 100)  # C(99, 5) ~ 7.5e7 > MAX_TOPK_DISJUNCTS
    assert math.comb(99, 5) > topk.MAX_TOPK_DISJUNCTS
    with pytest.raises(SpecError, match="direct method"):  # the spec reader refuses it the same way
        robustness_property(np.zeros(2), 0, 0.1, num_classes=40, ranking={"property": "top-k", "k": 6})
    # the other kinds stay linear in n, far past where top-k is refused
    assert len(topk.top_k_order_disjuncts([3, 1, 2, 0, 4], 1000)) == 999


@pytest.mark.parametrize("label", [None, -1, 5])
def test_top_k_normal_form_refuses_a_label_outside_the_classes(label):
    with pytest.raises(SpecError):
        topk.disjuncts_for("top-k", 5, label=label, k=2)


@pytest.mark.parametrize("n", [3, 4, 6])
def test_normal_forms_mean_their_direct_definitions(n):
    rng = np.random.default_rng(n)
    Y = random_outputs(rng, n)
    checked = 0
    for k in range(1, n):
        for label in range(n):
            expected = violates(Y, "top-k", label=label, k=k)
            assert np.array_equal(dnf_holds(topk.top_k_disjuncts(label, k, n), Y), expected), (label, k)
            checked += 1
    for size in range(1, n):
        for classes in itertools.permutations(range(n), size):
            classes = list(classes)
            for kind in ("top-k-set", "top-k-order", "targeted-order"):
                expected = violates(Y, kind, classes=classes)
                got = dnf_holds(topk.disjuncts_for(kind, n, classes=classes), Y)
                assert np.array_equal(got, expected), (kind, classes)
                checked += 1
    assert checked > 20
    # not vacuous: the tie-heavy outputs make every kind both hold and fail
    assert 0 < violates(Y, "top-k", label=0, k=1).sum() < len(Y)
    assert 0 < violates(Y, "targeted-order", classes=[0, 1]).sum() < len(Y)


def test_ties_count_against_the_property():
    y = np.array([[1.0, 1.0, 0.0, 0.0]])
    # label 0 tied with class 1 for first place: not in the top 1, but in the top 2
    assert dnf_holds(topk.top_k_disjuncts(0, 1, 4), y)[0]
    assert not dnf_holds(topk.top_k_disjuncts(0, 2, 4), y)[0]
    # a tie at the set's boundary is a violation of top-k-set {0, 2}; {0, 1} holds
    assert dnf_holds(topk.top_k_set_disjuncts([0, 2], 4), np.array([[1.0, 0.0, 0.0, 0.0]]))[0]
    assert not dnf_holds(topk.top_k_set_disjuncts([0, 1], 4), y)[0]
    # an order tie violates top-k-order; the attacker's targeted order is met with ties (>=)
    assert dnf_holds(topk.top_k_order_disjuncts([0, 1], 4), y)[0]
    assert dnf_holds(topk.targeted_order_disjuncts([1, 0], 4), y)[0]
    assert not dnf_holds(topk.targeted_order_disjuncts([2, 0], 4), y)[0]


# --- 2. the recogniser ------------------------------------------------------------------------------------------

def test_top_k_form_recognises_the_normal_form_in_any_order():
    rng = np.random.default_rng(0)
    for n, label, k in [(5, 2, 2), (5, 0, 3), (6, 5, 4), (4, 1, 2)]:
        disjuncts = list(topk.top_k_disjuncts(label, k, n))
        assert topk.top_k_form(disjuncts, n) == (label, k)
        shuffled = [disjuncts[i] for i in rng.permutation(len(disjuncts))]
        shuffled = [Conjunction(c.C[rng.permutation(c.rows)], c.d) for c in shuffled]  # rows reordered too
        assert topk.top_k_form(shuffled, n) == (label, k)


def test_top_k_form_rejects_what_is_not_the_normal_form():
    n, label, k = 5, 2, 2
    disjuncts = list(topk.top_k_disjuncts(label, k, n))
    assert topk.top_k_form(topk.top_k_disjuncts(label, 1, n), n) is None  # k = 1 is plain robustness
    assert topk.top_k_form(disjuncts[1:], n) is None  # a disjunct missing
    assert topk.top_k_form(disjuncts[:-1] + [disjuncts[0]], n) is None  # one repeated instead
    assert topk.top_k_form([], n) is None
    assert topk.top_k_form(disjuncts, n + 1) is None  # other output count
    first = disjuncts[0]
    altered = [
        Conjunction(first.C * 2.0, first.d),  # scaled row
        Conjunction(first.C, first.d + np.array([0.0, 0.5])),  # a bound other than 0
        Conjunction(-first.C, first.d),  # the reverse comparison
        Conjunction(np.vstack([first.C[:1], first.C[:1]]), first.d),  # one class twice
    ]
    other_label = first.C.copy()
    other_label[1] = 0.0
    other_label[1, 0], other_label[1, 4] = 1.0, -1.0  # second row about label 0
    altered.append(Conjunction(other_label, first.d))
    for bad in altered:
        assert topk.top_k_form([bad] + disjuncts[1:], n) is None
    strict = Conjunction(first.C, first.d, strict=np.array([True, False]))
    assert topk.top_k_form([strict] + disjuncts[1:], n) is None
    # the other kinds' normal forms are not top-k
    assert topk.top_k_form(topk.top_k_order_disjuncts([2, 0], n), n) is None
    assert topk.top_k_form(topk.targeted_order_disjuncts([2, 0, 1, 3], n), n) is None


# --- 3. spec errors ------------------------------------------------------------------------------------------

def _spec(**keys) -> dict:
    spec = {"format": FORMAT, "input": [0.1, -0.2], "epsilon": 0.05, "num_classes": 5}
    spec.update(keys)
    return {key: value for key, value in spec.items() if value is not None}


def test_spec_keys_build_each_kind():
    prop = robustness_from_dict(_spec(label=1, property="top-k", k=2))
    assert len(prop.cases[0].disjuncts) == math.comb(4, 2)
    assert topk.top_k_form(prop.cases[0].disjuncts, 5) == (1, 2)
    assert prop.details["property"] == "top-k" and prop.details["k"] == 2
    prop = robustness_from_dict(_spec(property="top-k-set", classes=[3, 0]))  # no label needed
    assert len(prop.cases[0].disjuncts) == 2 * 3
    prop = robustness_from_dict(_spec(property="top-k-order", classes=[3, 0, 4], k=3))
    assert len(prop.cases[0].disjuncts) == 4
    prop = robustness_from_dict(_spec(property="targeted-order", targets=[2, 1]))
    (conjunction,) = prop.cases[0].disjuncts
    assert conjunction.rows == 4
    plain = robustness_from_dict(_spec(label=1))
    assert len(plain.cases[0].disjuncts) == 4 and plain.kind == "vnnlib"


@pytest.mark.parametrize("keys, fragment", [
    ({"label": 1, "property": "top-k"}, "'k' is missing"),
    ({"property": "top-k-set"}, "'classes' is missing"),
    ({"property": "top-k-order"}, "'classes' is missing"),
    ({"property": "targeted-order", "classes": [1, 2]}, "'targets' is missing"),
    ({"property": "top-k-order", "classes": [1, 2, 1]}, "repeats"),
    ({"property": "targeted-order", "targets": [4, 4]}, "repeats"),
    ({"property": "top-k-set", "classes": [0, 1, 2, 3, 4]}, "at most 4"),
    ({"property": "top-k-set", "classes": [0, 5]}, "class indices"),
    ({"property": "top-k-set", "classes": []}, "class indices"),
    ({"property": "top-k-set", "classes": [0, True]}, "class indices"),
    ({"property": "top-k-set", "classes": [0, 1], "k": 3}, "differs"),
    ({"label": 1, "property": "top-k", "k": 0}, "k must be"),
    ({"label": 1, "property": "top-k", "k": 5}, "k must be"),
    ({"label": 1, "property": "top-k", "k": 2.0}, "k must be"),
    ({"label": 1, "property": "top-k", "k": True}, "k must be"),
    ({"property": "top-k", "k": 2}, "label"),
    ({"label": 1, "k": 2}, "'k' needs a top-k"),
    ({"label": 1, "property": "robustness", "classes": [1, 2]}, "'classes' needs a top-k"),
    ({"label": 1, "property": "top-5"}, "key 'property'"),
])
def test_bad_top_k_specs_are_spec_errors(keys, fragment):
    with pytest.raises(SpecError, match=fragment):
        robustness_from_dict(_spec(**keys))


@pytest.mark.parametrize("keys", [
    {"label": 1, "property": "top-k", "k": 2, "classes": [1, 2]},
    {"property": "top-k-set", "classes": [1, 2], "targets": [3, 4]},
    {"property": "targeted-order", "targets": [1, 2], "classes": [3, 4]},
])
def test_ranking_keys_the_property_does_not_use_are_refused(keys):
    with pytest.raises(SpecError):
        robustness_from_dict(_spec(**keys))


def test_portfolio_topk_setting_is_checked():
    from verikit.core.settings import SettingError

    assert Options().portfolio.topk == "direct"
    assert Options().with_settings(["portfolio.topk=normal-form"]).portfolio.topk == "normal-form"
    with pytest.raises(SettingError, match="portfolio.topk"):
        Options().with_settings(["portfolio.topk=both"])


# --- 4. soundness on tiny ReLU nets: verdicts against a dense onnxruntime grid ----------------------------------

GRID = 120


def _grid(box) -> np.ndarray:
    axes = [np.linspace(lo, hi, GRID) for lo, hi in zip(box.lower, box.upper)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    corners = np.array(list(itertools.product(*zip(box.lower, box.upper))))
    return np.concatenate([mesh, corners]).astype(np.float32)


def _questions(order: list[int]) -> list[tuple[str, dict, int | None]]:
    """Questions about the ranking at the box centre (so some hold), by kind: (kind, ranking, label)."""
    return [
        ("top-k", {"property": "top-k", "k": 2}, order[1]),
        ("top-k", {"property": "top-k", "k": 3}, order[2]),
        ("top-k-set", {"property": "top-k-set", "classes": [order[1], order[0]]}, None),
        ("top-k-order", {"property": "top-k-order", "classes": order[:2]}, None),
        ("targeted-order", {"property": "targeted-order", "classes": [order[1], order[0]]}, None),
    ]


def _check_result(network, prop, ranking, label, result, grid_y, grid_x) -> None:
    kind = ranking["property"]
    question = dict(label=label, k=ranking.get("k"), classes=ranking.get("classes"))
    case = prop.cases[0]
    if result.verdict is Verdict.VERIFIED:
        clear = violates(grid_y, kind, slack=1e-6, **question)
        assert not clear.any(), f"verified, but {grid_x[clear][0]} violates {ranking} (label {label})"
    elif result.verdict is Verdict.FALSIFIED:
        witness = result.counterexample
        assert witness is not None and case.box.contains(witness.x)
        y = network.replay(np.asarray(witness.x, dtype=np.float32)[None])
        assert np.array_equal(y[0], np.asarray(witness.y, dtype=np.float32))
        assert violates(y, kind, **question)[0], (ranking, label, y)


def test_verdicts_are_sound_against_a_dense_grid():
    tally = {"verified": 0, "falsified": 0, "direct": 0, "direct-verified-top-k": 0}
    for seed in range(3):
        network = _net(seed)
        rng = np.random.default_rng(100 + seed)
        centre = rng.uniform(-1.0, 1.0, size=2)
        order = [int(c) for c in np.argsort(-network.replay(centre[None].astype(np.float32))[0])]
        for eps in (0.03, 0.15, 0.5):
            prop0 = robustness_property(centre, 0, eps, num_classes=5)
            grid_x = _grid(prop0.cases[0].box)
            grid_y = network.replay(grid_x)
            for kind, ranking, label in _questions(order):
                prop = robustness_property(centre, label, eps, num_classes=5, ranking=ranking)
                modes = ("direct", "normal-form") if kind == "top-k" else ("direct",)
                verdicts = {}
                for mode in modes:
                    options = Options(timeout=8, seed=seed).with_settings([f"portfolio.topk={mode}"])
                    result = verify(network, prop, options)
                    _check_result(network, prop, ranking, label, result, grid_y, grid_x)
                    verdicts[mode] = result.verdict
                    tally[result.verdict.value] = tally.get(result.verdict.value, 0) + 1
                    stages = [stage["stage"] for stage in result.schedule]
                    if kind == "top-k" and mode == "direct":
                        assert "bab/top-k-direct" in stages
                        if result.method == "top-k-direct":
                            tally["direct"] += 1
                            tally["direct-verified-top-k"] += result.verdict is Verdict.VERIFIED
                    else:
                        assert "bab/top-k-direct" not in stages and result.method != "top-k-direct"
                assert {Verdict.VERIFIED, Verdict.FALSIFIED} != set(verdicts.values()), (seed, eps, ranking)
    assert tally["verified"] >= 20 and tally["falsified"] >= 10, tally
    assert tally["direct-verified-top-k"] >= 8 and tally["direct"] == tally["direct-verified-top-k"], tally


def test_the_direct_method_alone_is_sound_and_splits():
    """decide_top_k without its gradient attack (only the open boxes' centres can falsify), against the grid."""
    from verikit.core.result import Proven
    from verikit.engines.problem import Problem
    from verikit.engines.topk import TopKSettings, decide_top_k

    proven = falsified = split = 0
    for seed in range(4):
        network = _net(seed)
        problem = Problem(network, seed=0)
        centre = np.random.default_rng(seed).uniform(-1.0, 1.0, size=2)
        order = [int(c) for c in np.argsort(-network.replay(centre[None].astype(np.float32))[0])]
        for eps in (0.03, 0.15, 0.5):
            for label, k in [(order[1], 2), (order[2], 3), (order[3], 2), (order[0], 2), (order[3], 4)]:
                prop = robustness_property(centre, label, eps, num_classes=5, ranking={"property": "top-k", "k": k})
                case = prop.cases[0]
                grid_x = _grid(case.box)
                grid_y = network.replay(grid_x)
                outcome = decide_top_k(problem, case, label, k, Budget.seconds(5),
                                       TopKSettings(attack_steps=0, attack_starts=0))
                if isinstance(outcome, Proven):
                    assert not violates(grid_y, "top-k", label=label, k=k, slack=1e-6).any(), (seed, eps, label, k)
                    assert outcome.certificate.method.startswith("top-k-direct")
                    proven += 1
                    split += outcome.certificate.detail["splits"] > 0
                    if outcome.certificate.detail["splits"] > 0:  # it needed splitting: one box is not enough
                        capped = decide_top_k(problem, case, label, k, Budget.seconds(5),
                                              TopKSettings(attack_steps=0, attack_starts=0, max_boxes=1))
                        assert isinstance(capped, Unknown) and "max_boxes" in capped.reason
                elif isinstance(outcome, Falsified):
                    x = np.asarray(outcome.counterexample.x, dtype=np.float32)
                    assert case.box.contains(x)
                    assert violates(network.replay(x[None]), "top-k", label=label, k=k)[0]
                    falsified += 1
                else:
                    assert not violates(grid_y, "top-k", label=label, k=k, slack=-1e-6).all()
    assert proven >= 5 and falsified >= 5 and split >= 1, (proven, falsified, split)


def test_the_direct_engine_leaves_other_cases_open():
    from verikit.engines.problem import Problem
    from verikit.engines.topk import TopKEngine

    network = _net(1)
    problem = Problem(network, seed=0)
    for ranking, label in [(None, 0), ({"property": "top-k-order", "classes": [0, 1]}, None),
                           ({"property": "targeted-order", "classes": [0, 1]}, None)]:
        case = robustness_property(np.zeros(2), label, 0.1, num_classes=5, ranking=ranking).cases[0]
        outcome = TopKEngine().run(problem, case, Budget.seconds(2))
        assert isinstance(outcome, Unknown) and "not a top-k case" in outcome.reason


# --- 5. VNN-LIB round trip -------------------------------------------------------------------------------------

def test_top_k_as_vnnlib_gets_the_json_verdict_and_is_recognised():
    from verikit.spec.vnnlib import parse_vnnlib
    from verikit.spec.vnnlib_writer import write_vnnlib

    network = _net(1)
    centre = np.array([0.3, -0.4])
    order = [int(c) for c in np.argsort(-network.replay(centre[None].astype(np.float32))[0])]
    seen = set()
    for eps, label, k in [(0.05, order[1], 2), (0.05, order[2], 3), (0.6, order[2], 2), (0.6, order[3], 3)]:
        prop = robustness_from_dict(_spec(input=centre.tolist(), epsilon=eps, label=label, property="top-k", k=k))
        back = parse_vnnlib(write_vnnlib(prop), source="roundtrip.vnnlib")
        assert len(back.cases) == 1
        assert topk.top_k_form(back.cases[0].disjuncts, 5) == (label, k)
        assert np.allclose(back.cases[0].box.lower, prop.cases[0].box.lower)
        assert np.allclose(back.cases[0].box.upper, prop.cases[0].box.upper)
        from_json = verify(network, prop, Options(timeout=8))
        from_vnnlib = verify(network, back, Options(timeout=8))
        assert from_json.verdict == from_vnnlib.verdict, (eps, label, k)
        assert from_vnnlib.verdict in (Verdict.VERIFIED, Verdict.FALSIFIED)
        if from_vnnlib.verdict is Verdict.VERIFIED:
            assert from_vnnlib.method == "top-k-direct"  # the direct method took the VNN-LIB case too
        seen.add(from_vnnlib.verdict)
    assert seen == {Verdict.VERIFIED, Verdict.FALSIFIED}


# --- 6. QuadAttack ---------------------------------------------------------------------------------------------

def _targeted_instance():
    """A net, a box whose centre does not rank `targets` first, and targets some sampled point does rank first."""
    for seed in range(10):
        network = _net(seed)
        rng = np.random.default_rng(seed)
        centre = rng.uniform(-1.0, 1.0, size=2)
        eps = 0.3
        prop = robustness_property(centre, 0, eps, num_classes=5)
        box = prop.cases[0].box
        samples = rng.uniform(box.lower, box.upper, size=(4000, 2)).astype(np.float32)
        ys = network.replay(samples)
        centre_top = tuple(np.argsort(-network.replay(centre[None].astype(np.float32))[0])[:2])
        tops = {tuple(int(c) for c in np.argsort(-y)[:2]) for y in ys}
        for targets in sorted(tops - {tuple(int(c) for c in centre_top)}):
            reached = violates(ys, "targeted-order", classes=list(targets), slack=1e-3)
            if 0 < reached.mean() < 0.2:  # a violation exists, but the centre and most points miss it
                return network, centre, eps, list(targets)
    raise AssertionError("no targeted-order instance found")


def test_quadattack_finds_a_replayed_targeted_order_witness():
    from verikit.engines.attack import quadattack

    if quadattack.osqp_available() is not None:
        pytest.skip("osqp is not installed")
    network, centre, eps, targets = _targeted_instance()
    prop = robustness_property(centre, None, eps, num_classes=5,
                               ranking={"property": "targeted-order", "classes": targets})
    case = prop.cases[0]
    outcome = quadattack.run(network, case, Budget.seconds(5))
    assert isinstance(outcome, Falsified), outcome
    x = np.asarray(outcome.counterexample.x, dtype=np.float32)
    assert case.box.contains(x)
    y = network.replay(x[None])
    assert violates(y, "targeted-order", classes=targets)[0], (y, targets)
    assert list(np.argsort(-y[0], kind="stable")[:2]) == targets or y[0][targets[0]] == y[0][targets[1]]


def test_attack_with_and_without_quadattack_returns_only_replayed_witnesses(monkeypatch):
    from verikit.engines.attack import engine, quadattack
    from verikit.engines.attack.engine import AttackSettings

    calls = []
    real = quadattack.run

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(quadattack, "run", counting)
    network, centre, eps, targets = _targeted_instance()
    order = [int(c) for c in np.argsort(-network.replay(centre[None].astype(np.float32))[0])]
    found = 0
    for eps_now in (0.02, eps):
        for kind, ranking, label in _questions(order) + [("targeted-order", {"property": "targeted-order",
                                                                               "classes": targets}, None)]:
            prop = robustness_property(centre, label, eps_now, num_classes=5, ranking=ranking)
            case = prop.cases[0]
            multi_row = any(c.rows >= 2 for c in case.disjuncts)
            for mode in ("off", "on", "auto"):
                calls.clear()
                settings = AttackSettings(quadattack=mode, rounds=2, restarts=16, steps=30)
                outcome = engine.run(network, case, Budget.seconds(2), settings=settings)
                ran = bool(calls)
                if quadattack.osqp_available() is None:
                    assert ran == (mode == "on" or (mode == "auto" and multi_row)), (mode, kind)
                assert isinstance(outcome, (Falsified, Unknown))
                if isinstance(outcome, Falsified):
                    x = np.asarray(outcome.counterexample.x, dtype=np.float32)
                    assert case.box.contains(x)
                    y = network.replay(x[None])
                    question = dict(label=label, k=ranking.get("k"), classes=ranking.get("classes"))
                    assert violates(y, kind, **question)[0], (mode, ranking, y)
                    found += 1
    assert found > 0


# --- 7. CLI: verikit spec topk -----------------------------------------------------------------------------------

def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, code: int, fragment: str = "") -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("verikit: error:"), result.stderr
    assert "Traceback" not in result.output
    assert fragment in lines[0], lines[0]


@pytest.fixture
def plain_spec(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_spec(label=1, input=[0.3, -0.4], epsilon=0.05)))
    return path


def test_spec_topk_writes_vnnlib_that_reads_back(plain_spec, tmp_path):
    from verikit.spec.load import load_spec

    out = tmp_path / "x_top2.vnnlib"
    result = _invoke("spec", "topk", plain_spec, "--k", 2, "-o", out)
    assert result.exit_code == 0, result.output
    assert "6 disjunct" in result.stdout
    back = load_spec(out, n_inputs=2, n_outputs=5)
    assert topk.top_k_form(back.cases[0].disjuncts, 5) == (1, 2)
    expected = robustness_from_dict(_spec(label=1, input=[0.3, -0.4], epsilon=0.05, property="top-k", k=2))
    assert np.allclose(back.cases[0].box.lower, expected.cases[0].box.lower)
    assert np.allclose(back.cases[0].box.upper, expected.cases[0].box.upper)

    out = tmp_path / "x_order.vnnlib"
    result = _invoke("spec", "topk", plain_spec, "--property", "top-k-order", "--classes", "3,0", "-o", out)
    assert result.exit_code == 0, result.output
    back = load_spec(out, n_inputs=2, n_outputs=5)
    Y = random_outputs(np.random.default_rng(1), 5)
    assert np.array_equal(dnf_holds(back.cases[0].disjuncts, Y), violates(Y, "top-k-order", classes=[3, 0]))


def test_verify_cli_on_a_top_k_spec_writes_a_certificate_that_checks(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(mlp((2, 8, 8, 5), seed=1))
    network = _net(1)
    order = [int(c) for c in np.argsort(-network.replay(np.array([[0.3, -0.4]], np.float32))[0])]
    spec = tmp_path / "top2.json"
    spec.write_text(json.dumps(_spec(label=order[1], input=[0.3, -0.4], epsilon=0.05, property="top-k", k=2)))
    report, certificate = tmp_path / "r.json", tmp_path / "c.json"
    result = _invoke("verify", model, spec, "--timeout", 20, "--report", report, "--certificate", certificate)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["verdict"] == "verified"
    assert [case["status"] for case in data["cases"]] == ["proven"]
    checked = _invoke("certificate", "check", model, spec, certificate)
    assert checked.exit_code == 0 and "VALID" in checked.stdout, checked.output
    spec.write_text(json.dumps(_spec(label=order[4], input=[0.3, -0.4], epsilon=0.05, property="top-k", k=3)))
    result = _invoke("verify", model, spec, "--timeout", 20, "--json")
    assert result.exit_code == 1, result.output
    x = np.array(json.loads(result.stdout)["counterexample"]["x"], dtype=np.float32)
    assert violates(network.replay(x[None]), "top-k", label=order[4], k=3)[0]


def test_spec_topk_errors(plain_spec, tmp_path):
    out = tmp_path / "out.vnnlib"
    _one_line_error(_invoke("spec", "topk", plain_spec, "--k", 5, "-o", out), 3, "k must be")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--k", 0, "-o", out), 3, "k must be")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--classes", "1,2", "-o", out), 2, "--classes")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--property", "top-k-set", "--k", 2, "-o", out), 2, "--k")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--property", "top-k-set", "-o", out), 2, "--classes")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--property", "top-k-set", "--classes", "1,x", "-o", out),
                    2, "--classes")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--property", "top-k-order", "--classes", "1,1", "-o", out),
                    3, "repeats")
    _one_line_error(_invoke("spec", "topk", plain_spec, "--property", "top-k-set", "--classes", "0,1,2,3,4", "-o",
                            out), 3)
    assert not out.exists()
