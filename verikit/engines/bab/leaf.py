"""Leaves of ReLU branching: domains in which every neuron is split or stable, so the network is affine on
the domain's polytope {x in box : split constraints}. One LP per open disjunct (scipy HiGHS) finds the
point of the polytope closest to satisfying it — a counterexample candidate, still replayed through
onnxruntime before it counts — or, when there is none, dual multipliers that a float64 CROWN pass turns
into a sound refutation. The LP's own word never proves anything.
"""

from __future__ import annotations

import numpy as np
import torch

from verikit.engines.bab.common import SpecRows
from verikit.engines.crown.propagate import ACTIVE, INACTIVE, LayerBounds, ReluMlp, spec_bounds


def _affine_pieces(net: ReluMlp, bounds: LayerBounds, splits: list[torch.Tensor]):
    """For one leaf (batch 1): the output map y = A x + c (float64) and the split constraints G x <= h."""
    A = np.eye(net.n_inputs)
    c = np.zeros(net.n_inputs)
    G_rows, h_rows = [], []
    for i in range(net.depth):
        W = net.weights[i].double().numpy()
        b = net.biases[i].double().numpy()
        A, c = W @ A, W @ c + b
        split = splits[i][0].numpy()
        active = (split == ACTIVE) | ((split != INACTIVE) & (bounds.lower[i][0].double().numpy() >= 0))
        constrained = split != 0
        # active: z >= 0  ⇔  -A x <= c;  inactive: z <= 0  ⇔  A x <= -c
        sign = np.where(split == ACTIVE, -1.0, 1.0)[constrained]
        G_rows.append(sign[:, None] * A[constrained])
        h_rows.append(-sign * c[constrained])
        A, c = A * active[:, None], c * active
    W = net.weights[-1].double().numpy()
    return W @ A, W @ c + net.biases[-1].double().numpy(), G_rows, h_rows


def settle_leaf(net64: ReluMlp, bounds64: LayerBounds, splits: list[torch.Tensor], spec64: SpecRows,
                x_lower: torch.Tensor, x_upper: torch.Tensor) -> tuple[list[np.ndarray], bool]:
    """One leaf (batch 1, float64 bounds): counterexample candidates and whether it is refuted (sound).

    Per disjunct k, the LP  min t  s.t.  C_k y(x) - d_k <= t, split constraints, x in box. When t* <= 0 its
    minimiser is a candidate. Otherwise its duals give row weights λ (summing to 1) and multipliers μ of
    the split constraints; max over rows >= the λ-combination, so a float64 CROWN pass on the combined
    row with β = μ that comes out > 0 refutes the disjunct soundly.
    """
    from scipy.optimize import linprog  # scipy.optimize takes 0.15-0.3 s to import; most runs need no LP

    lo, hi = x_lower[0].double().numpy(), x_upper[0].double().numpy()
    A, c, G_rows, h_rows = _affine_pieces(net64, bounds64, splits)
    G, h = np.vstack(G_rows), np.concatenate(h_rows)
    C, d, owner = spec64.C.numpy(), spec64.d.numpy(), spec64.owner.numpy()
    n = A.shape[1]
    candidates, refuted = [], True
    for k in range(spec64.count):
        rows = owner == k
        M = C[rows] @ A
        ub = np.vstack([np.hstack([M, -np.ones((M.shape[0], 1))]), np.hstack([G, np.zeros((G.shape[0], 1))])])
        rhs = np.concatenate([d[rows] - C[rows] @ c, h])
        cost = np.zeros(n + 1)
        cost[-1] = 1.0
        result = linprog(cost, A_ub=ub, b_ub=rhs, bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
        if result.status == 2:  # the polytope is empty: refute with a multiple of its Farkas weights
            refuted = refuted and _refute_empty(net64, bounds64, splits, spec64, k, G, h, x_lower, x_upper)
            continue
        if result.status != 0:
            refuted = False
            continue
        if result.fun <= 0:
            candidates.append(result.x[:n])
            refuted = False
            continue
        duals = np.maximum(-result.ineqlin.marginals, 0.0)
        weights, multipliers = duals[: M.shape[0]], duals[M.shape[0]:]
        combined_C = torch.tensor(weights @ C[rows]).unsqueeze(0)
        combined_d = torch.tensor([weights @ d[rows]])
        with torch.no_grad():
            bound = spec_bounds(net64, x_lower.double(), x_upper.double(), combined_C, combined_d, bounds64,
                                splits=splits, betas=_per_layer(multipliers, splits))
        refuted = refuted and bool(bound.lower[0, 0] > 0)
    return candidates, refuted


def _refute_empty(net64: ReluMlp, bounds64: LayerBounds, splits: list[torch.Tensor], spec64: SpecRows, k: int,
                  G: np.ndarray, h: np.ndarray, x_lower: torch.Tensor, x_upper: torch.Tensor) -> bool:
    """Disjunct k on an empty leaf: min over the box of max_j (G x - h)_j = s* > 0 has dual weights μ
    (Σμ = 1) with μ·(G x - h) >= s* on the box, so row + M·μ·(split constraints) is positive for M large;
    a float64 CROWN pass with β = M·μ checks that soundly."""
    from scipy.optimize import linprog

    lo, hi = x_lower[0].double().numpy(), x_upper[0].double().numpy()
    n = G.shape[1]
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    phase = linprog(cost, A_ub=np.hstack([G, -np.ones((G.shape[0], 1))]), b_ub=h,
                    bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
    if phase.status != 0 or phase.fun <= 0:
        return False
    weights = np.maximum(-phase.ineqlin.marginals, 0.0)
    row = int((spec64.owner == k).nonzero()[0, 0])
    C, d = spec64.C[row : row + 1], spec64.d[row : row + 1]
    with torch.no_grad():
        plain = spec_bounds(net64, x_lower.double(), x_upper.double(), C, d, bounds64).lower[0, 0]
        scale = 2.0 * (1.0 + abs(float(plain))) / phase.fun
        bound = spec_bounds(net64, x_lower.double(), x_upper.double(), C, d, bounds64, splits=splits,
                            betas=_per_layer(scale * weights, splits))
    return bool(bound.lower[0, 0] > 0)


def _per_layer(multipliers: np.ndarray, splits: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split-constraint multipliers (in _affine_pieces order) as β tensors (1, 1, n_i) per layer."""
    betas, start = [], 0
    for split in splits:
        constrained = (split[0] != 0).numpy()
        beta = np.zeros(constrained.size)
        beta[constrained] = multipliers[start : start + int(constrained.sum())]
        start += int(constrained.sum())
        betas.append(torch.tensor(beta).reshape(1, 1, -1))
    return betas
