"""LaserModel: a nerfacto radiance field with a distilled dense-CLIP field and a label volume (METHOD.md 4 to 7).

The model composes small parts and keeps nerfstudio's hooks to their jobs:

- the radiance field: nerfacto's own modules, built by nerfacto's code (:mod:`laser_ns.fields.radiance_field`),
  under nerfacto's attribute names, so a nerfacto checkpoint loads into it;
- the language fields (:mod:`laser_ns.fields.language_field`), rendered with detached geometry
  (:mod:`laser_ns.fields.language_rendering`): language losses never reach density;
- Laser's components: transient query attention and adapter (:mod:`laser_ns.components`);
- the training schedule (:mod:`laser_ns.schedule`): phases, freezing and learning rates;
- the language predictor (:mod:`laser_ns.predictor`): text, queries, negatives, PCA, and the language outputs;
- the losses (:mod:`laser_ns.components.language_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import scale_gradients_by_distance_squared
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor
from torch.nn import Parameter

from laser_ns.components.adapter import Adapter, AdapterConfig
from laser_ns.components.centring import FeatureCentring
from laser_ns.components.language_loss import language_loss_dict
from laser_ns.components.losses import LabelVolumeLoss
from laser_ns.components.transient_attention import TransientQueryAttention, TransientQueryAttentionConfig
from laser_ns.fields import radiance_field
from laser_ns.fields.backend import Implementation, resolve_implementation
from laser_ns.fields.language_field import LabelVolume, LabelVolumeConfig, LanguageField, LanguageFieldConfig
from laser_ns.fields.language_rendering import render_language
from laser_ns.predictor import LanguagePredictor, LanguagePredictorConfig
from laser_ns.schedule import TrainingScheduleConfig

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

_MOVED_TO_PREDICTOR = ("class_text", "class_text_aug", "class_colors", "negative_text")
"""Buffers that checkpoints written before the predictor existed hold at the model's top level."""


