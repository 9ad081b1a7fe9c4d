"""Re-prove auto_LiRPA's refutations with this package's CROWN in float64, whose rounding allowance is
derived (see `verikit.engines.crown.propagate`), before they count as proof.

auto_LiRPA bounds in float32 and verikit widens them by a relative slack that is an estimate, not a
derivation. On a piecewise-linear ReLU MLP the same box can be bounded here soundly: CROWN, then α-CROWN
on the rows still open, in float64 over the exact float64 spec constants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.pwl import PiecewiseLinear
from verikit.engines.crown.input_set import InputBall, never_looser_than_the_box
from verikit.engines.crown.optimise import optimise_layer_bounds, optimise_spec
from verikit.engines.crown.propagate import ReluMlp, layer_bounds, spec_bounds

CONFIRM_ALPHA_STEPS = 30
CONFIRM_ALPHA_LR = 0.5
CONFIRM_HIDDEN_STEPS = 6  # α steps per hidden layer when the spec's α leaves rows open (optimise_layer_bounds)
CONFIRM_HIDDEN_LR = 0.3


def exact_mlp(pwl: PiecewiseLinear) -> ReluMlp | None:
    """The float64 ReLU MLP of `pwl`, or None when it is not of the shape Affine (Relu Affine)+."""
    if not pwl.is_relu_mlp or len(pwl.layers) < 3:
        return None
    return ReluMlp.from_pwl(pwl, torch.float64)


def confirmed_lower_bounds(net: ReluMlp, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray,
                           *, alpha_steps: int = CONFIRM_ALPHA_STEPS, hidden_steps: int = CONFIRM_HIDDEN_STEPS,
                           ball: InputBall | None = None, stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Sound float64 lower bounds (B, R) of `C @ y - d` over boxes lower, upper (B, n_inputs), each
    intersected with `ball` when given.

    C (R, n_outputs), d (R,) are float64 (the case's own values). α-CROWN runs only on the boxes that
    plain CROWN leaves with a row <= 0; on the boxes it leaves open in turn, the hidden layers' bounds are
    tightened by their own α (`hidden_steps` per layer, as auto_LiRPA's α-CROWN does in float32) and the
    spec's α runs again over them. `stop()` true skips or cuts short the work not yet done.
    """
    x_lower = torch.tensor(np.atleast_2d(lower), dtype=torch.float64)
    x_upper = torch.tensor(np.atleast_2d(upper), dtype=torch.float64)
    C_t = torch.tensor(np.asarray(C), dtype=torch.float64)
    d_t = torch.tensor(np.asarray(d), dtype=torch.float64)
    stop = stop or (lambda: False)
    with torch.no_grad():
        layers = layer_bounds(net, x_lower, x_upper, ball=ball)
        best = spec_bounds(net, x_lower, x_upper, C_t, d_t, layers, ball=ball).lower

    def open_boxes() -> torch.Tensor:
        return (best <= 0).any(dim=1).nonzero().squeeze(1)

    def spec_alpha(index: torch.Tensor, hidden) -> None:  # best[index] raised by the spec's α over `hidden`
        better, _ = optimise_spec(net, x_lower[index], x_upper[index], C_t, d_t, hidden,
                                  steps=alpha_steps, lr=CONFIRM_ALPHA_LR,
                                  ball=None if ball is None else ball.select(index),
                                  stop=lambda found: bool((found > 0).all()) or stop())
        best[index] = torch.maximum(best[index], better.lower.detach())

    index = open_boxes()
    if alpha_steps > 0 and index.numel():
        spec_alpha(index, layers.select(index))
    index = open_boxes()
    if hidden_steps > 0 and index.numel() and not stop():
        spec_alpha(index, optimise_layer_bounds(net, x_lower[index], x_upper[index], layers.select(index),
                                                steps=hidden_steps, lr=CONFIRM_HIDDEN_LR, stop=stop))
    return best.numpy()


