"""Loading a trained laser run for export, the way ``laser-eval`` does (nerfstudio's ``eval_setup``), with checks
that turn the usual mistakes (wrong path, another method's run, no checkpoint) into messages that say what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerfstudio.utils.rich_utils import CONSOLE

from laser_ns.errors import ExportError
from laser_ns.export import sanity
from laser_ns.export.frames import TRANSFORMS_FILE, SceneFrames
from laser_ns.export.sanity import geometry_steps


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


def geometry_warnings(run: LaserRun, points: Any) -> list[str]:
    """Why this run's geometry should not be trusted for 3D output, each with the fix (empty when it looks usable):
    too few geometry steps, or many rendered points far outside the scene box (:mod:`laser_ns.export.sanity`)."""
    aabb = run.pipeline.datamanager.train_dataparser_outputs.scene_box.aabb.cpu().numpy()
    return sanity.geometry_warnings(str(run.config_path), run.step, run.geometry_steps, aabb, points)


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