@dataclass
class LaserModelConfig(NerfactoModelConfig):
    """Laser: nerfacto geometry + dense-CLIP feature field + label volume (METHOD.md sections 4 to 7)."""

    _target: type = field(default_factory=lambda: LaserModel)
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
    label_volume_strength: float = 0.02
    """Factor on the 'balanced' and 'detached' classification losses, so that the pull on the rendered features is
    the reference's: 2% of the distillation gradient for a fresh label volume (the reference's is 3%), at most 11% for
    a confident one (tests/components/test_losses.py measures both). 1.0 is the old 'mutual' loss, 35 to 180x the
    reference's pull, which collapsed the features (benchmarks/RESULTS.md)."""
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
    """Score text against adapter(F) (METHOD.md section 7) instead of the rendered features F. It also decides F', the
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
        """Loads config.yml files saved before the schedule, predictor and attention options had their own configs
        (ns-render, ns-eval and laser-eval read old runs): moved fields go to their new place, new ones get defaults."""
        state = dict(state)
        state.pop("max_num_iterations", None)  # the trainer's --max-num-iterations sets the run's length
        missing = [f.name for f in fields(self) if f.init and f.name not in state]
        if missing:
            defaults = LaserModelConfig()
            state.update({name: getattr(defaults, name) for name in missing})
        for old, (group, name) in _MOVED_OPTIONS.items():
            if old in state:
                setattr(state[group], name, state.pop(old))
        if "score_space" in missing:  # runs saved before the option scored the restored features
            state["score_space"] = "clip"
        if state.get("label_volume_loss") == "mutual":  # the old name of 'balanced' at full strength
            state["label_volume_loss"], state["label_volume_strength"] = "balanced", 1.0
        self.__dict__.update(state)


class LaserModel(NerfactoModel):
    """Nerfacto's radiance field plus Laser's language fields, components, schedule, predictor and losses."""

    config: LaserModelConfig

    def __init__(self, config: LaserModelConfig, metadata: dict | None = None, teacher=None, **kwargs) -> None:
        metadata = metadata or {}
        self.class_names: list[str] = list(metadata.get("class_names", []))
        # The teacher is owned by the pipeline; kept out of the module tree so its weights are never saved.
        self.__dict__["teacher"] = teacher
        super().__init__(config=config, metadata=metadata, **kwargs)
        self.register_load_state_dict_pre_hook(_rename_pre_predictor_buffers)

    @property
    def teacher(self):
        return self.__dict__["teacher"]

    # ------------------------------------------------------------------ modules
    def populate_modules(self) -> None:
        cfg = self.config
        # The radiance field first: module creation order fixes what each module draws from the seeded RNG.
        implementation = resolve_implementation(cfg.implementation, self.kwargs.get("device"))
        radiance_field.populate_nerfacto_modules(self, implementation)
        self.schedule = cfg.schedule.setup(
            density=self.density_parameters,
            colour=self.appearance_parameters,
            skip_geometry=cfg.geometry_checkpoint is not None,
        )

        # Language fields and Laser's components, on the teacher's feature size.
        self.clip_dim = self._resolve_clip_dim()
        contraction = self.field.spatial_distortion
        geometry = dict(
            aabb=self.scene_box.aabb,
            spatial_distortion=contraction,
            implementation=implementation,
            out_dim=self.clip_dim,
        )
        self.language_field: LanguageField = cfg.language_field.setup(**geometry)
        self.transient_attention: TransientQueryAttention | None = (
            cfg.transient_attention.setup(in_dim=self.clip_dim) if cfg.use_transient_attention else None
        )
        self.label_volume: LabelVolume | None = cfg.label_volume.setup(**geometry) if cfg.use_label_volume else None
        self.adapter: Adapter | None = cfg.adapter.setup(dim=self.clip_dim) if cfg.use_adapter else None
        self.centring: FeatureCentring | None = FeatureCentring(self.clip_dim) if cfg.centre_teacher_features else None
        if cfg.predictor.segment_with_label_volume and self.label_volume is None:
            raise ValueError(
                "--pipeline.model.predictor.segment-with-label-volume True needs the label volume, but "
                "--pipeline.model.use-label-volume is False. Turn one of them around."
            )
        self.predictor: LanguagePredictor = cfg.predictor.setup(
            class_names=self.class_names, dim=self.clip_dim, teacher=self.teacher
        )

    def _resolve_clip_dim(self) -> int:
        """The feature size: the teacher's, or the configured one, which must then agree with the teacher's."""
        configured = self.config.clip_dim
        teacher_dim = int(self.teacher.feature_dim) if self.teacher is not None else None
        if configured is not None and teacher_dim is not None and configured != teacher_dim:
            raise ValueError(
                f"--pipeline.model.clip-dim is {configured} but the teacher's features have {teacher_dim} channels "
                f"({type(self.teacher).__name__}). Leave clip-dim unset (it follows the teacher) or pick a teacher "
                f"model with {configured}-d features."
            )
        return configured or teacher_dim or 512

    # ------------------------------------------------------------------ parameters and schedule
    def density_parameters(self) -> list[Parameter]:
        return radiance_field.density_parameters(self)

    def appearance_parameters(self) -> list[Parameter]:
        return radiance_field.appearance_parameters(self)

    def language_grid_parameters(self) -> list[Parameter]:
        """The language fields' hash grids, and the label volume's log-scale: it needs the grids' larger step
        (see :class:`LabelVolume`)."""
        grids = [self.language_field.grid] + ([self.label_volume.grid] if self.label_volume is not None else [])
        scale = [self.label_volume.log_scale] if self.label_volume is not None else []
        return [p for g in grids for p in g.parameters()] + scale

    def language_network_parameters(self) -> list[Parameter]:
        grid_ids = {id(p) for p in self.language_grid_parameters()}
        modules = [self.language_field, self.transient_attention, self.label_volume, self.adapter]
        return [p for m in modules if m is not None for p in m.parameters() if id(p) not in grid_ids]

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        groups = {
            "proposal_networks": list(self.proposal_networks.parameters()),
            "fields": radiance_field.field_density_parameters(self),
            "appearance": self.appearance_parameters(),
            "language_grids": self.language_grid_parameters(),
            "language_networks": self.language_network_parameters(),
        }
        self.camera_optimizer.get_param_groups(param_groups=groups)
        return groups

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        return super().get_training_callbacks(attributes) + self.schedule.training_callbacks(attributes)

    # ------------------------------------------------------------------ rendering
    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        # Geometry and colour: nerfacto's proposal sampling and field.
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs = self.field.forward(ray_samples)
        if self.config.use_gradient_scaling:
            field_outputs = scale_gradients_by_distance_squared(field_outputs, ray_samples)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)

        outputs: dict[str, Tensor] = {
            "rgb": self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights=weights),
            "expected_depth": self.renderer_expected_depth(weights=weights, ray_samples=ray_samples),
        }
        with torch.no_grad():
            outputs["depth"] = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])

        # Language: training renders only the language rays (the datamanager marks them); inference renders all and
        # the predictor turns the features into the user-facing outputs.
        if self.training:
            outputs["weights_list"] = weights_list  # type: ignore[assignment]
            outputs["ray_samples_list"] = ray_samples_list  # type: ignore[assignment]
            mask = ray_bundle.metadata.get("language") if ray_bundle.metadata else None
            if mask is not None and mask.any():
                keep = mask[:, 0]
                features, label_dist = self._render_language(ray_samples[keep], weights[keep])
                outputs["clip_features"] = features
                if label_dist is not None:
                    outputs["label_distribution"] = label_dist
        else:
            features, label_dist = self._render_language(ray_samples, weights)
            scored = self.inference_features(features)
            outputs.update(self.predictor.outputs(features, scored, label_dist, outputs["rgb"]))
        return outputs

    def _render_language(
        self, ray_samples: RaySamples, weights: Float[Tensor, "R S 1"]
    ) -> tuple[Float[Tensor, "R D"], Float[Tensor, "R D"] | None]:
        return render_language(
            ray_samples,
            weights,
            self.language_field,
            self.transient_attention,
            self.label_volume,
            self.config.weight_threshold,
        )

    @torch.no_grad()
    def rendered_features(self, ray_bundle: RayBundle) -> Float[Tensor, "R D"]:
        """The rendered features F of ``ray_bundle`` (no outputs, no predictor): what the PCA basis is fitted on."""
        if self.collider is not None:
            ray_bundle = self.collider(ray_bundle)  # near and far, as Model.forward sets them
        ray_samples, _, _ = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        weights = ray_samples.get_weights(self.field.forward(ray_samples)[FieldHeadNames.DENSITY])
        return self._render_language(ray_samples, weights)[0]

    def inference_features(self, features: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """The features text is scored against: F, or adapter(F) with ``adapter_at_inference`` (METHOD.md 7), in the
        scoring space (:meth:`scoring_space`)."""
        if self.adapter is not None and self.config.adapter_at_inference:
            features = self.adapter(features)[1]
        return self.scoring_space(features)

    def scoring_space(self, features: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """Features of the distilled space where text is scored: restored to CLIP's space with ``score_space`` 'clip',
        as they are otherwise (identity without centring)."""
        return self.restore(features) if self.config.score_space == "clip" else features

    def restore(self, features: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """Features of the distilled space in CLIP's space (identity without centring)."""
        return features if self.centring is None else self.centring.restore(features)

    def teacher_targets(self, teacher: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """The distillation targets of teacher features: centred when ``centre_teacher_features``."""
        return teacher if self.centring is None else self.centring.centre(teacher)

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        num_rgb = batch["image"].shape[0]
        metrics = super().get_metrics_dict(_rgb_part(outputs, num_rgb), batch)
        if "clip_features" in outputs:
            with torch.no_grad():
                targets = self.teacher_targets(batch["clip"])
                metrics["feature_cosine"] = F.cosine_similarity(outputs["clip_features"], targets, dim=-1).mean()
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        num_rgb = batch["image"].shape[0]
        loss_dict = super().get_loss_dict(_rgb_part(outputs, num_rgb), batch, metrics_dict)
        if not self.training or "clip_features" not in outputs:
            return loss_dict
        loss_dict.update(
            language_loss_dict(
                self.config,
                outputs["clip_features"],
                self.teacher_targets(batch["clip"]),
                outputs.get("label_distribution"),
                self.label_volume,
                self.adapter,
                self.predictor.class_text,
                self.predictor.class_text_aug,
                self_cross=self.schedule.self_cross(),
                restore=self.scoring_space,
                patch_shape=batch.get("language_patch_shape"),
            )
        )
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        gt_rgb = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        predicted_rgb = outputs["rgb"]
        gt = torch.moveaxis(gt_rgb, -1, 0)[None]
        pred = torch.moveaxis(predicted_rgb, -1, 0)[None]
        metrics = {"psnr": float(self.psnr(gt, pred).item()), "ssim": float(self.ssim(gt, pred))}
        images = {
            "img": torch.cat([gt_rgb, predicted_rgb], dim=1),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
        }
        if "segmentation_masks" in batch and "segmentation_class" in outputs:
            from laser_ns.eval.metrics import DEFAULT_PROTOCOL, view_metrics

            mask_values = batch["segmentation_masks"].to(self.device)  # [H, W, C] uint8
            pred_classes = outputs["segmentation_class"][..., 0].long()
            seg = view_metrics(pred_classes, mask_values.permute(2, 0, 1), DEFAULT_PROTOCOL)  # laser-eval's default
            metrics["miou"] = float(seg["miou"])
            metrics["accuracy"] = float(seg["accuracy"])
            images["segmentation"] = torch.cat([predicted_rgb, outputs["segmentation"]], dim=1)
        return metrics, images


def _rename_pre_predictor_buffers(module, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before the predictor existed keep its text buffers at the model's top level."""
    for name in _MOVED_TO_PREDICTOR:
        if prefix + name in state_dict and prefix + "predictor." + name not in state_dict:
            state_dict[prefix + "predictor." + name] = state_dict.pop(prefix + name)


def _rgb_part(outputs: dict[str, Tensor], num_rgb: int) -> dict[str, Tensor]:
    """The outputs of the RGB rays: the datamanager puts them first, language rays after them."""
    sliced = dict(outputs)
    for key in ("rgb", "accumulation", "depth", "expected_depth"):
        if key in sliced and sliced[key].shape[0] != num_rgb:
            sliced[key] = sliced[key][:num_rgb]
    return sliced
