"""LipSDP-Neuron and LipSDP-Layer solved by cvxpy (Clarabel for small problems, SCS beyond): only the
multipliers T are used afterwards, and ρ is recomputed and proven (verikit.lipschitz.lmi).

The solver sees the input through W_0's row space: with W_0 = U S Vᵀ (rank r), x = V y + (a null
vector) changes nothing but ||x||, so the LMI in x holds iff it holds with W_0 replaced by U S (r
columns); the proof is still made on the full matrix with the exact W_0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verikit.core.errors import UsageError
from verikit.lipschitz.layers import LipNet, Slopes
from verikit.lipschitz.naive import restricted_weights

CLARABEL_MAX_DIM = 100  # Clarabel on a 192-square PSD cone: past 70 s and 6.6 GB (benchmarks/README.md)


@dataclass(frozen=True)
class SdpSolution:
    t: list[np.ndarray] | None  # per hidden layer, per neuron (also for LipSDP-Layer: repeated)
    rho: float | None  # the solver's own ρ (reported, never used as the bound)
    solver: str
    status: str
    seconds: float
    dimension: int


def _cvxpy():
    try:
        import cvxpy
    except ImportError:
        raise UsageError("LipSDP needs cvxpy with Clarabel or SCS: pip install 'verikit[sdp]'") from None
    return cvxpy


def solve(net: LipNet, slopes: Slopes, C: np.ndarray | None, method: str, time_limit: float,
          solver: str | None = None) -> SdpSolution:
    """Solve LipSDP ("lipsdp-neuron" or "lipsdp-layer") within `time_limit` seconds; neurons of slope
    [0, 0] are left out of the problem (their multipliers are 0)."""
    started = time.monotonic()
    if method == "lipsdp-layer" and solver is None and _dimension(net, slopes) > CLARABEL_MAX_DIM:
        return layer_search(net, slopes, C, time_limit)
    cp = _cvxpy()
    keep = [b > 0 for b in slopes.beta]
    weights = restricted_weights(net, slopes)
    alpha = [a[k] for a, k in zip(slopes.alpha, keep)]
    beta = [b[k] for b, k in zip(slopes.beta, keep)]
    U_, S, _ = np.linalg.svd(weights[0], full_matrices=False)
    rank = int(np.sum(S > S[0] * 1e-12)) if S.size else 0
    first = U_[:, :rank] * S[:rank]
    weights = [first, *weights[1:]]
    K = weights[-1] if C is None else C @ weights[-1]
    sizes = [rank, *[w.shape[0] for w in weights[:-1]]]
    dimension = int(sum(sizes))
    pairs = [net.pairs_of(k) for k in range(len(net.hidden_sizes))]
    M, z, free, layer_of = _affine_lmi(cp, weights, alpha, beta, K, sizes, method, pairs)
    epsilon = 1e-7 * max(1.0, float(np.linalg.norm(K, 2) ** 2))
    problem = cp.Problem(cp.Minimize(z[0]), [(M + M.T) / 2 << -epsilon * np.eye(dimension)])
    chosen = solver or ("CLARABEL" if dimension <= CLARABEL_MAX_DIM else "SCS")
    budget = max(1.0, time_limit - (time.monotonic() - started))
    options = ({"time_limit": budget, "tol_gap_abs": 1e-6, "tol_gap_rel": 1e-6, "tol_feas": 1e-7}
               if chosen == "CLARABEL"
               else {"time_limit_secs": budget, "eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 200_000})
    try:
        problem.solve(solver=chosen, **options)
    except cp.error.SolverError as error:
        return SdpSolution(None, None, chosen, f"solver error: {error}", time.monotonic() - started, dimension)
    status = str(problem.status)
    if z.value is None:
        return SdpSolution(None, None, chosen, status, time.monotonic() - started, dimension)
    values = np.maximum(np.asarray(z.value, dtype=np.float64), 0.0)
    free_values = np.zeros(0) if free is None else np.asarray(free.value, dtype=np.float64)
    t_full = []
    for k, b in enumerate(slopes.beta):
        if pairs[k] is not None:  # MaxMin: [λ, a, b] per pair
            lam, ab = layer_of[k]
            t_full.append(np.column_stack([values[lam], free_values[ab[:, 0]], free_values[ab[:, 1]]]))
            continue
        full = np.ones(b.size)  # a neuron of slope [0, 0] only needs some t > 0 (its rows decouple)
        full[keep[k]] = values[layer_of[k]]
        t_full.append(full)
    return SdpSolution(t_full, float(values[0]), chosen, status, time.monotonic() - started, dimension)


def _affine_lmi(cp, weights, alpha, beta, K, sizes, method, pairs):
    """M(ρ, T) as one sparse affine map of z = [ρ, multipliers >= 0] and of the free multipliers (a MaxMin
    layer's a, b: lmi._add_maxmin), fast for cvxpy to compile; also, per hidden layer, the index in z of
    each neuron's multiplier (MaxMin: (λ's index in z per pair, (a, b)'s indices in the free vector))."""
    import scipy.sparse as sparse

    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    N = int(starts[-1])
    entries = {True: ([], [], [], []), False: ([], [], [], [])}  # nonneg z, free

    def put(r, c, v, index, nonneg=True):
        rows, cols, vals, var = entries[nonneg]
        r, c = np.broadcast_arrays(np.ravel(r), np.ravel(c))
        rows.append(r), cols.append(c), vals.append(np.broadcast_to(np.ravel(v), r.shape))
        var.append(np.full(r.size, index))

    diagonal = np.arange(sizes[0])
    put(diagonal, diagonal, -np.ones(sizes[0]), 0)
    layer_of, count, free_count = [], 1, 0
    for k in range(1, len(sizes)):
        n = sizes[k]
        W = weights[k - 1]
        previous = np.arange(starts[k - 1], starts[k])
        if pairs[k - 1] is not None:
            m = pairs[k - 1].shape[0]
            lam = np.full(m, count) if method == "lipsdp-layer" else count + np.arange(m)
            ab = (np.tile([free_count, free_count + 1], (m, 1)) if method == "lipsdp-layer"
                  else free_count + np.arange(2 * m).reshape(m, 2))
            count += 1 if method == "lipsdp-layer" else m
            free_count += 2 if method == "lipsdp-layer" else 2 * m
            layer_of.append((lam, ab))
            r, c = np.meshgrid(previous, previous, indexing="ij")
            for g, (p, q) in enumerate(pairs[k - 1]):
                d, s = W[p] - W[q], W[p] + W[q]
                P, Q = starts[k] + p, starts[k] + q
                put(r, c, np.outer(d, d), lam[g])  # λ δ²
                put([P, Q, P, Q], [P, Q, Q, P], [-1.0, -1.0, 1.0, 1.0], lam[g])  # -λ ε²
                put(r, c, np.outer(s, s), ab[g, 0], False)  # a σ²
                put([P, Q, P, Q], [P, Q, Q, P], 1.0, ab[g, 1], False)  # b τ²
                for column in (P, Q):  # -(a + b) σ τ, split over both triangles
                    for index in ab[g]:
                        put(previous, column, -0.5 * s, index, False)
                        put(column, previous, -0.5 * s, index, False)
            continue
        index = np.full(n, count) if method == "lipsdp-layer" else count + np.arange(n)
        count += 1 if method == "lipsdp-layer" else n
        layer_of.append(index)
        a, b = alpha[k - 1], beta[k - 1]
        for j in range(n):
            here = starts[k] + j
            put(previous, np.full(previous.size, here), (a[j] + b[j]) * W[j], index[j])
            put(np.full(previous.size, here), previous, (a[j] + b[j]) * W[j], index[j])
            put(here, here, -2.0, index[j])
            if a[j] * b[j]:
                outer = -2.0 * a[j] * b[j] * np.outer(W[j], W[j])
                r, c = np.meshgrid(previous, previous, indexing="ij")
                put(r, c, outer, index[j])

    def operator(nonneg: bool, width: int):
        r, c, v, i = (np.concatenate(x) for x in entries[nonneg])
        return sparse.csr_matrix((v, (r * N + c, i)), shape=(N * N, width))

    constant = np.zeros((N, N))
    last = slice(starts[-2], starts[-1])
    constant[last, last] = K.T @ K
    z = cp.Variable(count, nonneg=True)
    affine = operator(True, count) @ z
    free = None
    if free_count:
        free = cp.Variable(free_count)
        affine = affine + operator(False, free_count) @ free
    M = cp.reshape(affine, (N, N), order="C") + constant
    return M, z, free, layer_of


def _dimension(net: LipNet, slopes: Slopes) -> int:
    return min(net.weights[0].shape) + int(sum(np.count_nonzero(b) for b in slopes.beta))


def layer_search(net: LipNet, slopes: Slopes, C: np.ndarray | None, time_limit: float) -> SdpSolution:
    """LipSDP-Layer by direct search: ρ*(λ) (least ρ for the layer multipliers λ, a Schur complement) is
    convex in λ, so Nelder-Mead on log λ finds its minimum; no SDP solver, one Cholesky per step."""
    from scipy.optimize import minimize

    from verikit.lipschitz.lmi import least_rho

    started = time.monotonic()
    sizes = net.hidden_sizes
    norms = [float(np.linalg.norm(w, 2)) for w in net.weights[1:]]
    if C is not None:
        norms[-1] = float(np.linalg.norm(C @ net.weights[-1], 2))
    # a feasible guess, each earlier layer's a little above what the later ones need (at exactly the
    # product, an orthogonal or MaxMin layer's hidden block is singular and no ρ is found around it)
    start = [float(np.prod(np.square(norms[k:]))) * 1.01 ** (len(sizes) - k) for k in range(len(sizes))]

    def multipliers(log_lam: np.ndarray) -> list[np.ndarray]:
        # a MaxMin layer gets λ (||Δz||² - ||Δy||²) >= 0, its non-expansiveness: [λ/2, λ/2, -λ/2] per pair
        return [np.full(n, float(np.exp(v))) if net.pairs_of(k) is None
                else np.tile(float(np.exp(v)) * np.array([0.5, 0.5, -0.5]), (net.pairs_of(k).shape[0], 1))
                for k, (n, v) in enumerate(zip(sizes, log_lam))]

    def objective(log_lam: np.ndarray) -> float:
        if time.monotonic() - started > time_limit:
            raise TimeoutError
        rho = least_rho(net, slopes, C, multipliers(log_lam))
        return np.inf if rho is None else rho

    best = {"x": np.log(start), "f": objective(np.log(start))}

    def tracked(log_lam):
        value = objective(log_lam)
        if value < best["f"]:
            best.update(x=np.array(log_lam), f=value)
        return value

    status = "optimal"
    try:
        minimize(tracked, best["x"], method="Nelder-Mead",
                 options={"xatol": 1e-4, "fatol": 1e-6 * max(1.0, best["f"]), "maxfev": 400})
    except TimeoutError:
        status = "time limit (best point so far)"
    if not np.isfinite(best["f"]):
        return SdpSolution(None, None, "nelder-mead", "no feasible multipliers found", time.monotonic() - started,
                           _dimension(net, slopes))
    return SdpSolution(multipliers(best["x"]), best["f"], "nelder-mead (Schur complement)", status,
                       time.monotonic() - started, _dimension(net, slopes))
