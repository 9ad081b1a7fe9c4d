"""Rigorous confirmation of the tensor search's closed domains, one by one, on the float64 graph form.

The search bounds domains with auto_LiRPA in float32; a domain it closes counts only when the float64
graph CROWN (verikit.engines.crown.graph, a derived rounding allowance) refutes every disjunct on it too,
with the same splits, the root's α and the domain's β. A domain that fails is split further, so a proof
is the tree of rigorously closed domains: the two children of a split cover their parent, whichever
tensor the float64 form's ReLU k is, so the leaves cover the box.

ReLU k of the search (auto_LiRPA's graph order) is ReLU k of the form (its node order); the two orders
are checked to have the same shapes, else there is no confirmer and the search falls back to confirming
the whole box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verikit.core.errors import ModelError
from verikit.engines.spec_rows import SpecRows


@dataclass(eq=False)
class DomainConfirmer:
    """Rigorous lower bounds of split domains of one box (`bounds`), and how many it has confirmed."""

    form: object  # verikit.engines.crown.graph.GraphForm
    spec: SpecRows
    lower: np.ndarray
    upper: np.ndarray
    alpha: list[torch.Tensor | None]
    root: object = None  # the form's BoxBounds, computed on first use (seconds on a ResNet)
    confirmed: int = 0
    rejected: int = 0

    @classmethod
    def build(cls, bounded, case, spec: SpecRows, root) -> "DomainConfirmer | str":
        """The confirmer of `case`'s box, or why there is none (str)."""
        from verikit.engines.crown.graph import GraphForm

        form = bounded.pwl
        if not isinstance(form, GraphForm):
            return "domains are confirmed one by one only on the float64 graph form"
        shapes = [tuple(shape) for _, shape in form.relu_inputs()]
        if shapes != [tuple(layer.shape) for layer in root.layers]:
            return "the float64 graph form's ReLUs do not line up with auto_LiRPA's"
        try:
            form.check(bounded.network, case.box)
        except ModelError as error:
            return str(error)
        return cls(form, spec, case.box.lower, case.box.upper, _final_alpha(spec, root))

    def use_hidden(self, root, hidden) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Re-derive the box's rigorous bounds with the hidden layers' slopes of `hidden` (a
        bounding.HiddenAlpha for the search's `root`); returns the split layers' new float64 bounds by
        auto_LiRPA name, for the search to bound its domains with (then `use_root` with the new root)."""
        names = [name for name, _ in self.form.relu_inputs()]
        shapes = dict(self.form.relu_inputs())
        form_name = {layer.name: name for layer, name in zip(root.layers, names)}
        slopes: dict[str, dict[str, torch.Tensor]] = {}
        for node, source in zip(root.relu_nodes, names):
            for start, value in hidden.slopes.get(node.name, {}).items():
                target = form_name[start]
                if value.shape[1] == int(np.prod(shapes[target])) and tuple(value.shape[2:]) == shapes[source]:
                    slopes.setdefault(target, {})[source] = value
        self.root = self.form.box_bounds(self.lower, self.upper, slopes)
        return {layer.name: self.root.bounds[name] for layer, name in zip(root.layers, names)}

    def use_root(self, root) -> None:
        """Take the final α of the search's (new) root."""
        self.alpha = _final_alpha(self.spec, root)

    def bounds(self, splits: list[list[tuple[int, int, bool]]], alpha: list[torch.Tensor | None] | None = None,
               beta: list[torch.Tensor | None] | None = None) -> np.ndarray:
        """Rigorous lower bounds (B, R) of C y - d on each domain, with the domains' own α per layer
        ((B, R, size), None: the root's) and β ((B, R, size) or None)."""
        if self.root is None:
            self.root = self.form.box_bounds(self.lower, self.upper)
        slopes = self.alpha if alpha is None else [own if own is not None else root
                                                   for own, root in zip(alpha, self.alpha)]
        return self.form.split_lower_bounds(self.root, self.spec.C64.numpy(), self.spec.d64.numpy(), splits,
                                            alpha=slopes, beta=beta)

    def closes(self, splits: list[list[tuple[int, int, bool]]], alpha: list[torch.Tensor | None] | None = None,
               beta: list[torch.Tensor | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(closed (B,) bool: every disjunct refuted rigorously, the worst disjunct's rigorous bound (B,))."""
        per_disjunct = self.spec.per_disjunct(torch.as_tensor(self.bounds(splits, alpha, beta))).numpy()
        worst = per_disjunct.min(axis=1)
        closed = worst > 0
        self.confirmed += int(closed.sum())
        self.rejected += int((~closed).sum())
        return closed, worst


def _final_alpha(spec: SpecRows, root) -> list[torch.Tensor | None]:
    """The root's α (1, R, size) per ReLU; None (sparse or absent): the adaptive slope."""
    from verikit.engines.tensor_bab.bounding import lower_slopes

    rows = spec.C64.shape[0]
    alpha = []
    for layer, node in zip(root.layers, root.relu_nodes):
        found = (root.alpha or {}).get(node.name)  # (2, R, 1, *shape): lower and upper
        alpha.append(None if found is None else lower_slopes(found[0], layer, rows))
    return alpha
