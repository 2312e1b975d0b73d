"""nerfstudio's TrainerConfig for laser runs: checks the device and saves absolute paths.

``ns-train`` parses the command line, then calls ``config.save_config()`` once, before it launches training. That is
the one moment a method gets between parsing and the saved ``config.yml``. We use it to

- refuse a run whose device this machine lacks (:func:`laser_ns.device.check_training_device`), before the run
  folder exists;
- make every path the user gave absolute. ``ns-eval``, ``ns-render``, ``ns-viewer`` and ``laser-eval`` read the
  saved config, and with a relative ``--data`` or ``--output-dir`` they would only work from the folder training
  started in.

:func:`laser_ns.runs.locate_saved_run` does the reverse for runs saved with relative paths (or moved since): it
finds the checkpoints next to ``config.yml`` and the scene relative to the folder training ran in.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
        """``ns-train`` prints the config, then saves it: refuse a device this machine lacks, or a scene the
        dataparser cannot read, before either (the message is then the only thing printed)."""
        command = f"ns-train {self.method_name}"
        run_tool(command, lambda: check_training_device(self, command=command))
        run_tool(command, lambda: check_scene(self))
        super().print_to_terminal()
        warn_ignored_switches(self)

    def save_config(self) -> None:
        check_training_device(self, command=f"ns-train {self.method_name}")
        resolve_run_paths(self)
        super().save_config()


def check_scene(config: TrainerConfig) -> None:
    """Reads the scene's poses, image headers and labels with the run's own dataparser (no image is decoded), so
    that a missing or broken scene is named before nerfstudio prints the config and creates the run
    folder. Raises the dataparser's :class:`~laser_ns.data.semantics.SceneFormatError`; other dataparsers are left
    to nerfstudio."""
    from laser_ns.data.dataparser import LaserDataParserConfig

    datamanager = config.pipeline.datamanager
    dataparser = getattr(datamanager, "dataparser", None)
    data = getattr(datamanager, "data", None) or getattr(dataparser, "data", None)
    if not isinstance(dataparser, LaserDataParserConfig) or data is None:
        return
    dataparser = copy.copy(dataparser)
    dataparser.data = Path(data)
    dataparser.setup().get_dataparser_outputs(split="train")


def warn_ignored_switches(config: TrainerConfig) -> list[str]:
    """Prints (and returns) a warning per model switch that is on but does nothing in the chosen combination."""
    ignored_switches = getattr(config.pipeline.model, "ignored_switches", None)
    warnings = ignored_switches() if ignored_switches is not None else []
    for warning in warnings:
        warn(warning)
    return warnings
