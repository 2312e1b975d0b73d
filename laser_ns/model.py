"""LaserModel: a nerfacto radiance field with a distilled dense-CLIP field and a label volume.

Geometry and colour come from nerfstudio's nerfacto components (same module names as ``NerfactoModel``, so a
nerfacto checkpoint loads into it). Language lives in separate fields that read detached sample positions and
detached rendering weights: language losses never reach density.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.fields.nerfacto_field import NerfactoField
from nerfstudio.model_components.losses import MSELoss
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor, nn
from torch.nn import Parameter

from laser_ns.components import losses
from laser_ns.components.adapter import Adapter, AdapterConfig
from laser_ns.components.relevancy import class_colormap, closed_set_segmentation, lerf_relevancy
from laser_ns.components.transient_attention import TransientQueryAttention
from laser_ns.fields.backend import Implementation, resolve_implementation
from laser_ns.fields.language_field import LabelVolume, LabelVolumeConfig, LanguageField, LanguageFieldConfig
from laser_ns.schedule import Phases, bind_phases

CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")
"""LERF's canonical negative phrases for open-vocabulary relevancy."""

QUERIES_ENV = "LASER_QUERIES"
"""Environment variable with ';'-separated queries that replace the saved ones when a model is built (ns-render)."""


def split_queries(text: str) -> list[str]:
    """'red apple; table' -> ['red apple', 'table'] (blank entries dropped)."""
    return [q.strip() for q in text.split(";") if q.strip()]


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
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """The adapter applied to teacher and rendered features."""
    clip_dim: int | None = None
    """Channels of the teacher's features. None: the teacher's own (512 for ViT-B/16, 768 for ViT-L/14); a value
    that differs from the teacher's is refused."""
    transient_embed_dim: int = 48
    """Embedding size E of the transient query attention (reference: 48; 64 for bench and sofa)."""
    weight_threshold: float = 1e-4
    """Samples whose rendering weight is below this skip the language fields."""
    tau: float = 0.2
    """Temperature of the class distributions used by the classification loss."""
    feature_loss_mult: float = 1.0
    """Weight of the distillation loss."""
    classification_loss_mult: float = 0.95
    """Weight w_rel of the label-volume classification loss."""
    self_loss_mult: float = 1.0
    """Weight w_self of the adapter's self / self-cross training loss."""
    text_aug_loss_mult: float = 0.33
    """Weight w_aug of the text augmentation loss."""
    geometry_checkpoint: Path | None = None
    """A finished nerfacto run of this scene (config.yml, run folder or .ckpt): its geometry is loaded and the
    geometry phase skipped. Train it with `ns-train nerfacto --data <scene> laser-data`."""
    language_start_fraction: float = 0.5
    """Fraction of training spent on geometry alone before language starts (density is then frozen)."""
    joint_start_fraction: float = 1 / 3
    """Fraction of the language phase after which colour is fine-tuned again (reference: 5000 of 15000)."""
    self_cross_fraction: float = 8 / 15
    """Fraction of the language phase after which self-cross training starts (reference: 8000 of 15000)."""
    max_num_iterations: int = 30000
    """Total training steps; set from --max-num-iterations by the method config so phases scale with it."""
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
    adapter_at_inference: bool = False
    """Score text against adapter(F) (METHOD.md section 7) instead of the rendered features F. Off by default: the
    adapter attends across the rays of one call, so its output depends on how an image is split into render chunks,
    and on the generated benchmark scenes it scored below F in every split measured (benchmarks/RESULTS.md)."""
    queries: tuple[str, ...] = ()
    """Text queries rendered as relevancy_<i>; empty means the scene's classes."""
    negatives: tuple[str, ...] = CANONICAL_NEGATIVES
    """Canonical negative phrases for open-vocabulary relevancy."""
    composite_threshold: float = 0.5
    """Relevancy above this is highlighted in composited_<i>."""


