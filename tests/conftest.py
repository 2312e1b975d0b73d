"""Shared fixtures: small generated scenes and a tiny laser-lite configuration."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """An 8-view 64x48 forward-facing tabletop scene with labels and two annotated views (3D-OVS layout)."""
    from laser_ns.scenes import make_scene

    root = tmp_path_factory.mktemp("tiny_scene") / "scene"
    make_scene(root, "tabletop", seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5])
    return root


def tiny_pipeline_config(scene: Path, max_steps: int = 20, **model_overrides):
    """laser-lite shrunk further, with every part of the paper on (the tests exercise them; laser-lite's defaults
    leave them out), on the label-map teacher with hashed text (no CLIP weights)."""
    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    pipeline = config.pipeline
    every_part_on_hashed_labels(pipeline, scene)
    # No trainer here to give the schedule the run's length (--max-num-iterations): the pipeline built from this
    # config gives it max_steps, as the trainer's callbacks would.
    pipeline._target = functools.partial(_pipeline_with_run_length, max_steps=max_steps)
    for key, value in model_overrides.items():
        setattr(pipeline.model, key, value)
    return pipeline


def every_part_on_hashed_labels(pipeline, scene: Path) -> None:
    """Sets a laser-lite pipeline config to the tests' shape: every part of the paper on, the label-map teacher with
    hashed text (no CLIP weights) on ``scene``, 64 rays and 32-pixel patches per step, 1024-ray render chunks."""
    from laser_ns.model_config import PART_SWITCHES

    for part in PART_SWITCHES:
        setattr(pipeline.model, part, True)
    pipeline.teacher_type = "labels"
    pipeline.label_teacher.text_encoder = "hashed"
    pipeline.datamanager.data = scene
    pipeline.datamanager.dataparser.data = scene
    pipeline.datamanager.train_num_rays_per_batch = 64
    pipeline.datamanager.language_patch_size = 32
    pipeline.datamanager.language_patch_tiles = None  # the tests' patches are in pixels
    pipeline.model.eval_num_rays_per_chunk = 1024


def _pipeline_with_run_length(config, *args, max_steps: int, **kwargs):
    from laser_ns.pipeline import LaserPipeline

    pipeline = LaserPipeline(config, *args, **kwargs)
    pipeline.laser_model.schedule.set_total_steps(max_steps)
    return pipeline
