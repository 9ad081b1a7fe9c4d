"""Tensor branch and bound (verikit.engines.tensor_bab): ReLU splits bounded on auto_LiRPA's graph.

Small CNN and residual networks where α-CROWN alone leaves the property open: the tensor search proves
it, agreeing with the dense MLP branch and bound or a brute-force grid; its domain bounds hold at
sampled points; sat cases end only in replayed counterexamples; the queue's byte cap gives unknown.
"""

import numpy as np
import pytest
import torch

from onnx_factory import GraphBuilder, cnn
from verikit.core.property import Box, Case, Conjunction, Property
from verikit.core.result import Budget, Falsified, Proven, Unknown, Verdict
from verikit.engines.bab.engine import BabEngine
from verikit.engines.lirpa.engine import BoundsEngine
from verikit.engines.problem import Problem
from verikit.engines.spec_rows import SpecRows
from verikit.engines.tensor_bab import bounding
from verikit.engines.tensor_bab.domains import DomainQueue, pack, unpack
from verikit.engines.tensor_bab.engine import MLP_BAB_TAKES_IT, TensorBabEngine
from verikit.engines.tensor_bab.settings import TensorBabSettings
from verikit.onnx.load import load_network_bytes
from verikit.portfolio.options import Options
from verikit.portfolio.runner import verify
from verikit.witness.replay import check

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALWAYS = TensorBabSettings(when="always")


def residual_mlp(seed: int, width: int = 12) -> bytes:
    """x (2) -> h = Relu(Gemm) -> Relu(Gemm(h) + h) -> Gemm (3): a skip connection, no chain form."""
    g = GraphBuilder(seed)
    h = g.op("Relu", g.op("Gemm", "x", g.weight(width, 2, scale=1.0), g.weight(width, scale=0.3), transB=1))
    r = g.op("Gemm", h, g.weight(width, width, scale=0.4), g.weight(width, scale=0.1), transB=1)
    v = g.op("Relu", g.op("Add", r, h))
    return g.build((1, 2), g.op("Gemm", v, g.weight(3, width, scale=0.5), g.weight(3, scale=0.1), transB=1))


def robust_case(network, epsilon: float) -> Case:
    """The top class at a seeded centre stays on top within an L-inf ball of `epsilon` (one disjunct per rival)."""
    center = np.random.default_rng(0).uniform(0.2, 0.8, network.n_inputs)
    top = int(np.argmax(network.replay(center[None].astype(np.float32))[0]))
    disjuncts = []
    for k in range(network.n_outputs):
        if k != top:  # violated iff y_k >= y_top, i.e. y_top - y_k <= 0
            row = np.zeros((1, network.n_outputs))
            row[0, top], row[0, k] = 1.0, -1.0
            disjuncts.append(Conjunction(row, np.zeros(1)))
    return Case(Box(center - epsilon, center + epsilon), tuple(disjuncts))


def grid_margin(network, case: Case, points: int = 401) -> float:
    """The smallest margin (y_top - y_k over rivals) on a dense grid over a 2-input box."""
    axes = [np.linspace(lo, hi, points) for lo, hi in zip(case.box.lower, case.box.upper)]
    xs = np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, 2)
    ys = network.forward(xs).double().numpy()
    C = np.vstack([c.C for c in case.disjuncts])
    return float((ys @ C.T).min())


@pytest.fixture(scope="module")
def residual():
    return load_network_bytes(residual_mlp(1), "residual")


@pytest.fixture(scope="module")
def small_cnn():
    return load_network_bytes(cnn((1, 6, 6), channels=(4,), pool=None, seed=0), "small_cnn")


