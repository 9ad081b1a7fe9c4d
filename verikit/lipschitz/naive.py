"""The product of layer norms, with every norm bounded rigorously from above (outward rounding).

ℓ2: ||W||_2 = sqrt(λmax(W Wᵀ)); μ >= λmax is proven by showing μ I - W Wᵀ ⪰ 0 (verikit.lipschitz.psd),
with the Gram matrix's rounding as an interval; the Frobenius norm is the fallback. ℓ∞: the largest
absolute row sum, rounded up.
"""

from __future__ import annotations

import numpy as np

from verikit.checker.rigorous import U, gamma, up, upper_product
from verikit.lipschitz.layers import LipNet, Slopes
from verikit.lipschitz.psd import prove_psd, row_sum_upper


def frobenius_upper(W: np.ndarray) -> float:
    total = float(up(np.sum(W * W) * (1.0 + gamma(W.size + 1))))
    return float(up(np.sqrt(total)))


def spectral_upper(W: np.ndarray, rad: np.ndarray | None = None) -> tuple[float, str]:
    """(an upper bound of ||A||_2 over every A with |A - W| <= rad, how it was proven)."""
    extra = 0.0 if rad is None or not np.any(rad) else frobenius_upper(rad)
    if W.size == 0:
        return extra, "empty"
    if min(W.shape) == 1:
        return float(up(frobenius_upper(W) + extra)), "vector norm"
    M = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
    absW = np.abs(W)
    gram_rad = (upper_product(absW, absW.T) if W.shape[0] <= W.shape[1] else upper_product(absW.T, absW))
    gram_rad = up(gram_rad * gamma(max(W.shape)))  # the sum runs over the longer side
    estimate = float(np.linalg.eigvalsh(M)[-1])
    for relative in (1e-9, 1e-7, 1e-5, 1e-3):
        mu = float(up(estimate * (1.0 + relative) + relative * 1e-6 + row_sum_upper(gram_rad)))
        A = -M
        A[np.diag_indices_from(A)] += mu
        rad_A = gram_rad + np.diag(up(np.abs(np.diag(A)) * U))  # the diagonal's subtraction rounded
        if prove_psd(A, rad_A).proven:
            return float(up(up(np.sqrt(mu)) + extra)), "proven λmax"
    return float(up(frobenius_upper(W) + extra)), "Frobenius (λmax not proven)"


def inf_norm_upper(W: np.ndarray, rad: np.ndarray | None = None) -> float:
    absW = np.abs(W) if rad is None else up(np.abs(W) + rad)
    return row_sum_upper(absW)


def restricted_weights(net: LipNet, slopes: Slopes) -> list[np.ndarray]:
    """The weights with every neuron of slope [0, 0] (constant on the region) dropped: exact."""
    keep = [b > 0 for b in slopes.beta]
    weights = []
    for k, W in enumerate(net.weights):
        rows = keep[k] if k < len(keep) else slice(None)
        cols = keep[k - 1] if k > 0 else slice(None)
        weights.append(W[rows][:, cols])
    return weights


def last_layer(W: np.ndarray, C: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """C W with an elementwise bound of its rounding (C: rows of ±1 differences), or (W, None)."""
    if C is None:
        return W, None
    K = C @ W
    return K, up(upper_product(np.abs(C), np.abs(W)) * gamma(C.shape[1]))


def naive_bound(net: LipNet, slopes: Slopes, C: np.ndarray | None, norm: str) -> tuple[float, list[str]]:
    """(Π ||W_k|| · max β_k, the proof of each factor) for the norm "2" or "inf"."""
    weights = restricted_weights(net, slopes)
    betas = [float(np.max(b[b > 0])) if np.any(b > 0) else 0.0 for b in slopes.beta]
    total, how = 1.0, []
    for k, W in enumerate(weights):
        rad = None
        if k == len(weights) - 1:
            W, rad = last_layer(W, C)
        if norm == "2":
            factor, proof = spectral_upper(W, rad)
        else:
            factor, proof = inf_norm_upper(W, rad), "row sums"
        how.append(proof)
        total = float(up(total * factor))
        if k < len(betas):
            total = float(up(total * betas[k]))
    return total, how
