"""Starting laser from a finished nerfacto run of the same scene (the paper's two stages in one command).

``LaserModel`` uses nerfacto's module names, so the density field, colour head and proposal networks of a
nerfacto checkpoint load as they are. The run must have used our dataparser (``ns-train nerfacto --data scene/
laser-data``): same images, same normalisation, so its ``dataparser_transforms.json`` must match ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from laser_ns.checkpoints import RunError, latest_checkpoint
from laser_ns.compat import allow_numpy_scalars_in_checkpoints
from laser_ns.errors import UserError

GEOMETRY_PREFIXES = ("field.", "proposal_networks.")
"""State-dict prefixes (inside the model) of what a geometry checkpoint provides."""


class GeometryCheckpointError(UserError, ValueError):
    """A nerfacto checkpoint cannot seed this laser run; the message says why and what to do."""


def find_checkpoint(path: Path) -> tuple[Path, Path]:
    """(checkpoint file, run folder) from a run folder, its config.yml, or a .ckpt file."""
    path = Path(path)
    if not path.exists():
        raise GeometryCheckpointError(f"Geometry checkpoint {path} does not exist. Pass a nerfacto run's config.yml.")
    if path.is_file() and path.suffix == ".ckpt":
        return path, path.parent.parent
    run_dir = path.parent if path.is_file() else path
    try:
        return latest_checkpoint(run_dir / "nerfstudio_models"), run_dir
    except RunError as error:
        raise GeometryCheckpointError(f"{error} (--pipeline.model.geometry-checkpoint {path})") from None


def check_same_scene(run_dir: Path, transform: Tensor, scale: float) -> None:
    """The run's saved dataparser transform must equal ours, or its geometry lives in another frame."""
    saved = run_dir / "dataparser_transforms.json"
    if not saved.exists():
        raise GeometryCheckpointError(f"{saved} is missing; cannot check that the run is of the same scene.")
    meta = json.loads(saved.read_text())
    same = torch.allclose(torch.tensor(meta["transform"], dtype=torch.float32), transform.float()[:3], atol=1e-4)
    if not same or abs(float(meta["scale"]) - float(scale)) > 1e-4 * max(1.0, abs(scale)):
        raise GeometryCheckpointError(
            f"The run in {run_dir} normalised its scene differently from this one (dataparser_transforms.json "
            "differs): it is another scene, or it was trained with another dataparser. Train the geometry with "
            "`ns-train nerfacto --data <this scene> laser-data` and pass that run's config.yml."
        )


def checkpoint_model_state(checkpoint: Path) -> dict[str, Tensor]:
    """Every model tensor of a nerfstudio checkpoint, keyed as inside the model."""
    allow_numpy_scalars_in_checkpoints()
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    except Exception as err:
        raise GeometryCheckpointError(
            f"Cannot read checkpoint {checkpoint} ({type(err).__name__}: {err}). It may be truncated (a run stopped "
            "while saving): pass an earlier step-*.ckpt of that run, or retrain it."
        ) from err
    prefix = "_model.module." if any(k.startswith("_model.module.") for k in state) else "_model."  # DDP runs too
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def implementation_of(keys: list[str]) -> str:
    """'tcnn' when the hash grids and MLPs are tiny-cuda-nn modules, else 'torch'. A tiny-cuda-nn module holds one
    flat tensor named 'params' (e.g. field.mlp_base.model.params); nerfstudio's torch modules name none so."""
    return "tcnn" if any(key.endswith(".params") for key in keys) else "torch"


def check_same_implementation(checkpoint: Path, source: list[str], target: list[str]) -> None:
    """tiny-cuda-nn and torch hash grids store different tensors; name that instead of a missing key."""
    trained_with, expected = implementation_of(source), implementation_of(target)
    if trained_with == expected:
        return
    if trained_with == "tcnn":
        fix = (
            "Run laser where tiny-cuda-nn works (a CUDA machine with tinycudann installed) with "
            "--pipeline.model.implementation tcnn, or retrain nerfacto with --pipeline.model.implementation torch."
        )
    else:
        fix = "Pass --pipeline.model.implementation torch to laser, or retrain nerfacto with tiny-cuda-nn."
    raise GeometryCheckpointError(
        f"{checkpoint} was trained with the {trained_with} hash grids and MLPs, but this laser model uses "
        f"{expected} ones, which store different tensors. {fix}"
    )