def test_residual_net_closed_by_splitting_is_proven_leaf_by_leaf_in_rigorous_arithmetic(residual):
    # the float32 search closes every domain; the rigorous bound of the whole box does not refute the case,
    # so the proof stands only because each closed domain was re-bounded by the float64 graph form
    from verikit.engines.crown.graph import GraphForm
    from verikit.engines.lirpa.engine import confirm_case

    problem = Problem(residual)
    case = robust_case(residual, 0.6)
    assert BabEngine().supports(problem) is not None  # the skip connection: no chain form
    assert isinstance(problem.lirpa().pwl, GraphForm)
    assert confirm_case(problem.lirpa(), case) is not None
    outcome = TensorBabEngine().run(problem, case, Budget.seconds(60))
    assert isinstance(outcome, Proven), outcome
    detail = outcome.certificate.detail
    assert detail["confirmed_domains"] >= 2 and "rigorous float64 graph CROWN" in detail["confirmed_by"]
    assert grid_margin(residual, case) > 0


def test_residual_sat_case_ends_in_a_replayed_counterexample():
    network = load_network_bytes(residual_mlp(3), "residual3")
    case = robust_case(network, 0.12)
    assert grid_margin(network, case) < 0
    outcome = TensorBabEngine().run(Problem(network), case, Budget.seconds(60))
    assert isinstance(outcome, Falsified), outcome
    found = outcome.counterexample
    assert check(case, found.x, network.replay(found.x[None].astype(np.float32))[0]) is not None


def test_cnn_closed_by_splitting_in_float32_is_proven_only_by_the_rigorous_dense_search(small_cnn):
    problem = Problem(small_cnn)
    case = robust_case(small_cnn, 0.07)
    assert isinstance(BoundsEngine("alpha-crown").run(problem, case, Budget.seconds(60)), Unknown)
    assert TensorBabEngine().supports(problem) == MLP_BAB_TAKES_IT  # auto: the dense search takes it
    outcome = TensorBabEngine(ALWAYS).run(problem, case, Budget.seconds(60))
    # a chain has no float64 graph form to confirm leaves with, and the whole box's rigorous bound does not
    # refute it: unknown, saying so (the dense search proves it rigorously)
    assert isinstance(outcome, Unknown) and "not a proof" in outcome.reason, outcome
    assert isinstance(BabEngine().run(problem, case, Budget.seconds(60)), Proven)
    assert isinstance(TensorBabEngine(ALWAYS).run(problem, robust_case(small_cnn, 0.09), Budget.seconds(60)),
                      Falsified)


@pytest.mark.parametrize("refine_layers, beta_steps", [(0, 0), (2, 0), (0, 10)])
def test_domain_bounds_hold_at_sampled_points_that_satisfy_the_splits(residual, refine_layers, beta_steps):
    bounded = Problem(residual).lirpa()
    case = robust_case(residual, 0.6)
    spec = SpecRows.of(case, torch.float32)
    root = bounding.prepare_root(bounded, case.box.lower, case.box.upper, spec.C64.numpy(), alpha_steps=10,
                                 alpha_lr=0.1, stop_alpha=lambda raw: False)
    rng = np.random.default_rng(7)
    xs = rng.uniform(case.box.lower, case.box.upper, size=(4000, 2))
    with torch.no_grad():
        bounded.module(torch.as_tensor(xs, dtype=torch.float32))
    pre = [bounded.module[layer.name].forward_value.reshape(len(xs), -1).numpy() for layer in root.layers]
    ys = residual.forward(xs).double().numpy()
    margins = ys @ spec.C64.numpy().T  # (N, R)
    domains = []
    for _ in range(24):  # random splits, signs taken from one sample so the domain is never empty
        anchor = rng.integers(len(xs))
        chosen = [(int(k), int(rng.integers(root.layers[k].size))) for k in rng.integers(len(root.layers), size=3)]
        domains.append([(k, j, bool(pre[k][anchor, j] >= 0)) for k, j in chosen])
    result = bounding.bound_batch(bounded, root, domains, refine_layers=refine_layers, beta_steps=beta_steps,
                                  beta_lr=0.5)
    checked = 0
    for b, splits in enumerate(domains):
        inside = np.ones(len(xs), dtype=bool)
        for k, j, active in splits:
            inside &= (pre[k][:, j] >= 0) if active else (pre[k][:, j] <= 0)
        for k, (low, high) in enumerate(result.layer_bounds):
            values = pre[k][inside]
            assert np.all(values >= low[b].numpy() - 1e-5) and np.all(values <= high[b].numpy() + 1e-5)
        assert np.all(margins[inside] >= result.raw_lower[b] - 1e-5)
        checked += int(inside.sum())
    assert checked > 1000


