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

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nerfstudio.engine.trainer import Trainer, TrainerConfig

from laser_ns import distributed
from laser_ns.device import check_training_device
from laser_ns.errors import UserError, report, run_tool, warn


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


class LaserTrainer(Trainer):
    """nerfstudio's Trainer; a user error while setting up (missing weights, a read-only cache, a bad scene) ends the
    run with its message, no traceback, and removes the run folder when it holds nothing but ``config.yml``."""

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        try:
            super().setup(test_mode=test_mode)
        except UserError as error:
            remove_empty_run_folder(self.base_dir)
            report(f"ns-train {self.config.method_name}", error)
            raise SystemExit(1) from None

    def eval_iteration(self, step: int) -> None:
        # With several processes the periodic evaluations run on rank 0 only: they touch no gradient and no other
        # rank waits for them, and only rank 0 writes logs (nerfstudio's writer).
        if distributed.rank() == 0:
            super().eval_iteration(step)


def remove_empty_run_folder(base_dir: Path) -> bool:
    """Deletes a run folder that holds only ``config.yml`` (and empty folders): a run that never trained."""
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        return False
    files = [p for p in base_dir.rglob("*") if not p.is_dir()]
    if [p.relative_to(base_dir) for p in files] not in ([Path("config.yml")], []):
        return False
    shutil.rmtree(base_dir)
    # the <experiment>/<method> folders above it, if the run was their only content
    for parent in list(base_dir.parents)[:2]:
        try:
            parent.rmdir()
        except OSError:
            break
    return True


@dataclass
class LaserTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig; a run refuses a missing device and saves its config with absolute paths."""

    _target: type = field(default_factory=lambda: LaserTrainer)

    def print_to_terminal(self) -> None:
        """``ns-train`` prints the config, then saves it: refuse a device this machine lacks before either."""
        command = f"ns-train {self.method_name}"
        run_tool(command, lambda: check_training_device(self, command=command))
        super().print_to_terminal()
        warn_ignored_switches(self)

    def save_config(self) -> None:
        check_training_device(self, command=f"ns-train {self.method_name}")
        resolve_run_paths(self)
        super().save_config()


def warn_ignored_switches(config: TrainerConfig) -> list[str]:
    """Prints (and returns) a warning per model switch that is on but does nothing in the chosen combination."""
    ignored_switches = getattr(config.pipeline.model, "ignored_switches", None)
    warnings = ignored_switches() if ignored_switches is not None else []
    for warning in warnings:
        warn(warning)
    return warnings


class RunError(UserError, ValueError):
    """A saved run cannot be read (missing config, another method's run, no or unreadable checkpoint); the message
    names the file and what to do."""


def read_run_config(path: Path, tool: str = "this tool") -> tuple[TrainerConfig, Path]:
    """The laser TrainerConfig saved at ``path`` (a config.yml, or a run folder holding one) and the config's path.

    A run is a laser run when its pipeline is a ``LaserPipelineConfig``: laser, laser-lite, laser-paper and every
    ``laser-train`` preset, whatever the method name. Anything else is refused with a message naming nerfstudio's tool.
    """
    import yaml

    from laser_ns.pipeline import LaserPipelineConfig

    path = Path(path)
    if path.is_dir():
        path = path / "config.yml"
    if not path.is_file():
        raise RunError(
            f"No training config at {path}. Pass --load-config with the config.yml of a laser run, "
            "e.g. outputs/<experiment>/laser/<timestamp>/config.yml."
        )
    try:
        config = yaml.load(path.read_text(), Loader=yaml.Loader)
    except Exception as err:  # a YAML file of something else, or a config of a plugin that is not installed
        raise RunError(f"{path} is not a readable nerfstudio config ({type(err).__name__}: {err}).") from err
    if not isinstance(config, TrainerConfig):
        raise RunError(f"{path} is not a nerfstudio training config (it holds a {type(config).__name__}).")
    if not isinstance(config.pipeline, LaserPipelineConfig):
        raise RunError(
            f"{path} is a '{config.method_name}' run ({type(config.pipeline).__name__}), not a laser run; {tool} reads "
            "runs of laser, laser-lite, laser-paper and the laser-train presets. Use nerfstudio's own tools "
            "(ns-eval, ns-export, ns-render) for other methods."
        )
    return config, path


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
