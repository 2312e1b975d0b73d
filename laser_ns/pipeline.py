"""LaserPipeline: owns the teacher and hands it to the datamanager (features) and the model (text); asks the model's
schedule which rays a step trains, and gives the model's predictor its fixed PCA sample of training rays."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.misc import step_check
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.cuda.amp.grad_scaler import GradScaler

from laser_ns.compat import allow_numpy_scalars_in_checkpoints
from laser_ns.data.datamanager import LaserDataManagerConfig
from laser_ns.distributed import wrap_train_step
from laser_ns.geometry_checkpoint import check_same_scene, find_checkpoint, load_geometry
from laser_ns.model import LaserModel, LaserModelConfig
from laser_ns.teachers.base import DenseTeacherConfig
from laser_ns.teachers.clip_like import ClipLikeTeacherConfig
from laser_ns.teachers.dense_clip import DenseClipConfig
from laser_ns.teachers.label_map import LabelMapTeacherConfig


@dataclass
class LaserPipelineConfig(VanillaPipelineConfig):
    """Laser's pipeline: a teacher, a patch datamanager and the Laser model."""

    _target: type = field(default_factory=lambda: LaserPipeline)
    datamanager: LaserDataManagerConfig = field(default_factory=LaserDataManagerConfig)
    """Rays and teacher patches."""
    model: LaserModelConfig = field(default_factory=LaserModelConfig)
    """The Laser model."""
    teacher_type: Literal["clip", "labels", "clip-like"] = "clip"
    """Teacher: dense CLIP features ('clip'), the scene's per-view label maps as clean features ('labels',
    docs/method.md#per-view-label-maps), or a simulation of dense CLIP from the label maps ('clip-like': offline demo
    and benchmarks)."""
    teacher: DenseClipConfig = field(default_factory=DenseClipConfig)
    """Dense CLIP teacher (also the text encoder for queries)."""
    label_teacher: LabelMapTeacherConfig = field(default_factory=LabelMapTeacherConfig)
    """Label-map teacher, used when teacher_type is 'labels'."""
    clip_like_teacher: ClipLikeTeacherConfig = field(default_factory=ClipLikeTeacherConfig)
    """Simulated dense CLIP (laser_ns/teachers/clip_like.py), used when teacher_type is 'clip-like'."""

    def selected_teacher(self) -> DenseTeacherConfig:
        """The config of the teacher that ``teacher_type`` names."""
        return {"clip": self.teacher, "labels": self.label_teacher, "clip-like": self.clip_like_teacher}[
            self.teacher_type
        ]


def warn_ignored_teacher_settings(config: LaserPipelineConfig) -> None:
    """Says when options of the teacher that is not selected were changed: they have no effect."""
    if config.teacher_type != "clip" and config.teacher != DenseClipConfig():
        CONSOLE.print(
            f"[bold yellow][laser_ns] --pipeline.teacher.* options are ignored with --pipeline.teacher-type "
            f"{config.teacher_type} (only the dense CLIP teacher reads them; the label-map teacher's CLIP text encoder "
            "is --pipeline.label-teacher.clip.*)."
        )
    for option, name, default in (
        ("label-teacher", "labels", LabelMapTeacherConfig()),
        ("clip-like-teacher", "clip-like", ClipLikeTeacherConfig()),
    ):
        if config.teacher_type != name and getattr(config, option.replace("-", "_")) != default:
            CONSOLE.print(
                f"[bold yellow][laser_ns] --pipeline.{option}.* options are ignored with --pipeline.teacher-type "
                f"{config.teacher_type}; add --pipeline.teacher-type {name} to use them."
            )


