"""LaserModelConfig, and the one place for the options that make each method: the part switches, the measured
defaults (``laser``, ``laser-lite``), the paper's exact model (``laser-paper``), and what a config saved by an older
version gets for an option it did not have yet (``LEGACY``: what that run trained with, whatever its method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from nerfstudio.models.nerfacto import NerfactoModelConfig

from laser_ns.compat import LoadsOlderConfigs
from laser_ns.components.adapter import AdapterConfig
from laser_ns.components.losses import LabelVolumeLoss
from laser_ns.components.transient_attention import TransientQueryAttentionConfig
from laser_ns.fields.backend import Implementation
from laser_ns.fields.language_field import LabelVolumeConfig, LanguageFieldConfig
from laser_ns.predictor import LanguagePredictorConfig
from laser_ns.schedule import TrainingScheduleConfig


def _laser_model() -> type:
    from laser_ns.model import LaserModel

    return LaserModel


_MOVED_OPTIONS = {
    "queries": ("predictor", "queries"),
    "negatives": ("predictor", "negatives"),
    "composite_threshold": ("predictor", "composite_threshold"),
    "language_start_fraction": ("schedule", "language_start_fraction"),
    "joint_start_fraction": ("schedule", "joint_start_fraction"),
    "self_cross_fraction": ("schedule", "self_cross_fraction"),
    "transient_embed_dim": ("transient_attention", "embed_dim"),
}
"""Options of LaserModelConfig that moved into a nested config: old name -> (nested config, its field)."""


@dataclass
class LaserModelConfig(LoadsOlderConfigs, NerfactoModelConfig):
    """Laser: nerfacto geometry + dense-CLIP feature field + label volume (docs/method.md)."""

    LEGACY: ClassVar[dict[str, object]] = {
        "centre_teacher_features": False,  # raw teacher features before centring existed
        "score_space": "clip",  # text was scored against the restored features
        "label_volume_strength": 1.0,  # the classification loss at full strength ('mutual', 'detached')
        "adapter_at_inference": True,  # text was scored against adapter(F)
    }
    """What a run saved before each of these options existed trained and rendered with."""

    _target: type = field(default_factory=_laser_model)
    implementation: Implementation = "auto"  # type: ignore[assignment]
    """Hash grids and MLPs: tiny-cuda-nn ('tcnn'), pure torch ('torch') or tcnn when usable ('auto')."""
    language_field: LanguageFieldConfig = field(default_factory=LanguageFieldConfig)
    """The dense-CLIP feature field."""
    label_volume: LabelVolumeConfig = field(default_factory=LabelVolumeConfig)
    """The label volume (selection field)."""
    transient_attention: TransientQueryAttentionConfig = field(default_factory=TransientQueryAttentionConfig)
    """The low-rank transient query attention on per-sample features."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """The adapter applied to teacher and rendered features."""
    schedule: TrainingScheduleConfig = field(default_factory=TrainingScheduleConfig)
    """Where the geometry, language, joint and self-cross phases start."""
    predictor: LanguagePredictorConfig = field(default_factory=LanguagePredictorConfig)
    """Queries, negatives and colours of the language outputs."""
    clip_dim: int | None = None
    """Channels of the teacher's features. None: the teacher's own (512 for ViT-B/16, 768 for ViT-L/14); a value
    that differs from the teacher's is refused."""
    weight_threshold: float = 1e-4
    """Samples whose rendering weight is below this skip the language fields."""
    tau: float = 0.2
    """Temperature of the class distributions used by the classification loss."""
    feature_loss_mult: float = 1.0
    """Weight of the distillation loss."""
    classification_loss_mult: float = 0.95
    """Weight w_rel of the label-volume classification loss."""
    label_volume_loss: LabelVolumeLoss = "balanced"
    """Classification loss. 'balanced': the paper's direction (the features' class distributions are the input, the
    label volume's the target, nothing detached) as proper soft cross-entropies, scaled by label_volume_strength.
    'reference': the released code's exact numerics (unscaled scores as targets, its axes). 'detached': only the label
    volume learns, fitting the features' class distributions as fixed targets."""
    label_volume_strength: float = 0.007
    """Factor on the 'balanced' and 'detached' classification losses, so that the pull on the rendered features never
    exceeds the reference's: the reference pulls with about 3% of the distillation gradient throughout (its targets
    are unscaled scores that cannot grow sharp), while this loss pulls harder as the label volume grows confident. At
    0.007 a confident label volume pulls with 3.9% and a fresh one with 0.7% (tests/components/test_losses.py
    measures both). 0.02 (fresh 2%, confident 11%) merged two colour-similar objects on one seed of three; 1.0 is the
    old 'mutual' loss, 35 to 180x the reference's pull, which collapsed the features (benchmarks/RESULTS.md)."""
    label_volume_features: Literal["all", "rendered"] = "all"
    """Which feature sets the classification loss couples to the label volume. 'all' (the paper's): the rendered F',
    the adapted teacher Ga and their mean, so it also moves Ga, the distillation target. 'rendered': F' only."""
    label_volume_over_rays: bool = True
    """'balanced' and 'detached' losses: also compare, for each class, its distribution over the batch's rays (the
    reference pairs this with the per-ray comparison over classes). False keeps the per-ray comparison only."""
    self_loss_mult: float = 1.0
    """Weight w_self of the adapter's self / self-cross training loss."""
    text_aug_loss_mult: float = 0.33
    """Weight w_aug of the text augmentation loss."""
    geometry_checkpoint: Path | None = None
    """A finished nerfacto run of this scene (config.yml, run folder or .ckpt): its geometry is loaded and the
    geometry phase skipped. Train it with `ns-train nerfacto --data <scene> laser-data`."""
    use_adapter: bool = True
    """Ablation switch: the adapter and its self(-cross) training (off: raw teacher and rendered features)."""
    use_self_cross: bool = True
    """Ablation switch: self-cross training after the switch step (off: self-training throughout)."""
    self_cross_field_pull: float = 1.0
    """Share of self-cross training's "teacher to field" term that pulls the adapted teacher Ga toward the field's
    own centred output sg(Fo); the rest pulls it toward the teacher's Go (components/losses.py). 1 is the paper."""
    self_cross_field_pull_final: float | None = None
    """The field pull at the run's last step: from the switch on, the pull moves linearly from
    ``self_cross_field_pull`` to this (the field's average is a better target than the teacher's tiles early on, and
    teaches the target the field's mistakes late; benchmarks/RESULTS.md). None keeps the pull constant (the paper)."""
    use_transient_attention: bool = True
    """Ablation switch: low-rank transient query attention on per-sample features."""
    use_label_volume: bool = True
    """Ablation switch: the label volume and its classification loss."""
    use_text_augmentation: bool = True
    """Ablation switch: doubled-prompt text augmentation loss (needs the adapter)."""
    centre_teacher_features: bool = True
    """Distil the teacher features minus the scene's mean feature, re-normalised (laser_ns/components/centring.py),
    and score text against them restored to CLIP's space. False: the paper's raw features (see benchmarks/RESULTS.md
    for the measurement that decided the default)."""
    score_space: Literal["centred", "clip"] = "centred"
    """Where text is scored when the teacher features are centred. 'centred': against the rendered features as they
    are distilled, so every class's score loses the scene mean's share (mu . t_c), a prior toward the classes that
    fill most of the views. 'clip': against the features restored to CLIP's space, mu + spread * normalise(F), as the
    teacher's own 2D segmentation scores them. Measured on the same checkpoints: benchmarks/RESULTS.md."""
    adapter_at_inference: bool = False
    """Score text against adapter(F) (docs/method.md#query-time-segmentation-and-relevancy) instead of the rendered
    features F. It also decides F', the
    features distilled and classified after the self-cross switch: adapter(F) when on (the paper), F when off, so
    that what is scored is what is trained. Off by default: the adapter attends across the rays of one call, so its
    output depends on how an image is split into render chunks (benchmarks/RESULTS.md)."""

    def ignored_switches(self) -> list[str]:
        """Switches that are on but do nothing in this combination, each with what would make it count."""
        if self.use_adapter:
            return []
        needs_adapter = ("use_self_cross", "use_text_augmentation", "adapter_at_inference")
        return [
            f"--pipeline.model.{name.replace('_', '-')} True does nothing without the adapter "
            "(--pipeline.model.use-adapter False); set it False, or turn the adapter on"
            for name in needs_adapter
            if getattr(self, name)
        ]

    def __setstate__(self, state: dict) -> None:
        """Loads config.yml files of older versions (ns-render, ns-eval and laser-eval read old runs): options that
        moved into a nested config go to their new place, options added since get their ``LEGACY`` value."""
        state = dict(state)
        state.pop("max_num_iterations", None)  # the trainer's --max-num-iterations sets the run's length
        moved = {old: state.pop(old) for old in _MOVED_OPTIONS if old in state}
        if state.get("label_volume_loss") == "mutual":  # the old name of 'balanced' at full strength
            state["label_volume_loss"], state["label_volume_strength"] = "balanced", 1.0
        super().__setstate__(state)
        for old, value in moved.items():
            group, name = _MOVED_OPTIONS[old]
            setattr(getattr(self, group), name, value)


