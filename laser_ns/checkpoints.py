"""Which checkpoint of a run folder is its latest, and whether it can be read: the one rule for every reader
(laser-eval, laser-export, laser-locate, ``--pipeline.model.geometry-checkpoint``)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from laser_ns.errors import UserError


class RunError(UserError, ValueError):
    """A saved run cannot be read (missing config, another method's run, no or unreadable checkpoint); the message
    names the file and what to do."""


def latest_checkpoint(folder: Path) -> Path:
    """The checkpoint of the highest step (``step-<n>.ckpt``) in ``folder``; a clear error when there is none."""
    folder = Path(folder)
    steps = {}
    for path in folder.glob("step-*.ckpt") if folder.is_dir() else []:
        match = re.fullmatch(r"step-(\d+)\.ckpt", path.name)
        if match:
            steps[int(match.group(1))] = path
    if not steps:
        what = "holds no checkpoint (step-*.ckpt)" if folder.is_dir() else "does not exist"
        raise RunError(
            f"{folder} {what}. Training writes one every --steps-per-save steps and at the end: let the run finish "
            "(or train longer than one save interval), or pass the config.yml of a run that has checkpoints."
        )
    return steps[max(steps)]


def checkpoint_step(path: Path) -> int:
    """The training step in a checkpoint's name (``step-000001999.ckpt`` -> 1999)."""
    return int(Path(path).stem.split("-")[1])


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint whose file is cut short (torch saves a zip; a truncated one has no central directory)."""
    try:
        with zipfile.ZipFile(path):
            pass
    except (zipfile.BadZipFile, OSError) as error:
        size = path.stat().st_size if path.exists() else 0
        raise RunError(
            f"Cannot read checkpoint {path} ({size} bytes: {error}); it is truncated or corrupt, e.g. training was "
            "stopped while saving it. Delete it (laser-eval then takes the previous one, if the run kept one), or "
            "train again."
        ) from error