def test_queue_over_its_byte_cap_is_unknown_with_the_reason(small_cnn):
    case = robust_case(small_cnn, 0.07)
    settings = TensorBabSettings(when="always", max_queue_bytes=1)
    outcome = TensorBabEngine(settings).run(Problem(small_cnn), case, Budget.seconds(60))
    assert isinstance(outcome, Unknown) and "max_queue_bytes" in outcome.reason


def test_packed_splits_round_trip_and_the_queue_counts_bytes():
    splits = np.array([pack(0, 5, True), pack(3, 4095, False)], dtype=np.int64)
    assert unpack(splits) == [(0, 5, True), (3, 4095, False)]
    queue = DomainQueue()
    queue.push(-1.0, splits, (1, 2))
    queue.push(-3.0, splits[:1], (1, 3))
    assert queue.nbytes == 2 * 256 + 3 * 8 and queue.worst() == -3.0
    assert [d.bound for d in queue.pop(2)] == [-3.0, -1.0] and queue.nbytes == 0


def test_portfolio_runs_the_tensor_search_on_a_residual_network(residual):
    case = robust_case(residual, 0.6)
    prop = Property((case,), 2, 3, "robustness", "")
    result = verify(residual, prop, Options(timeout=60))
    # closed in float32 and each leaf re-proven on the float64 graph form
    assert result.verdict == Verdict.VERIFIED, result.reason
    assert result.method == "tensor-crown"
    stages = [stage["stage"] for stage in result.schedule]
    assert "bab/tensor-crown" in stages
    assert "bounds/crown" not in stages and "bounds/alpha-crown" not in stages  # the tensor search's root
    assert any("alpha-crown stages are skipped" in note for note in result.settings["notes"])


def test_bounds_crossed_by_rounding_do_not_close_a_domain(residual):
    """float32 CROWN bounds of a nearly constant neuron can cross in the last bit (seen on sri_resnet_b);
    that is no proof the domain is empty, so the domain keeps its finite bound."""
    bounded = Problem(residual).lirpa()
    case = robust_case(residual, 0.6)
    spec = SpecRows.of(case, torch.float32)
    root = bounding.prepare_root(bounded, case.box.lower, case.box.upper, spec.C64.numpy(), alpha_steps=0,
                                 alpha_lr=0.1, stop_alpha=lambda raw: False)
    name = root.layers[1].name
    low, high = root.intermediate[name]
    crossed = low.clone()
    crossed[0, 0] = torch.nextafter(high[0, 0], torch.tensor(float("inf")))
    root.intermediate[name] = (crossed, high)
    result = bounding.bound_batch(bounded, root, [[], [(1, 0, True)], [(1, 0, False)]])
    assert np.all(np.isfinite(result.raw_lower))


def test_branching_prefers_the_unstable_neuron_whose_intercept_costs_the_bound_most():
    from verikit.engines.tensor_bab.domains import branch_choice

    low = torch.tensor([[-1.0, -1.0, 0.5], [-1.0, -1.0, -2.0]])
    high = torch.tensor([[1.0, 1.0, 2.0], [1.0, 1.0, -1.0]])
    # domain 0: neuron 1 has the larger negative coefficient; domain 1: coefficients are positive (the
    # lower bound uses the exact lower relaxation there), so the intercept alone breaks the tie
    coefficient = torch.tensor([[[-0.1, -2.0, -5.0]], [[0.3, 0.1, -9.0]]])
    open_rows = torch.ones(2, 1, dtype=torch.bool)
    assert branch_choice([(low, high)], [coefficient], open_rows) == [(0, 1), (0, 0)]
    stable = (torch.zeros(1, 3), torch.ones(1, 3))
    assert branch_choice([stable], [None], torch.ones(1, 1, dtype=torch.bool)) == [None]


