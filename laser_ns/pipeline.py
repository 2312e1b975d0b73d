"""LaserPipeline: owns the teacher and hands it to the datamanager (features) and the model (text)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch.cuda.amp.grad_scaler import GradScaler

from laser_ns.compat import allow_numpy_scalars_in_checkpoints
from laser_ns.data.datamanager import LaserDataManagerConfig
from laser_ns.geometry_checkpoint import check_same_scene, find_checkpoint, load_geometry
from laser_ns.model import LaserModel, LaserModelConfig
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
    teacher_type: Literal["clip", "labels"] = "clip"
    """Teacher: dense CLIP features ('clip') or the scene's per-view label maps ('labels', METHOD.md section 11)."""
    teacher: DenseClipConfig = field(default_factory=DenseClipConfig)
    """Dense CLIP teacher (also the text encoder for queries)."""
    label_teacher: LabelMapTeacherConfig = field(default_factory=LabelMapTeacherConfig)
    """Label-map teacher, used when teacher_type is 'labels'."""


def refuse_several_devices(world_size: int) -> None:
    """Laser trains on one device. Under DDP its adapter losses would run outside the wrapped forward (so backward
    fails) and every rank would recompute every teacher feature, so several devices are refused up front."""
    if world_size > 1:
        raise RuntimeError(
            f"laser_ns trains on one device, but this run has {world_size} processes (--machine.num-devices or "
            "--machine.num-machines above 1). Laser's adapter and label-volume losses run outside nerfstudio's "
            "DDP-wrapped forward, so training would fail in backward. Train with --machine.num-devices 1 "
            "(laser at paper settings fits one GPU)."
        )


def warn_ignored_teacher_settings(config: LaserPipelineConfig) -> None:
    """Says when options of the teacher that is not selected were changed: they have no effect."""
    if config.teacher_type == "labels" and config.teacher != DenseClipConfig():
        CONSOLE.print(
            "[bold yellow][laser_ns] --pipeline.teacher.* options are ignored with --pipeline.teacher-type labels "
            "(the label-map teacher has no image encoder; its text encoder is --pipeline.label-teacher.clip.*)."
        )
    if config.teacher_type == "clip" and config.label_teacher != LabelMapTeacherConfig():
        CONSOLE.print(
            "[bold yellow][laser_ns] --pipeline.label-teacher.* options are ignored with --pipeline.teacher-type "
            "clip; add --pipeline.teacher-type labels to use them."
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
        refuse_several_devices(world_size)  # before any work: no teacher, no cache, no model
        allow_numpy_scalars_in_checkpoints()
        warn_ignored_teacher_settings(config)
        self.config = config
        self.test_mode = test_mode
        teacher = (config.label_teacher if config.teacher_type == "labels" else config.teacher).setup()
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
        if test_mode == "val" and config.model.geometry_checkpoint is not None:
            self._load_geometry(config.model.geometry_checkpoint)
        self.model.to(device)
        self.world_size = world_size
        # --- viewer panel (laser_ns/viewer.py): the viewer finds public ViewerElements on the pipeline ---
        from laser_ns.viewer import LaserViewerControls

        self.viewer_controls = LaserViewerControls(self.laser_model)

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

    def get_train_loss_dict(self, step: int):
        with_language = self.laser_model.language_active(step)
        ray_bundle, batch = self.datamanager.next_train(step, with_language=with_language)
        model_outputs = self._model(ray_bundle)
        metrics_dict = self.model.get_metrics_dict(model_outputs, batch)
        loss_dict = self.model.get_loss_dict(model_outputs, batch, metrics_dict)
        return model_outputs, loss_dict, metrics_dict