class LaserPipeline(VanillaPipeline):
    """Builds the teacher once; its frozen weights never enter the pipeline's state dict."""

    config: LaserPipelineConfig

    def __init__(
        self,
        config: LaserPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        super(VanillaPipeline, self).__init__()  # VanillaPipeline.__init__ cannot pass the teacher along
        allow_numpy_scalars_in_checkpoints()
        warn_ignored_teacher_settings(config)
        self.config = config
        self.test_mode = test_mode
        teacher = config.selected_teacher().setup()
        teacher = teacher.to(device)
        self.__dict__["teacher"] = teacher  # not a submodule: nothing of it is saved

        self.datamanager = config.datamanager.setup(
            device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, teacher=teacher
        )
        self.datamanager.to(device)
        train_dataset = self.datamanager.train_dataset
        assert train_dataset is not None, "Missing input dataset"
        if teacher.needs_labels and train_dataset.metadata["class_names"]:
            # also when only rendering: the label-map teacher's text comes from the class list
            teacher.set_class_names(train_dataset.metadata["class_names"])
        self._model = config.model.setup(
            scene_box=train_dataset.scene_box,
            num_train_data=len(train_dataset),
            metadata=train_dataset.metadata,
            device=device,
            grad_scaler=grad_scaler,
            teacher=teacher,
        )
        centring = self.laser_model.centring
        if centring is not None and self.datamanager.tile_features:
            centring.fit(self.datamanager.tile_features)  # the scene's mean teacher feature; saved with the model
        if test_mode == "val" and config.model.geometry_checkpoint is not None:
            self._load_geometry(config.model.geometry_checkpoint)
        self.model.to(device)
        self.world_size = world_size
        self.checkpoint_step: int | None = None  # the step of the checkpoint loaded by load_pipeline, if any
        # Several processes: the whole step (render and losses) runs through DDP; the model stays unwrapped, so the
        # checkpoint's keys do not depend on the number of devices (laser_ns/distributed.py).
        self.__dict__["_train_step"] = wrap_train_step(self._model, device) if world_size > 1 else None
        # --- viewer panel (laser_ns/viewer.py): the viewer finds public ViewerElements on the pipeline ---
        from laser_ns.viewer import LaserViewerControls

        self.viewer_controls = LaserViewerControls(
            self.laser_model.predictor, has_label_volume=self.laser_model.label_volume is not None
        )

    def _load_geometry(self, path: Path) -> None:
        checkpoint, run_dir = find_checkpoint(path)
        outputs = self.datamanager.train_dataparser_outputs
        check_same_scene(run_dir, outputs.dataparser_transform, outputs.dataparser_scale)
        count = load_geometry(self.model, checkpoint, run_dir)
        CONSOLE.print(f"[laser_ns] geometry from {checkpoint} ({count} tensors); skipping the geometry phase")
        if self.laser_model.camera_optimizer.config.mode != self.config.model.camera_optimizer.mode:
            CONSOLE.print(
                f"[laser_ns] the run refined its camera poses ({self.laser_model.camera_optimizer.config.mode}); "
                "its corrections are applied to the training rays, fixed."
            )

    @property
    def teacher(self):
        return self.__dict__["teacher"]

    @property
    def laser_model(self) -> LaserModel:
        return typing.cast(LaserModel, self.model)

    # ------------------------------------------------------------------ PCA sample
    def pca_sample_rays(self) -> RayBundle:
        """A fixed sample of training rays: ``pca_rays`` pixels drawn (with a fixed seed, not the global RNG) from
        ``pca_views`` training views spread evenly over the dataset."""
        config = self.laser_model.predictor.config
        cameras = self.datamanager.train_dataset.cameras
        num_views = min(config.pca_views, len(cameras))
        views = torch.linspace(0, len(cameras) - 1, num_views).round().long()  # [V]
        generator = torch.Generator().manual_seed(0)
        pick = torch.randint(num_views, (config.pca_rays,), generator=generator)  # [N] index into views
        camera_indices = views[pick]  # [N]
        heights = cameras.height[camera_indices, 0].float()
        widths = cameras.width[camera_indices, 0].float()
        uv = torch.rand(config.pca_rays, 2, generator=generator)  # [N, 2] row, column as fractions
        coords = torch.stack([uv[:, 0] * heights, uv[:, 1] * widths], dim=-1)  # [N, 2] pixel coordinates
        return cameras.generate_rays(camera_indices=camera_indices[:, None], coords=coords).to(self.device)

    @torch.no_grad()
    def pca_sample_features(self) -> Tensor:
        """The model's rendered features of :meth:`pca_sample_rays`, rendered in eval mode without changing training:
        the proposal sampler's update counter (a render resets it) is restored afterwards."""
        model = self.laser_model
        sampler = model.proposal_sampler
        was_training, steps_since_update = model.training, sampler._steps_since_update
        model.eval()
        try:
            rays = self.pca_sample_rays()
            chunk = model.config.eval_num_rays_per_chunk
            return torch.cat([model.rendered_features(rays[i : i + chunk]) for i in range(0, len(rays), chunk)])
        finally:
            model.train(was_training)
            sampler._steps_since_update = steps_since_update

    def fit_feature_pca(self) -> None:
        """Fits the predictor's clip_pca basis on the fixed sample of training rays."""
        self.laser_model.predictor.fit_pca(self.pca_sample_features())

    def load_pipeline(self, loaded_state, step: int) -> None:
        """nerfstudio's checkpoint load (eval_setup, ns-viewer, --load-dir); remembers the checkpoint's step, which
        the viewer's geometry check needs before ns-viewer tells the viewer."""
        self.checkpoint_step = int(step)
        super().load_pipeline(loaded_state, step)

    def load_state_dict(self, state_dict, strict: bool | None = None):
        """nerfstudio's load (eval_setup, --load-dir); a checkpoint saved before the basis was saved with it gets one
        fitted here, on the fixed sample, so its clip_pca is not grey."""
        super().load_state_dict(state_dict, strict=strict)
        if not bool(self.laser_model.predictor.pca_fitted):
            self.fit_feature_pca()

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(attributes)
        trainer = attributes.trainer
        if trainer is None:
            return callbacks
        last_step = getattr(trainer, "_start_step", 0) + trainer.config.max_num_iterations - 1

        def refit_before_save(step: int) -> None:
            # every checkpoint carries the basis of the model it saves (once language has trained); the viewer gets
            # one after the first language step
            schedule = self.laser_model.schedule
            saving = step_check(step, trainer.config.steps_per_save) or step == last_step
            first_language_step = step == schedule.phases.language_start
            if (saving or first_language_step) and schedule.language_active(step):
                self.fit_feature_pca()

        callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=refit_before_save,
            )
        )
        return callbacks

    # ------------------------------------------------------------------ training
    def get_train_loss_dict(self, step: int):
        with_language = self.laser_model.schedule.language_active(step)
        ray_bundle, batch = self.datamanager.next_train(step, with_language=with_language)
        if self.__dict__.get("_train_step") is not None:
            return self.__dict__["_train_step"](ray_bundle, batch)
        model_outputs = self._model(ray_bundle)
        metrics_dict = self.model.get_metrics_dict(model_outputs, batch)
        loss_dict = self.model.get_loss_dict(model_outputs, batch, metrics_dict)
        return model_outputs, loss_dict, metrics_dict
