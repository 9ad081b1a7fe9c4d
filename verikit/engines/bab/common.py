"""Pieces shared by the branch-and-bound loops: settings, candidate replay, and the bookkeeping that
turns a finished search into an Outcome. The stacked spec is verikit.engines.spec_rows.SpecRows; the
in-box search is verikit.engines.attack.pgd.pgd."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from verikit.engines.crown.propagate import SpecBounds
from verikit.engines.spec_rows import SpecRows
from verikit.core.network import Network
from verikit.core.result import Certificate, DisjunctBounds, Falsified, Proven, Unknown
from verikit.core.property import Case
from verikit.witness.replay import STRICT, Tolerances, validate_batch


@dataclass(frozen=True)
class BabSettings:
    """Knobs of branch and bound, with measured defaults (benchmarks/bench_bab.py).

    `branching`: "input" (bisect input coordinates), "relu" (split unstable neurons) or "auto" (input
    when n_inputs <= `input_split_max_dims`). `max_domains` caps the open-domain queue by count, `max_queue_bytes` by memory (ReLU branching).
    """

    branching: str = "auto"
    input_split_max_dims: int = 16
    dtype: torch.dtype = torch.float32  # working dtype; float64 re-checks near-proofs either way
    max_domains: int = 1_000_000
    # input branching
    batch_size: int = 1024  # boxes bounded per call
    input_score: str = "chained"  # "chained", "autograd" or "width" (verikit.engines.bab.branching)
    refine: bool = True  # CROWN on the neurons that forward/interval bounds leave unstable
    input_alpha_steps: int = 5  # α-CROWN iterations on boxes CROWN leaves open...
    input_alpha_lr: float = 0.5
    input_alpha_after: int = 2000  # ...once this many boxes were bounded (easy cases never pay for it)
    attack_every: int = 1  # in-box PGD every this many batches (0: never)
    attack_domains: int = 32  # worst open boxes attacked per round
    attack_restarts: int = 4
    attack_steps: int = 8
    # relu branching
    relu_batch_size: int = 64  # split assignments bounded per call
    relu_alpha_steps: int = 20  # α-CROWN iterations at the root
    relu_beta_steps: int = 10  # α/β-CROWN iterations per batch of split assignments
    relu_lr: float = 0.1
    relu_branching: str = "fsb"  # "babsr" (best score) or "fsb" (look ahead at the best few), branching.py
    fsb_candidates: int = 4  # candidates per domain whose children FSB bounds before choosing
    relu_warm_start: bool = True  # children start from the parent's α and β (else root α, β = 0)
    relu_refine: bool = False  # CROWN on the layers after a domain's latest split (crown/refine.py)
    relu_attack_every: int = 0  # one round of the attack engine on the whole box every this many batches (0: never;
    # off by default: no gain at --timeout 30, up to +73 % time on unsat MNIST-FC, benchmarks/relu_attack_rounds.py)
    relu_attack_restarts: int = 64
    relu_attack_steps: int = 100  # PGD steps of that round, then as many Adam steps
    # root hidden bounds tightened by branching (bab/tighten.py): leaves per neuron side (0: off)
    relu_tighten_leaves: int = 32
    relu_tighten_max_leaves: int = 512  # later passes take 4x the leaves, up to this many
    relu_tighten_steps: int = 5  # α/β Adam steps per batch of those leaves
    relu_tighten_share: float = 0.3  # most of the remaining budget the tightening may take
    relu_probe_share: float = 0.1  # share of the budget the search gets after the first pass, before the later ones
    max_queue_bytes: int = 2_000_000_000  # open ReLU-split domains, everything stored per domain
    lp_max_unstable: int = 0  # LP (bab/leaf.py) on open domains with 1..this many free unstable neurons
    relu_hull_max_nonzeros: int = 5_000_000  # one hidden layer: the input-space hull LP (bab/hull.py) per open
    # disjunct at the root when its constraints have at most this many nonzeros (0: off)
    gpu_memory_fraction: float = 0.5  # on CUDA, batch sizes fill this share of free memory (bab/device.py)
    # S-shaped activations (verikit.engines.bab.activation_split)
    activation_batch_size: int = 128  # domains bounded per call
    activation_split: str = "midpoint"  # "midpoint" or "inflection" (at 0 when central, else the midpoint)
    activation_queue_bytes: int = 1 << 30  # memory cap of the open-domain queue
    activation_beta_steps: int = 10  # Adam steps on β (split multipliers) and α per batch (0: fixed bounds)
    activation_lr: float = 0.1
    tolerances: Tolerances = field(default=STRICT)


def minimising_corner(coeff: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Corner of each box (B, n) minimising the linear functions coeff (B, n)."""
    return torch.where(coeff > 0, lower, upper)


