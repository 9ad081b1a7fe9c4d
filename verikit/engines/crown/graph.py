"""Rigorous CROWN on the network's own graph (DAGs: residual adds, branches), in float64 with a derived
rounding allowance, for the networks that have no piecewise-linear *chain* form.

`GraphForm.build(module)` takes the translated ONNX graph (verikit.onnx.graph.GraphModule) when every op is
affine in one input-dependent tensor (Conv, Gemm, MatMul by a constant, BatchNormalization, Add/Sub/Mul/Div
by a constant, average pools, reshapes), a ReLU, or the sum/difference of two input-dependent tensors of
one shape; anything else gives the reason instead. Each affine op T(x) = L x + t runs as a float64 copy
of the op itself, with two companions built from its parameters:

- `lin_mag`, the op with |weights| and no additive terms, so lin_mag(v) = |L| v for v >= 0;
- `full_mag`, the op with every parameter's magnitude (additive ones too), so full_mag(|x|) bounds the
  sum of the magnitudes of the terms that make T(x) (the rounding model's Σ|a_i b_i|).

Rounding model (as verikit.checker.rigorous): an op whose outputs are sums of at most n terms, computed in
float64 in any order, is within γ_n·full_mag(|x|) of the exact value, and its vector-Jacobian product
within γ_n·|L|ᵀ|λ|; γ is taken with n = the larger of the op's input and output sizes + 16 (bounds every
fan-in and fan-out, with room for a bias, a BatchNormalization's divide and square root). The companions themselves are
computed in float64 and scaled up by (1 + 2γ) before use.

- Forward (intervals): centre c and radius r per tensor; c' = T(c), r' = (1+2γ)·lin_mag(r) +
  γ·(1+2γ)·full_mag(|c|), rounded up; [c' - r', c' + r'] rounded outward. ReLU is exact on intervals.
- Backward (CROWN): for rows λ on a tensor, λ·T(x) = (Lᵀλ)·x + λ·t. Lᵀλ is the vector-Jacobian product
  of the float64 op (autograd), within γ·(|L|ᵀ|λ|) of the exact one, so the bound loses at most
  γ·|λ|·lin_mag(m_x) where m_x bounds |x| on the domain; t is T(0), within γ·full_mag(0). Products and sums
  of the bound itself carry their own γ terms. ReLU is relaxed as in the checker (adaptive lower slope,
  the chord's intercept rounded up until it lies above the ReLU at both ends). Where a tensor feeds
  several consumers their rows are summed, losing at most γ_m·Σ|λ_c|·m_x.
- Intermediate bounds: at every ReLU input, CROWN for the neurons IBP leaves unstable (rows ±e_j, in
  chunks), intersected with the intervals.
- Split domains (`box_bounds`, then `split_lower_bounds`): a domain is the box ∩ {z_j >= 0 or z_j <= 0 for
  some ReLU inputs z_j}. Its final pass relaxes each ReLU over the box's bounds clamped by the domain's
  splits (valid on the domain), with any lower slopes in [0, 1] the caller gives (α); a multiplier β_j >= 0
  per split adds -β_j·s_j·z_j (s_j = +1 for z_j >= 0, -1 for z_j <= 0), which is <= 0 on the domain. The
  sum λ - β·s is rounded to nearest, which moves it in the direction of -β·s or not at all, so the
  multiplier actually used still has β's sign and no allowance is needed for it.

Every lower bound returned holds in real arithmetic for the network whose weights are the ONNX float32
values; the float32 execution of a runtime is not modelled (as for the chain form). The float64 copy is
the network's own translation, which the runner has checked against onnxruntime on every case's box; the
form is checked again on the box before a proof counts (`check`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from math import prod

import numpy as np
import torch

from verikit.engines.crown.input_set import InputBall, ball_linear_min, never_looser_than_the_box

U = 2.0**-53
TINY = 2.0**-1074
ROW_CHUNK_ELEMENTS = 8_000_000  # rows x tensor elements per backward pass (float64: 64 MB a tensor)


def gamma(n: int) -> float:
    return 1.01 * (n + 2) * U / (1.0 - (n + 2) * U)


def _up(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, torch.tensor(float("inf"), dtype=x.dtype))


def _down(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, torch.tensor(float("-inf"), dtype=x.dtype))


@dataclass
class _Node:
    """One op of the form: kind "affine" (op, lin_mag, full_mag, g), "relayout" (exact: a reshape),
    "add"/"sub" (two tensors), or "relu"."""

    kind: str
    inputs: tuple[str, ...]
    output: str
    op: torch.nn.Module | None = None
    lin_mag: torch.nn.Module | None = None
    full_mag: torch.nn.Module | None = None
    g: float = 0.0


def _exact(op) -> torch.nn.Module:
    """A float64 copy of the op with the network's own constants (not float32 roundings of derived ones)."""
    return op.exact_copy() if hasattr(op, "exact_copy") else copy.deepcopy(op).double()


