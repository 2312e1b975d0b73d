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

from laser_ns.compat import allow_numpy_scalars_in_checkpoints

GEOMETRY_PREFIXES = ("field.", "proposal_networks.")
"""State-dict prefixes (inside the model) of what a geometry checkpoint provides."""


class GeometryCheckpointError(ValueError):
    """A nerfacto checkpoint cannot seed this laser run; the message says why and what to do."""


def find_checkpoint(path: Path) -> tuple[Path, Path]:
    """(checkpoint file, run folder) from a run folder, its config.yml, or a .ckpt file."""
    path = Path(path)
    if not path.exists():
        raise GeometryCheckpointError(f"Geometry checkpoint {path} does not exist. Pass a nerfacto run's config.yml.")
    if path.is_file() and path.suffix == ".ckpt":
        return path, path.parent.parent
    run_dir = path.parent if path.is_file() else path
    checkpoints = sorted((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    if not checkpoints:
        raise GeometryCheckpointError(f"No nerfstudio_models/step-*.ckpt in {run_dir}. Is this a finished run?")
    return checkpoints[-1], run_dir


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


def geometry_state(checkpoint: Path) -> dict[str, Tensor]:
    """The density, colour and proposal weights of a nerfstudio checkpoint, keyed as inside the model."""
    allow_numpy_scalars_in_checkpoints()
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    except Exception as err:
        raise GeometryCheckpointError(f"Cannot read checkpoint {checkpoint}: {err}") from err
    prefix = "_model."
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    out = {k: v for k, v in out.items() if k.startswith(GEOMETRY_PREFIXES)}
    if not any(k.startswith("field.") for k in out):
        raise GeometryCheckpointError(f"{checkpoint} holds no nerfacto field (no _model.field.* weights).")
    return out


def load_geometry(model: nn.Module, checkpoint: Path) -> int:
    """Copies the geometry of ``checkpoint`` into ``model``; returns how many tensors were loaded."""
    source = geometry_state(checkpoint)
    target = model.state_dict()
    missing = [k for k in target if k.startswith(GEOMETRY_PREFIXES) and k not in source]
    if missing:
        raise GeometryCheckpointError(f"{checkpoint} lacks {missing[0]} (and {len(missing) - 1} more).")
    for key, value in source.items():
        if key in target and target[key].shape != value.shape:
            raise GeometryCheckpointError(
                f"{checkpoint}: {key} has shape {tuple(value.shape)}, this model expects {tuple(target[key].shape)}. "
                "Train nerfacto with the same field settings as this laser method (for `laser`: nerfacto's "
                "defaults) on the same images (use the laser-data dataparser so all images train)."
            )
    model.load_state_dict({**target, **{k: v for k, v in source.items() if k in target}})
    return len(source)
