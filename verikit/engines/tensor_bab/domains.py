"""Open domains of the tensor branch and bound: split sets packed into int64 arrays, a lowest-bound-first
queue capped by bytes, and the branching score.

A split is packed as `(layer << 32) | (neuron << 1) | active`; a domain's splits are one int64 array, so
its size in bytes is known exactly (plus a fixed per-domain overhead for the Python objects around it).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

DOMAIN_OVERHEAD_BYTES = 256  # heap entry, tuple, array header: measured with sys.getsizeof, rounded up


def pack(layer: int, neuron: int, active: bool) -> int:
    return (int(layer) << 32) | (int(neuron) << 1) | int(bool(active))


def unpack(splits: np.ndarray) -> list[tuple[int, int, bool]]:
    """The (layer, neuron, active) triples of a packed split array."""
    return [(int(code) >> 32, (int(code) & 0xFFFFFFFF) >> 1, bool(int(code) & 1)) for code in splits]


@dataclass(order=True)
class Domain:
    """An open domain: its worst disjunct's widened lower bound (the queue key), its splits, and the
    neuron chosen to split it next (layer, flat index)."""

    bound: float
    order: int
    splits: np.ndarray = field(compare=False)
    branch: tuple[int, int] = field(compare=False)
    beta: np.ndarray | None = field(default=None, compare=False)  # its splits' β (float32), to warm-start children

    @property
    def nbytes(self) -> int:
        return int(self.splits.nbytes) + (0 if self.beta is None else int(self.beta.nbytes)) + DOMAIN_OVERHEAD_BYTES


class DomainQueue:
    """Open domains, lowest bound first, with a running byte count (`nbytes`) checked against a cap."""

    def __init__(self) -> None:
        self._heap: list[Domain] = []
        self._counter = itertools.count()
        self.nbytes = 0
        self.most = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, bound: float, splits: np.ndarray, branch: tuple[int, int], beta: np.ndarray | None = None) -> None:
        domain = Domain(float(bound), next(self._counter), splits, branch,
                        None if beta is None else np.asarray(beta, dtype=np.float32))
        heapq.heappush(self._heap, domain)
        self.nbytes += domain.nbytes
        self.most = max(self.most, len(self._heap))

    def pop(self, count: int) -> list[Domain]:
        taken = [heapq.heappop(self._heap) for _ in range(min(count, len(self._heap)))]
        self.nbytes -= sum(domain.nbytes for domain in taken)
        return taken

    def worst(self) -> float:
        return self._heap[0].bound if self._heap else float("inf")


def children(domain: Domain) -> list[np.ndarray]:
    """The two split arrays of a domain split at its chosen neuron: inactive, then active."""
    layer, neuron = domain.branch
    return [np.append(domain.splits, np.int64(pack(layer, neuron, active))) for active in (False, True)]


def branch_choice(layer_bounds: list[tuple[torch.Tensor, torch.Tensor]], coefficients: list[torch.Tensor | None],
                  open_rows: torch.Tensor) -> list[tuple[int, int] | None]:
    """Per domain, the unstable neuron whose split is estimated to raise the bound most, or None.

    The estimate (after BaBSR): the final lower bound pays, for an unstable neuron with bounds l < 0 < u,
    the upper relaxation's intercept -l·u/(u-l) times the negative part of the neuron's coefficient in
    the bound's backward pass; a split removes that intercept. Summed over the rows still open
    (`open_rows` (B, R) bool). Ties (coefficient 0 everywhere) are broken by the intercept itself.
    """
    batch = open_rows.shape[0]
    best_score = torch.full((batch,), -1.0, dtype=torch.float64)
    best_layer = torch.full((batch,), -1, dtype=torch.long)
    best_neuron = torch.zeros(batch, dtype=torch.long)
    weights = open_rows.to(torch.float64)
    for k, ((low, high), coefficient) in enumerate(zip(layer_bounds, coefficients)):
        low, high = low.double().cpu(), high.double().cpu()
        unstable = (low < 0) & (high > 0)
        intercept = torch.where(unstable, -low * high / (high - low).clamp(min=1e-12), torch.zeros_like(low))
        score = 1e-6 * intercept
        if coefficient is not None:
            negative = (-coefficient.double().cpu()).clamp(min=0)  # (B, R, n)
            score = score + torch.einsum("br,brn->bn", weights, negative) * intercept
        score = torch.where(unstable, score, torch.full_like(score, -1.0))
        value, index = score.max(dim=1)
        better = value > best_score
        best_score = torch.where(better, value, best_score)
        best_layer = torch.where(better, torch.full_like(best_layer, k), best_layer)
        best_neuron = torch.where(better, index, best_neuron)
    return [None if best_layer[b] < 0 else (int(best_layer[b]), int(best_neuron[b])) for b in range(batch)]
