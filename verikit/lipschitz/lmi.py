"""LipSDP's matrix inequality, rebuilt from the exact weights and proven in outward-rounded float64.

State x̄ = [x_0; x_1; ...; x_L] (input, then each hidden layer's activations). For multipliers t_k >= 0
(one per neuron; one per layer for LipSDP-Layer) and slopes [α, β] of each neuron on the region,

  M(ρ, T) = -ρ E_0 + E_Lᵀ K_Lᵀ K_L E_L
            + Σ_k [W_{k-1} E_{k-1}; E_k]ᵀ [[-2αβT_k, (α+β)T_k], [(α+β)T_k, -2T_k]] [W_{k-1} E_{k-1}; E_k]

(K_L = C W_L, the last layer, or its margin rows). Each neuron's slope condition makes the sum of the
quadratic forms >= 0 on differences, so M ⪯ 0 gives ||K_L Δx_L||² <= ρ ||Δx_0||²: L = sqrt(ρ). Here
-M is built as an interval matrix (mid, rad) and proven ⪰ 0 by verikit.lipschitz.psd.

A MaxMin layer (pairs (p, q): y_p = max(z_p, z_q), y_q = min) is not slope-restricted neuron by neuron; per
pair it has the extension's constraints (docs/lipschitz.md): with δ = Δz_p - Δz_q, σ = Δz_p + Δz_q and
ε, τ the same of Δy, |·| is 1-Lipschitz (y_p - y_q = |z_p - z_q|: δ² - ε² >= 0, multiplier λ >= 0) and
the sum is kept (τ = σ: (σ - τ)(aσ - bτ) = 0 for any a, b). t_k is then (m, 3): [λ, a, b] per pair.
"""

from __future__ import annotations

import numpy as np

from verikit.checker.rigorous import U, gamma, up, upper_product
from verikit.lipschitz.layers import LipNet, Slopes
from verikit.lipschitz.naive import last_layer
from verikit.lipschitz.psd import PsdProof, prove_psd


class _Interval:
    """A symmetric interval matrix built block by block; rad None when only the midpoint is wanted."""

    def __init__(self, n: int, radius: bool = True):
        self.mid = np.zeros((n, n))
        self.rad = np.zeros((n, n)) if radius else None

    def add(self, rows: slice, cols: slice, mid: np.ndarray, rad=None) -> None:
        """Add mid ± rad at (rows, cols) and its transpose at (cols, rows); `rad` a callable (lazy)."""
        radius = None if self.rad is None or rad is None else rad()
        for r, c, m, e in ((rows, cols, mid, radius), (cols, rows, mid.T, None if radius is None else radius.T)):
            self.mid[r, c] += m
            if self.rad is not None:
                grown = self.rad[r, c] if e is None else up(self.rad[r, c] + e)
                self.rad[r, c] = up(grown + np.abs(self.mid[r, c]) * U)  # the sum above was rounded
            if rows == cols:
                break


def _offsets(net: LipNet) -> list[slice]:
    sizes = [net.n_inputs, *net.hidden_sizes]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def negated_lmi(net: LipNet, slopes: Slopes, C: np.ndarray | None, t: list[np.ndarray],
                rho: float, *, radius: bool = True) -> _Interval:
    """-M(ρ, T) as an interval matrix, (n_0 + Σ n_k) square (radius False: the midpoint only, for estimates)."""
    blocks = _offsets(net)
    out = _Interval(blocks[-1].stop, radius)
    n0 = net.n_inputs
    out.mid[np.arange(n0), np.arange(n0)] += rho
    for k in range(1, len(blocks)):
        W = net.weights[k - 1]
        if net.kinds[k - 1] == "maxmin":
            _add_maxmin(out, blocks[k - 1], blocks[k], W, net.pairs_of(k - 1), np.asarray(t[k - 1], np.float64))
            continue
        a, b, tk = slopes.alpha[k - 1], slopes.beta[k - 1], np.asarray(t[k - 1], dtype=np.float64)
        if np.any(tk < 0) or not np.all(np.isfinite(tk)):
            raise ValueError("multipliers must be finite and >= 0")
        d = 2.0 * a * b * tk  # >= 0; rounded, covered by the factor below
        if np.any(d):
            scaled = W.T * d
            out.add(blocks[k - 1], blocks[k - 1], scaled @ W,
                    lambda: up(upper_product(np.abs(scaled), np.abs(W)) * gamma(W.shape[0] + 4)))
        cross = -(W.T * ((a + b) * tk))  # two roundings per entry
        out.add(blocks[k - 1], blocks[k], cross, lambda: up(np.abs(cross) * 3 * U))
        out.add(blocks[k], blocks[k], np.diag(2.0 * tk))
    K, K_rad = last_layer(net.weights[-1], C)
    absK = np.abs(K)

    def last_radius():
        rad = upper_product(absK.T, absK) * gamma(K.shape[0] + 2)
        if K_rad is not None:
            rad = up(rad + 2 * upper_product(absK.T, K_rad) + upper_product(K_rad.T, K_rad))
        return up(rad)

    out.add(blocks[-1], blocks[-1], -(K.T @ K), last_radius)
    return out


