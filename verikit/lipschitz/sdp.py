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

CLARABEL_MAX_DIM = 200  # an interior-point solve of a larger PSD cone takes minutes on a busy machine


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
    cp = _cvxpy()
    started = time.monotonic()
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
    rho = cp.Variable(nonneg=True)
    ts = []
    for n in sizes[1:]:
        if method == "lipsdp-layer":
            lam = cp.Variable(nonneg=True)
            ts.append(lam * np.ones(n))
        else:
            ts.append(cp.Variable(n, nonneg=True))
    L = len(sizes)
    blocks = [[None] * L for _ in range(L)]
    zeros = lambda a, b: np.zeros((sizes[a], sizes[b]))  # noqa: E731
    for i in range(L):
        for j in range(L):
            blocks[i][j] = zeros(i, j)
    diag = [[] for _ in range(L)]
    diag[0].append(-rho * np.eye(sizes[0]))
    for k in range(1, L):
        W, t, a, b = weights[k - 1], ts[k - 1], alpha[k - 1], beta[k - 1]
        if np.any(a * b):
            diag[k - 1].append(W.T @ cp.diag(cp.multiply(-2 * a * b, t)) @ W)
        blocks[k - 1][k] = W.T @ cp.diag(cp.multiply(a + b, t))
        blocks[k][k - 1] = cp.diag(cp.multiply(a + b, t)) @ W
        diag[k].append(cp.diag(-2 * t))
    diag[L - 1].append(K.T @ K)
    for i in range(L):
        blocks[i][i] = sum(diag[i][1:], diag[i][0])
    M = cp.bmat(blocks)
    epsilon = 1e-7 * max(1.0, float(np.linalg.norm(K, 2) ** 2))
    problem = cp.Problem(cp.Minimize(rho), [(M + M.T) / 2 << -epsilon * np.eye(dimension)])
    chosen = solver or ("CLARABEL" if dimension <= CLARABEL_MAX_DIM else "SCS")
    budget = max(1.0, time_limit - (time.monotonic() - started))
    options = ({"time_limit": budget} if chosen == "CLARABEL"
               else {"time_limit_secs": budget, "eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 200_000})
    try:
        problem.solve(solver=chosen, **options)
    except cp.error.SolverError as error:
        return SdpSolution(None, None, chosen, f"solver error: {error}", time.monotonic() - started, dimension)
    status = str(problem.status)
    if ts and any(t.value is None for t in ts):
        return SdpSolution(None, None, chosen, status, time.monotonic() - started, dimension)
    t_full = []
    for k, b in enumerate(slopes.beta):
        full = np.ones(b.size)  # a neuron of slope [0, 0] only needs some t > 0 (its rows decouple)
        full[keep[k]] = np.maximum(np.asarray(ts[k].value, dtype=np.float64).reshape(-1), 0.0)
        t_full.append(full)
    return SdpSolution(t_full, float(rho.value) if rho.value is not None else None, chosen, status,
                       time.monotonic() - started, dimension)