def test_a_cnn_too_large_to_densify_is_searched_on_tensors():
    """Conv 3->16 on 3x32x32: 3072 x 16384 dense, past the MLP search's limit; the tensor search takes it."""
    g = GraphBuilder(seed=4)
    value = g.op("Conv", "x", g.weight(16, 3, 3, 3, scale=0.2), g.weight(16, scale=0.1), pads=[1, 1, 1, 1])
    value = g.op("Flatten", g.op("Relu", value), axis=1)
    value = g.op("Gemm", value, g.weight(10, 16 * 32 * 32, scale=0.02), g.weight(10), transB=1)
    network = load_network_bytes(g.build((1, 3, 32, 32), value, output_shape=(1, 10)), "cifar_cnn")
    problem = Problem(network)
    assert "too many to hold densely" in BabEngine().supports(problem)
    assert TensorBabEngine().supports(problem) is None
    outcome = TensorBabEngine().run(problem, robust_case(network, 1e-2), Budget.seconds(60))
    assert isinstance(outcome, Falsified), outcome  # a replayed corner of a split domain


def test_beta_tightens_split_domains_and_the_rigorous_form_reproduces_it(residual):
    """β-CROWN's bound on split domains is at least CROWN's with the root's α, higher on some; the float64
    graph form given the same α and β is never looser (beyond float32 rounding; it may be tighter, its own
    intermediate bounds meet IBP's), so β survives confirmation."""
    from verikit.engines.tensor_bab.confirm import DomainConfirmer

    problem = Problem(residual)
    bounded = problem.lirpa()
    case = robust_case(residual, 0.6)
    spec = SpecRows.of(case, torch.float32)
    root = bounding.prepare_root(bounded, case.box.lower, case.box.upper, spec.C64.numpy(), alpha_steps=10,
                                 alpha_lr=0.1, stop_alpha=lambda raw: False)
    rng = np.random.default_rng(3)
    xs = rng.uniform(case.box.lower, case.box.upper, size=(64, 2))
    with torch.no_grad():
        bounded.module(torch.as_tensor(xs, dtype=torch.float32))
    pre = [bounded.module[layer.name].forward_value.reshape(len(xs), -1).numpy() for layer in root.layers]
    domains = []
    for anchor in range(16):
        chosen = [(int(k), int(rng.integers(root.layers[k].size))) for k in rng.integers(len(root.layers), size=4)]
        domains.append([(k, j, bool(pre[k][anchor, j] >= 0)) for k, j in chosen])
    plain = bounding.bound_batch(bounded, root, domains)
    beta = bounding.bound_batch(bounded, root, domains, beta_steps=20, beta_lr=0.5)
    assert np.all(beta.raw_lower >= plain.raw_lower - 1e-5)
    assert np.any(beta.raw_lower > plain.raw_lower + 1e-3)
    assert any(b is not None and float(b.abs().sum()) > 0 for b in beta.beta)
    confirmer = DomainConfirmer.build(bounded, case, spec, root)
    rigorous = confirmer.bounds(domains, alpha=beta.alpha, beta=beta.beta)
    expected = beta.raw_lower - spec.d64.numpy()[None, :]
    assert np.all(rigorous >= expected - 1e-4 * (1 + np.abs(expected).max())), (rigorous - expected).min()
    assert np.all(rigorous <= expected + 0.1)


def test_domain_limit_ends_the_search_unknown_and_beta_steps_are_checked(residual):
    from verikit.core.settings import SettingError

    case = robust_case(residual, 0.6)
    outcome = TensorBabEngine(TensorBabSettings(domain_limit=3)).run(Problem(residual), case, Budget.seconds(60))
    assert isinstance(outcome, Unknown) and "tensor_bab.domain_limit" in outcome.reason, outcome
    with pytest.raises(SettingError, match="beta_steps"):
        TensorBabSettings(beta_steps=-1)


