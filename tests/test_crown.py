"""Soundness and tightness of the batched CROWN engine (verikit.engines.crown.propagate, crown_opt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_factory import mlp

from verikit.engines.crown.propagate import ACTIVE, FREE, INACTIVE, ReluMlp, layer_bounds, round_outward, spec_bounds
from verikit.engines.crown.optimise import Multipliers, lower_slopes, optimise_spec
from verikit.engines.lirpa.compat import import_auto_lirpa
from verikit.core.pwl import Affine, NotPiecewiseLinear, PiecewiseLinear, Relu
from verikit.onnx.load import load_network_bytes
from verikit.onnx.pwl import to_piecewise_linear


def random_pwl(sizes: tuple[int, ...], seed: int, scale: float = 1.0) -> PiecewiseLinear:
    """A ReLU MLP with normal weights (std scale/sqrt(fan-in)) and biases (std 0.3)."""
    rng = np.random.default_rng(seed)
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Affine(rng.normal(0, scale / np.sqrt(n_in), (n_out, n_in)), rng.normal(0, 0.3, n_out)))
        if index < len(sizes) - 2:
            layers.append(Relu())
    return PiecewiseLinear(tuple(layers), sizes[0], sizes[-1])


def pre_activations(pwl: PiecewiseLinear, x: np.ndarray) -> list[np.ndarray]:
    """Every hidden pre-activation (B, n_i) for inputs x (B, n) in float64."""
    values, out = x, []
    for layer in pwl.layers:
        if isinstance(layer, Affine):
            values = values @ layer.weight.T + layer.bias
            out.append(values)
        else:
            values = np.maximum(values, 0.0)
    return out[:-1]


def boxes_and_samples(rng: np.random.Generator, n: int, count: int, samples: int):
    """`count` random boxes (count, n) and `samples` points per box including its corners' extremes."""
    lower = rng.uniform(-1, 0.5, (count, n))
    upper = lower + rng.uniform(0.01, 1.0, (count, n))
    points = rng.uniform(lower[:, None, :], upper[:, None, :], (count, samples, n))
    corners = np.where(rng.random((count, 8, n)) < 0.5, lower[:, None, :], upper[:, None, :])
    return lower, upper, np.concatenate([points, corners], axis=1)


mlp_shapes = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hidden=mlp_shapes, n_in=st.integers(1, 4), n_out=st.integers(1, 4), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]), refine=st.booleans(), forward=st.booleans())
def test_bounds_hold_at_sampled_points(hidden, n_in, n_out, seed, dtype, refine, forward):
    pwl = random_pwl((n_in, *hidden, n_out), seed, scale=2.0)
    net = ReluMlp.from_pwl(pwl, dtype)
    rng = np.random.default_rng(seed)
    lower, upper, points = boxes_and_samples(rng, n_in, 6, 64)
    C = rng.normal(size=(3, n_out))
    d = rng.normal(size=3)
    x_lo, x_hi = torch.tensor(lower, dtype=dtype), torch.tensor(upper, dtype=dtype)
    layers = layer_bounds(net, x_lo, x_hi, refine=refine, forward=forward)
    bound = spec_bounds(net, x_lo, x_hi, torch.tensor(C), torch.tensor(d), layers).lower.double().numpy()
    for b in range(6):
        margins = pwl.evaluate(points[b]) @ C.T - d
        assert (margins >= bound[b] - 1e-9).all()
        for i, z in enumerate(pre_activations(pwl, points[b])):
            assert (z >= layers.lower[i][b].double().numpy() - 1e-9).all()
            assert (z <= layers.upper[i][b].double().numpy() + 1e-9).all()


