"""The open domains of ReLU branching: a stack of split assignments with what each child inherits.

A domain is its split assignment (int8 per hidden neuron), its depth, the layer of its latest split
(intermediate bounds are refined from the next layer on), its parent's lower bound and, when children are warm-started, the
parent's α and β (R, N) each. The stack grows by doubling, so pushing a batch costs the batch, not the
whole queue, and its size is counted in bytes (`nbytes`, everything stored per domain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Domains:
    """A batch of domains (B, ...); `alpha`, `beta` (B, R, N) or None."""

    assignment: torch.Tensor  # (B, N) int8
    depth: torch.Tensor  # (B,) int32
    layer: torch.Tensor  # (B,) int16, hidden layer of the latest split (-1: none)
    bound: torch.Tensor  # (B,) float64, the parent's proven lower bound (its worst disjunct)
    alpha: torch.Tensor | None = None
    beta: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.assignment.shape[0])

    def fields(self) -> tuple[torch.Tensor | None, ...]:
        return self.assignment, self.depth, self.layer, self.bound, self.alpha, self.beta


def bytes_per_domain(neurons: int, rows: int, warm: bool, itemsize: int) -> int:
    """Bytes one stored domain takes: assignment, depth, layer, and α, β when warm-started."""
    return neurons + 4 + 2 + 8 + (2 * rows * neurons * itemsize if warm else 0)


class DomainStack:
    """Last in, first out: the children pushed last (the worst domains) are bounded next."""

    def __init__(self, first: Domains) -> None:
        self._buffers: list[torch.Tensor | None] = [None if t is None else t.clone() for t in first.fields()]
        self._top = first.size

    def __len__(self) -> int:
        return self._top

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored domains (the buffers' spare room not counted)."""
        per = sum(t[:1].numel() * t.element_size() for t in self._buffers if t is not None)
        return per * self._top

    def lowest_bound(self) -> float:
        """The lowest parent bound among the stored domains (+inf when empty): a proven lower bound of
        the open rows over every domain still in the stack."""
        bounds = self._buffers[3]
        return float(bounds[:self._top].min()) if self._top else float("inf")

    def pop(self, count: int) -> Domains:
        """The top `count` domains (copies), removed from the stack."""
        start = max(0, self._top - count)
        taken = [None if t is None else t[start:self._top].clone() for t in self._buffers]
        self._top = start
        return Domains(*taken)

    def push(self, batch: Domains) -> None:
        need = self._top + batch.size
        for k, values in enumerate(batch.fields()):
            buffer = self._buffers[k]
            if buffer is None or values is None:
                continue
            if buffer.shape[0] < need:
                grown = buffer.new_empty((max(need, 2 * buffer.shape[0]), *buffer.shape[1:]))
                grown[:self._top] = buffer[:self._top]
                self._buffers[k] = buffer = grown
            buffer[self._top:need] = values
        self._top = need