def _set(module: torch.nn.Module, name: str, value: torch.Tensor | None) -> None:
    if getattr(module, name, None) is None:
        return
    if value is None:
        setattr(module, name, None)
    else:
        with torch.no_grad():
            getattr(module, name).copy_(value)


def _magnitudes(op) -> tuple[torch.nn.Module, torch.nn.Module] | str:
    """(lin_mag, full_mag) float64 copies of an affine op (see the module doc), or why it has none."""
    from verikit.onnx.ops.elementwise import Add, Div, Mul, Neg, Sub
    from verikit.onnx.ops.linear import BatchNormalization, Conv, Gemm, MatMul
    from verikit.onnx.ops.pool import AveragePool, GlobalAveragePool

    lin, full = _exact(op), _exact(op)
    if isinstance(op, (Conv, Gemm, MatMul)):
        if isinstance(op, MatMul) and op.mode == "x@y":
            return "MatMul of two input-dependent tensors"
        for module in (lin, full):
            _set(module, "weight", module.weight.detach().abs())
        for name in ("bias", "addend"):
            _set(lin, name, None)
            if getattr(full, name, None) is not None:
                _set(full, name, getattr(full, name).detach().abs())
        return lin, full
    if isinstance(op, BatchNormalization):
        for module in (lin, full):
            _set(module, "scale", module.scale.detach().abs())
        _set(lin, "shift", torch.zeros_like(lin.shift))
        _set(lin, "mean", torch.zeros_like(lin.mean))
        _set(full, "shift", full.shift.detach().abs())
        _set(full, "mean", -full.mean.detach().abs())  # (x + |mean|)·|s|/√v + |shift|
        return lin, full
    if isinstance(op, (Add, Sub, Mul, Div)):
        if op.const_position < 0:
            return "two input-dependent operands"  # handled as "add"/"sub" nodes by the caller
        const = full.const.detach()
        if isinstance(op, (Add, Sub)):
            lin = _Unit()
            full.function = torch.add
            _set(full, "const", const.abs())
            return lin, full
        if isinstance(op, Div):  # x / c runs as x * (1 / c), and 1 / c was rounded to float32 at load
            return "Div by a constant (held as its float32-rounded reciprocal)"
        for module in (lin, full):
            _set(module, "const", module.const.detach().abs())
        return lin, full
    if isinstance(op, Neg):
        return _Unit(), _Unit()
    if isinstance(op, (AveragePool, GlobalAveragePool)):  # nonnegative weights, no additive term
        return lin, full
    return f"no rigorous bound for {op.op_type}"