@settings(max_examples=30, deadline=None)
@given(hidden=mlp_shapes, seed=st.integers(0, 10_000), alpha_seed=st.integers(0, 100))
def test_any_alpha_and_beta_give_sound_bounds_on_split_domains(hidden, seed, alpha_seed):
    """Random split assignments, α in [0, 1] and β >= 0: the bound holds at every point obeying the splits."""
    pwl = random_pwl((3, *hidden, 2), seed, scale=2.0)
    net = ReluMlp.from_pwl(pwl, torch.float64)
    rng = np.random.default_rng(seed)
    lower = rng.uniform(-1, 0, 3)
    upper = lower + rng.uniform(0.2, 1.5, 3)
    points = rng.uniform(lower, upper, (4000, 3))
    splits = [torch.tensor(rng.choice([INACTIVE, FREE, FREE, ACTIVE], size=(1, n)), dtype=torch.int8) for n in hidden]
    x_lo, x_hi = torch.tensor(lower)[None], torch.tensor(upper)[None]
    C, d = torch.tensor(rng.normal(size=(2, 2))), torch.tensor(rng.normal(size=2))
    layers = layer_bounds(net, x_lo, x_hi, splits)
    generator = torch.Generator().manual_seed(alpha_seed)
    alphas = [torch.rand((2, 1, n), generator=generator, dtype=torch.float64) for n in hidden]
    betas = [3 * torch.rand((2, 1, n), generator=generator, dtype=torch.float64) for n in hidden]
    bound = spec_bounds(net, x_lo, x_hi, C, d, layers, splits=splits,
                        slopes_lo=lower_slopes(layers, alphas), betas=betas).lower[0].numpy()
    obeying = np.ones(len(points), dtype=bool)
    for z, split in zip(pre_activations(pwl, points), splits):
        split = split[0].numpy()
        obeying &= np.all((split != ACTIVE) | (z >= 0), axis=1) & np.all((split != INACTIVE) | (z <= 0), axis=1)
    if bool(layers.infeasible[0]):
        assert not obeying.any()
        return
    margins = pwl.evaluate(points[obeying]) @ C.numpy().T - d.numpy()
    assert (margins >= bound - 1e-9).all()


def test_bounds_hold_for_onnxruntime_outputs():
    """Outputs of the ONNX model replayed by onnxruntime (float32) respect the bounds within float32 error."""
    network = load_network_bytes(mlp((4, 16, 16, 16, 3), seed=7))
    pwl = to_piecewise_linear(network)
    net = ReluMlp.from_pwl(pwl, torch.float32)
    rng = np.random.default_rng(1)
    lower, upper, points = boxes_and_samples(rng, 4, 4, 256)
    C = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 0.0]])
    d = torch.tensor([0.1, -0.2, 0.0])
    bound = spec_bounds(net, torch.tensor(lower).float(), torch.tensor(upper).float(), C, d,
                        layer_bounds(net, torch.tensor(lower).float(), torch.tensor(upper).float())).lower.numpy()
    for b in range(4):
        y = network.replay(points[b]).astype(np.float64)
        margins = y @ C.numpy().T - d.numpy()
        assert (margins >= bound[b] - 1e-5 * (1 + np.abs(y).max())).all()


def _lirpa_crown(pwl: PiecewiseLinear, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """auto_LiRPA's CROWN lower bounds (B, R) of C y on an equivalent torch.nn.Sequential."""
    lirpa = import_auto_lirpa()
    modules = []
    for layer in pwl.layers:
        if isinstance(layer, Affine):
            linear = torch.nn.Linear(layer.in_features, layer.out_features).double()
            linear.weight.data = torch.tensor(layer.weight)
            linear.bias.data = torch.tensor(layer.bias)
            modules.append(linear)
        else:
            modules.append(torch.nn.ReLU())
    bounded = lirpa.BoundedModule(torch.nn.Sequential(*modules), torch.zeros(1, pwl.n_inputs, dtype=torch.float64))
    x = lirpa.BoundedTensor((lower + upper) / 2, lirpa.PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper))
    reference, _ = bounded.compute_bounds(x=(x,), C=C.unsqueeze(0).expand(lower.shape[0], -1, -1), method="CROWN")
    return reference.detach()


def _lirpa_case(seed: int):
    sizes = (4, 12, 12, 12, 3) if seed % 2 else (6, 20, 10, 4)
    rng = np.random.default_rng(seed)
    lower = torch.tensor(rng.uniform(-1, 0, (3, sizes[0])))
    upper = lower + torch.tensor(rng.uniform(0.1, 1.0, (3, sizes[0])))
    return random_pwl(sizes, seed, scale=1.5), lower, upper, torch.tensor(rng.normal(size=(2, sizes[-1])))


@pytest.mark.parametrize("seed", range(4))
def test_plain_crown_equals_auto_lirpa_crown(seed):
    pwl, lower, upper, C = _lirpa_case(seed)
    net = ReluMlp.from_pwl(pwl, torch.float64)
    layers = layer_bounds(net, lower, upper, forward=False, interval=False)
    ours = spec_bounds(net, lower, upper, C, torch.zeros(2), layers).lower
    reference = _lirpa_crown(pwl, lower, upper, C)
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-9)


def test_default_bounds_are_at_least_as_tight_as_auto_lirpa_crown_overall():
    """Intersecting with interval/forward bounds tightens hidden bounds; CROWN's adaptive slopes are not
    monotone in them, so a few rows come out looser, but many more come out tighter."""
    differences = []
    for seed in range(12):
        pwl, lower, upper, C = _lirpa_case(seed)
        net = ReluMlp.from_pwl(pwl, torch.float64)
        ours = spec_bounds(net, lower, upper, C, torch.zeros(2), layer_bounds(net, lower, upper)).lower
        differences.append((ours - _lirpa_crown(pwl, lower, upper, C)).flatten())
    difference = torch.cat(differences)
    tighter, looser = int((difference > 1e-7).sum()), int((difference < -1e-7).sum())
    assert tighter >= 5 * looser
    assert float(difference.median()) >= -1e-9
    assert float(difference.sum()) > 0


