"""The disjunctions of a case stacked into rows, and the violation loss every engine minimises or bounds.

Shared by the attack (PGD's loss) and branch and bound (bounds per disjunct, in-box search).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.property import Case


@dataclass(eq=False)
class SpecRows:
    """The disjuncts of a case stacked: C (R, n_out), d (R,), owner (R,) = disjunct index of each row.

    `C64`, `d64` keep the case's own float64 values: float64 re-checks must use them, not C and d
    widened back from the working dtype (float32 rounding of d, ~6e-8 relative, is far beyond what a
    float64 bound's error allowance covers).
    """

    C: torch.Tensor
    d: torch.Tensor
    owner: torch.Tensor
    count: int
    C64: torch.Tensor | None = None
    d64: torch.Tensor | None = None

    @classmethod
    def of(cls, case: Case, dtype: torch.dtype) -> "SpecRows":
        C = np.concatenate([c.C for c in case.disjuncts]).astype(np.float64)
        d = np.concatenate([c.d for c in case.disjuncts]).astype(np.float64)
        owner = np.concatenate([np.full(c.rows, k) for k, c in enumerate(case.disjuncts)])
        C64, d64 = torch.as_tensor(C), torch.as_tensor(d)
        return cls(C64.to(dtype), d64.to(dtype), torch.as_tensor(owner, dtype=torch.long), len(case.disjuncts),
                   C64, d64)

    def subset(self, keep: torch.Tensor, dtype: torch.dtype | None = None) -> "SpecRows":
        """The rows `keep` (R,) bool, disjunct ids renumbered from 0; in float64 from the case's own values."""
        owner = torch.unique(self.owner[keep], sorted=True, return_inverse=True)[1]
        dtype = dtype or self.C.dtype
        cpu_keep = keep.cpu()
        C64 = None if self.C64 is None else self.C64[cpu_keep]
        d64 = None if self.d64 is None else self.d64[cpu_keep]
        if dtype == torch.float64 and C64 is not None:
            C, d = C64.to(self.C.device), d64.to(self.C.device)
        else:
            C, d = self.C[keep].to(dtype), self.d[keep].to(dtype)
        return SpecRows(C, d, owner, int(owner.max()) + 1 if owner.numel() else 0, C64, d64)

    def to(self, device: torch.device | str) -> "SpecRows":
        """The same rows with C, d and owner on `device` (C64, d64 stay where they are)."""
        return SpecRows(self.C.to(device), self.d.to(device), self.owner.to(device), self.count, self.C64, self.d64)

    def float64(self) -> "SpecRows":
        """All rows in float64, from the case's own values."""
        return self.subset(torch.ones_like(self.owner, dtype=torch.bool), torch.float64)

    def per_disjunct(self, rows: torch.Tensor, reduce: str = "amax") -> torch.Tensor:
        """Reduce row values (B, R) to one value per disjunct (B, K) (max or min over its rows)."""
        fill = -math.inf if reduce == "amax" else math.inf
        out = torch.full((rows.shape[0], self.count), fill, dtype=rows.dtype, device=rows.device)
        return out.scatter_reduce(1, self.owner.to(rows.device).expand_as(rows), rows, reduce=reduce)

    def violation(self, y: torch.Tensor) -> torch.Tensor:
        """min over disjuncts of max over its rows of C y - d, for outputs (B, n_out) → (B,); <= 0 iff
        some disjunct holds."""
        return self.per_disjunct(y @ self.C.T - self.d).min(dim=1).values

    def best_row_of_worst_disjunct(self, lower_bounds: torch.Tensor) -> torch.Tensor:
        """Per domain (B,): the row with the highest bound within the disjunct with the lowest such bound
        (the disjunct closest to holding, and the row that keeps it from holding)."""
        worst = self.per_disjunct(lower_bounds).argmin(dim=1)
        in_worst = self.owner.unsqueeze(0) == worst.unsqueeze(1)
        return torch.where(in_worst, lower_bounds, torch.full_like(lower_bounds, -math.inf)).argmax(dim=1)