def _add_maxmin(out: _Interval, before: slice, here: slice, W: np.ndarray, pairs: np.ndarray,
                t: np.ndarray) -> None:
    """Subtract the MaxMin layer's constraints from -M. Per pair g = (p, q) with [λ, a, b] = t[g], the form
    λ(δ² - ε²) + (σ - τ)(aσ - bτ) is, in the state's blocks (z = W x_before, y = x_here):
      before: Wᵀ D W with D_pp = D_qq = λ + a, D_pq = D_qp = a - λ;
      here:   y_p², y_q² times b - λ, y_p y_q twice times b + λ;
      cross:  -(a + b) (W_p + W_q) x_before (y_p + y_q).
    The multipliers are taken as exact; every rounding of what is computed from them is in the radius."""
    if t.ndim != 2 or t.shape != (pairs.shape[0], 3) or not np.all(np.isfinite(t)) or np.any(t[:, 0] < 0):
        raise ValueError("MaxMin multipliers must be finite [λ >= 0, a, b] per pair")
    p, q = pairs[:, 0], pairs[:, 1]
    lam, a, b = t[:, 0], t[:, 1], t[:, 2]
    same, other = lam + a, a - lam  # D's two values per pair (rounded once each)
    G = np.zeros_like(W.T)  # Wᵀ D, column by column: two products and a sum per entry
    G[:, p] = W[p].T * same + W[q].T * other
    G[:, q] = W[q].T * same + W[p].T * other
    absW = np.abs(W)
    # |fl(G W) - Wᵀ D W| <= (γ_n (1 + γ_2) + γ_2 + 2u) (|W|ᵀ |fl(D)|) |W| <= γ_{n+6} (|W|ᵀ |fl(D)|) |W|
    out.add(before, before, -(G @ W), lambda: up(upper_product(_abs_wd(absW, p, q, same, other), absW)
                                                 * gamma(W.shape[0] + 6)))
    n = here.stop - here.start
    Y = np.zeros((n, n))
    Y[p, p] = Y[q, q] = b - lam
    Y[p, q] = Y[q, p] = b + lam
    out.add(here, here, -Y, lambda: up(np.abs(Y) * 2 * U))
    cross = np.zeros((W.shape[1], n))
    half = (a + b) * 0.5  # one rounding (the halving is exact)
    s = W[p].T + W[q].T  # one rounding
    cross[:, p] = s * half
    cross[:, q] = s * half
    out.add(before, here, cross, lambda: up(np.abs(cross) * gamma(4)))


def _abs_wd(absW: np.ndarray, p, q, same, other) -> np.ndarray:
    """An upper bound of |W|ᵀ |D| (D as in _add_maxmin), column by column."""
    out = np.zeros((absW.shape[1], absW.shape[0]))
    out[:, p] = up(absW[p].T * np.abs(same) + absW[q].T * np.abs(other))
    out[:, q] = up(absW[q].T * np.abs(same) + absW[p].T * np.abs(other))
    return up(out * (1 + gamma(2)))  # two products and a sum per entry


def check_multipliers(net: LipNet, slopes: Slopes, C: np.ndarray | None, t: list[np.ndarray],
                      rho: float) -> PsdProof:
    """Whether M(ρ, T) ⪯ 0 is proven; its proof (or why not)."""
    lmi = negated_lmi(net, slopes, C, t, rho)
    return prove_psd(lmi.mid, lmi.rad)


def least_rho(net: LipNet, slopes: Slopes, C: np.ndarray | None, t: list[np.ndarray]) -> float | None:
    """The least ρ with M(ρ, T) ⪯ 0 for these T, estimated in floating point (Schur complement on the
    hidden block); None when the hidden block is not negative definite (no ρ works)."""
    lmi = negated_lmi(net, slopes, C, t, 0.0, radius=False)
    n0 = net.n_inputs
    N = lmi.mid
    try:
        L = np.linalg.cholesky(N[n0:, n0:])
    except np.linalg.LinAlgError:
        return None
    X = np.linalg.solve(L, N[n0:, :n0])
    schur = N[:n0, :n0] - X.T @ X
    schur = (schur + schur.T) / 2
    return max(float(-np.linalg.eigvalsh(schur)[0]), 0.0)


def certify(net: LipNet, slopes: Slopes, C: np.ndarray | None, t: list[np.ndarray],
            tries: int = 6) -> tuple[float | None, str]:
    """(ρ proven to satisfy M(ρ, T) ⪯ 0, or None; what happened). ρ is taken from T alone (the solver's
    ρ is not trusted) and then raised by a growing margin until the proof goes through. Where the
    solver's T leaves the hidden block singular (at the optimum it often is: an orthogonal MaxMin
    network's is exactly), each earlier layer's multipliers are grown a little against the later ones',
    T_k (1 + η)^(L-k), which makes the hidden block definite at a cost of about (1 + η)^L in ρ."""
    why = "the multipliers leave the hidden block indefinite"
    L = len(t)
    for eta in (0.0, 1e-7, 1e-5, 1e-3):
        scaled = [np.asarray(tk, np.float64) * (1.0 + eta) ** (L - k) for k, tk in enumerate(t)] if eta else t
        rho, how = _certify(net, slopes, C, scaled, tries)
        if rho is not None:
            return rho, how + (f" (layer multipliers reweighted by (1 + {eta:g})^(L-k))" if eta else "")
        why = how
    return None, why


def _certify(net: LipNet, slopes: Slopes, C: np.ndarray | None, t: list[np.ndarray],
             tries: int) -> tuple[float | None, str]:
    rho = least_rho(net, slopes, C, t)
    if rho is None:
        return None, "the multipliers leave the hidden block indefinite"
    scale = max(rho, float(np.max(np.abs(np.concatenate([np.ravel(x) for x in t])))) if t else rho, 1e-12)
    margin = 1e-9
    for _ in range(tries):
        candidate = float(up(rho * (1.0 + margin) + margin * scale))
        proof = check_multipliers(net, slopes, C, t, candidate)
        if proof.proven:
            return candidate, f"M(ρ, T) ⪯ 0 proven with relative margin {margin:.0e}"
        margin *= 100.0
    return None, f"M(ρ, T) ⪯ 0 not proven: {proof.reason}"
