"""Laser's training schedule: phases, freezing and the learning rate of each parameter group
(docs/training.md#training-phases).

:class:`TrainingSchedule` is the one owner of the phase rules: the model composes it, the pipeline asks it whether
language trains at a step, and it freezes parameters and binds the learning-rate schedulers.

A run is cut into phases: geometry alone, then language (density frozen), with colour fine-tuned again from the
joint start and the adapter switching to self-cross training at the switch step. Each optimizer group decays its
learning rate over the phase it trains in, not over the whole run: the language groups start the language phase at
their full learning rate, and colour starts its fine-tuning at exactly the learning rate its config names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.nn import Parameter
from torch.optim import Optimizer, lr_scheduler

PhaseName = Literal["geometry", "language", "colour"]


@dataclass(frozen=True)
class Phases:
    """The first step of each training phase; the run ends at ``total_steps``."""

    total_steps: int
    language_start: int
    joint_start: int
    self_cross_start: int

    @classmethod
    def of(
        cls,
        total_steps: int,
        language_start_fraction: float,
        joint_start_fraction: float,
        self_cross_fraction: float,
        skip_geometry: bool = False,
    ) -> Phases:
        """Phases as fractions of the run (language start) and of the language phase (joint start, self-cross)."""
        total = max(int(total_steps), 1)
        language_start = 0 if skip_geometry else int(round(language_start_fraction * total))
        language_steps = max(total - language_start, 1)
        return cls(
            total_steps=total,
            language_start=language_start,
            joint_start=language_start + int(round(joint_start_fraction * language_steps)),
            self_cross_start=language_start + int(round(self_cross_fraction * language_steps)),
        )

    @property
    def language_steps(self) -> int:
        return max(self.total_steps - self.language_start, 1)

    def language_active(self, step: int) -> bool:
        return step >= self.language_start

    def density_trainable(self, step: int) -> bool:
        return step < self.language_start

    def colour_trainable(self, step: int) -> bool:
        return step < self.language_start or step >= self.joint_start

    def self_cross(self, step: int) -> bool:
        return step >= self.self_cross_start

    def self_cross_progress(self, step: int) -> float:
        """How far ``step`` is through self-cross training: 0 at the switch (and before), 1 at the run's last step."""
        length = max(self.total_steps - 1 - self.self_cross_start, 1)
        return min(max((step - self.self_cross_start) / length, 0.0), 1.0)


@dataclass
class PhaseDecaySchedulerConfig(SchedulerConfig):
    """Exponential decay over the steps of one training phase."""

    _target: type = field(default_factory=lambda: PhaseDecayScheduler)
    phase: PhaseName = "language"
    """The phase this group trains in ('geometry', 'language' or 'colour'); its learning rate decays over it alone."""
    lr_final_fraction: float = 0.1
    """Learning rate at the end of the phase, as a fraction of the optimizer's (reference: 0.1)."""
    lr_after_joint_start: float = 5e-5
    """'colour' only: the learning rate when colour fine-tuning starts at the joint start (reference: 5e-5)."""
    joint_lr_final_fraction: float = 0.1
    """'colour' only: after the joint start the rate decays like the language groups', by this per language phase."""


class PhaseDecay:
    """The learning-rate multiplier of one group at a step. Its state is plain numbers, so LambdaLR saves it in
    checkpoints that load with ``torch.load(weights_only=True)``. Until phases are bound it returns 1."""

    def __init__(self, config: PhaseDecaySchedulerConfig, lr_init: float) -> None:
        self.phase: str = config.phase
        self.lr_final_fraction = float(config.lr_final_fraction)
        self.joint_ratio = float(config.lr_after_joint_start) / float(lr_init)
        self.joint_lr_final_fraction = float(config.joint_lr_final_fraction)
        self.language_start = self.joint_start = self.language_steps = self.total_steps = -1

    def bind(self, phases: Phases) -> None:
        self.language_start, self.joint_start = phases.language_start, phases.joint_start
        self.language_steps, self.total_steps = phases.language_steps, phases.total_steps

    def __call__(self, step: int) -> float:
        if self.total_steps < 0:
            return 1.0
        if self.phase == "language":
            return _decay(self.lr_final_fraction, step - self.language_start, self.language_steps)
        if self.phase == "colour" and step >= self.joint_start:
            return self.joint_ratio * _decay(self.joint_lr_final_fraction, step - self.joint_start, self.language_steps)
        # geometry, and colour during the geometry phase (it is frozen between the language and joint starts)
        return _decay(self.lr_final_fraction, step, max(self.language_start, 1))