def deep_residual(seed: int, width: int = 10, blocks: int = 3) -> bytes:
    """x (3) -> Relu(Gemm) -> `blocks` x [h = Relu(Gemm(h) + h)] -> Gemm (3): several ReLUs behind skips."""
    g = GraphBuilder(seed)
    h = g.op("Relu", g.op("Gemm", "x", g.weight(width, 3, scale=1.0), g.weight(width, scale=0.3), transB=1))
    for _ in range(blocks):
        r = g.op("Gemm", h, g.weight(width, width, scale=0.5), g.weight(width, scale=0.1), transB=1)
        h = g.op("Relu", g.op("Add", r, h))
    return g.build((1, 3), g.op("Gemm", h, g.weight(3, width, scale=0.5), g.weight(3, scale=0.1), transB=1))


@pytest.fixture(scope="module")
def deep():
    return load_network_bytes(deep_residual(6), "deep_residual")


def _hidden_setup(network, epsilon: float):
    from verikit.engines.tensor_bab.confirm import DomainConfirmer

    bounded = Problem(network).lirpa()
    case = robust_case(network, epsilon)
    spec = SpecRows.of(case, torch.float32)
    root = bounding.prepare_root(bounded, case.box.lower, case.box.upper, spec.C64.numpy(), alpha_steps=10,
                                 alpha_lr=0.1, stop_alpha=lambda raw: False)
    return bounded, case, spec, root, DomainConfirmer.build(bounded, case, spec, root)


def _inside_at_samples(form, case: Case, bounds: dict, names: list[str], count: int = 20_000) -> None:
    xs = np.random.default_rng(11).uniform(case.box.lower, case.box.upper, size=(count, len(case.box.lower)))
    values = form.evaluate_all(xs)
    for name in names:
        lo, hi = bounds[name]
        v = values[name].reshape(count, -1)
        assert bool((v >= lo.reshape(1, -1)).all() and (v <= hi.reshape(1, -1)).all()), name


def test_hidden_layer_slopes_tighten_the_rigorous_box_bounds_which_hold_at_samples(deep):
    """α-CROWN over every layer (auto_LiRPA's slopes of each ReLU for each later layer's bounds) gives the
    float64 form bounds never looser than plain CROWN's and tighter on some neurons; they hold at 20,000
    sampled inputs, and the search's root takes them (rounded outward to float32)."""
    bounded, case, spec, root, confirmer = _hidden_setup(deep, 0.3)
    form = confirmer.form
    names = [name for name, _ in form.relu_inputs()]
    plain = form.box_bounds(case.box.lower, case.box.upper).bounds
    hidden = bounding.optimise_hidden(bounded, root, steps=20, lr=0.1, stop_alpha=lambda raw: False, budget=None)
    assert sum(len(found) for found in hidden.slopes.values()) == len(names) * (len(names) - 1) // 2
    tightened = confirmer.use_hidden(root, hidden)
    widths = {"plain": 0.0, "hidden": 0.0}
    for layer, name in zip(root.layers, names):
        lo, hi = tightened[layer.name]
        assert bool((lo >= plain[name][0]).all() and (hi <= plain[name][1]).all()), name
        unstable = (plain[name][0] < 0) & (plain[name][1] > 0)
        widths["plain"] += float((plain[name][1] - plain[name][0])[unstable].sum())
        widths["hidden"] += float((hi - lo)[unstable].sum())
    assert widths["hidden"] < 0.97 * widths["plain"], widths
    _inside_at_samples(form, case, confirmer.root.bounds, names)
    new_root = bounding.with_hidden_bounds(root, tightened, hidden)
    for layer in root.layers:
        low32, high32 = new_root.intermediate[layer.name]
        low64, high64 = tightened[layer.name]
        assert low32.dtype == torch.float32
        assert bool((low32.double().reshape(-1) <= low64.reshape(-1)).all())
        assert bool((high32.double().reshape(-1) >= high64.reshape(-1)).all())
    assert np.all(new_root.raw_lower >= root.raw_lower)