@dataclass
class Validator:
    """Replays promising candidates through onnxruntime (verikit.witness.replay), at most `limit` per call."""

    network: Network
    case: Case
    tolerances: Tolerances
    limit: int = 8
    replayed: int = 0

    def first(self, x: torch.Tensor, violation: torch.Tensor, *, best: int = 0) -> Falsified | None:
        """A replayed counterexample among candidates x (B, n) whose float violation (B,) is <= ~0, and
        the `best` lowest ones whatever their violation (a PGD's end points: onnxruntime rounds otherwise
        than torch, and may see a violation torch misses)."""
        promising = violation <= 1e-6 * (1 + violation.abs())
        if best > 0:
            promising = promising | (torch.argsort(torch.argsort(violation)) < best) & torch.isfinite(violation)
        if not bool(promising.any()):
            return None
        chosen = torch.argsort(torch.where(promising, violation, torch.full_like(violation, math.inf)))
        chosen = chosen[: min(self.limit, int(promising.sum()))]
        self.replayed += int(chosen.numel())
        found = validate_batch(self.network, self.case, x[chosen].double().cpu().numpy(), self.tolerances)
        return Falsified(found) if found is not None else None


@dataclass
class SearchStats:
    """Counters reported in a certificate's detail or an Unknown's reason."""

    domains: int = 0  # domains bounded
    batches: int = 0
    max_depth: int = 0
    max_queue: int = 0
    rechecked: int = 0  # near-proofs re-bounded in float64
    replayed: int = 0  # candidates replayed through onnxruntime
    stuck: int = 0  # leaves of relu branching left undecided
    lp_domains: int = 0  # domains with few free neurons given an LP (bab/leaf.py)
    lp_refuted: int = 0
    attack_rounds: int = 0  # rounds of the attack engine inside the search (ReLU branching)
    hull_lps: int = 0  # disjuncts given the hull LP at the root (bab/hull.py)
    hull_refuted: int = 0
    hull_seconds: float = 0.0
    tightened: str = ""  # what the root tightening did (bab/tighten.py), empty when it did not run

    def count(self, domains: int, depth: int) -> None:
        self.domains += domains
        self.batches += 1
        self.max_depth = max(self.max_depth, depth)

    def with_replays(self, validator: Validator) -> "SearchStats":
        self.replayed = validator.replayed
        return self

    def detail(self, **extra) -> dict:
        return {"domains": self.domains, "batches": self.batches, "max_depth": self.max_depth,
                "max_queue": self.max_queue, "float64_rechecks": self.rechecked,
                "replayed_candidates": self.replayed, "lp_domains": self.lp_domains,
                "lp_refuted": self.lp_refuted,
                **({"attack_rounds": self.attack_rounds} if self.attack_rounds else {}),
                **({"hull_lps": self.hull_lps, "hull_refuted": self.hull_refuted,
                    "hull_seconds": round(self.hull_seconds, 3)} if self.hull_lps else {}),
                **({"tightened": self.tightened} if self.tightened else {}), **extra}


def root_disjunct_bounds(bounds: SpecBounds, spec: SpecRows, method: str) -> tuple[DisjunctBounds, ...]:
    """Per-disjunct DisjunctBounds of the first domain of `bounds` (the root)."""
    lower = bounds.lower[0].detach().double().cpu().numpy()
    owner = spec.owner.cpu().numpy()
    return tuple(DisjunctBounds(lower[owner == k].copy(), method) for k in range(spec.count))


def proven(method: str, stats: SearchStats, **extra) -> Proven:
    return Proven(Certificate(method=method, detail=stats.detail(**extra)))


def unknown(reason: str, stats: SearchStats, root: tuple[DisjunctBounds, ...], *, timed_out: bool = False) -> Unknown:
    lps = f", {stats.lp_domains} LPs, {stats.lp_refuted} refuted" if stats.lp_domains else ""
    tightened = f", {stats.tightened}" if stats.tightened else ""
    return Unknown(f"{reason} ({stats.domains} domains bounded, depth {stats.max_depth}{lps}{tightened})", root,
                   timed_out)