def run_camera_optimizer_mode(run_dir: Path) -> str | None:
    """The pose-refinement mode saved in the run's config.yml ('off', 'SO3xR3' or 'SE3'); None if unreadable."""
    import yaml

    try:
        config = yaml.load((run_dir / "config.yml").read_text(), Loader=yaml.Loader)  # as nerfstudio's eval_setup
        return str(config.pipeline.model.camera_optimizer.mode)
    except Exception:
        return None


def carry_pose_corrections(model: nn.Module, state: dict[str, Tensor], run_dir: Path) -> str | None:
    """Gives ``model`` the pose corrections the run learned (nerfacto refines poses by default), so language and
    colour are trained on the poses its geometry was fitted to. Laser keeps them fixed unless its own camera
    optimizer is on. Returns the mode carried over, or None when the run refined no pose."""
    from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig

    adjustment = state.get("camera_optimizer.pose_adjustment")
    if adjustment is None or not bool(adjustment.abs().any()):
        return None
    mode = run_camera_optimizer_mode(run_dir) or "SO3xR3"  # nerfacto's default when the config cannot be read
    current = model.camera_optimizer
    if current.config.mode not in ("off", mode):
        raise GeometryCheckpointError(
            f"The run in {run_dir} refined poses in mode {mode}, this laser model in {current.config.mode}. Pass "
            f"--pipeline.model.camera-optimizer.mode {mode} (or off, to keep the run's corrections fixed)."
        )
    if adjustment.shape[0] != current.num_cameras:
        raise GeometryCheckpointError(
            f"The run in {run_dir} refined {adjustment.shape[0]} camera poses, this scene has {current.num_cameras} "
            "training images. Train nerfacto with `--data <this scene> laser-data`, so that all images train."
        )
    if current.config.mode == "off":
        device = adjustment.device if not list(model.parameters()) else next(model.parameters()).device
        model.camera_optimizer = CameraOptimizerConfig(mode=mode).setup(num_cameras=current.num_cameras, device=device)
        model.camera_optimizer.pose_adjustment.requires_grad_(False)
    with torch.no_grad():
        model.camera_optimizer.pose_adjustment.copy_(adjustment)
    return mode


def load_geometry(model: nn.Module, checkpoint: Path, run_dir: Path | None = None) -> int:
    """Copies the geometry of ``checkpoint`` (and its pose corrections) into ``model``; returns how many tensors
    were loaded."""
    full = checkpoint_model_state(checkpoint)
    source = {k: v for k, v in full.items() if k.startswith(GEOMETRY_PREFIXES)}
    if not any(k.startswith("field.") for k in source):
        raise GeometryCheckpointError(f"{checkpoint} holds no nerfacto field (no _model.field.* weights).")
    target = model.state_dict()
    wanted = [k for k in target if k.startswith(GEOMETRY_PREFIXES)]
    check_same_implementation(checkpoint, list(source), wanted)
    missing = [k for k in wanted if k not in source]
    if missing:
        raise GeometryCheckpointError(
            f"{checkpoint} lacks {missing[0]} (and {len(missing) - 1} more): it was trained with other field "
            "settings (e.g. predicted normals, or another number of proposal networks) than this laser method."
        )
    for key, value in source.items():
        if key in target and target[key].shape != value.shape:
            raise GeometryCheckpointError(
                f"{checkpoint}: {key} has shape {tuple(value.shape)}, this model expects {tuple(target[key].shape)}. "
                "Train the geometry with the same field settings as this laser method on the same images: for "
                "`laser`, `ns-train nerfacto --data <scene> laser-data` (nerfacto's defaults); for `laser-lite`, "
                "`ns-train nerfacto-lite --data <scene>` (laser-lite's sizes, offline on a CPU)."
            )
    model.load_state_dict({**target, **{k: v for k, v in source.items() if k in target}})
    loaded = len(source)
    if carry_pose_corrections(model, full, run_dir if run_dir is not None else checkpoint.parent.parent):
        loaded += 1
    return loaded
