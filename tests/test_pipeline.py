"""LaserPipeline's checks before any work: the teacher's feature size, ignored teacher options."""

from __future__ import annotations

import pytest
import torch

from laser_ns.pipeline import warn_ignored_teacher_settings
from tests.conftest import tiny_pipeline_config


def test_clip_dim_follows_the_teacher(tiny_scene):
    config = tiny_pipeline_config(tiny_scene)
    config.label_teacher.hashed_dim = 768  # a teacher with ViT-L/14-sized features
    pipeline = config.setup(device="cpu", test_mode="val")
    model = pipeline.model
    assert model.clip_dim == 768 and model.predictor.class_text.shape[-1] == 768
    model.train()
    step = model.schedule.phases.self_cross_start  # adapter on teacher and rendered features, label volume, attention
    model.schedule.set_step(step)
    outputs, loss_dict, _ = pipeline.get_train_loss_dict(step)
    assert outputs["clip_features"].shape[-1] == 768
    assert all(torch.isfinite(v) for v in loss_dict.values())


def test_a_clip_dim_that_differs_from_the_teacher_is_refused(tiny_scene):
    config = tiny_pipeline_config(tiny_scene, clip_dim=512)
    config.label_teacher.hashed_dim = 768
    with pytest.raises(ValueError, match="clip-dim is 512 but the teacher's features have 768 channels"):
        config.setup(device="cpu", test_mode="val")


def test_options_of_the_unused_teacher_are_named(tiny_scene, capsys):
    config = tiny_pipeline_config(tiny_scene)  # label-map teacher
    warn_ignored_teacher_settings(config)
    assert "ignored" not in capsys.readouterr().out
    config.teacher.mode = "maskclip"
    warn_ignored_teacher_settings(config)
    assert "--pipeline.teacher.* options are ignored" in capsys.readouterr().out
