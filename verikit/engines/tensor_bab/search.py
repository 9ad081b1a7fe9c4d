"""The tensor branch-and-bound loop: pop the lowest-bound domains, split each at its chosen ReLU, bound
both children in one auto_LiRPA batch, keep the open ones.

Every domain closed means each of its disjuncts has a row whose widened lower bound (float32 bound minus
the driver's slack, verikit.engines.lirpa.driver.widen) is > 0; the two children of a split cover their
parent, so the closed domains cover the box. That slack is an estimate, so the search's float32 verdict
is not a proof. On a network with a float64 graph form every domain the float32 bound closes is
confirmed on its own (verikit.engines.tensor_bab.confirm: rigorous float64 CROWN with the domain's splits
and the root's α); one that fails stays open and is split further, so Proven means every leaf was closed
rigorously. Without that form the case is Proven only when verikit confirms it on the whole box in
rigorous float64 arithmetic (verikit.engines.lirpa.engine.confirm_case); otherwise Unknown, saying so.
Falsified only with a candidate
(the corner of the box minimising a domain's worst row) replayed through onnxruntime. Everything else —
budget out, queue over its byte cap, a domain with no unstable neuron left yet open — is Unknown with
the reason.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from verikit.core.property import Case
from verikit.core.result import Budget, Certificate, DisjunctBounds, Falsified, Proven, StepTimer, Unknown
from verikit.engines.bab.common import Validator
from verikit.engines.lirpa.driver import REFUTATION_RTOL, limitation, widen
from verikit.engines.spec_rows import SpecRows
from verikit.engines.tensor_bab import bounding
from verikit.engines.tensor_bab.confirm import DomainConfirmer
from verikit.engines.tensor_bab.domains import Domain, DomainQueue, branch_choice, children, unpack
from verikit.engines.tensor_bab.settings import TensorBabSettings
from verikit.witness.replay import Tolerances

METHOD = "tensor-bab"


class _Judge:
    """Widens raw bounds (B, R) and reduces them per disjunct: a row refutes its disjunct when > 0."""

    def __init__(self, bounded, case: Case, spec: SpecRows):
        center = (case.box.lower + case.box.upper) / 2.0
        y_center = bounded.network.forward(center[None]).double().cpu().numpy()[0]
        C64, d64 = spec.C64.numpy(), spec.d64.numpy()
        self.center_term = np.abs(C64) @ np.abs(y_center)
        self.d = d64
        self.spec = spec

    def widened(self, raw: np.ndarray) -> np.ndarray:
        return widen(raw, self.d[None, :], self.center_term[None, :])

    def per_disjunct(self, widened: np.ndarray) -> np.ndarray:
        """Best row bound per disjunct (B, K)."""
        return self.spec.per_disjunct(torch.as_tensor(widened)).numpy()

    def open_rows(self, widened: np.ndarray) -> torch.Tensor:
        """(B, R) bool: rows of the disjuncts not refuted yet."""
        refuted = self.per_disjunct(widened) > 0
        return torch.as_tensor(~refuted[:, self.spec.owner.numpy()])


def _root_bounds(judge: _Judge, widened: np.ndarray) -> tuple[DisjunctBounds, ...]:
    owner = judge.spec.owner.numpy()
    return tuple(DisjunctBounds(widened[owner == k].copy(), METHOD) for k in range(judge.spec.count))


def _batch_size(per_domain_bytes: int, settings: TensorBabSettings, cap_bytes: int) -> int:
    if not cap_bytes:
        return settings.batch_size
    return max(1, min(settings.batch_size, cap_bytes // max(1, per_domain_bytes)))


def per_domain_bytes(root: bounding.Root, rows: int) -> int:
    """Estimated bytes one domain adds to a batch: the final backward pass's (rows x node) matrices (lower
    bound only, a few temporaries alive at once), the clamped intermediate bounds and the repeated α."""
    largest = max([int(np.prod(low.shape[1:])) for low, _ in root.intermediate.values()] + [root.x_lower.numel()])
    intermediate = sum(2 * int(np.prod(low.shape[1:])) for low, _ in root.intermediate.values())
    alpha = sum(int(a.numel()) for a in (root.alpha or {}).values())
    matrices = 3 * rows * largest
    values = matrices + 2 * intermediate + alpha + sum(2 * rows * layer.size for layer in root.layers)
    return 4 * values


def search(bounded, case: Case, budget: Budget, settings: TensorBabSettings, *, cap_bytes: int,
           tolerances: Tolerances) -> Proven | Falsified | Unknown:
    """Decide `case` by ReLU splitting on the auto_LiRPA graph of `bounded` (a BoundedNetwork)."""
    started = time.monotonic()
    spec = SpecRows.of(case, torch.float32)
    judge = _Judge(bounded, case, spec)
    validator = Validator(bounded.network, case, tolerances, limit=settings.replay_limit)

    def root_done(raw: np.ndarray) -> bool:
        return bool(np.all(judge.per_disjunct(judge.widened(raw)) > 0)) or budget.expired()

    root = bounding.prepare_root(bounded, case.box.lower, case.box.upper, spec.C64.numpy(),
                                 alpha_steps=settings.root_alpha_steps, alpha_lr=settings.alpha_lr,
                                 stop_alpha=root_done, budget=budget.share(settings.root_alpha_share))
    root_widened = judge.widened(root.raw_lower[None])[0]
    found = _root_bounds(judge, root_widened)
    stats = {"domains": 1, "batches": 0, "max_depth": 0, "max_queue": 0, "max_queue_bytes": 0}

    def detail(**extra) -> dict:
        return {**stats, "replayed_candidates": validator.replayed, "refutation_rtol": REFUTATION_RTOL,
                "seconds": round(time.monotonic() - started, 3), **extra}

    confirmer = DomainConfirmer.build(bounded, case, spec, root)
    if isinstance(confirmer, str):
        stats["no_domain_confirmation"], confirmer = confirmer, None
    if all(item.refuted for item in found):
        whole = _confirmed(bounded, case, found, detail())
        if isinstance(whole, Proven) or confirmer is None or not root.layers:
            return whole  # else the root is split until its leaves are confirmed one by one
    if not root.layers:
        return Unknown("tensor branch and bound: the network has no ReLU to split", found)
    batch = _batch_size(per_domain_bytes(root, spec.C.shape[0]), settings, cap_bytes)
    branch = _Branching(bounded, spec, judge, validator, confirmer, settings, batch, stats, found)
    tighten = confirmer is not None and settings.hidden_alpha_steps > 0
    needed = bounding.hidden_alpha_bytes(bounded.module, root) if tighten else 0
    if cap_bytes and needed > cap_bytes:
        stats["no_hidden_alpha"] = (f"the hidden layers' α would need about {needed / 2**30:.1f} GiB, above "
                                    f"bounds.max_matrix_bytes")
        tighten = False
    outcome = branch.run(root, budget.share(settings.hidden_alpha_after) if tighten else budget, started)
    if not tighten or not (isinstance(outcome, Unknown) and outcome.timed_out) or budget.expired():
        return _finished(outcome, bounded, case, branch, confirmer, detail)
    # Open after the probe: optimise the hidden layers' slopes too, derive the box's bounds from them
    # rigorously (float64), and go on from the probe's open domains with that tighter root.
    tightening = time.monotonic()
    try:
        hidden = bounding.optimise_hidden(bounded, root, steps=settings.hidden_alpha_steps, lr=settings.alpha_lr,
                                          stop_alpha=root_done, budget=budget.share(settings.hidden_alpha_share))
    except Exception as error:  # noqa: BLE001 - re-raised unless it is a known auto_LiRPA limitation
        if limitation(error, "optimise the hidden layers' bounds", bounded.network.source) is None:
            raise
        return outcome  # the probe's own unknown
    root = bounding.with_hidden_bounds(root, confirmer.use_hidden(root, hidden), hidden)
    confirmer.use_root(root)
    stats["hidden_alpha_seconds"] = round(time.monotonic() - tightening, 3)
    stats["probe_domains"] = stats["domains"]
    resumed = branch.open_domains()
    stats["resumed_domains"] = len(resumed)
    outcome = branch.run(root, budget, started, resume=resumed)
    return _finished(outcome, bounded, case, branch, confirmer, detail)


def _finished(outcome, bounded, case: Case, branch: "_Branching", confirmer, detail) -> Proven | Falsified | Unknown:
    """The search's answer: every domain closed (None from the loop) becomes a certificate."""
    if outcome is not None:
        return outcome
    if confirmer is not None:
        return Proven(Certificate(METHOD, branch.found, {
            **detail(batch_size=branch.batch), "confirmed_domains": confirmer.confirmed,
            "rejected_domains": confirmer.rejected,
            "confirmed_by": "every closed domain re-bounded by verikit's rigorous float64 graph CROWN"}))
    return _confirmed(bounded, case, branch.found, detail(batch_size=branch.batch))


