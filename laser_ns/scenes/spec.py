"""The description of a generated scene: its primitives, lighting and camera rig, and its classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from laser_ns.scenes.cameras import ForwardRig, OrbitRig
from laser_ns.scenes.geometry import Primitive, Vec3

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render a scene: primitives, lighting and the camera rig. Built by `PRESETS`."""

    name: str
    """Preset name, recorded in the scene's marker file."""
    primitives: tuple[Primitive, ...]
    """Scene content; several primitives may share a prompt (a table and its legs)."""
    rig: ForwardRig | OrbitRig
    """Where the cameras are."""
    fov_x_deg: float = 55.0
    """Horizontal field of view of every camera."""
    light_dir: Vec3 = (-0.45, 1.0, 0.55)
    """Direction towards the directional light (normalised when used)."""
    ambient: float = 0.35
    """Light reaching every surface, also in shadow."""
    diffuse: float = 0.75
    """Strength of the directional light."""
    background: RGB = (0.62, 0.74, 0.9)
    """Colour of rays that hit nothing (labelled `UNLABELLED`)."""

    @property
    def class_names(self) -> list[str]:
        """Sorted unique prompts: label k means class_names[k]."""
        return sorted({p.prompt for p in self.primitives})

    def primitive_labels(self) -> Int[np.ndarray, " k"]:
        """Label index of each primitive."""
        index = {name: k for k, name in enumerate(self.class_names)}
        return np.array([index[p.prompt] for p in self.primitives], dtype=np.int64)

    def _class_primitives(self, name: str) -> list[Primitive]:
        parts = [p for p in self.primitives if p.prompt == name]
        if not parts:
            raise ValueError(f"Scene {self.name!r} has no class {name!r}; its classes are {self.class_names}.")
        return parts

    def class_surface_distance(self, name: str, points: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Distance from each point to the nearest surface of class `name` (all its primitives)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.min([p.surface_distance(points) for p in self._class_primitives(name)], axis=0)

    def class_bounds(self, name: str) -> tuple[Vec3, Vec3] | None:
        """Axis-aligned box (min, max corner) around every primitive of class `name`; None if a plane is part of it."""
        boxes = [p.bounds() for p in self._class_primitives(name)]
        if any(b is None for b in boxes):
            return None
        lo = np.min([b[0] for b in boxes], axis=0)  # type: ignore[index]
        hi = np.max([b[1] for b in boxes], axis=0)  # type: ignore[index]
        return tuple(float(v) for v in lo), tuple(float(v) for v in hi)  # type: ignore[return-value]
