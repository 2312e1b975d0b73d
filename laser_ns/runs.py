"""The one reader of saved laser runs: its config (recognised by its pipeline type, not its method name), its paths
from any folder, its latest checkpoint, and the pipeline loaded through nerfstudio's own ``eval_setup``.

Used by laser-eval, laser-export, laser-locate and the benchmarks. ``laser_ns.checkpoints`` holds the rule for the
latest checkpoint, which ``--pipeline.model.geometry-checkpoint`` shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from nerfstudio.engine.trainer import TrainerConfig

from laser_ns.checkpoints import RunError, check_checkpoint, checkpoint_step, latest_checkpoint

__all__ = ["RunError", "load_pipeline", "locate_saved_run", "prepare_run", "read_run_config", "training_folder"]


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


def prepare_run(config: Any, config_path: Path) -> Any:
    """Point a saved config at its checkpoints and scene from any folder, and check its latest checkpoint."""
    locate_saved_run(config, config_path)
    checkpoint = latest_checkpoint(config.get_checkpoint_dir())
    check_checkpoint(checkpoint)
    config.load_step = checkpoint_step(checkpoint)  # so nerfstudio loads exactly the checked file
    return config


def load_pipeline(
    path: Path, tool: str, test_mode: Literal["test", "val", "inference"] = "test"
) -> tuple[TrainerConfig, Path, Any, Path, int]:
    """(config, config path, pipeline, checkpoint, step) of the laser run at ``path`` (a config.yml or its folder),
    loaded by nerfstudio's ``eval_setup`` after every check: a laser run, found from any folder, a readable
    checkpoint. ``tool`` names the command in messages."""
    from nerfstudio.utils.eval_utils import eval_setup

    from laser_ns.compat import allow_numpy_scalars_in_checkpoints

    allow_numpy_scalars_in_checkpoints()
    config, config_path = read_run_config(path, tool)
    _, pipeline, checkpoint, step = eval_setup(
        config_path, test_mode=test_mode, update_config_callback=lambda c: prepare_run(c, config_path)
    )
    return config, config_path, pipeline, checkpoint, step
