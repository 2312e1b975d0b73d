"""Loading a trained laser run for export, the way ``laser-eval`` does (nerfstudio's ``eval_setup``), with checks
that turn the usual mistakes (wrong path, another method's run, no checkpoint) into messages that say what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerfstudio.utils.rich_utils import CONSOLE

from laser_ns.errors import UserError
from laser_ns.export.frames import TRANSFORMS_FILE, SceneFrames


class ExportError(UserError, ValueError):
    """Bad input to an export or localisation; the message says what was wrong and what to do."""


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


def load_run(config_path: Path) -> LaserRun:
    """Loads the pipeline of a laser run for inference (no training images are read)."""
    from nerfstudio.utils.eval_utils import eval_setup

    from laser_ns.compat import allow_numpy_scalars_in_checkpoints
    from laser_ns.eval.evaluate import prepare_run
    from laser_ns.trainer_config import RunError, read_run_config

    try:
        _, path = read_run_config(config_path, "laser-export and laser-locate")
    except RunError as err:
        raise ExportError(str(err)) from None
    allow_numpy_scalars_in_checkpoints()
    try:
        # as laser-eval: checkpoints and scene found from any folder, the latest checkpoint checked before loading
        _, pipeline, checkpoint, step = eval_setup(
            path, test_mode="inference", update_config_callback=lambda config: prepare_run(config, path)
        )
    except RunError as err:
        raise ExportError(str(err)) from None
    return LaserRun(path, pipeline, checkpoint, step, run_frames(path, pipeline))


def run_frames(config_path: Path, pipeline: Any) -> SceneFrames:
    """The run's ``dataparser_transforms.json``; without it, the transform the dataparser computes now."""
    saved = Path(config_path).parent / TRANSFORMS_FILE
    if saved.is_file():
        return SceneFrames.from_json(saved)
    outputs = pipeline.datamanager.train_dataparser_outputs
    CONSOLE.print(f"[yellow]{saved} is missing; using the transform the dataparser computes from the data now.")
    transform = outputs.dataparser_transform.detach().cpu().double().numpy()
    return SceneFrames(transform=transform, scale=float(outputs.dataparser_scale), source="dataparser outputs")
