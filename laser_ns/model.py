"""LaserModel: a nerfacto radiance field with a distilled dense-CLIP field and a label volume (docs/method.md).

The model composes small parts and keeps nerfstudio's hooks to their jobs:

- the radiance field: nerfacto's own modules, built by nerfacto's code (:mod:`laser_ns.fields.radiance_field`),
  under nerfacto's attribute names, so a nerfacto checkpoint loads into it;
- the language fields (:mod:`laser_ns.fields.language_field`), rendered with detached geometry
  (:mod:`laser_ns.fields.language_rendering`): language losses never reach density;
- Laser's components: transient query attention and adapter (:mod:`laser_ns.components`);
- the training schedule (:mod:`laser_ns.schedule`): phases, freezing and learning rates;
- the language predictor (:mod:`laser_ns.predictor`): text, queries, negatives, PCA, and the language outputs;
- the losses (:mod:`laser_ns.model_losses`); the config and the methods' options (:mod:`laser_ns.model_config`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import scale_gradients_by_distance_squared
from nerfstudio.models.nerfacto import NerfactoModel
from nerfstudio.utils import colormaps
from torch import Tensor
from torch.nn import Parameter

from laser_ns.components.adapter import Adapter
from laser_ns.components.centring import FeatureCentring
from laser_ns.components.transient_attention import TransientQueryAttention
from laser_ns.fields import radiance_field
from laser_ns.fields.backend import resolve_implementation
from laser_ns.fields.language_field import LabelVolume, LanguageField
from laser_ns.fields.language_rendering import render_language
from laser_ns.model_config import LaserModelConfig
from laser_ns.model_losses import language_loss_dict
from laser_ns.predictor import LanguagePredictor
from laser_ns.teachers.base import valid_tiles

_MOVED_TO_PREDICTOR = ("class_text", "class_text_aug", "class_colors", "negative_text")
"""Buffers that checkpoints written before the predictor existed hold at the model's top level."""


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
        for option, pull in (
            ("self-cross-field-pull", cfg.self_cross_field_pull),
            ("self-cross-field-pull-final", cfg.self_cross_field_pull_final),
        ):
            if pull is not None and not 0.0 <= pull <= 1.0:
                raise ValueError(
                    f"--pipeline.model.{option} is {pull}; it is a share and must lie in [0, 1] (1 is the paper, 0 "
                    "pulls the adapted teacher toward the teacher only)."
                )
        if cfg.label_volume_loss == "reference" and not cfg.label_volume_over_rays:
            raise ValueError(
                "--pipeline.model.label-volume-over-rays False applies to the 'balanced' and 'detached' losses; the "
                "'reference' loss keeps the released code's axes. Drop one of the two options."
            )
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
        callbacks = super().get_training_callbacks(attributes) + self.schedule.training_callbacks(attributes)
        if self.label_volume is not None:
            label_volume = self.label_volume
            callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    update_every_num_iters=1,
                    func=lambda step: label_volume.keep_scale_within_cap_(),
                )
            )
        return callbacks

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
        """The features text is scored against: F, or adapter(F) with ``adapter_at_inference``
        (docs/method.md#query-time-segmentation-and-relevancy), in the
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

    def teacher_in_scoring_space(self, teacher: Float[Tensor, "*batch D"]) -> Float[Tensor, "*batch D"]:
        """Teacher features where this run scores text against its own rendered features (its distillation target,
        then :meth:`scoring_space`): the teacher's 2D segmentation scored like for like with the run's. Tiles
        without signal stay zero (no class). With ``adapter_at_inference`` the run also adapts its features
        (attention across the rays of a chunk); the tiles are not adapted."""
        rows = teacher.reshape(-1, teacher.shape[-1])
        scored = self.scoring_space(self.teacher_targets(rows))
        return torch.where(valid_tiles(rows)[:, None], scored, torch.zeros_like(scored)).reshape(teacher.shape)

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
                self_cross_progress=self.schedule.self_cross_progress(),
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
