"""Rigorous proofs that a symmetric interval matrix holds only positive semidefinite matrices.

A matrix here is `mid ± rad` (elementwise, float64, rad >= 0): the exact real matrix is known to lie
within `rad` of `mid` entry by entry. The proof (docs/lipschitz.md):

0. With D = diag(2^-round(log2(mid_ii)/2)) (powers of two: exact), D A D ⪰ 0 iff A ⪰ 0; mid and rad
   are scaled so (the diagonal becomes ~1: LipSDP's multipliers span many orders of magnitude).
1. ||A - mid||_2 <= || |A - mid| ||_2 <= ||rad||_2 <= max row sum of rad =: r (rad symmetric, Perron).
2. B := mid - (r + s) I (diagonal rounded down) is factored by a floating Cholesky, B ≈ L Lᵀ.
3. e >= ||B - L Lᵀ||_2 is bounded a posteriori: |B - fl(L Lᵀ)| + γ_n |L||L|ᵀ, its max row sum rounded up.
4. If s >= e: A ⪰ mid - r I ⪰ B + s I = L Lᵀ + (B - L Lᵀ) + s I ⪰ (s - e) I ⪰ 0.

Nothing of the solver is trusted: only IEEE 754 round-to-nearest and the a-priori bound γ_n on a sum of
n products (verikit.checker.rigorous).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verikit.checker.rigorous import TINY, U, gamma, down, up, upper_product


@dataclass(frozen=True)
class PsdProof:
    """The outcome of `prove_psd`: `proven`, a lower bound of λmin of the diagonally scaled matrix
    (step 0; >= 0 when proven) and, when not proven, why."""

    proven: bool
    min_eigenvalue_bound: float
    reason: str = ""


def row_sum_upper(rad: np.ndarray) -> float:
    """An upper bound of the largest row sum of a nonnegative matrix (so of its spectral norm when symmetric)."""
    if rad.size == 0:
        return 0.0
    n = rad.shape[1]
    return float(up(np.max(rad.sum(axis=1)) * (1.0 + gamma(n))))


def prove_psd(mid: np.ndarray, rad: np.ndarray | None = None, *, shift: float | None = None) -> PsdProof:
    """Prove that every symmetric A with |A - mid| <= rad is positive semidefinite (see the module doc).

    `shift` s > 0 is the room left for the Cholesky's own error; by default a few times n·u·max|mid|."""
    mid = np.asarray(mid, dtype=np.float64)
    n = mid.shape[0]
    if n == 0:
        return PsdProof(True, 0.0)
    if not np.all(np.isfinite(mid)):
        return PsdProof(False, -np.inf, "the matrix is not finite")
    rad = np.zeros_like(mid) if rad is None else np.maximum(np.asarray(rad, dtype=np.float64), 0.0)
    if not np.array_equal(mid, mid.T):  # the exact matrix is symmetric; its rounded midpoint may not be
        sym = mid / 2 + mid.T / 2
        rad = up(rad + np.abs(mid - sym) * (1.0 + 2 * U) + np.abs(sym) * U)
        mid = sym
    # D A D ⪰ 0 ⇔ A ⪰ 0 for D diagonal > 0; with powers of two the scaling is exact, and it evens out
    # diagonals that span many orders of magnitude (LipSDP's multipliers grow layer by layer)
    diagonal = np.diag(mid)
    if np.all(diagonal > 0):
        D = np.exp2(-np.round(np.log2(diagonal) / 2))
        mid = mid * D[:, None] * D[None, :]
        rad = up(rad * D[:, None] * D[None, :] + TINY)  # exact but for underflow, which TINY covers
        if not np.all(np.isfinite(mid)):
            return PsdProof(False, -np.inf, "the scaled matrix is not finite")
    r = row_sum_upper(np.maximum(rad, rad.T))
    scale = float(np.max(np.abs(np.diag(mid))))
    s = float(shift) if shift is not None else 4.0 * (n + 2) * U * max(scale, 1e-300)
    for _ in range(4):  # a shift below the Cholesky's own residual proves nothing: retry above it
        proof = _shifted_cholesky(mid, r, s)
        if proof.proven or not np.isfinite(proof.min_eigenvalue_bound) or shift is not None:
            return proof
        s = 4.0 * (s - proof.min_eigenvalue_bound)
    return proof


def _shifted_cholesky(mid: np.ndarray, r: float, s: float) -> PsdProof:
    """Steps 2-4 of the module doc for the radius bound r and the shift s."""
    n = mid.shape[0]
    B = mid.copy()
    np.fill_diagonal(B, down(down(np.diag(mid) - r) - s))
    try:
        L = np.linalg.cholesky(B)
    except np.linalg.LinAlgError:
        return PsdProof(False, -np.inf, "the shifted matrix has no floating Cholesky factor")
    if not np.all(np.isfinite(L)):
        return PsdProof(False, -np.inf, "the Cholesky factor is not finite")
    product = L @ L.T
    diff = up(np.abs(B - product) * (1.0 + 2 * U))  # the subtraction itself was rounded
    absL = np.abs(L)
    residual = up(diff + upper_product(absL, absL.T) * gamma(n))
    e = row_sum_upper(residual)
    if s < e:
        return PsdProof(False, float(down(s - e)), f"the Cholesky residual {e:.3g} exceeds the shift {s:.3g}")
    return PsdProof(True, float(down(s - e)))