class _Branching:
    """The branch-and-bound loop from one root. The search may run it twice: from the cheap root, then,
    resuming the open domains the first run left (`open_domains`), from the root with optimised hidden
    bounds. Every domain the first run closed was confirmed on its own, so the proof stays a tree of
    closed leaves whichever root bounded each of them."""

    def __init__(self, bounded, spec: SpecRows, judge: _Judge, validator: Validator, confirmer,
                 settings: TensorBabSettings, batch: int, stats: dict, found: tuple[DisjunctBounds, ...]):
        self.bounded, self.spec, self.judge, self.validator = bounded, spec, judge, validator
        self.confirmer, self.settings, self.batch, self.stats, self.found = confirmer, settings, batch, stats, found
        self.queue = DomainQueue()

    def open_domains(self) -> list[Domain]:
        """The open domains of the last run, lowest bound first (the queue is emptied)."""
        return self.queue.pop(len(self.queue))

    def run(self, root: bounding.Root, budget: Budget, started: float,
            resume: list[Domain] | None = None) -> Falsified | Unknown | None:
        """None when every domain was closed, else the answer (Unknown timed_out at `budget`'s end). With
        `resume`, those domains (a cover of what is left open) are bounded again from `root` first,
        instead of the root's single domain."""
        judge, settings, stats = self.judge, self.settings, self.stats
        root_widened = judge.widened(root.raw_lower[None])[0]
        self.queue = queue = DomainQueue()
        root_bound = float(judge.per_disjunct(root_widened[None]).min())
        if root_bound > 0 and self.confirmer is not None and self.confirmer.closes([[]])[0][0]:
            return None  # the root itself, re-bounded rigorously with its (optimised) α
        pending: list[Domain] = []
        if resume:
            pending = sorted(resume)
        else:
            first = bounding.bound_batch(self.bounded, root, [[]])
            if first.candidates is not None:
                falsified = _try_candidates(self.bounded, self.spec, self.validator, first.candidates,
                                            root_widened[None])
                if falsified is not None:
                    return falsified
            choice = branch_choice(first.layer_bounds, first.relu_coefficients, judge.open_rows(root_widened[None]))[0]
            if choice is None:
                return Unknown("tensor branch and bound: no unstable ReLU at the root, yet the bounds leave the case "
                               "open", self.found)
            queue.push(root_bound, np.zeros(0, dtype=np.int64), choice)
        timer = StepTimer(budget)  # stop before a batch as long as the longest so far would overrun the budget
        while len(queue) or pending:
            open_count = len(queue) + len(pending)
            lowest = min([queue.worst()] + [domain.bound for domain in pending[:1]])
            if timer.out_of_time():
                hidden = ("" if "hidden_alpha_seconds" not in stats else
                          f"; resumed the {stats['resumed_domains']} open domains of its first "
                          f"{stats['probe_domains']} from the root with optimised hidden bounds "
                          f"({stats['hidden_alpha_seconds']:.1f} s)")
                return Unknown(f"tensor branch and bound ran out of time with {open_count} open domains "
                               f"(lowest bound {lowest:.4g}; {stats['domains']} domains bounded in "
                               f"{time.monotonic() - started:.1f} s{hidden})", self.found, timed_out=True)
            if settings.domain_limit and stats["domains"] >= settings.domain_limit:
                return Unknown(f"tensor branch and bound reached tensor_bab.domain_limit with {open_count} "
                               f"open domains (lowest bound {lowest:.4g}; {stats['domains']} domains bounded in "
                               f"{time.monotonic() - started:.1f} s)", self.found)
            if pending:  # bounded again as they are, then split like any other
                taken, pending = pending[:self.batch], pending[self.batch:]
                splits, warm = [domain.splits for domain in taken], [domain.beta for domain in taken]
            else:
                parents = queue.pop(max(1, self.batch // 2))
                splits = [child for parent in parents for child in children(parent)]
                warm = [parent.beta for parent in parents for _ in (0, 1)]
            outcome = self._bound(root, splits, warm)
            if outcome is not None:
                return outcome
        return None

    def _bound(self, root: bounding.Root, splits: list[np.ndarray], warm: list) -> Falsified | Unknown | None:
        """Bound one batch of domains; queue the open ones (None), or the answer the batch gives."""
        bounded, spec, judge, settings, stats, queue = (self.bounded, self.spec, self.judge, self.settings,
                                                        self.stats, self.queue)
        result = bounding.bound_batch(bounded, root, [unpack(s) for s in splits],
                                      refine_layers=settings.refine_layers, beta_steps=settings.beta_steps,
                                      beta_lr=settings.beta_lr, alpha_lr=settings.alpha_lr, warm_beta=warm)
        stats["domains"] += len(splits)
        stats["batches"] += 1
        stats["max_depth"] = max(stats["max_depth"], max(s.size for s in splits))
        widened = judge.widened(result.raw_lower)
        worst = judge.per_disjunct(widened).min(axis=1)
        if result.candidates is not None:
            falsified = _try_candidates(bounded, spec, self.validator, result.candidates, widened)
            if falsified is not None:
                return falsified
        if self.confirmer is not None:
            closed = np.flatnonzero(worst > 0)
            if closed.size:
                rigorous, rigorous_worst = self.confirmer.closes([unpack(splits[i]) for i in closed],
                                                                 alpha=_rows_of(result.alpha, closed),
                                                                 beta=_rows_of(result.beta, closed))
                worst[closed[~rigorous]] = np.minimum(rigorous_worst[~rigorous], 0.0)  # open again: split on
        open_ = np.flatnonzero(~(worst > 0))
        if open_.size == 0:
            return None
        choices = branch_choice([(low[open_], high[open_]) for low, high in result.layer_bounds],
                                [None if c is None else c[open_] for c in result.relu_coefficients],
                                judge.open_rows(widened[open_]))
        for index, choice in zip(open_, choices):
            if choice is None:
                return Unknown("tensor branch and bound: a domain with every unstable ReLU split stays open "
                               f"(bound {worst[index]:.4g}; tensor_bab.beta_steps={settings.beta_steps})", self.found)
            queue.push(float(worst[index]), splits[index], choice,
                       None if result.split_beta is None else result.split_beta[index])
        stats["max_queue"] = max(stats["max_queue"], len(queue))
        stats["max_queue_bytes"] = max(stats["max_queue_bytes"], queue.nbytes)
        if len(queue) > settings.max_domains or queue.nbytes > settings.max_queue_bytes:
            return Unknown(f"tensor branch and bound: the open-domain queue reached its cap ({len(queue)} domains, "
                           f"{queue.nbytes / 2**20:.1f} MiB; tensor_bab.max_domains / tensor_bab.max_queue_bytes)",
                           self.found)
        return None


def _rows_of(per_layer: list[torch.Tensor | None] | None, index: np.ndarray) -> list[torch.Tensor | None] | None:
    """The domains `index` of per-layer (B, ...) tensors (None stays None)."""
    if per_layer is None:
        return None
    selected = torch.as_tensor(index, dtype=torch.long)
    return [None if t is None else t[selected] for t in per_layer]


def _confirmed(bounded, case: Case, found: tuple[DisjunctBounds, ...], detail: dict) -> Proven | Unknown:
    """Proven when verikit's rigorous float64 bounds confirm the float32 search's verdict, else Unknown."""
    from verikit.engines.lirpa.engine import confirm_case

    reason = confirm_case(bounded, case)
    if reason is not None:
        return Unknown(f"tensor branch and bound closes every domain in float32 ({detail['domains']} domains), "
                       f"which is not a proof: {reason}", found)
    return Proven(Certificate(METHOD, found, {**detail, "confirmed_by": "verikit rigorous float64 bounds"}))


def _try_candidates(bounded, spec: SpecRows, validator: Validator, candidates: torch.Tensor,
                    widened: np.ndarray) -> Falsified | None:
    """Replay the corner minimising each domain's worst open row (when the torch forward says it may violate)."""
    rows = spec.best_row_of_worst_disjunct(torch.as_tensor(widened))
    x = candidates[torch.arange(candidates.shape[0]), rows].detach().double().cpu()
    with torch.no_grad():
        y = bounded.network.forward(x.numpy()).double()
    violation = spec.float64().violation(y)
    return validator.first(x, violation)