def test_slopes_outside_zero_one_or_nan_are_clamped_so_the_box_bounds_still_hold(deep):
    bounded, case, spec, root, confirmer = _hidden_setup(deep, 0.3)
    form = confirmer.form
    relus = form.relu_inputs()
    rng = np.random.default_rng(2)
    slopes = {}
    for k, (start, start_shape) in enumerate(relus):
        for source, shape in relus[:k]:
            bad = torch.as_tensor(rng.choice([np.nan, -3.0, 5.0, 0.5], size=(2, int(np.prod(start_shape)), *shape)))
            slopes.setdefault(start, {})[source] = bad
    box = form.box_bounds(case.box.lower, case.box.upper, slopes)
    _inside_at_samples(form, case, box.bounds, [name for name, _ in relus])


def test_search_still_open_after_its_probe_resumes_from_the_hidden_alpha_root_and_is_proven(deep):
    case = robust_case(deep, 0.3)
    assert BabEngine().supports(Problem(deep)) is not None  # skips: the graph form confirms the domains
    settings = TensorBabSettings(hidden_alpha_after=1e-4, hidden_alpha_steps=10)
    outcome = TensorBabEngine(settings).run(Problem(deep), case, Budget.seconds(60))
    assert isinstance(outcome, Proven), outcome
    detail = outcome.certificate.detail
    assert "hidden_alpha_seconds" in detail and detail["probe_domains"] >= 1, detail
    assert detail["resumed_domains"] >= 1, detail
    assert detail["domains"] > detail["probe_domains"] and detail["confirmed_domains"] >= 1
    assert isinstance(TensorBabEngine(TensorBabSettings(hidden_alpha_steps=0)).run(Problem(deep), case,
                                                                                   Budget.seconds(60)), Proven)


def test_the_probes_open_domains_resumed_from_a_tighter_root_are_proven_with_less_work(deep):
    """The open domains a first run leaves are bounded again from the hidden-α root, not split from the
    root again: each is bounded at least once more and the run closes them all (every leaf confirmed
    rigorously), as a run from that root's single domain does."""
    import time

    from verikit.engines.bab.common import Validator
    from verikit.engines.tensor_bab import search as tensor_search

    bounded, case, spec, root, confirmer = _hidden_setup(deep, 0.3)
    problem = Problem(deep)
    judge = tensor_search._Judge(bounded, case, spec)

    def branching(settings):
        stats = {"domains": 1, "batches": 0, "max_depth": 0, "max_queue": 0, "max_queue_bytes": 0}
        return tensor_search._Branching(bounded, spec, judge, Validator(bounded.network, case, problem.tolerances),
                                        confirmer, settings, 8, stats, ()), stats

    probe, stats = branching(TensorBabSettings(domain_limit=12))
    assert isinstance(probe.run(root, Budget.seconds(60), time.monotonic()), Unknown)
    resumed = probe.open_domains()
    assert len(resumed) >= 2 and all(domain.splits.size >= 1 for domain in resumed)
    hidden = bounding.optimise_hidden(bounded, root, steps=10, lr=0.1, stop_alpha=lambda raw: False, budget=None)
    tighter = bounding.with_hidden_bounds(root, confirmer.use_hidden(root, hidden), hidden)
    confirmer.use_root(tighter)
    probe.settings = TensorBabSettings()
    before = stats["domains"]
    assert probe.run(tighter, Budget.seconds(60), time.monotonic(), resume=resumed) is None
    assert stats["domains"] - before >= len(resumed)
    fresh, _ = branching(TensorBabSettings())
    assert fresh.run(tighter, Budget.seconds(60), time.monotonic()) is None


def test_hidden_alpha_settings_are_checked():
    from verikit.core.settings import SettingError

    for bad in ({"hidden_alpha_after": 0.0}, {"hidden_alpha_share": 1.5}, {"hidden_alpha_steps": -1}):
        with pytest.raises(SettingError, match="hidden_alpha"):
            TensorBabSettings(**bad)
