"""The learner's settings: how often it updates and publishes, and its DP-SGD budget.

A group of :class:`streams.settings.Settings`; read only through it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LearnerSettings(BaseModel):
    """What ``intentstream learn`` does with the stream (docs/training.md)."""

    learn_update_every: int = Field(
        default=256, ge=1, description="New training sequences between two incremental updates."
    )
    learn_publish_every: int = Field(
        default=5_000, ge=1, description="Training sequences between two published versions."
    )
    learn_publish_seconds: float = Field(
        default=600.0, gt=0, description="Most seconds between two published versions."
    )
    learn_dp_noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        description="Turns on DP-SGD (Opacus) for the learner's updates with this noise "
        "multiplier sigma; unset = plain updates (docs/training.md says what each costs).",
    )
    learn_dp_max_grad_norm: float = Field(
        default=1.0, gt=0, description="DP-SGD clipping norm of one session's gradient."
    )
    learn_dp_delta: float = Field(
        default=1e-6, gt=0, lt=1, description="Delta at which the learner's epsilon is reported."
    )
    learn_dp_epsilon: float = Field(
        default=8.0,
        gt=0,
        description="The lifetime DP-SGD budget per session of a model lineage (every version "
        "learned from one base version, across restarts): once spent, the learner stops "
        "updating and goes on serving.",
    )
    learn_dp_sample_rate: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Probability that a session of the learner's pool is in a DP-SGD step "
        "(Poisson sampling; the accountant's rate).",
    )
    learn_dp_pool_updates: int = Field(
        default=8,
        ge=1,
        description="Updates a session stays in the learner's DP pool after its latest event.",
    )
    learn_dp_epsilon_per_window: float = Field(
        default=1.0,
        gt=0,
        description="Most growth of the lineage's epsilon per learn_dp_window_seconds; steps "
        "beyond it wait for the next window.",
    )
    learn_dp_window_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="Length of the learner's DP budget window (aligned on the epoch).",
    )
