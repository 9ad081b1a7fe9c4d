"""The direct top-k method: the label stays among the k highest outputs iff fewer than k others can reach it.

Over a box, class j *can reach* the label unless a rigorous lower bound of the margin `y[label] - y[j]`
is > 0 (verikit.engines.crown.confirm.rigorous_lower_bounds: outward-rounded intervals, then float64
CROWN/alpha-CROWN on a ReLU MLP). When fewer than k classes can reach it on every box of a cover of the
input box, no input has k others at or above the label: the property holds. Open boxes are split in two
along the input whose width times margin gradient is largest, and a margin proven on a box stays proven
on its halves (the parent's bound holds there too).

This needs n-1 margin rows per box, where the normal form (verikit.spec.topk) needs C(n-1, k) disjuncts of
k rows; on one box both prove exactly the same thing (every set S of k others holds a proven row iff
fewer than k rows are open). Counterexamples: the centres of open boxes and a short signed-gradient
search on the k-th largest margin, each replayed through onnxruntime against the case itself
(verikit.witness.replay). `TopKEngine` runs it in the portfolio (portfolio.topk=direct, the default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from verikit.core.property import Case
from verikit.core.result import Budget, Certificate, Falsified, Outcome, Proven, Unknown
from verikit.engines.problem import Problem
from verikit.spec.topk import pairwise_rows, top_k_form
from verikit.witness.replay import validate_batch


@dataclass(frozen=True)
class TopKSettings:
    """`max_boxes` boxes bounded at most, `batch` boxes per bound call, `attack_steps` gradient steps."""

    max_boxes: int = 4096
    max_split_inputs: int = 16  # more inputs than this: the root bound only (input splitting cannot pay), and
    # the case stays open for the normal form's engines (ReLU branch and bound) in the rest of the schedule
    batch: int = 16
    attack_steps: int = 30
    attack_starts: int = 8


def margin_rows(label: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """C (n-1, n) with rows `e_label - e_j` for j != label (ascending), d zeros; and the js (n-1,)."""
    others = np.array([j for j in range(n) if j != label])
    return pairwise_rows(label, others, n), others


def _try_points(problem: Problem, case: Case, label: int, k: int, points: np.ndarray):
    """A counterexample of `case` among `points` (N, n_inputs) with k others at or above the label, replayed
    through onnxruntime against the case itself (verikit.witness.replay), or None."""
    network = problem.network
    if points.shape[0] == 0:
        return None
    box = case.box
    ys = network.replay(np.clip(points, box.lower, box.upper).astype(np.float32))
    for point, y in zip(points, ys):
        others = np.array([j for j in np.argsort(-y) if j != label])[:k]
        if np.all(y[others] >= y[label]):
            found = validate_batch(network, case, point[None], problem.tolerances)
            if found is not None:
                return found
    return None


def _kth_margin(y: torch.Tensor, label: int, k: int) -> torch.Tensor:
    """The k-th largest of `y[j] - y[label]` over j != label (B,); >= 0 means a violation."""
    gaps = y - y[:, label:label + 1]
    gaps = torch.cat([gaps[:, :label], gaps[:, label + 1:]], dim=1)
    return torch.topk(gaps, k, dim=1).values[:, -1]


def attack(problem: Problem, case: Case, label: int, k: int, settings: TopKSettings, seed: int = 0):
    """Signed-gradient ascent of the k-th largest margin from the centre and random starts; replayed."""
    box = case.box
    lower = torch.tensor(box.lower, dtype=torch.float32)
    upper = torch.tensor(box.upper, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    starts = lower + (upper - lower) * torch.rand((settings.attack_starts, box.size), generator=generator)
    x = torch.cat([((lower + upper) / 2)[None], starts])
    step = (upper - lower) / 8
    for number in range(settings.attack_steps):
        x.requires_grad_(True)
        score = _kth_margin(problem.network.module(x), label, k)
        (grad,) = torch.autograd.grad(score.sum(), x)
        with torch.no_grad():
            if bool((score >= 0).any()):
                found = _try_points(problem, case, label, k, x[score >= 0].double().numpy())
                if found is not None:
                    return found
            x = torch.clamp(x + step * torch.sign(grad) * (0.5 + 0.5 * np.cos(np.pi * number / settings.attack_steps)),
                            lower, upper).detach()
    return _try_points(problem, case, label, k, x.double().numpy())


def _split_dims(problem: Problem, lower: np.ndarray, upper: np.ndarray, label: int, open_rows: np.ndarray,
                others: np.ndarray) -> np.ndarray:
    """Per box (B,), the input to split: largest width x |gradient of the open margins' sum| at the centre."""
    x = torch.tensor((lower + upper) / 2, dtype=torch.float32, requires_grad=True)
    y = problem.network.module(x)
    weights = torch.tensor(open_rows, dtype=torch.float32)
    margins = y[:, label:label + 1] - y[:, torch.tensor(others)]
    (grad,) = torch.autograd.grad((margins * weights).sum(), x)
    score = (upper - lower) * (np.abs(grad.double().numpy()) + 1e-12)
    return np.argmax(score, axis=1)