def _decay(final_fraction: float, steps_in: int, length: int) -> float:
    return final_fraction ** min(max(steps_in / length, 0.0), 1.0)


class PhaseDecayScheduler(Scheduler):
    """A LambdaLR whose multiplier follows the phases once the model binds them (``bind_phases``)."""

    config: PhaseDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        if self.config.phase not in ("geometry", "language", "colour"):
            raise ValueError(f"Unknown phase '{self.config.phase}': use 'geometry', 'language' or 'colour'.")
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=PhaseDecay(self.config, lr_init))


def bind_phases(schedulers: Mapping[str, lr_scheduler.LRScheduler], phases: Phases) -> None:
    """Gives every phase scheduler the run's phases and sets its groups' learning rates for its current step
    (also right after a checkpoint restored the step)."""
    for scheduler in schedulers.values():
        lambdas = getattr(scheduler, "lr_lambdas", [])
        if not any(isinstance(f, PhaseDecay) for f in lambdas):
            continue
        step = scheduler.last_epoch
        for group, base_lr, multiplier in zip(
            scheduler.optimizer.param_groups, scheduler.base_lrs, lambdas, strict=True
        ):
            if isinstance(multiplier, PhaseDecay):
                multiplier.bind(phases)
            group["lr"] = base_lr * multiplier(step)
        scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]  # what the trainer logs


@dataclass
class TrainingScheduleConfig(InstantiateConfig):
    """Where the phases of a run start, as fractions; the run's length is the trainer's --max-num-iterations."""

    _target: type = field(default_factory=lambda: TrainingSchedule)
    language_start_fraction: float = 0.5
    """Fraction of training spent on geometry alone before language starts (density is then frozen)."""
    joint_start_fraction: float = 1 / 3
    """Fraction of the language phase after which colour is fine-tuned again (reference: 5000 of 15000)."""
    self_cross_fraction: float = 8 / 15
    """Fraction of the language phase after which self-cross training starts (reference: 8000 of 15000)."""


class TrainingSchedule:
    """The phases of one run, the step it is at, and what trains at that step.

    Built by ``TrainingScheduleConfig.setup(density=..., colour=..., skip_geometry=...)``, with functions returning
    the parameters that the phases freeze. The run's length comes from the trainer (``training_callbacks``) or,
    without a trainer (tests, scripts), from :meth:`set_total_steps`; until then there are no phases.
    """

    def __init__(
        self,
        config: TrainingScheduleConfig,
        density: Callable[[], list[Parameter]],
        colour: Callable[[], list[Parameter]],
        skip_geometry: bool = False,
    ) -> None:
        self.config = config
        self.density = density
        self.colour = colour
        self.skip_geometry = skip_geometry
        self.step = 0
        self._phases: Phases | None = None

    @property
    def phases(self) -> Phases:
        if self._phases is None:
            raise RuntimeError(
                "The training schedule does not know the run's length yet: the trainer sets it from "
                "--max-num-iterations (get_training_callbacks); without a trainer call schedule.set_total_steps(n)."
            )
        return self._phases

    def set_total_steps(self, total_steps: int) -> None:
        """Cuts a run of ``total_steps`` into phases (fractions of the run, so they follow --max-num-iterations)."""
        cfg = self.config
        self._phases = Phases.of(
            total_steps,
            cfg.language_start_fraction,
            cfg.joint_start_fraction,
            cfg.self_cross_fraction,
            skip_geometry=self.skip_geometry,
        )

    def language_active(self, step: int) -> bool:
        """Whether language rays are rendered and trained at ``step``."""
        return self.phases.language_active(step)

    def self_cross(self) -> bool:
        """Whether the adapter trains self-cross (teacher and rendered features) at the current step."""
        return self.phases.self_cross(self.step)

    def self_cross_progress(self) -> float:
        """How far the current step is through self-cross training (0 at the switch, 1 at the last step)."""
        return self.phases.self_cross_progress(self.step)

    def set_step(self, step: int) -> None:
        """Moves to ``step``: freezes and unfreezes density and colour for the phase that contains it."""
        self.step = step
        for p in self.density():
            p.requires_grad_(self.phases.density_trainable(step))
        for p in self.colour():
            p.requires_grad_(self.phases.colour_trainable(step))

    def training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        """Takes the run's length from the trainer, binds the phase schedulers' learning rates, and moves to each
        step before its iteration."""
        if attributes.trainer is not None:
            self.set_total_steps(attributes.trainer.config.max_num_iterations)
        if attributes.optimizers is not None:
            bind_phases(attributes.optimizers.schedulers, self.phases)
        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self.set_step,
            )
        ]