PART_SWITCHES = (
    "use_adapter",
    "use_self_cross",
    "use_transient_attention",
    "use_label_volume",
    "use_text_augmentation",
)
"""The model's switches of the paper's parts (docs/method.md)."""

MEASURED_DEFAULTS: dict[str, bool] = {
    "centre_teacher_features": True,
    **dict.fromkeys(PART_SWITCHES, True),
}
"""The model options of ``laser`` and ``laser-lite``: every part of the paper, in our forms (the 'balanced'
classification loss at the reference's strength, the residual transient attention), on centred dense-CLIP features,
text scored in the centred space. They measured best against the CLIP-like teacher (benchmarks/RESULTS.md).
``laser-paper`` keeps the paper's raw features and the reference's numerics."""

PAPER_NUMERICS: dict[str, object] = {
    "label_volume_loss": "reference",
    "transient_attention.residual": False,
    "adapter.input_norm": 10.0,
    "adapter.scaled_attention": False,
}
"""The reference code's numerics where ours differ (xingy038/Laser): its classification loss, the attention's rank-E
output replacing the features, adapter inputs at raw CLIP's norm, and its unscaled adapter attention."""

PAPER_PARTS: dict[str, object] = {
    "centre_teacher_features": False,
    "use_adapter": True,
    "use_self_cross": True,
    "use_transient_attention": True,
    "use_label_volume": True,
    "use_text_augmentation": True,
    "adapter_at_inference": True,
    **PAPER_NUMERICS,
}
"""The paper's exact model: raw teacher features, every part with the reference's numerics, text scored against
adapter(F) (docs/method.md)."""


def set_model_options(model, options: dict[str, object]) -> None:
    """Sets model options by name; a dotted name sets a part's option ("adapter.input_norm",
    "language_field.grid.log2_hashmap_size"). An unknown name is refused."""
    for key, value in options.items():
        *parts, name = key.split(".")
        target = model
        for part in parts:
            if not hasattr(target, part):
                raise ValueError(f"{key!r} names no option of {type(target).__name__} ({part!r}).")
            target = getattr(target, part)
        if not hasattr(target, name):
            raise ValueError(f"{key!r} names no option of {type(target).__name__}.")
        setattr(target, name, value)
