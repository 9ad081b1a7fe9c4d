"""`lipschitz_bound`: one call for a proven Lipschitz upper bound (naive or LipSDP), with a witnessed
lower bound beside it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from verikit.lipschitz import lmi, sdp
from verikit.lipschitz.layers import LipNet, global_slopes, output_map, region_slopes
from verikit.lipschitz.lower import lower_bound
from verikit.lipschitz.naive import naive_bound
from verikit.checker.rigorous import up

METHODS = ("naive", "lipsdp-layer", "lipsdp-neuron")
NORMS = ("2", "inf")
#: how LipSDP treats a MaxMin layer: the extension's constraints (lmi._add_maxmin), or five ReLUs per pair
#: (verikit.lipschitz.maxmin), the slope-restricted baseline
MAXMIN_MODES = ("extension", "relu-rewrite")
#: LipSDP's matrix side beyond which the SDP is not attempted (SCS takes minutes per solve there)
MAX_SDP_DIMENSION = 1100
#: the side of the proven matrix (n_0 + all neurons) beyond which no LipSDP is attempted (O(n³) proof)
MAX_PROOF_DIMENSION = 3000


@dataclass
class LipschitzResult:
    """A proven upper bound `upper` of the Lipschitz constant in `norm` (||f(x)-f(y)|| <= upper ||x-y||
    for x, y in the region), by `method_used` (the one asked for, or "naive" when it fell back: `notes`)."""

    upper: float
    norm: str
    method: str
    method_used: str
    naive: float
    lower: float | None = None
    output_pair: tuple[int, int] | None = None
    region: dict | None = None
    solver: str | None = None
    solver_status: str | None = None
    solver_objective: float | None = None  # the solver's own sqrt(ρ): reported, never the bound
    proof: str = ""
    maxmin: str | None = None  # for a network with MaxMin layers: how LipSDP constrained them
    method_bound: float | None = None  # the asked method's own proven bound, also where naive is smaller
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def lipschitz_bound(net: LipNet, *, norm: str = "2", method: str = "lipsdp-neuron",
                    region: tuple[np.ndarray, np.ndarray] | None = None, pair: tuple[int, int] | None = None,
                    deadline: float | None = None, replay=None, lower_seconds: float = 2.0,
                    seed: int = 0, maxmin: str = "extension") -> LipschitzResult:
    """The bound for `net`; `region` a box (lower, upper) or None (global); `deadline` on time.monotonic();
    `replay` onnxruntime on the original model, for the lower bound (None: no lower bound); `maxmin` in
    MAXMIN_MODES, for networks with MaxMin layers."""
    if norm not in NORMS or method not in METHODS or maxmin not in MAXMIN_MODES:
        raise ValueError(f"norm in {NORMS}, method in {METHODS}, maxmin in {MAXMIN_MODES}")
    started = time.monotonic()
    deadline = deadline if deadline is not None else started + 600.0
    C = output_map(net, pair)
    notes: list[str] = []
    if region is None:
        slopes = global_slopes(net)
        described = None
    else:
        slopes, note = region_slopes(net, *region)
        notes += [note] if note else []
        described = {"stable_neurons": slopes.stable, "neurons": int(sum(net.hidden_sizes))}
    naive, how = naive_bound(net, slopes, C, norm)
    seconds = {"naive": time.monotonic() - started}
    result = LipschitzResult(naive, norm, method, "naive", naive, output_pair=pair, region=described,
                             proof="product of " + ", ".join(dict.fromkeys(how)) + " layer norms",
                             seconds=seconds, notes=notes)
    if method != "naive":
        sdp_net, sdp_slopes = net, slopes
        if "maxmin" in net.kinds:
            result.maxmin = maxmin
            sdp_net, sdp_slopes = _maxmin_form(net, slopes, maxmin, notes)
        if sdp_net is not None:
            _lipsdp(sdp_net, sdp_slopes, C, result, deadline)
    if replay is not None:
        t = time.monotonic()
        lo, hi = region if region is not None else (np.full(net.n_inputs, -1.0), np.full(net.n_inputs, 1.0))
        budget = min(lower_seconds, max(0.0, deadline - time.monotonic() - 0.5))
        result.lower, _ = lower_bound(
            net, C, norm, lo, hi, replay, seconds=budget, seed=seed)
        if region is None:
            notes.append("lower bound searched over [-1, 1]^n (pass --region for the inputs that matter)")
        seconds["lower"] = time.monotonic() - t
    return result


def _maxmin_form(net: LipNet, slopes, mode: str, notes: list[str]):
    """(the net LipSDP is solved on, its slopes) for a network with MaxMin layers; (None, None) with a note
    when the ReLU rewriting is asked for and would round."""
    from verikit.lipschitz.layers import NotLipschitzReadable
    from verikit.lipschitz.maxmin import relu_rewrite

    if mode == "extension":
        notes.append("MaxMin layers: the extension's constraints (|z_p - z_q| 1-Lipschitz, z_p + z_q kept)")
        return net, slopes
    try:
        rewritten = relu_rewrite(net)
    except NotLipschitzReadable as reason:
        notes.append(f"{reason}; the naive bound is reported")
        return None, None
    notes.append("MaxMin layers rewritten as five ReLUs per pair (slope-restricted LipSDP; global slopes)")
    return rewritten, global_slopes(rewritten)


def _lipsdp(net: LipNet, slopes, C, result: LipschitzResult, deadline: float) -> None:
    dimension = net.n_inputs + int(sum(int(np.count_nonzero(b)) for b in slopes.beta))
    reduced = min(net.n_inputs, net.hidden_sizes[0] if net.hidden_sizes else 0) + dimension - net.n_inputs
    if not net.hidden_sizes:
        result.notes.append("no hidden layer: the naive bound is exact up to rounding")
        return
    if result.method == "lipsdp-neuron" and reduced > MAX_SDP_DIMENSION:
        result.notes.append(f"{result.method} not attempted: its matrix would be {reduced} square (limit "
                            f"{MAX_SDP_DIMENSION}); the naive bound is reported (lipsdp-layer scales further)")
        return
    if dimension > MAX_PROOF_DIMENSION:
        result.notes.append(f"{result.method} not attempted: the proof's matrix would be {dimension} square "
                            f"(limit {MAX_PROOF_DIMENSION}); the naive bound is reported")
        return
    t0 = time.monotonic()
    time_limit = (deadline - t0) * 0.6  # the rest is for the proof
    if time_limit < 1.0:
        result.notes.append(f"{result.method} not attempted: no time left before the deadline")
        return
    solution = sdp.solve(net, slopes, C, result.method, time_limit)
    result.solver, result.solver_status = solution.solver, solution.status
    result.solver_objective = None if solution.rho is None else float(np.sqrt(max(solution.rho, 0.0)))
    result.seconds["sdp"] = solution.seconds
    if solution.t is None:
        result.notes.append(f"the SDP solver returned no multipliers ({solution.status}); the naive bound is reported")
        return
    t1 = time.monotonic()
    rho, how = lmi.certify(net, slopes, C, solution.t)
    result.seconds["proof"] = time.monotonic() - t1
    if rho is None:
        result.notes.append(f"{how}; the naive bound is reported")
        return
    bound = float(up(np.sqrt(rho)))
    if result.norm == "inf":
        bound = float(up(bound * up(np.sqrt(float(net.n_inputs)))))
        result.notes.append("ℓ∞ from the ℓ2 LMI: ||Δy||∞ <= ||Δy||2 <= L2 ||Δx||2 <= L2 √n ||Δx||∞")
    result.method_bound = bound
    if bound >= result.naive:
        result.notes.append(f"{result.method}'s proven bound {bound:.6g} is not below the naive one")
        return
    result.upper, result.method_used = bound, result.method
    result.proof = how + " (rational-free: floating Cholesky with an a-posteriori residual bound)"