@dataclass(eq=False)
class BoxBounds:
    """Rigorous bounds of every tensor of a form over one box, and the per-box constants of its affine
    ops: what every split domain of the box starts from (`GraphForm.box_bounds`)."""

    box: tuple[torch.Tensor, torch.Tensor]
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]
    constants: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class _Unit(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class GraphForm:
    """The float64 graph of a network, bounded rigorously (see the module doc)."""

    label = "float64 graph CROWN (rigorous rounding allowance)"

    def __init__(self, module, nodes: list[_Node]) -> None:
        self.module = module
        self.nodes = nodes
        self.input_name = module.input_name
        self.output_name = module.output_name
        self.shapes = {name: tuple(meta.torch_shape) for name, meta in module.metas.items()}
        self.input_shape = self.shapes[self.input_name]
        self.uses: dict[str, int] = {}
        for node in nodes:
            for name in node.inputs:
                self.uses[name] = self.uses.get(name, 0) + 1

    @classmethod
    def build(cls, module) -> "GraphForm | str":
        """The form of a GraphModule, or the reason (str) it has none."""
        from verikit.onnx.ops.elementwise import Add, ReluOp, Sub

        if not hasattr(module, "steps") or not hasattr(module, "metas"):
            return "the network is not a translated ONNX graph"
        nodes = []
        for op, step in zip(module.ops, module.steps):
            where = f"node '{op.node_name}' ({op.op_type})"
            metas = [module.metas[name] for name in step.inputs]
            if isinstance(op, ReluOp):
                nodes.append(_Node("relu", step.inputs, step.output))
                continue
            if len(step.inputs) == 2 and isinstance(op, (Add, Sub)) and op.const_position < 0:
                out = module.metas[step.output]
                if any(m.torch_shape != out.torch_shape for m in metas):
                    return f"{where}: broadcasting two input-dependent tensors"
                nodes.append(_Node("add" if isinstance(op, Add) else "sub", step.inputs, step.output))
                continue
            if len(step.inputs) != 1:
                return f"{where} combines several input-dependent tensors"
            if op.pwl_role == "relayout":
                nodes.append(_Node("relayout", step.inputs, step.output, op=_exact(op)))
                continue
            if op.pwl_role != "affine":
                return f"{where} is not affine or ReLU"
            found = _magnitudes(op)
            if isinstance(found, str):
                return f"{where}: {found}"
            terms = max(metas[0].size, module.metas[step.output].size) + 16  # bounds fan-in and fan-out
            nodes.append(_Node("affine", step.inputs, step.output, op=_exact(op),
                               lin_mag=found[0], full_mag=found[1], g=gamma(terms)))
        if not any(node.output == module.output_name for node in nodes):
            return "the output is not computed by any op"
        return cls(module, nodes)

    # ----------------------------------------------------------------- evaluation (for the check)

    def check(self, network, box) -> None:
        """ModelError unless the float64 form matches onnxruntime on `box` as closely as the torch module
        must (verikit.onnx.load.check_evaluator)."""
        from verikit.onnx.load import check_evaluator

        check_evaluator(network, box, self.evaluate, "the float64 graph form")

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        """float64 outputs (k, n_outputs) of the form at points (k, n_inputs)."""
        return self.evaluate_all(points)[self.output_name].reshape(len(points), -1).numpy()

    def evaluate_all(self, points: np.ndarray) -> dict[str, torch.Tensor]:
        """float64 values (k, *shape) of every tensor of the form at points (k, n_inputs)."""
        values = {self.input_name: torch.tensor(np.asarray(points, np.float64)).reshape(-1, *self.input_shape)}
        with torch.no_grad():
            for node in self.nodes:
                args = [values[name] for name in node.inputs]
                if node.kind == "relu":
                    values[node.output] = torch.relu(args[0])
                elif node.kind == "add":
                    values[node.output] = args[0] + args[1]
                elif node.kind == "sub":
                    values[node.output] = args[0] - args[1]
                else:
                    values[node.output] = node.op(args[0])
        return values

    # ----------------------------------------------------------------- bounds

    def lower_bounds(self, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray,
                     ball: InputBall | None = None, stop=None) -> np.ndarray:
        """Rigorous lower bounds (B, R) of `C @ y - d` over each box (B, n_inputs), ∩ `ball` when given
        (verikit.engines.crown.input_set: every CROWN bound, intermediate ones too, concretised over both).
        Plain CROWN has no optional work to cut short, so `stop` (the forms' common signature) is unused."""
        return never_looser_than_the_box(lambda over: self._boxes(lower, upper, C, d, over), ball)

    def _boxes(self, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray,
               ball: InputBall | None) -> np.ndarray:
        lower, upper = np.atleast_2d(lower), np.atleast_2d(upper)
        out = np.empty((lower.shape[0], C.shape[0]))
        with torch.no_grad():
            for b in range(lower.shape[0]):
                one = None if ball is None else ball.select(torch.tensor([b])).to("cpu", torch.float64)
                out[b] = self._one_box(lower[b], upper[b], np.asarray(C, np.float64), np.asarray(d, np.float64), one)
        return out

    def _one_box(self, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray,
                 ball: InputBall | None = None) -> np.ndarray:
        box = (torch.tensor(lower, dtype=torch.float64).reshape(self.input_shape),
               torch.tensor(upper, dtype=torch.float64).reshape(self.input_shape))
        self._ball = ball  # the input set is box ∩ ball for every concretisation of this box
        self._constants: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        bounds = self._layer_bounds(box)
        lam = torch.tensor(C).reshape(C.shape[0], *self.shapes[self.output_name])
        return self._backward(self.output_name, lam, -torch.tensor(d), box, bounds).numpy()

    def relu_inputs(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every ReLU's input tensor, in the form's node order."""
        return [(node.inputs[0], self.shapes[node.inputs[0]]) for node in self.nodes if node.kind == "relu"]

    def box_bounds(self, lower: np.ndarray, upper: np.ndarray, slopes: dict | None = None) -> BoxBounds:
        """The rigorous bounds of every tensor over the box lower, upper (n_inputs,).

        `slopes[start][source]`, for ReLU input tensors `start` and `source` (source before start), holds
        the lower slopes (2, size of start, *shape of source) of ReLU(source) in the CROWN bounds of
        start's neurons: [0] for their lower bounds, [1] for their upper ones (as auto_LiRPA's α-CROWN
        optimises them). Any slope in [0, 1] is sound, so they need no checking; each neuron keeps the
        tighter of the bound with them and the plain one. Missing: the adaptive slope."""
        box = (torch.tensor(np.asarray(lower, np.float64), dtype=torch.float64).reshape(self.input_shape),
               torch.tensor(np.asarray(upper, np.float64), dtype=torch.float64).reshape(self.input_shape))
        self._ball = None
        self._constants = {}
        with torch.no_grad():
            bounds = self._layer_bounds(box, slopes)
        return BoxBounds(box, bounds, self._constants)

    def split_lower_bounds(self, root: BoxBounds, C: np.ndarray, d: np.ndarray,
                           splits: list[list[tuple[int, int, bool]]], *,
                           alpha: list[torch.Tensor | None] | None = None,
                           beta: list[torch.Tensor | None] | None = None) -> np.ndarray:
        """Rigorous lower bounds (B, R) of `C @ y - d` over each split domain of `root`'s box (module doc).

        `splits[b]` holds domain b's (ReLU index in `relu_inputs()` order, flat neuron index, z >= 0?).
        `alpha[k]`: lower slopes of ReLU k over its flat neurons, broadcastable to (B, R, size), clamped to
        [0, 1]; None: the adaptive slope. `beta[k]`: multipliers of ReLU k's splits, broadcastable to
        (B, R, size), clamped to >= 0 (a neuron domain b does not split gets none, whatever is given)."""
        C, d = np.asarray(C, np.float64), np.asarray(d, np.float64)
        rows, batch = C.shape[0], len(splits)
        relus = self.relu_inputs()
        largest = max(prod(shape) for shape in self.shapes.values())
        chunk = max(1, ROW_CHUNK_ELEMENTS // (2 * largest * rows))
        out = np.empty((batch, rows))
        self._ball = None
        self._constants = root.constants
        with torch.no_grad():
            for start in range(0, batch, chunk):
                part = splits[start:start + chunk]
                count = len(part)
                sign = [torch.zeros(count, prod(shape), dtype=torch.float64) for _, shape in relus]
                for b, domain in enumerate(part):
                    for k, j, active in domain:
                        sign[k][b, j] = 1.0 if active else -1.0
                override, slopes, multipliers = {}, {}, {}
                for k, (name, shape) in enumerate(relus):
                    lo, hi = (t.reshape(1, -1).expand(count, -1) for t in root.bounds[name])
                    lo = torch.where(sign[k] > 0, torch.clamp(lo, min=0.0), lo)
                    hi = torch.where(sign[k] < 0, torch.clamp(hi, max=0.0), hi)
                    override[name] = tuple(t[:, None].expand(count, rows, -1).reshape(count * rows, *shape)
                                           for t in (lo, hi))
                    if alpha is not None and alpha[k] is not None:
                        a = torch.clamp(alpha[k].to(torch.float64), 0.0, 1.0)
                        a = torch.broadcast_to(a, (batch, rows, prod(shape)))[start:start + count]
                        slopes[name] = a.reshape(count * rows, *shape)
                    if beta is not None and beta[k] is not None:
                        m = torch.clamp(beta[k].to(torch.float64), min=0.0)
                        m = torch.broadcast_to(m, (batch, rows, prod(shape)))[start:start + count]
                        signed = m * sign[k][:, None, :]  # exact: a product by ±1 or 0
                        if bool((signed != 0).any()):
                            multipliers[name] = signed.reshape(count * rows, *shape)
                lam = torch.tensor(C).reshape(1, rows, -1).expand(count, -1, -1).reshape(count * rows, *self.shapes[self.output_name])
                const = -torch.tensor(d).repeat(count)
                found = self._backward(self.output_name, lam, const, root.box, root.bounds,
                                       relu_override=override, alpha=slopes, beta=multipliers)
                out[start:start + count] = found.reshape(count, rows).numpy()
        return out

    def _layer_bounds(self, box, slopes: dict | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Rigorous (lower, upper) of every tensor; ReLU inputs tightened by CROWN (also with `slopes`, see
        `box_bounds`)."""
        bounds = {self.input_name: box}
        for node in self.nodes:
            args = [bounds[name] for name in node.inputs]
            if node.kind == "relu":
                lo, hi = args[0]
                unstable = ((lo < 0) & (hi > 0)).reshape(-1).nonzero().squeeze(1)
                if unstable.numel() and node.inputs[0] != self.input_name:
                    lo, hi = self._tighten(node.inputs[0], lo, hi, unstable, box, bounds)
                    given = (slopes or {}).get(node.inputs[0])
                    if given:
                        unstable = ((lo < 0) & (hi > 0)).reshape(-1).nonzero().squeeze(1)
                        if unstable.numel():
                            lo, hi = self._tighten(node.inputs[0], lo, hi, unstable, box, bounds, given)
                    bounds[node.inputs[0]] = (lo, hi)
                bounds[node.output] = (torch.clamp(lo, min=0.0), torch.clamp(hi, min=0.0))
            elif node.kind in ("add", "sub"):
                (alo, ahi), (blo, bhi) = args
                if node.kind == "add":
                    bounds[node.output] = (_down(alo + blo), _up(ahi + bhi))
                else:
                    bounds[node.output] = (_down(alo - bhi), _up(ahi - blo))
            elif node.kind == "relayout":
                lo, hi = args[0]
                bounds[node.output] = (node.op(lo[None])[0], node.op(hi[None])[0])
            else:
                bounds[node.output] = self._affine_interval(node, *args[0])
        return bounds

    @staticmethod
    def _affine_interval(node: _Node, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = lo / 2 + hi / 2
        r = _up(torch.maximum(_up(hi - c), _up(c - lo)))
        g = node.g
        grow = 1.0 + 2 * g
        mid = node.op(c[None])[0]
        spread = node.lin_mag(r[None])[0] * grow + node.full_mag(c.abs()[None])[0] * (g * grow)
        spread = _up(_up(spread) + TINY)
        return _down(mid - spread), _up(mid + spread)

    def _tighten(self, name: str, lo: torch.Tensor, hi: torch.Tensor, unstable: torch.Tensor, box, bounds,
                 slopes: dict | None = None):
        """CROWN bounds of the `unstable` (flat indices) neurons of tensor `name`, intersected with [lo, hi];
        `slopes` (source name -> (2, size, *source shape)) the lower slopes of earlier ReLUs, else adaptive."""
        shape = self.shapes[name]
        size = prod(shape)
        lo, hi = lo.reshape(-1).clone(), hi.reshape(-1).clone()
        largest = max(prod(s) for s in self.shapes.values())
        chunk = max(1, ROW_CHUNK_ELEMENTS // (2 * largest))
        for start in range(0, unstable.numel(), chunk):
            index = unstable[start:start + chunk]
            count = index.numel()
            rows = torch.zeros(2 * count, size, dtype=torch.float64)
            rows[torch.arange(count), index] = 1.0
            rows[count + torch.arange(count), index] = -1.0
            alpha = {source: torch.nan_to_num(torch.cat([given[0, index], given[1, index]]).to(torch.float64),
                                              nan=0.0).clamp(0.0, 1.0)  # any slope in [0, 1] is sound
                     for source, given in (slopes or {}).items()}
            found = self._backward(name, rows.reshape(2 * count, *shape), torch.zeros(2 * count, dtype=torch.float64),
                                   box, bounds, alpha=alpha)
            lo[index] = torch.maximum(lo[index], found[:count])
            hi[index] = torch.minimum(hi[index], -found[count:])
        return lo.reshape(shape), hi.reshape(shape)

    def _backward(self, start: str, lam: torch.Tensor, const: torch.Tensor, box, bounds, *,
                  relu_override: dict | None = None, alpha: dict | None = None, beta: dict | None = None) -> torch.Tensor:
        """Lower bounds (R,) of λ·(tensor `start`) + const over the box, given rigorous `bounds` of every
        tensor before it. Per ReLU input name, `relu_override` gives per-row (lo, hi) (R, *shape) to relax
        that ReLU over (each row's domain), `alpha` per-row lower slopes and `beta` per-row signed split
        multipliers β·s (see `split_lower_bounds`)."""
        relu_override, alpha, beta = relu_override or {}, alpha or {}, beta or {}
        rows = lam.shape[0]
        k = const.clone().double()
        err = torch.zeros(rows, dtype=torch.float64)
        pending: dict[str, list[torch.Tensor]] = {start: [lam]}

        def magnitude(name: str) -> torch.Tensor:
            lo, hi = bounds[name]
            return torch.maximum(lo.abs(), hi.abs())

        def flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            """(R,) upper bound of Σ a·b for a, b >= 0 (a (R, ...), b (...))."""
            n = b.numel()
            return _up(_up((a.reshape(rows, -1) @ b.reshape(-1)) * (1.0 + gamma(n))) + n * TINY)

        def add_const(value: torch.Tensor, error: torch.Tensor) -> None:
            nonlocal k, err
            k = k + value
            err = _up(_up(err + error) + _up(k.abs() * U) + TINY)

        def take(name: str) -> torch.Tensor:
            """The summed rows on tensor `name`, with the rounding of the sum in err."""
            nonlocal err
            parts = pending.pop(name)
            if len(parts) == 1:
                return parts[0]
            total = parts[0]
            absolute = parts[0].abs()
            for part in parts[1:]:
                total = total + part
                absolute = absolute + part.abs()
            err = _up(err + flat_dot(absolute, magnitude(name)) * gamma(len(parts)))
            return total

        for node in reversed(self.nodes):
            if node.output not in pending:
                continue
            lam_out = take(node.output)
            if node.kind == "add" or node.kind == "sub":
                a, b = node.inputs
                pending.setdefault(a, []).append(lam_out)
                pending.setdefault(b, []).append(lam_out if node.kind == "add" else -lam_out)
                continue
            (source,) = node.inputs
            if node.kind == "relu":
                lo, hi = relu_override.get(source, bounds[source])
                lam_in = self._through_relu(lam_out, lo, hi, add_const, flat_dot, magnitude(source),
                                            alpha=alpha.get(source))
                err = _up(err + lam_in[1])
                through = lam_in[0] if source not in beta else lam_in[0] - beta[source]
                pending.setdefault(source, []).append(through)
                continue
            lam_in = self._vjp(node.op, lam_out, self.shapes[source])
            if node.kind == "affine":
                g = node.g
                absolute = lam_out.abs()
                lin, t, t_mag = self._affine_constants(node, magnitude(source))
                # the vjp's rounding: g·|λ|·(|L| m_x)
                err = _up(err + flat_dot(absolute, lin) * (g * (1.0 + 2 * g)))
                # the additive term t = T(0), computed within g·full_mag(0)
                value = (lam_out.reshape(rows, -1) @ t.reshape(-1))
                error = flat_dot(absolute, t.abs()) * gamma(t.numel()) + flat_dot(absolute, t_mag) * g
                add_const(value, _up(error))
            pending.setdefault(source, []).append(lam_in)
        lam_x = take(self.input_name).reshape(rows, -1)
        lo, hi = (b.reshape(-1) for b in box)
        c = lo / 2 + hi / 2
        r = _up(torch.maximum(_up(hi - c), _up(c - lo)))
        absolute = lam_x.abs()
        value = lam_x @ c
        loss = _up(_up(flat_dot(absolute, r) + flat_dot(absolute, c.abs()) * gamma(c.numel())) + err)
        total = _down(k + value)
        total = _down(total - _up(total.abs() * U + TINY))
        bound = _down(total - loss)
        if getattr(self, "_ball", None) is None:
            return bound
        over_ball = _down(k + ball_linear_min(lam_x, self._ball))  # the input term's rounding is inside
        over_ball = _down(over_ball - _up(over_ball.abs() * U + TINY))
        return torch.maximum(bound, _down(over_ball - err))

    def _affine_constants(self, node: _Node, m_x: torch.Tensor):
        """(|L| m_x scaled up, t = T(0), the magnitude of t's terms scaled up) of an affine node, once per box
        (bounds only shrink as the box is worked on, so the first, largest m_x stays an upper bound)."""
        found = self._constants.get(node.output)
        if found is None:
            grow = 1.0 + 2 * node.g
            zero = torch.zeros((1, *m_x.shape), dtype=torch.float64)
            found = (node.lin_mag(m_x[None])[0] * grow, node.op(zero)[0], node.full_mag(zero)[0].abs() * grow)
            self._constants[node.output] = found
        return found

    @staticmethod
    def _vjp(op: torch.nn.Module, lam: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Lᵀλ for the linear part of `op` (rows of λ at once), by autograd in float64."""
        with torch.enable_grad():
            x = torch.zeros((lam.shape[0], *in_shape), dtype=torch.float64, requires_grad=True)
            y = op(x)
            (grad,) = torch.autograd.grad(y, x, lam.reshape(y.shape))
        return grad.detach()

    def _through_relu(self, lam: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, add_const, flat_dot, magnitude,
                      alpha: torch.Tensor | None = None):
        """(λ on the ReLU's input, the rounding lost) for λ on relu(z), lo <= z <= hi (the tensor's shape, or
        per row (R, *shape)); `alpha` the lower slopes in [0, 1] (per row), else the adaptive ones."""
        unstable = (lo < 0) & (hi > 0)
        active = lo >= 0
        width = torch.where(unstable, hi - lo, torch.ones_like(lo))
        slope = torch.clamp(torch.where(unstable, hi / width, torch.zeros_like(lo)), 0.0, 1.0)
        intercept = torch.where(unstable, torch.maximum(_up(-slope * lo), _up(hi * _up(1.0 - slope))),
                                torch.zeros_like(lo))
        intercept = _up(intercept)
        if alpha is None:
            alpha = (hi > -lo).double()
        positive, negative = torch.clamp(lam, min=0.0), torch.clamp(lam, max=0.0)
        relaxed = positive * alpha + negative * slope
        new = torch.where(active, lam, torch.where(unstable, relaxed, torch.zeros_like(lam)))
        rows = lam.shape[0]
        neg_unstable = torch.where(unstable, negative, torch.zeros_like(negative))
        if intercept.dim() == lam.dim():  # per-row bounds: a row-wise dot
            n = intercept[0].numel()
            value = (neg_unstable * intercept).reshape(rows, -1).sum(dim=1)
            upper = (neg_unstable.abs() * intercept).reshape(rows, -1).sum(dim=1)
            error = _up(_up(upper * (1.0 + gamma(n))) + n * TINY) * gamma(n)
        else:
            n = intercept.numel()
            value = neg_unstable.reshape(rows, -1) @ intercept.reshape(-1)
            error = flat_dot(neg_unstable.abs(), intercept) * gamma(n)
        add_const(value, error)
        lost = flat_dot(lam.abs(), magnitude) * (4 * U)
        return new, lost


__all__ = ["BoxBounds", "GraphForm"]