def test_alpha_optimisation_never_loosens_and_often_tightens():
    pwl = random_pwl((5, 30, 30, 30, 4), seed=3, scale=1.5)
    net = ReluMlp.from_pwl(pwl, torch.float64)
    rng = np.random.default_rng(0)
    lower = torch.tensor(rng.uniform(-1, 0, (8, 5)))
    upper = lower + 0.8
    C, d = torch.tensor(rng.normal(size=(3, 4))), torch.zeros(3, dtype=torch.float64)
    layers = layer_bounds(net, lower, upper)
    crown = spec_bounds(net, lower, upper, C, d, layers).lower
    alpha, params = optimise_spec(net, lower, upper, C, d, layers, steps=15, lr=0.3)
    assert (alpha.lower >= crown - 1e-12).all()
    assert (alpha.lower > crown + 1e-6).float().mean() > 0.5
    assert isinstance(params, Multipliers)
    points = rng.uniform(lower[0].numpy(), upper[0].numpy(), (2000, 5))
    assert ((pwl.evaluate(points) @ C.numpy().T).min(axis=0) >= alpha.lower[0].numpy() - 1e-9).all()


def test_float32_allowance_covers_rounding_and_float64_agrees():
    """float32 bounds stay below float64's plus nothing: the allowance exceeds the rounding difference."""
    pwl = random_pwl((5, 50, 50, 50, 50, 5), seed=11, scale=1.3)
    rng = np.random.default_rng(2)
    lower = rng.uniform(-1, 0.9, (64, 5))
    upper = lower + 1e-3
    C, d = torch.tensor(rng.normal(size=(4, 5))), torch.zeros(4)
    result = {}
    for dtype in (torch.float32, torch.float64):
        net = ReluMlp.from_pwl(pwl, dtype)
        lo, hi = torch.tensor(lower, dtype=dtype), torch.tensor(upper, dtype=dtype)
        result[dtype] = spec_bounds(net, lo, hi, C, d, layer_bounds(net, lo, hi))
    # tiny boxes: every neuron is stable, both dtypes use the same (exact) relaxation
    b32, b64 = result[torch.float32], result[torch.float64]
    assert (b32.lower.double() <= b64.lower + 1e-12).all()
    assert (b32.slack > 0).all()
    assert ((b64.lower - b32.lower.double()) <= 2 * b32.slack.double()).all()


def test_infeasible_splits_give_infinite_bounds():
    pwl = PiecewiseLinear((Affine(np.array([[1.0]]), np.array([0.0])), Relu(),
                           Affine(np.array([[1.0], [-1.0]]), np.array([-1.0, 0.0])), Relu(),
                           Affine(np.array([[1.0, 1.0]]), np.array([0.0]))), 1, 1)
    net = ReluMlp.from_pwl(pwl, torch.float64)
    lo, hi = torch.tensor([[-1.0]]), torch.tensor([[1.0]])
    splits = [torch.tensor([[INACTIVE]], dtype=torch.int8), torch.tensor([[ACTIVE, FREE]], dtype=torch.int8)]
    layers = layer_bounds(net, lo, hi, splits)
    assert bool(layers.infeasible[0])  # x inactive makes relu(x) - 1 = -1, which cannot be active
    bound = spec_bounds(net, lo, hi, torch.tensor([[1.0]]), torch.tensor([0.0]), layers).lower
    assert torch.isinf(bound).all()


def test_rejects_networks_that_are_not_relu_mlps():
    pwl = PiecewiseLinear((Affine(np.eye(2), np.zeros(2)), Relu(), Relu(), Affine(np.eye(2), np.zeros(2))), 2, 2)
    with pytest.raises(NotPiecewiseLinear):
        ReluMlp.from_pwl(pwl)


def test_round_outward_only_grows_the_box():
    rng = np.random.default_rng(4)
    lower = torch.tensor(rng.normal(size=1000))
    upper = lower + torch.tensor(rng.uniform(0, 1e-6, 1000))
    low, high = round_outward(lower, upper, torch.float32)
    assert low.dtype == torch.float32
    assert (low.double() <= lower).all() and (high.double() >= upper).all()
    assert ((lower - low.double()).abs() <= 1e-6 * (1 + lower.abs())).all()