def interval_lower_bounds(pwl: PiecewiseLinear, lower: np.ndarray, upper: np.ndarray, C: np.ndarray,
                          d: np.ndarray) -> np.ndarray:
    """Rigorous lower bounds (B, R) of `C @ y - d` over boxes lower, upper (B, n_inputs): interval
    arithmetic through the piecewise-linear layers in float64, every affine map widened by its a-priori
    rounding bound and rounded outward (verikit.checker.rigorous); ReLU and max are exact on intervals.

    Works on every piecewise-linear chain (MaxGroups included, and networks with no ReLU at all, where one
    affine map over a box is bounded exactly up to the rounding allowance)."""
    from verikit.checker.network import AffineOp
    from verikit.checker.rigorous import affine_interval
    from verikit.core.pwl import Affine, Relu

    lo, hi = np.atleast_2d(np.asarray(lower, np.float64)), np.atleast_2d(np.asarray(upper, np.float64))
    for layer in pwl.layers:
        if isinstance(layer, Affine):
            lo, hi = affine_interval(AffineOp(layer.weight, layer.bias, layer.in_features, layer.out_features), lo, hi)
        elif isinstance(layer, Relu):
            lo, hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        else:  # MaxGroups: max is monotone in each argument
            lo, hi = lo[:, layer.groups].max(axis=-1), hi[:, layer.groups].max(axis=-1)
    C, d = np.asarray(C, np.float64), np.asarray(d, np.float64)
    spec = AffineOp(C, -d, C.shape[1], C.shape[0])
    return affine_interval(spec, lo, hi)[0]


def rigorous_lower_bounds(pwl: PiecewiseLinear, mlp: ReluMlp | None, lower: np.ndarray, upper: np.ndarray,
                          C: np.ndarray, d: np.ndarray, ball: InputBall | None = None,
                          stop: Callable[[], bool] | None = None,
                          hidden_steps: int = CONFIRM_HIDDEN_STEPS) -> np.ndarray:
    """Rigorous lower bounds (B, R) of `C @ y - d` over each box (∩ `ball`, when given): interval
    arithmetic on every piecewise-linear chain (over the box alone), then (a ReLU MLP) float64
    CROWN/α-CROWN on the boxes intervals leave open (with `hidden_steps` of hidden-bound α where the
    spec's α leaves rows open; `stop`: see `confirmed_lower_bounds`). Each entry is the best bound found;
    every one holds in real arithmetic over the form's weights."""
    best = interval_lower_bounds(pwl, lower, upper, C, d)
    open_ = ~np.all(best > 0, axis=1)
    if mlp is not None and open_.any():
        index = np.flatnonzero(open_)
        found = confirmed_lower_bounds(mlp, np.atleast_2d(lower)[index], np.atleast_2d(upper)[index], C, d,
                                       ball=None if ball is None else ball.select(torch.as_tensor(index)), stop=stop,
                                       hidden_steps=hidden_steps)
        best[index] = np.maximum(best[index], found)
    return best


@dataclass(frozen=True, eq=False)
class ChainForm:
    """The piecewise-linear chain form (and its float64 ReLU MLP, when it is one) as a confirming form:
    like `verikit.engines.crown.graph.GraphForm`, it checks itself against onnxruntime and bounds boxes."""

    pwl: PiecewiseLinear
    mlp: ReluMlp | None

    @property
    def label(self) -> str:
        return "intervals, CROWN" if self.mlp is not None else "intervals"

    def check(self, network, box) -> None:
        """ModelError unless the form matches onnxruntime on `box` (it is a second translation)."""
        from verikit.onnx.pwl import check_piecewise_linear

        check_piecewise_linear(network, self.pwl, box)

    def lower_bounds(self, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray,
                     ball: InputBall | None = None, stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Rigorous lower bounds (B, R) of `C @ y - d` over each box (B, n_inputs), ∩ `ball` when given;
        `stop()` true cuts short the optional tightening (`confirmed_lower_bounds`)."""
        return never_looser_than_the_box(
            lambda over: rigorous_lower_bounds(self.pwl, self.mlp, lower, upper, C, d, over, stop), ball)


def confirming_form(network, pwl=None):
    """The form that re-proves float32 refutations rigorously: the chain form of a piecewise-linear chain
    (`pwl`, when the caller holds it, or the reason it has none as a str), else the float64 graph form of a
    ReLU DAG (verikit.engines.crown.graph); or the reason (str) there is neither."""
    from verikit.core.pwl import NotPiecewiseLinear
    from verikit.engines.crown.graph import GraphForm
    from verikit.onnx.pwl import to_piecewise_linear

    reason = pwl if isinstance(pwl, str) else None
    if pwl is None:
        try:
            pwl = to_piecewise_linear(network)
        except NotPiecewiseLinear as error:
            reason = f"not piecewise linear: {error}"
    if reason is None:
        return ChainForm(pwl, exact_mlp(pwl))
    graph = GraphForm.build(network.module)
    if isinstance(graph, str):
        return f"{reason}; and no float64 graph form: {graph}"
    return graph
