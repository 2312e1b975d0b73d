"""nerfstudio's TrainerConfig for laser runs: checks the device and saves absolute paths.

``ns-train`` parses the command line, then calls ``config.save_config()`` once, before it launches training. That is
the one moment a method gets between parsing and the saved ``config.yml``. We use it to

- refuse a run whose device this machine lacks (:func:`laser_ns.device.check_training_device`), before the run
  folder exists;
- make every path the user gave absolute. ``ns-eval``, ``ns-render``, ``ns-viewer`` and ``laser-eval`` read the
  saved config, and with a relative ``--data`` or ``--output-dir`` they would only work from the folder training
  started in.

:func:`locate_saved_run` does the reverse for runs saved with relative paths (or moved since): it finds the
checkpoints next to ``config.yml`` and the scene relative to the folder training ran in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerfstudio.engine.trainer import TrainerConfig

from laser_ns.device import check_training_device


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).expanduser().resolve()


def resolve_run_paths(config: TrainerConfig) -> None:
    """Make the paths of ``config`` that name files or folders absolute, against the current folder."""
    config.output_dir = _absolute(config.output_dir)
    config.data = _absolute(config.data)
    config.load_dir = _absolute(config.load_dir)
    config.load_config = _absolute(config.load_config)
    config.load_checkpoint = _absolute(config.load_checkpoint)
    datamanager = config.pipeline.datamanager
    datamanager.data = _absolute(datamanager.data)
    datamanager.dataparser.data = _absolute(datamanager.dataparser.data)
    if getattr(datamanager, "cache_dir", None) is not None:
        datamanager.cache_dir = _absolute(datamanager.cache_dir)
    model = config.pipeline.model
    if getattr(model, "geometry_checkpoint", None) is not None:
        model.geometry_checkpoint = _absolute(model.geometry_checkpoint)


@dataclass
class LaserTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig; a run refuses a missing device and saves its config with absolute paths."""

    def save_config(self) -> None:
        check_training_device(self, command=f"ns-train {self.method_name}")
        resolve_run_paths(self)
        super().save_config()


def training_folder(config: Any, config_path: Path) -> Path | None:
    """The folder ``ns-train`` ran in, inferred from where its ``config.yml`` is, or None if it cannot be told.

    A run saved with a relative ``--output-dir`` lives at ``<training folder>/<output_dir>/<experiment>/<method>/
    <timestamp>/config.yml``; the parts after the training folder are the run's relative base directory.
    """
    base = config.get_base_dir()
    if base.is_absolute():
        return None
    run_dir = config_path.absolute().parent
    parts = [p for p in base.parts if p != "."]
    if ".." in parts or tuple(run_dir.parts[len(run_dir.parts) - len(parts) :]) != tuple(parts):
        return None
    return run_dir.parents[len(parts) - 1] if parts else run_dir


def locate_saved_run(config: TrainerConfig, config_path: Path) -> None:
    """Point a loaded ``config`` at its checkpoints and scene, wherever the current folder is.

    The checkpoints are read from the folder holding ``config.yml`` when it has them (so a moved run still loads),
    else from the saved output directory. A relative scene path that does not exist from the current folder is read
    relative to the folder training ran in.
    """
    run_dir = config_path.absolute().parent
    # get_checkpoint_dir() joins base_dir / relative_model_dir; an absolute relative_model_dir wins that join
    if (run_dir / config.relative_model_dir).is_dir() or not config.get_checkpoint_dir().is_dir():
        config.relative_model_dir = run_dir / config.relative_model_dir
    start = training_folder(config, config_path)
    datamanager = config.pipeline.datamanager
    for owner in (datamanager, datamanager.dataparser):
        data = owner.data
        if data is not None and not data.is_absolute() and not data.exists() and start is not None:
            if (start / data).exists():
                owner.data = start / data
