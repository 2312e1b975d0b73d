"""Loading a trained laser run for export, the way ``laser-eval`` does (nerfstudio's ``eval_setup``), with checks
that turn the usual mistakes (wrong path, another method's run, no checkpoint) into messages that say what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerfstudio.utils.rich_utils import CONSOLE

from laser_ns.errors import ExportError
from laser_ns.export.frames import TRANSFORMS_FILE, SceneFrames


@dataclass
class LaserRun:
    """A loaded run: the pipeline in eval mode, its checkpoint and its frames."""

    config_path: Path
    """The run's config.yml."""
    pipeline: Any
    """The LaserPipeline, in eval mode, with the checkpoint's weights."""
    checkpoint: Path
    """The checkpoint file that was loaded."""
    step: int
    """Training step of the checkpoint."""
    frames: SceneFrames
    """Dataparser frame <-> original capture frame."""
    geometry_steps: int | None = None
    """Steps the run trained geometry for (None: its geometry came from a nerfacto run)."""


MIN_GEOMETRY_STEPS = 250
"""Below this many geometry steps a run's density is mostly fog: depths, boxes and point clouds are not usable."""

FAR_OUTSIDE = 2.0
"""A point further out than this multiple of the scene box's half-size is far outside the scene."""


def geometry_steps(config: Any, step: int) -> int | None:
    """Steps of the geometry phase a checkpoint at ``step`` had (None when geometry came from a nerfacto run)."""
    model = config.pipeline.model
    if getattr(model, "geometry_checkpoint", None) is not None:
        return None
    fraction = model.schedule.language_start_fraction
    return min(step, int(round(fraction * config.max_num_iterations)))


def geometry_warnings(run: LaserRun, points: Any) -> list[str]:
    """Why this run's geometry should not be trusted for 3D output, each with the fix (empty when it looks usable):
    too few geometry steps, or many rendered points far outside the scene box."""
    import numpy as np

    warnings = []
    if run.geometry_steps is not None and run.geometry_steps < MIN_GEOMETRY_STEPS:
        warnings.append(
            f"{run.config_path} trained geometry for only {run.geometry_steps} steps (step {run.step}), so its depths "
            f"are unreliable and points may lie far from any surface. Train with more steps (laser-lite: the default "
            f"--max-num-iterations 2000 gives 500), or seed the geometry from a finished `ns-train nerfacto-lite` run "
            "with --pipeline.model.geometry-checkpoint."
        )
    points = np.asarray(points)
    if len(points):
        aabb = run.pipeline.datamanager.train_dataparser_outputs.scene_box.aabb.cpu().numpy()
        centre, half = aabb.mean(axis=0), (aabb[1] - aabb[0]) / 2
        outside = float((np.abs(points - centre) > FAR_OUTSIDE * half).any(axis=1).mean())
        if outside > 0.1:
            warnings.append(
                f"{100 * outside:.0f}% of the rendered points lie more than {FAR_OUTSIDE:g}x the scene box away from "
                "its centre: the run's geometry is not usable for 3D output (too few steps, or a scene its cameras do "
                "not cover). Train longer, or check the scene's poses."
            )
    return warnings


def load_run(config_path: Path) -> LaserRun:
    """Loads the pipeline of a laser run for inference (no training images are read)."""
    from laser_ns.runs import RunError, load_pipeline

    try:
        # as laser-eval: checkpoints and scene found from any folder, the latest checkpoint checked before loading
        config, path, pipeline, checkpoint, step = load_pipeline(
            config_path, "laser-export and laser-locate", test_mode="inference"
        )
    except RunError as err:
        raise ExportError(str(err)) from None
    return LaserRun(path, pipeline, checkpoint, step, run_frames(path, pipeline), geometry_steps(config, step))


def run_frames(config_path: Path, pipeline: Any) -> SceneFrames:
    """The run's ``dataparser_transforms.json``; without it, the transform the dataparser computes now."""
    saved = Path(config_path).parent / TRANSFORMS_FILE
    if saved.is_file():
        return SceneFrames.from_json(saved)
    outputs = pipeline.datamanager.train_dataparser_outputs
    CONSOLE.print(f"[yellow]{saved} is missing; using the transform the dataparser computes from the data now.")
    transform = outputs.dataparser_transform.detach().cpu().double().numpy()
    return SceneFrames(transform=transform, scale=float(outputs.dataparser_scale), source="dataparser outputs")