class LaserModel(NerfactoModel):
    """Nerfacto's radiance field plus Laser's language fields, adapter and losses."""

    config: LaserModelConfig

    def __init__(self, config: LaserModelConfig, metadata: dict | None = None, teacher=None, **kwargs) -> None:
        metadata = metadata or {}
        self.class_names: list[str] = list(metadata.get("class_names", []))
        # The teacher is owned by the pipeline; kept out of the module tree so its weights are never saved.
        self.__dict__["teacher"] = teacher
        super().__init__(config=config, metadata=metadata, **kwargs)

    # ------------------------------------------------------------------ modules
    def populate_modules(self) -> None:
        # Not NerfactoModel.populate_modules: it builds an LPIPS metric whose weights download at init.
        self.step = 0
        self.phases = self._phases_for(self.config.max_num_iterations)
        implementation = resolve_implementation(self.config.implementation, self.kwargs.get("device"))
        contraction = None if self.config.disable_scene_contraction else SceneContraction(order=float("inf"))
        self._build_radiance_field(implementation, contraction)

        cfg = self.config
        self.clip_dim = self._resolve_clip_dim()
        aabb = self.scene_box.aabb
        geometry = dict(aabb=aabb, spatial_distortion=contraction, implementation=implementation, out_dim=self.clip_dim)
        self.language_field: LanguageField = cfg.language_field.setup(**geometry)
        self.transient_attention = (
            TransientQueryAttention(self.clip_dim, cfg.transient_embed_dim) if cfg.use_transient_attention else None
        )
        self.label_volume: LabelVolume | None = cfg.label_volume.setup(**geometry) if cfg.use_label_volume else None
        self.adapter: Adapter | None = cfg.adapter.setup(dim=self.clip_dim) if cfg.use_adapter else None

        # Text embeddings are state: saved so a checkpoint scores its classes even before the teacher is loaded.
        num_classes = len(self.class_names)
        self.register_buffer("class_text", torch.zeros(num_classes, self.clip_dim))
        self.register_buffer("class_text_aug", torch.zeros(num_classes, self.clip_dim))
        self.register_buffer("class_colors", class_colormap(max(num_classes, 1))[:num_classes].float())
        self.register_buffer("negative_text", torch.zeros(len(cfg.negatives), self.clip_dim))
        self.register_buffer("query_text", torch.zeros(0, self.clip_dim), persistent=False)
        self.queries: list[str] = []
        self.query_mode: str = "relevancy"  # or "segmentation": typed queries become extra classes
        self.composite_threshold: float = self.config.composite_threshold
        self.segment_with_label_volume: bool = False
        self._pca: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # mean, basis, low, high
        if self.teacher is not None:
            self._encode_scene_text()

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

    def _build_radiance_field(self, implementation: str, contraction: SceneContraction | None) -> None:
        cfg = self.config
        appearance_dim = cfg.appearance_embed_dim if cfg.use_appearance_embedding else 0
        self.field = NerfactoField(
            self.scene_box.aabb,
            hidden_dim=cfg.hidden_dim,
            num_levels=cfg.num_levels,
            max_res=cfg.max_res,
            base_res=cfg.base_res,
            features_per_level=cfg.features_per_level,
            log2_hashmap_size=cfg.log2_hashmap_size,
            hidden_dim_color=cfg.hidden_dim_color,
            hidden_dim_transient=cfg.hidden_dim_transient,
            spatial_distortion=contraction,
            num_images=self.num_train_data,
            use_pred_normals=cfg.predict_normals,
            use_average_appearance_embedding=cfg.use_average_appearance_embedding,
            appearance_embedding_dim=appearance_dim,
            average_init_density=cfg.average_init_density,
            implementation=implementation,
        )
        self.camera_optimizer = cfg.camera_optimizer.setup(
            num_cameras=self.num_train_data, device=self.scene_box.aabb.device
        )
        num_nets = 1 if cfg.use_same_proposal_network else cfg.num_proposal_iterations
        self.proposal_networks = nn.ModuleList(
            HashMLPDensityField(
                self.scene_box.aabb,
                spatial_distortion=contraction,
                **cfg.proposal_net_args_list[min(i, len(cfg.proposal_net_args_list) - 1)],
                average_init_density=cfg.average_init_density,
                implementation=implementation,
            )
            for i in range(num_nets)
        )
        self.density_fns = [
            self.proposal_networks[min(i, num_nets - 1)].density_fn for i in range(cfg.num_proposal_iterations)
        ]

        def update_schedule(step: int) -> float:
            return float(
                np.clip(
                    np.interp(step, [0, cfg.proposal_warmup], [0, cfg.proposal_update_every]),
                    1,
                    cfg.proposal_update_every,
                )
            )

        self.proposal_sampler = ProposalNetworkSampler(
            num_nerf_samples_per_ray=cfg.num_nerf_samples_per_ray,
            num_proposal_samples_per_ray=cfg.num_proposal_samples_per_ray,
            num_proposal_network_iterations=cfg.num_proposal_iterations,
            single_jitter=cfg.use_single_jitter,
            update_sched=update_schedule,
            initial_sampler=UniformSampler(single_jitter=cfg.use_single_jitter)
            if cfg.proposal_initial_sampler == "uniform"
            else None,
        )
        self.collider = NearFarCollider(near_plane=cfg.near_plane, far_plane=cfg.far_plane)
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.renderer_expected_depth = DepthRenderer(method="expected")
        self.rgb_loss = MSELoss()
        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure

    # ------------------------------------------------------------------ text
    @property
    def teacher(self):
        return self.__dict__["teacher"]

    @torch.no_grad()
    def _encode_scene_text(self) -> None:
        device = self.class_text.device
        if self.class_names:
            self.class_text = self.teacher.encode_text(self.class_names).float().to(device)
            doubled = [f"{name} {name}" for name in self.class_names]
            self.class_text_aug = self.teacher.encode_text(doubled).float().to(device)
        self.negative_text = self.teacher.encode_text(list(self.config.negatives)).float().to(device)
        from_env = os.environ.get(QUERIES_ENV)
        if from_env is not None:
            self.set_queries(split_queries(from_env))
        else:
            self.set_queries(list(self.config.queries) or self.class_names)

    @torch.no_grad()
    def set_queries(self, queries: Sequence[str]) -> None:
        """Sets the texts rendered as ``relevancy_<i>``; encoded once here, scored against every frame."""
        queries = [q.strip() for q in queries if q.strip()]
        if queries == self.class_names:
            text = self.class_text.clone()
        elif queries:
            text = self._encode(queries)
        else:
            text = self.class_text.new_zeros(0, self.clip_dim)
        self.queries, self.query_text = queries, text

    @torch.no_grad()
    def set_negatives(self, negatives: Sequence[str]) -> None:
        """Sets the canonical negative phrases of open-vocabulary relevancy (empty: LERF's defaults)."""
        negatives = [n.strip() for n in negatives if n.strip()] or list(CANONICAL_NEGATIVES)
        self.negative_text = self._encode(negatives)

    def _encode(self, texts: Sequence[str]) -> Tensor:
        if self.teacher is None:
            raise RuntimeError("Encoding text needs the pipeline's teacher; none was given to the model.")
        return self.teacher.encode_text(list(texts)).float().to(self.class_text.device)

    def segmentation_classes(self) -> tuple[list[str], Tensor]:
        """Names and text embeddings of the closed-set classes: the scene's, plus typed queries in segmentation mode."""
        if self.query_mode == "segmentation" and self.queries:
            extra = [q for q in self.queries if q not in self.class_names]
            extra_text = self.query_text[[self.queries.index(q) for q in extra]]
            return self.class_names + extra, torch.cat([self.class_text, extra_text])
        return list(self.class_names), self.class_text

    def segmentation_legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        """(class name, 0-255 RGB) of every colour the segmentation output can show."""
        names, _ = self.segmentation_classes()
        colors = (class_colormap(max(len(names), 1))[: len(names)] * 255).round().int().tolist()
        return [(name, tuple(color)) for name, color in zip(names, colors, strict=True)]

    # ------------------------------------------------------------------ schedule
    def _phases_for(self, total_steps: int) -> Phases:
        cfg = self.config
        return Phases.of(
            total_steps,
            cfg.language_start_fraction,
            cfg.joint_start_fraction,
            cfg.self_cross_fraction,
            skip_geometry=cfg.geometry_checkpoint is not None,
        )

    def language_active(self, step: int) -> bool:
        return self.phases.language_active(step)

    def density_parameters(self) -> list[Parameter]:
        return self._field_density_parameters() + list(self.proposal_networks.parameters())

    def _field_density_parameters(self) -> list[Parameter]:
        """The nerfacto field's parameters that are not its colour head: density grid and MLP."""
        colour_head = {id(p) for p in self.appearance_parameters()}
        return [p for p in self.field.parameters() if id(p) not in colour_head]

    def appearance_parameters(self) -> list[Parameter]:
        params = list(self.field.mlp_head.parameters())
        if hasattr(self.field, "embedding_appearance"):
            params += list(self.field.embedding_appearance.parameters())
        return params

    def language_grid_parameters(self) -> list[Parameter]:
        grids = [self.language_field.grid] + ([self.label_volume.grid] if self.label_volume is not None else [])
        return [p for g in grids for p in g.parameters()]

    def language_network_parameters(self) -> list[Parameter]:
        grid_ids = {id(p) for p in self.language_grid_parameters()}
        modules = [self.language_field, self.transient_attention, self.label_volume, self.adapter]
        return [p for m in modules if m is not None for p in m.parameters() if id(p) not in grid_ids]

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        groups = {
            "proposal_networks": list(self.proposal_networks.parameters()),
            "fields": self._field_density_parameters(),
            "appearance": self.appearance_parameters(),
            "language_grids": self.language_grid_parameters(),
            "language_networks": self.language_network_parameters(),
        }
        self.camera_optimizer.get_param_groups(param_groups=groups)
        return groups

    def set_phase(self, step: int) -> None:
        """Freezes and unfreezes parameter sets for the training phase that contains ``step``."""
        for p in self.density_parameters():
            p.requires_grad_(self.phases.density_trainable(step))
        for p in self.appearance_parameters():
            p.requires_grad_(self.phases.colour_trainable(step))

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(attributes)
        if attributes.trainer is not None:
            # phases are fractions of the run, so they follow --max-num-iterations
            self.phases = self._phases_for(attributes.trainer.config.max_num_iterations)
        if attributes.optimizers is not None:
            bind_phases(attributes.optimizers.schedulers, self.phases)

        def on_step(step: int) -> None:
            self.step = step
            self.set_phase(step)

        callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], update_every_num_iters=1, func=on_step
            )
        )
        return callbacks

    # ------------------------------------------------------------------ rendering
    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs = self.field.forward(ray_samples)
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
            outputs.update(self._language_outputs(features, label_dist, outputs["rgb"]))
        return outputs

    def _render_language(
        self, ray_samples: RaySamples, weights: Float[Tensor, "R S 1"]
    ) -> tuple[Float[Tensor, "R D"], Float[Tensor, "R D"] | None]:
        """Renders the feature field (and the label volume's channel distribution) with detached geometry."""
        weights = weights.detach()
        positions = ray_samples.frustums.get_positions().detach()  # [R, S, 3]
        keep = weights[..., 0] > self.config.weight_threshold  # [R, S]
        num_rays = keep.shape[0]

        # Per-sample features, only where the sample is visible; the attention mixes all kept samples. The field's
        # 512-channel head, the attention's projections and its out_proj are linear, and so is volume rendering:
        # so the per-sample work stays in the field's hidden width (or the attention's E) and the 512-channel map
        # is applied once per ray. Exactly the method's Σ_s w_s attention(head(h_s)), reassociated.
        ray_index = keep.nonzero()[:, 0]  # [K] ray of each kept sample, in row-major order
        kept_weights = weights[keep]  # [K, 1]
        hidden = self.language_field.hidden_features(positions[keep])  # [K, H]
        head = self.language_field.head
        if self.transient_attention is not None:
            attention = self.transient_attention
            mixed = attention.mix(*attention.project_through(hidden, head))  # [K, E]
            features = attention.out_proj(_accumulate(kept_weights * mixed, ray_index, num_rays))  # [R, D]
        else:
            rendered_hidden = _accumulate(kept_weights * hidden, ray_index, num_rays)  # [R, H]
            accumulation = _accumulate(kept_weights, ray_index, num_rays)  # [R, 1]
            features = F.linear(rendered_hidden, head.weight) + accumulation * head.bias  # [R, D]

        label_dist = None
        if self.label_volume is not None:
            labels = _accumulate(kept_weights * self.label_volume(positions[keep]), ray_index, num_rays)
            label_dist = torch.softmax(labels, dim=-1)  # [R, D]
        return features, label_dist

    def inference_features(self, features: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        """The features text is scored against: F, or adapter(F) with ``adapter_at_inference`` (METHOD.md 7)."""
        if self.adapter is None or not self.config.adapter_at_inference:
            return features
        return self.adapter(features)[1]

    def _language_outputs(
        self, features: Float[Tensor, "R D"], label_dist: Float[Tensor, "R D"] | None, rgb: Float[Tensor, "R 3"]
    ) -> dict[str, Tensor]:
        outputs: dict[str, Tensor] = {"clip_pca": self._pca_colors(features)}
        scored = self.inference_features(features)

        # Closed set: the scene's classes (plus typed queries in segmentation mode), from features or label volume.
        names, text = self.segmentation_classes()
        if names:
            colors = class_colormap(len(names)).to(rgb)
            if self.segment_with_label_volume and label_dist is not None:
                classes = (label_dist @ text.T).argmax(dim=-1)
            else:
                classes = closed_set_segmentation(scored, text)  # [R]
            outputs["segmentation"] = colors[classes]
            outputs["segmentation_class"] = classes[:, None].float()
            if label_dist is not None and len(self.class_names) > 0:
                lv_classes = (label_dist @ self.class_text.T).argmax(dim=-1)
                outputs["segmentation_label_volume"] = self.class_colors[lv_classes]

        # Open vocabulary: one relevancy map per query, scored against the features rendered once for all.
        if self.query_text.shape[0] > 0:
            relevancy = lerf_relevancy(scored, self.query_text, self.negative_text)  # [R, P]
            for i in range(relevancy.shape[-1]):
                outputs[f"relevancy_{i}"] = relevancy[:, i : i + 1]
                outputs[f"composited_{i}"] = self._composite(rgb, relevancy[:, i : i + 1])
        return outputs

    def _composite(self, rgb: Float[Tensor, "R 3"], relevancy: Float[Tensor, "R 1"]) -> Float[Tensor, "R 3"]:
        """RGB with the relevant region (relevancy above the threshold) tinted by a turbo colormap."""
        threshold = self.composite_threshold
        strength = ((relevancy - threshold) / max(1.0 - threshold, 1e-6)).clamp(0, 1)
        heat = colormaps.apply_colormap(strength, colormaps.ColormapOptions(colormap="turbo"))
        mask = relevancy > threshold
        return torch.where(mask, 0.35 * rgb + 0.65 * heat, rgb)

    @torch.no_grad()
    def _pca_colors(self, features: Float[Tensor, "R D"]) -> Float[Tensor, "R 3"]:
        """A 3-component projection fixed at the first rendered chunk, so colours do not flicker across frames."""
        unit = F.normalize(features, dim=-1)
        if self._pca is None:
            mean = unit.mean(dim=0, keepdim=True)
            _, _, basis = torch.pca_lowrank(unit - mean, q=3, center=False)  # [D, 3]
            projected = (unit - mean) @ basis
            low, high = projected.quantile(0.01, dim=0), projected.quantile(0.99, dim=0)
            self._pca = (mean, basis, low, high)
        mean, basis, low, high = self._pca
        return (((unit - mean) @ basis - low) / (high - low).clamp(min=1e-6)).clamp(0, 1)

    # ------------------------------------------------------------------ losses
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        num_rgb = batch["image"].shape[0]
        metrics = super().get_metrics_dict(_rgb_part(outputs, num_rgb), batch)
        if "clip_features" in outputs:
            with torch.no_grad():
                metrics["feature_cosine"] = F.cosine_similarity(outputs["clip_features"], batch["clip"], dim=-1).mean()
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        num_rgb = batch["image"].shape[0]
        loss_dict = super().get_loss_dict(_rgb_part(outputs, num_rgb), batch, metrics_dict)
        if not self.training or "clip_features" not in outputs:
            return loss_dict
        loss_dict.update(self._language_losses(outputs, batch["clip"]))
        return loss_dict

    def _language_losses(self, outputs: dict[str, Tensor], teacher: Float[Tensor, "N D"]) -> dict[str, Tensor]:
        cfg = self.config
        rendered = outputs["clip_features"]
        self_cross = cfg.use_self_cross and self.phases.self_cross(self.step)
        result: dict[str, Tensor] = {}

        # Adapter on teacher (and rendered, once self-cross training has started) features.
        if self.adapter is not None:
            teacher_orig, teacher_adapted = self.adapter(teacher)
            if self_cross:
                rendered_orig, rendered_adapted = self.adapter(rendered)
                student = rendered_adapted
                self_loss = losses.self_cross_training_loss(
                    teacher_adapted, teacher_orig, rendered_adapted, rendered_orig
                )
            else:
                student = rendered
                self_loss = losses.self_training_loss(teacher_adapted, teacher_orig)
            result["self_loss"] = cfg.self_loss_mult * self_loss
            if cfg.use_text_augmentation and len(self.class_names) > 0:
                result["text_aug_loss"] = cfg.text_aug_loss_mult * losses.text_augmentation_loss(
                    teacher_adapted, teacher_orig, self.class_text, self.class_text_aug
                )
        else:
            teacher_adapted, student = teacher, rendered
        result["feature_loss"] = cfg.feature_loss_mult * losses.distillation_loss(student, teacher_adapted)

        # Label volume: classification over the scene's classes, toward the feature distributions.
        if "label_distribution" in outputs and len(self.class_names) > 0:
            scores = outputs["label_distribution"] @ self.class_text.T  # [N, C]
            targets = [student, teacher_adapted, (student + teacher_adapted) / 2]
            result["classification_loss"] = cfg.classification_loss_mult * losses.label_volume_classification_loss(
                scores, targets, self.class_text, tau=cfg.tau
            )
        return result

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
            from laser_ns.eval.metrics import segmentation_metrics

            masks = batch["segmentation_masks"].to(self.device)  # [H, W, C] bool
            pred_classes = outputs["segmentation_class"][..., 0].long()
            seg = segmentation_metrics(pred_classes, masks.permute(2, 0, 1))
            metrics["miou"] = float(seg["miou"])
            metrics["accuracy"] = float(seg["accuracy"])
            images["segmentation"] = torch.cat([predicted_rgb, outputs["segmentation"]], dim=1)
        return metrics, images


def _accumulate(values: Float[Tensor, "K D"], ray_index: Int[Tensor, " K"], num_rays: int) -> Float[Tensor, "R D"]:
    """Sums weighted per-sample values into their rays (differentiable; no dense [R, S, D] tensor)."""
    return values.new_zeros(num_rays, values.shape[-1]).index_add(0, ray_index, values)


def _rgb_part(outputs: dict[str, Tensor], num_rgb: int) -> dict[str, Tensor]:
    """The outputs of the RGB rays: the datamanager puts them first, language rays after them."""
    sliced = dict(outputs)
    for key in ("rgb", "accumulation", "depth", "expected_depth"):
        if key in sliced and sliced[key].shape[0] != num_rgb:
            sliced[key] = sliced[key][:num_rgb]
    return sliced
