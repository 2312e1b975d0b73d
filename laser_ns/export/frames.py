"""The two frames a trained run knows: the dataparser's normalised world frame and the original capture's frame.

nerfstudio writes ``dataparser_transforms.json`` next to a run's ``config.yml``: a 3x4 ``transform`` and a
``scale`` such that ``p_dataparser = scale * (transform @ [p_original, 1])``. The viewer, the model and
``ns-export`` work in the dataparser frame; COLMAP / LLFF poses (and the generated scenes' geometry) live in the
original one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

TRANSFORMS_FILE = "dataparser_transforms.json"
"""Written by nerfstudio's trainer into every run folder."""


@dataclass(frozen=True)
class SceneFrames:
    """Maps points between the dataparser frame and the original capture frame."""

    transform: Float[np.ndarray, "3 4"]
    """The dataparser's rigid transform (applied before scaling)."""
    scale: float
    """The dataparser's scale (applied after the transform)."""
    source: str
    """Where the transform came from (a file, or the dataparser outputs), for messages and the legend."""

    @classmethod
    def from_json(cls, path: Path) -> SceneFrames:
        """Reads a run's ``dataparser_transforms.json``."""
        try:
            data = json.loads(Path(path).read_text())
            transform = np.asarray(data["transform"], dtype=np.float64)
            scale = float(data["scale"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"Cannot read the dataparser transform from {path}: {err}. It should hold 'transform' (3x4) and "
                "'scale', as nerfstudio writes it when training starts."
            ) from err
        if transform.shape != (3, 4) or not np.isfinite(transform).all() or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"{path} holds a transform of shape {transform.shape} and scale {scale}; need 3x4, > 0.")
        return cls(transform=transform, scale=scale, source=str(path))

    @property
    def original_to_dataparser(self) -> Float[np.ndarray, "4 4"]:
        """Homogeneous matrix taking original-frame points to the dataparser frame."""
        matrix = np.eye(4)
        matrix[:3, :] = self.transform
        matrix[:3, :] *= self.scale
        return matrix

    @property
    def dataparser_to_original(self) -> Float[np.ndarray, "4 4"]:
        """Homogeneous matrix taking dataparser-frame points to the original frame."""
        return np.linalg.inv(self.original_to_dataparser)

    def to_original(self, points: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Dataparser-frame points in the original capture frame."""
        return _apply(self.dataparser_to_original, points)

    def to_dataparser(self, points: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Original-frame points in the dataparser frame."""
        return _apply(self.original_to_dataparser, points)

    def directions_to_original(self, vectors: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Unit vectors (normals) rotated into the original frame and renormalised."""
        rotated = np.asarray(vectors, dtype=np.float64) @ self.dataparser_to_original[:3, :3].T
        return rotated / np.maximum(np.linalg.norm(rotated, axis=-1, keepdims=True), 1e-12)


def _apply(matrix: Float[np.ndarray, "4 4"], points: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ matrix[:3, :3].T + matrix[:3, 3]
