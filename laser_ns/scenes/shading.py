"""Colour of generated scenes: materials (solid or procedural textures), Lambertian shading with a directional light
and hard shadows, and the rendering of one view with its exact pixel-centre labels and depths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from jaxtyping import Float, UInt8

from laser_ns.conventions import UNLABELLED
from laser_ns.scenes.cameras import pixel_rays
from laser_ns.scenes.geometry import RayHits, cast_rays
from laser_ns.scenes.spec import SceneSpec

RGB = tuple[float, float, float]

# Shadow rays start this far above the surface so they do not re-hit the surface they leave.
_SHADOW_OFFSET = 1e-4


@dataclass(frozen=True)
class Material:
    """Surface colour: a solid albedo or a two-colour procedural texture."""

    color: RGB
    """Albedo in [0, 1] (the first colour of a texture)."""
    texture: Literal["solid", "checker", "stripes"] = "solid"
    """Procedural pattern applied on the surface coordinates of the primitive."""
    color2: RGB | None = None
    """Second texture colour; None means a darker shade of `color`."""
    scale: float = 0.25
    """Size of one checker tile or stripe, in world units."""
    stripe_dir: Literal[0, 1] = 0
    """Which surface coordinate the stripes vary along (see the primitives' `surface_uv`)."""

    def albedo(self, uv: Float[np.ndarray, "n 2"]) -> Float[np.ndarray, "n 3"]:
        """Albedo at surface coordinates `uv` (world units)."""
        c1 = np.asarray(self.color, dtype=np.float64)
        if self.texture == "solid":
            return np.broadcast_to(c1, (uv.shape[0], 3)).copy()
        c2 = np.asarray(self.color2, dtype=np.float64) if self.color2 is not None else 0.55 * c1
        cells = np.floor(uv / self.scale).astype(np.int64)
        if self.texture == "checker":
            odd = (cells[:, 0] + cells[:, 1]) % 2 == 1
        elif self.texture == "stripes":
            odd = cells[:, self.stripe_dir] % 2 == 1
        else:
            raise ValueError(f"Unknown texture {self.texture!r}; use 'solid', 'checker' or 'stripes'.")
        return np.where(odd[:, None], c2, c1)


def _shade(
    spec: SceneSpec, origins: Float[np.ndarray, "n 3"], directions: Float[np.ndarray, "n 3"], hits: RayHits
) -> Float[np.ndarray, "n 3"]:
    """Linear colours of the hits: albedo x (ambient + diffuse x max(0, n.l) x unshadowed)."""
    colors = np.broadcast_to(np.asarray(spec.background, dtype=np.float64), origins.shape).copy()
    light = np.asarray(spec.light_dir, dtype=np.float64)
    light /= np.linalg.norm(light)
    points = origins + directions * np.where(np.isfinite(hits.t), hits.t, 0.0)[:, None]
    normals = np.zeros_like(points)
    albedo = np.zeros_like(points)
    for k, prim in enumerate(spec.primitives):
        sel = np.flatnonzero(hits.index == k)
        if sel.size == 0:
            continue
        n = prim.normal_at(points[sel])
        albedo[sel] = prim.material.albedo(prim.surface_uv(points[sel], n))
        # Planes are seen from both sides and rays may graze box edges: light the side facing the camera.
        facing = np.einsum("ij,ij->i", n, directions[sel]) > 0.0
        normals[sel] = np.where(facing[:, None], -n, n)
    hit = hits.index >= 0
    lambert = np.clip(normals @ light, 0.0, None)
    casters = [p for p in spec.primitives if p.casts_shadow]
    lit = hit & (lambert > 0.0)
    if casters and lit.any():
        shadow_origins = points[lit] + _SHADOW_OFFSET * normals[lit]
        blocked = cast_rays(casters, shadow_origins, np.broadcast_to(light, shadow_origins.shape)).index >= 0
        lambert[np.flatnonzero(lit)[blocked]] = 0.0
    shading = spec.ambient + spec.diffuse * lambert
    colors[hit] = albedo[hit] * shading[hit, None]
    return colors


@dataclass
class RenderedView:
    """One rendered camera."""

    rgb: UInt8[np.ndarray, "h w 3"]
    """8-bit colour image."""
    labels: UInt8[np.ndarray, "h w"]
    """Index into `SceneSpec.class_names` of the class hit by the pixel-centre ray; `UNLABELLED` on a miss."""
    depth: Float[np.ndarray, "h w"]
    """z-depth (distance along the viewing axis) of the pixel-centre hit; inf on a miss."""


def render_view(
    spec: SceneSpec,
    camera_to_world: Float[np.ndarray, "4 4"],
    intrinsics: tuple[float, float, float, float],
    width: int,
    height: int,
    *,
    supersample: int = 2,
) -> RenderedView:
    """Render colours (anti-aliased with `supersample`^2 rays per pixel) and exact pixel-centre labels and depths."""
    if supersample < 1:
        raise ValueError(f"supersample must be at least 1, got {supersample}.")
    # Labels and depth come from the pixel-centre ray only, so they are exact rather than blended at edges.
    origins, directions = pixel_rays(camera_to_world, intrinsics, width, height)
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)  # [h*w, 3]
    hits = cast_rays(spec.primitives, o, d)
    labels = np.where(hits.index >= 0, spec.primitive_labels()[np.maximum(hits.index, 0)], UNLABELLED)
    forward = -camera_to_world[:3, 2]
    depth = hits.t * (d @ forward)

    if supersample == 1:
        colors = _shade(spec, o, d, hits).reshape(height, width, 3)
    else:
        steps = (np.arange(supersample) + 0.5) / supersample
        offsets = [(du, dv) for dv in steps for du in steps]
        ss_origins, ss_dirs = pixel_rays(camera_to_world, intrinsics, width, height, offsets)
        so, sd = ss_origins.reshape(-1, 3), ss_dirs.reshape(-1, 3)  # [s*h*w, 3]
        ss_colors = _shade(spec, so, sd, cast_rays(spec.primitives, so, sd))
        colors = ss_colors.reshape(len(offsets), height, width, 3).mean(axis=0)
    rgb = np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
    return RenderedView(
        rgb=rgb,
        labels=labels.reshape(height, width).astype(np.uint8),
        depth=depth.reshape(height, width),
    )


# --------------------------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------------------------