def decide_top_k(problem: Problem, case: Case, label: int, k: int, budget: Budget,
                 settings: TopKSettings = TopKSettings()) -> Proven | Falsified | Unknown:
    """Is `label` among the k highest outputs on every point of the box case `case` (whose disjuncts are
    the top-k normal form of label and k)? Proven (rigorous bounds on a cover of the box), Falsified (a
    replayed witness) or Unknown (box budget or time out)."""
    box = case.box
    from verikit.core.errors import EngineLimitation
    from verikit.engines.crown.confirm import exact_mlp, rigorous_lower_bounds

    n = problem.network.n_outputs
    if not 1 <= k <= n - 1:
        return Unknown(f"k must lie in 1..{n - 1}, got {k}")
    try:
        pwl = problem.checked_piecewise_linear(Case(box, ()))
    except EngineLimitation as limitation:
        return Unknown(f"the direct top-k method needs rigorous bounds: {limitation}")
    mlp = exact_mlp(pwl)
    found = attack(problem, case, label, k, settings, seed=problem.seed)
    if found is not None:
        return Falsified(found)
    C, others = margin_rows(label, n)
    queue = [(box.lower, box.upper, np.full(n - 1, -np.inf))]
    bounded = splits = 0
    while queue:
        if budget.expired():
            return Unknown(f"top-{k} direct: {len(queue)} boxes open after {bounded} bounded", timed_out=True)
        if bounded >= settings.max_boxes:
            return Unknown(f"top-{k} direct: {len(queue)} boxes open after {bounded} bounded (max_boxes)")
        chunk, queue = queue[: settings.batch], queue[settings.batch:]
        lower = np.stack([c[0] for c in chunk])
        upper = np.stack([c[1] for c in chunk])
        inherited = np.stack([c[2] for c in chunk])
        # fewer than k rows refuted is the common case here, and the search splits such a box rather than
        # paying for its hidden bounds' α
        best = np.maximum(rigorous_lower_bounds(pwl, mlp, lower, upper, C, np.zeros(n - 1),
                                                  hidden_steps=0), inherited)
        bounded += len(chunk)
        open_rows = best <= 0
        still = open_rows.sum(axis=1) >= k
        if not still.any():
            continue
        lower, upper, best, open_rows = lower[still], upper[still], best[still], open_rows[still]
        found = _try_points(problem, case, label, k, (lower + upper) / 2)
        if found is not None:
            return Falsified(found)
        if box.size > settings.max_split_inputs:
            return Unknown(f"top-{k} direct: {int(open_rows[0].sum())} classes can reach the label at the root and "
                           f"{box.size} inputs are too many to split (max_split_inputs {settings.max_split_inputs})")
        dims = _split_dims(problem, lower, upper, label, open_rows, others)
        for lo, hi, bound, dim in zip(lower, upper, best, dims):
            if hi[dim] <= lo[dim]:
                return Unknown(f"top-{k} direct: a box is a point in its widest input and still open")
            middle = (lo[dim] + hi[dim]) / 2
            left_hi, right_lo = hi.copy(), lo.copy()
            left_hi[dim], right_lo[dim] = middle, middle
            queue += [(lo, left_hi, bound), (right_lo, hi, bound)]
            splits += 1
    method = "intervals+crown" if mlp is not None else "intervals"
    return Proven(Certificate(method=f"top-k-direct({method})", detail={"boxes": bounded, "splits": splits, "k": k,
                                                                         "label": label}))


@dataclass(frozen=True)
class TopKEngine:
    """The direct method as a portfolio engine: it decides the box cases whose disjuncts are the `top-k`
    normal form (verikit.spec.topk.top_k_form, k >= 2) and leaves every other case open."""

    settings: TopKSettings = TopKSettings()
    name: str = "bab"
    method: str = "top-k-direct"

    def supports(self, problem: Problem) -> str | None:
        return None

    def run(self, problem: Problem, case: Case, budget: Budget) -> Outcome:
        form = top_k_form(case.disjuncts, problem.network.n_outputs) if case.is_box else None
        if form is None:
            return Unknown("not a top-k case (the normal form of verikit.spec.topk over a box)")
        return decide_top_k(problem, case, *form, budget, self.settings)

    def settings_dict(self) -> dict:
        return asdict(self.settings)
