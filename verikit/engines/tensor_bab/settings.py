"""Settings of the tensor branch and bound (`--set tensor_bab.FIELD=VALUE`)."""

from __future__ import annotations

from dataclasses import dataclass

from verikit.core.settings import SettingError


@dataclass(frozen=True)
class TensorBabSettings:
    """ReLU-split branch and bound on auto_LiRPA's graph (CNNs, residual networks).

    `when`: "auto" runs it on networks the MLP branch and bound does not take (no piecewise-linear chain:
    residual Add, max-pooling, too large to densify), "always" on every network with a ReLU, "never" not.
    `batch_size` domains per auto_LiRPA call at most (fewer when bounds.max_matrix_bytes says so);
    `root_alpha_steps` α-CROWN steps of size `alpha_lr` at the root, whose α every domain reuses, within
    `root_alpha_share` of the budget (the search needs the rest);
    `beta_steps` β-CROWN steps per batch (Adam on the split multipliers, step `beta_lr`, and on the
    domains' copies of α, step `alpha_lr`; 0: CROWN with the root's α and no β), β warm-started from the
    parent's;
    `hidden_alpha_steps` (0: off): when the search from that root is still open after `hidden_alpha_after`
    of the budget, α-CROWN optimises the hidden layers' bounds too (that many steps, within
    `hidden_alpha_share` of the rest), the box's bounds are re-derived from those slopes rigorously in
    float64, and the search starts again from that root (only where domains are confirmed on the float64
    graph form, which must share the search's bounds);
    `refine_layers` the last split layers whose bounds CROWN re-derives per batch from the splits before
    them (0: fixed; on sri_resnet_b one layer costs 27x the domains per second and loses). The open-domain queue is capped by
    `max_domains` and by `max_queue_bytes`; past either the answer is unknown. `domain_limit` (0: none)
    ends the search, unknown, once that many domains were bounded: a budget in domains, not seconds, to
    compare settings at equal work.
    """

    when: str = "auto"
    batch_size: int = 64
    root_alpha_steps: int = 20
    root_alpha_share: float = 0.3
    hidden_alpha_steps: int = 20
    hidden_alpha_after: float = 0.15
    hidden_alpha_share: float = 0.4
    refine_layers: int = 0
    alpha_lr: float = 0.1
    beta_steps: int = 2
    beta_lr: float = 0.5
    max_domains: int = 200_000
    max_queue_bytes: int = 1 * 2**30
    replay_limit: int = 4
    domain_limit: int = 0

    def __post_init__(self) -> None:
        if self.when not in ("auto", "always", "never"):
            raise SettingError(f"setting tensor_bab.when must be auto, always or never, got {self.when!r}")
        if not 0.0 < self.root_alpha_share <= 1.0:
            raise SettingError(f"setting tensor_bab.root_alpha_share must be in (0, 1], got {self.root_alpha_share}")
        for name in ("hidden_alpha_after", "hidden_alpha_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise SettingError(f"setting tensor_bab.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.hidden_alpha_steps < 0 or self.hidden_alpha_steps > 1000:
            raise SettingError(f"setting tensor_bab.hidden_alpha_steps must be in 0..1000, got {self.hidden_alpha_steps}")
        if self.beta_steps < 0 or self.beta_steps > 1000:
            raise SettingError(f"setting tensor_bab.beta_steps must be in 0..1000, got {self.beta_steps}")
        if self.batch_size < 2:
            raise SettingError(f"setting tensor_bab.batch_size must be at least 2, got {self.batch_size}")
