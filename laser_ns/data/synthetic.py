"""Deterministic procedural scenes whose geometry and per-pixel labels are known exactly.

Scenes are built from a few analytic primitives (planes, spheres, axis-aligned boxes, vertical cylinders), each
carrying a class prompt and a colour or procedural texture, and rendered by pure-numpy ray casting with Lambertian
shading, a directional light with hard shadows and an ambient term. The label of a pixel is the class of the
primitive hit first by the ray through the pixel centre, so the demo, the tests and the benchmarks can score
segmentation against exact ground truth.

World and camera conventions: y is up; cameras follow OpenGL (x right, y up, looking down -z); the pixel in column
``u`` and row ``v`` is sampled by the ray through image point ``(u + 0.5, v + 0.5)``, ``cx = W / 2``, ``cy = H / 2``.

`make_scene` writes the 3D-OVS layout (METHOD.md section 9) in LLFF (``poses_bounds.npy``) or nerfstudio
(``transforms.json``) form, plus the per-view label maps of METHOD.md section 11.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
from jaxtyping import Float, Int, UInt8
from PIL import Image

Vec3 = tuple[float, float, float]
RGB = tuple[float, float, float]

UNLABELLED = 255
"""Label value of pixels whose ray hits nothing (METHOD.md section 11: ignored by the teacher)."""

MARKER_FILE = "synthetic_scene.json"
"""Written into every generated scene; only directories carrying it are ever cleaned before regeneration."""

_T_EPS = 1e-6
# Shadow rays start this far above the surface so they do not re-hit the surface they leave.
_SHADOW_OFFSET = 1e-4


# --------------------------------------------------------------------------------------------------------------------
# Materials and primitives
# --------------------------------------------------------------------------------------------------------------------


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


def _dominant_axis_uv(p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 2"]:
    """Surface coordinates of a point on an axis-aligned face: the two world axes other than the normal's, in order.

    Dropping the normal axis keeps the face's own (constant) coordinate out of the texture, so a face lying exactly on
    a tile boundary does not flicker between colours from floating-point noise.
    """
    axis = np.argmax(np.abs(n), axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # [n, 2]
    return np.take_along_axis(p, keep, axis=1)


@dataclass(frozen=True)
class Plane:
    """Infinite plane (floor, wall, ceiling); seen from both sides."""

    point: Vec3
    """Any point on the plane."""
    normal: Vec3
    """Plane normal; should be axis-aligned so textures line up with the world axes."""
    prompt: str
    """Class prompt of the plane."""
    material: Material
    """Surface colour or texture."""
    casts_shadow: bool = False
    """Planes bound the scene, so by default they do not shadow it (a ceiling would darken everything)."""

    def intersect(self, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Ray distance of the hit, inf on a miss."""
        n = np.asarray(self.normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        denom = d @ n
        num = (np.asarray(self.point, dtype=np.float64) - o) @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = num / denom
        return np.where((np.abs(denom) > 1e-12) & (t > _T_EPS), t, np.inf)

    def normal_at(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Outward surface normal at hit points `p`."""
        n = np.asarray(self.normal, dtype=np.float64)
        return np.broadcast_to(n / np.linalg.norm(n), p.shape).copy()

    def surface_uv(self, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 2"]:
        """Texture coordinates in world units."""
        return _dominant_axis_uv(p, n)

    def surface_distance(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Unsigned distance from points `p` to the plane."""
        n = np.asarray(self.normal, dtype=np.float64)
        return np.abs((p - np.asarray(self.point, dtype=np.float64)) @ (n / np.linalg.norm(n)))

    def bounds(self) -> None:
        """Planes are unbounded: they have no box."""
        return None


@dataclass(frozen=True)
class Sphere:
    """Sphere (fruit, balls, vase bodies)."""

    center: Vec3
    """Centre in world coordinates."""
    radius: float
    """Radius in world units."""
    prompt: str
    """Class prompt of the sphere."""
    material: Material
    """Surface colour or texture."""
    casts_shadow: bool = True
    """Whether the sphere blocks the light for other surfaces."""

    def intersect(self, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Ray distance of the hit, inf on a miss; `d` must be unit length."""
        oc = o - np.asarray(self.center, dtype=np.float64)
        b = np.einsum("ij,ij->i", oc, d)
        c = np.einsum("ij,ij->i", oc, oc) - self.radius**2
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0.0))
        t0, t1 = -b - root, -b + root
        t = np.where(t0 > _T_EPS, t0, np.where(t1 > _T_EPS, t1, np.inf))
        return np.where(disc >= 0.0, t, np.inf)

    def normal_at(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Outward surface normal at hit points `p`."""
        return (p - np.asarray(self.center, dtype=np.float64)) / self.radius

    def bounding_sphere(self) -> tuple[Vec3, float]:
        """A sphere containing the primitive, for cheap ray culling."""
        return self.center, self.radius

    def surface_uv(self, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 2"]:
        """(azimuth, polar angle) scaled by the radius: arc lengths, so tiles are roughly square."""
        azimuth = np.arctan2(n[:, 2], n[:, 0]) + np.pi
        polar = np.arccos(np.clip(n[:, 1], -1.0, 1.0))
        return np.stack([azimuth, polar], axis=1) * self.radius

    def surface_distance(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Unsigned distance from points `p` to the sphere's surface."""
        return np.abs(np.linalg.norm(p - np.asarray(self.center, dtype=np.float64), axis=-1) - self.radius)

    def bounds(self) -> tuple[Vec3, Vec3]:
        """Axis-aligned box (min corner, max corner) around the primitive."""
        c = np.asarray(self.center, dtype=np.float64)
        return tuple(c - self.radius), tuple(c + self.radius)  # type: ignore[return-value]


@dataclass(frozen=True)
class Box:
    """Axis-aligned box (table tops, books, cabinets)."""

    lo: Vec3
    """Minimum corner."""
    hi: Vec3
    """Maximum corner."""
    prompt: str
    """Class prompt of the box."""
    material: Material
    """Surface colour or texture."""
    casts_shadow: bool = True
    """Whether the box blocks the light for other surfaces."""

    def intersect(self, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Ray distance of the hit (slab method), inf on a miss."""
        lo = np.asarray(self.lo, dtype=np.float64)
        hi = np.asarray(self.hi, dtype=np.float64)
        # A zero direction component would give 0 * inf = nan at the slab planes; a tiny one keeps the slab test valid.
        d_safe = np.where(np.abs(d) < 1e-12, np.where(d < 0, -1e-12, 1e-12), d)
        t1 = (lo - o) / d_safe
        t2 = (hi - o) / d_safe
        t_near = np.minimum(t1, t2).max(axis=1)
        t_far = np.maximum(t1, t2).min(axis=1)
        t = np.where(t_near > _T_EPS, t_near, t_far)
        return np.where((t_far >= t_near) & (t > _T_EPS), t, np.inf)

    def bounding_sphere(self) -> tuple[Vec3, float]:
        """A sphere containing the primitive, for cheap ray culling."""
        lo = np.asarray(self.lo, dtype=np.float64)
        hi = np.asarray(self.hi, dtype=np.float64)
        return tuple(0.5 * (lo + hi)), 0.5 * float(np.linalg.norm(hi - lo))  # type: ignore[return-value]

    def normal_at(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Outward normal of the face the point lies on (the axis where it is relatively farthest from the centre)."""
        lo = np.asarray(self.lo, dtype=np.float64)
        hi = np.asarray(self.hi, dtype=np.float64)
        rel = (p - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        axis = np.argmax(np.abs(rel), axis=1)
        n = np.zeros_like(p)
        n[np.arange(p.shape[0]), axis] = np.sign(rel[np.arange(p.shape[0]), axis])
        return n

    def surface_uv(self, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 2"]:
        """Texture coordinates in world units, relative to the minimum corner."""
        return _dominant_axis_uv(p - np.asarray(self.lo, dtype=np.float64), n)

    def surface_distance(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Unsigned distance from points `p` to the box's surface (inside points measure to the nearest face)."""
        lo = np.asarray(self.lo, dtype=np.float64)
        hi = np.asarray(self.hi, dtype=np.float64)
        q = np.abs(p - 0.5 * (lo + hi)) - 0.5 * (hi - lo)  # per-axis excess over the half size
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(axis=-1), 0.0)
        return np.abs(outside + inside)

    def bounds(self) -> tuple[Vec3, Vec3]:
        """Axis-aligned box (min corner, max corner) around the primitive."""
        return self.lo, self.hi


@dataclass(frozen=True)
class Cylinder:
    """Vertical capped cylinder (poles, table legs, mugs, vase necks)."""

    center_xz: tuple[float, float]
    """(x, z) of the axis."""
    radius: float
    """Radius in world units."""
    y_min: float
    """Height of the bottom cap."""
    y_max: float
    """Height of the top cap."""
    prompt: str
    """Class prompt of the cylinder."""
    material: Material
    """Surface colour or texture."""
    casts_shadow: bool = True
    """Whether the cylinder blocks the light for other surfaces."""

    def intersect(self, o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Ray distance of the nearest hit on the side or the caps, inf on a miss."""
        cx, cz = self.center_xz
        ox, oz = o[:, 0] - cx, o[:, 2] - cz
        dx, dz = d[:, 0], d[:, 2]
        a = dx * dx + dz * dz
        b = 2.0 * (ox * dx + oz * dz)
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - 4.0 * a * c
        ok = (a > 1e-12) & (disc >= 0.0)
        root = np.sqrt(np.where(ok, disc, 0.0))
        a_safe = np.where(ok, a, 1.0)
        best = np.full(o.shape[0], np.inf)
        for sign in (-1.0, 1.0):
            t = (-b + sign * root) / (2.0 * a_safe)
            y = o[:, 1] + t * d[:, 1]
            valid = ok & (t > _T_EPS) & (y >= self.y_min) & (y <= self.y_max)
            best = np.where(valid, np.minimum(best, t), best)
        dy_safe = np.where(np.abs(d[:, 1]) < 1e-12, 1e-12, d[:, 1])
        for y_cap in (self.y_min, self.y_max):
            t = (y_cap - o[:, 1]) / dy_safe
            px, pz = ox + t * dx, oz + t * dz
            valid = (np.abs(d[:, 1]) >= 1e-12) & (t > _T_EPS) & (px * px + pz * pz <= self.radius**2)
            best = np.where(valid, np.minimum(best, t), best)
        return best

    def bounding_sphere(self) -> tuple[Vec3, float]:
        """A sphere containing the primitive, for cheap ray culling."""
        half_height = 0.5 * (self.y_max - self.y_min)
        center = (self.center_xz[0], 0.5 * (self.y_min + self.y_max), self.center_xz[1])
        return center, math.hypot(self.radius, half_height)

    def normal_at(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """Outward normal: radial on the side, vertical on the caps (whichever surface the point is closest to)."""
        cx, cz = self.center_xz
        rx, rz = p[:, 0] - cx, p[:, 2] - cz
        rho = np.sqrt(rx * rx + rz * rz)
        side_dist = np.abs(rho - self.radius)
        top_dist = np.abs(p[:, 1] - self.y_max)
        bottom_dist = np.abs(p[:, 1] - self.y_min)
        n = np.stack([rx, np.zeros_like(rx), rz], axis=1) / np.maximum(rho, 1e-12)[:, None]
        on_top = (top_dist < side_dist) & (top_dist <= bottom_dist)
        on_bottom = (bottom_dist < side_dist) & (bottom_dist < top_dist)
        n[on_top] = (0.0, 1.0, 0.0)
        n[on_bottom] = (0.0, -1.0, 0.0)
        return n

    def surface_uv(self, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 2"]:
        """(arc length around the axis, height) on the side; (x, z) on the caps."""
        cx, cz = self.center_xz
        arc = (np.arctan2(p[:, 2] - cz, p[:, 0] - cx) + np.pi) * self.radius
        side = np.stack([arc, p[:, 1]], axis=1)
        cap = p[:, [0, 2]]
        return np.where((np.abs(n[:, 1]) > 0.5)[:, None], cap, side)

    def surface_distance(self, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
        """Unsigned distance from points `p` to the capped cylinder's surface (side or caps)."""
        cx, cz = self.center_xz
        rho = np.hypot(p[:, 0] - cx, p[:, 2] - cz)
        half = 0.5 * (self.y_max - self.y_min)
        q = np.stack([rho - self.radius, np.abs(p[:, 1] - (self.y_min + half)) - half], axis=-1)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(axis=-1), 0.0)
        return np.abs(outside + inside)

    def bounds(self) -> tuple[Vec3, Vec3]:
        """Axis-aligned box (min corner, max corner) around the primitive."""
        cx, cz = self.center_xz
        r = self.radius
        return (cx - r, self.y_min, cz - r), (cx + r, self.y_max, cz + r)


Primitive = Union[Plane, Sphere, Box, Cylinder]


# --------------------------------------------------------------------------------------------------------------------
# Camera rigs and the scene description
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardRig:
    """LLFF-like forward-facing capture: camera centres on a disc spiral, all looking at one target."""

    center: Vec3
    """Mean camera position."""
    target: Vec3
    """Point every camera looks at."""
    radius: float
    """Radius of the disc (perpendicular to the mean viewing direction) the camera centres cover."""


@dataclass(frozen=True)
class OrbitRig:
    """360-degree capture: cameras on a circle at a fixed elevation, all looking at the target."""

    target: Vec3
    """Point every camera looks at (the orbit's centre)."""
    distance: float
    """Distance from the target to each camera."""
    elevation_deg: float
    """Elevation of the cameras above the target's horizontal plane."""
    start_azimuth_deg: float = 0.0
    """Azimuth of the first camera; 0 puts it on the +z side of the target."""


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


def look_at(position: Float[np.ndarray, " 3"], target: Float[np.ndarray, " 3"]) -> Float[np.ndarray, "4 4"]:
    """OpenGL camera-to-world matrix of a camera at `position` looking at `target` with world +y up."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    norm = np.linalg.norm(right)
    if norm < 1e-8:
        raise ValueError(f"Camera at {position} looks straight up or down at {target}; the up vector is undefined.")
    right /= norm
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, position
    return c2w


def camera_poses(rig: ForwardRig | OrbitRig, num_views: int) -> Float[np.ndarray, "n 4 4"]:
    """OpenGL camera-to-world matrices of the rig's `num_views` cameras, in capture order."""
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}.")
    target = np.asarray(rig.target, dtype=np.float64)
    poses = []
    if isinstance(rig, ForwardRig):
        mean_pose = look_at(np.asarray(rig.center, dtype=np.float64), target)
        right, up = mean_pose[:3, 0], mean_pose[:3, 1]
        golden_angle = math.pi * (3.0 - math.sqrt(5.0))
        for i in range(num_views):
            # Fermat spiral: uniform coverage of the disc for any view count, like a hand-held LLFF capture.
            r = rig.radius * math.sqrt((i + 0.5) / num_views)
            theta = i * golden_angle
            position = mean_pose[:3, 3] + r * math.cos(theta) * right + r * math.sin(theta) * up
            poses.append(look_at(position, target))
    else:
        elevation = math.radians(rig.elevation_deg)
        for i in range(num_views):
            azimuth = math.radians(rig.start_azimuth_deg) + 2.0 * math.pi * i / num_views
            offset = np.array(
                [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)]
            )
            poses.append(look_at(target + rig.distance * offset, target))
    return np.stack(poses)


def intrinsics_from_fov(fov_x_deg: float, width: int, height: int) -> tuple[float, float, float, float]:
    """Pinhole (fx, fy, cx, cy) with square pixels and a centred principal point (LLFF has a single focal)."""
    focal = 0.5 * width / math.tan(0.5 * math.radians(fov_x_deg))
    return focal, focal, 0.5 * width, 0.5 * height


def pixel_rays(
    camera_to_world: Float[np.ndarray, "4 4"],
    intrinsics: tuple[float, float, float, float],
    width: int,
    height: int,
    offsets: Sequence[tuple[float, float]] = ((0.5, 0.5),),
) -> tuple[Float[np.ndarray, "s h w 3"], Float[np.ndarray, "s h w 3"]]:
    """World-space origins and unit directions of rays through pixel (u + du, v + dv) for each offset (du, dv)."""
    fx, fy, cx, cy = intrinsics
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    dirs = []
    for du, dv in offsets:
        # OpenGL camera: image rows grow downwards while camera y points up, and the camera looks down -z.
        cam = np.stack([(u + du - cx) / fx, -(v + dv - cy) / fy, -np.ones_like(u)], axis=-1)  # [h, w, 3]
        world = cam @ camera_to_world[:3, :3].T
        dirs.append(world / np.linalg.norm(world, axis=-1, keepdims=True))
    directions = np.stack(dirs)  # [s, h, w, 3]
    origins = np.broadcast_to(camera_to_world[:3, 3], directions.shape).copy()
    return origins, directions


# --------------------------------------------------------------------------------------------------------------------
# Ray casting and shading
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class RayHits:
    """First hits of a batch of rays."""

    index: Int[np.ndarray, " n"]
    """Index into `SceneSpec.primitives` of the first hit primitive, -1 on a miss."""
    t: Float[np.ndarray, " n"]
    """Distance along the (unit) ray to the hit, inf on a miss."""


def cast_rays(
    primitives: Sequence[Primitive], origins: Float[np.ndarray, "n 3"], directions: Float[np.ndarray, "n 3"]
) -> RayHits:
    """First primitive hit by each ray; `directions` must be unit length. Ties go to the earlier primitive."""
    if len(primitives) == 0:
        return RayHits(np.full(origins.shape[0], -1, dtype=np.int64), np.full(origins.shape[0], np.inf))
    ts = np.full((len(primitives), origins.shape[0]), np.inf)  # [k, n]
    # Contiguous per-axis copies make the culling arithmetic below several times faster than row-wise dots.
    o_axes, d_axes = np.ascontiguousarray(origins.T), np.ascontiguousarray(directions.T)  # [3, n] each
    for k, prim in enumerate(primitives):
        if isinstance(prim, Plane):
            ts[k] = prim.intersect(origins, directions)
            continue
        # Exact tests (cylinders especially) are costly; only rays that pass a conservative bounding-sphere test
        # can hit, so culling changes speed, never results. The margin absorbs rounding in the cheap test.
        center, radius = prim.bounding_sphere()
        ocx, ocy, ocz = o_axes[0] - center[0], o_axes[1] - center[1], o_axes[2] - center[2]
        b = ocx * d_axes[0] + ocy * d_axes[1] + ocz * d_axes[2]
        disc = b * b - (ocx * ocx + ocy * ocy + ocz * ocz - (radius * (1.0 + 1e-6) + 1e-6) ** 2)
        # The far root -b + sqrt(disc) must be positive (the sphere is not entirely behind the origin).
        candidates = np.flatnonzero((disc >= 0.0) & ((b < 0.0) | (disc > b * b)))
        if candidates.size:
            ts[k, candidates] = prim.intersect(origins[candidates], directions[candidates])
    index = np.argmin(ts, axis=0)
    t = ts[index, np.arange(origins.shape[0])]
    index = np.where(np.isfinite(t), index, -1)
    return RayHits(index=index, t=t)


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

_FLOOR_Y = 0.0


def _jitter(rng: np.random.Generator, scale: float) -> float:
    return float(rng.uniform(-scale, scale))


def _tint(rng: np.random.Generator, color: RGB, amount: float = 0.04) -> RGB:
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0.0, 1.0)) for c in color)  # type: ignore[return-value]


def _room_planes(rng: np.random.Generator, wall_z: float, floor_prompt: str = "floor") -> list[Primitive]:
    """Floor and back wall of a forward-facing scene; subtly textured so a radiance field can lock onto them."""
    floor = Plane(
        (0.0, _FLOOR_Y, 0.0),
        (0.0, 1.0, 0.0),
        floor_prompt,
        Material(_tint(rng, (0.62, 0.58, 0.52)), "checker", _tint(rng, (0.52, 0.48, 0.43)), scale=0.5),
    )
    wall = Plane(
        (0.0, 0.0, wall_z),
        (0.0, 0.0, 1.0),
        "wall",
        Material(_tint(rng, (0.8, 0.82, 0.86)), "stripes", _tint(rng, (0.72, 0.75, 0.8)), scale=0.3),
    )
    return [floor, wall]


def _table(
    rng: np.random.Generator,
    prompt: str,
    x_range: tuple[float, float],
    z_range: tuple[float, float],
    height: float,
    leg_radius: float,
    thickness: float = 0.08,
    material: Material | None = None,
) -> list[Primitive]:
    """Table top box plus four cylindrical legs, all with one prompt."""
    wood = material or Material(
        _tint(rng, (0.6, 0.4, 0.22)), "stripes", _tint(rng, (0.52, 0.33, 0.18)), scale=0.06, stripe_dir=1
    )
    (x0, x1), (z0, z1) = x_range, z_range
    top = Box((x0, height - thickness, z0), (x1, height, z1), prompt, wood)
    inset = leg_radius + 0.06
    legs = [
        Cylinder((x, z), leg_radius, _FLOOR_Y, height - thickness, prompt, wood)
        for x in (x0 + inset, x1 - inset)
        for z in (z0 + inset, z1 - inset)
    ]
    return [top, *legs]


def _vase(
    rng: np.random.Generator, x: float, z: float, base_y: float, prompt: str = "white vase", size: float = 1.0
) -> list[Primitive]:
    """Round body plus a neck cylinder."""
    white = Material(_tint(rng, (0.92, 0.91, 0.88), 0.02))
    body_r = size * (0.15 + _jitter(rng, 0.015))
    neck_top = base_y + 2.0 * body_r + size * 0.16
    return [
        Sphere((x, base_y + body_r, z), body_r, prompt, white),
        Cylinder((x, z), size * 0.065, base_y + 1.5 * body_r, neck_top, prompt, white),
    ]


def tabletop(seed: int) -> SceneSpec:
    """Demo scene: a wooden table with an apple, a ball and a vase, in front of a wall (6 classes)."""
    rng = np.random.default_rng(seed)
    top_y = 0.75
    prims: list[Primitive] = _room_planes(rng, wall_z=-2.4)
    prims += _table(rng, "wooden table", (-1.15, 1.15), (-1.75, -0.35), top_y, 0.05)
    apple_r = 0.21 + _jitter(rng, 0.02)
    prims.append(
        Sphere(
            (-0.52 + _jitter(rng, 0.05), top_y + apple_r, -0.9 + _jitter(rng, 0.05)),
            apple_r,
            "red apple",
            Material(_tint(rng, (0.8, 0.12, 0.1))),
        )
    )
    ball_r = 0.25 + _jitter(rng, 0.02)
    prims.append(
        Sphere(
            (0.05 + _jitter(rng, 0.06), top_y + ball_r, -1.15 + _jitter(rng, 0.06)),
            ball_r,
            "green ball",
            Material(_tint(rng, (0.2, 0.65, 0.25))),
        )
    )
    prims += _vase(rng, 0.55 + _jitter(rng, 0.05), -0.9 + _jitter(rng, 0.05), top_y, size=1.25)
    rig = ForwardRig(center=(_jitter(rng, 0.05), 1.5 + _jitter(rng, 0.05), 0.6), target=(0.0, 0.9, -1.05), radius=0.2)
    return SceneSpec("tabletop", tuple(prims), rig, fov_x_deg=55.0)


def similar_colors(seed: int) -> SceneSpec:
    """Three red objects of different classes (apple, mug, book) on a white table: colour alone cannot separate them."""
    rng = np.random.default_rng(seed)
    top_y = 0.75
    red = (0.8, 0.13, 0.11)
    prims: list[Primitive] = _room_planes(rng, wall_z=-2.4)
    prims += _table(
        rng, "white table", (-1.1, 1.1), (-1.7, -0.35), top_y, 0.05, material=Material(_tint(rng, (0.9, 0.9, 0.88)))
    )
    apple_r = 0.2 + _jitter(rng, 0.015)
    prims.append(
        Sphere(
            (-0.55 + _jitter(rng, 0.05), top_y + apple_r, -0.95 + _jitter(rng, 0.06)),
            apple_r,
            "red apple",
            Material(_tint(rng, red, 0.02)),
        )
    )
    mug_x, mug_z = 0.05 + _jitter(rng, 0.05), -1.05 + _jitter(rng, 0.06)
    prims.append(Cylinder((mug_x, mug_z), 0.16, top_y, top_y + 0.34, "red mug", Material(_tint(rng, red, 0.02))))
    book_x, book_z = 0.62 + _jitter(rng, 0.04), -0.9 + _jitter(rng, 0.06)
    prims.append(
        Box(
            (book_x - 0.2, top_y, book_z - 0.28),
            (book_x + 0.2, top_y + 0.1, book_z + 0.28),
            "red book",
            Material(_tint(rng, red, 0.02)),
        )
    )
    rig = ForwardRig(
        center=(_jitter(rng, 0.05), 1.45 + _jitter(rng, 0.05), 0.7), target=(0.0, 0.75, -1.05), radius=0.22
    )
    return SceneSpec("similar_colors", tuple(prims), rig, fov_x_deg=52.0)


def thin_parts(seed: int) -> SceneSpec:
    """Furniture with thin legs and a floor lamp's pole, seen from low so the legs stand against the floor and wall."""
    rng = np.random.default_rng(seed)
    prims: list[Primitive] = _room_planes(rng, wall_z=-2.2)
    prims += _table(rng, "wooden table", (-0.9, 0.5), (-1.5, -0.6), 0.72, 0.025 + _jitter(rng, 0.004), thickness=0.05)
    black = Material(_tint(rng, (0.12, 0.12, 0.14), 0.02))
    # Chair: thin legs, a seat and a backrest of two posts and a rail.
    cx, cz = 0.8 + _jitter(rng, 0.04), -0.95 + _jitter(rng, 0.04)
    half, seat_y, leg_r = 0.22, 0.45, 0.018
    chair: list[Primitive] = [
        Box((cx - half, seat_y - 0.04, cz - half), (cx + half, seat_y, cz + half), "chair", black)
    ]
    chair += [
        Cylinder((cx + sx * (half - 0.03), cz + sz * (half - 0.03)), leg_r, _FLOOR_Y, seat_y - 0.04, "chair", black)
        for sx in (-1, 1)
        for sz in (-1, 1)
    ]
    chair += [
        Cylinder((cx + sx * (half - 0.03), cz - half + 0.03), leg_r, seat_y, seat_y + 0.45, "chair", black)
        for sx in (-1, 1)
    ]
    chair.append(
        Box((cx - half, seat_y + 0.35, cz - half), (cx + half, seat_y + 0.45, cz - half + 0.04), "chair", black)
    )
    prims += chair
    # Floor lamp: heavy base, one thin pole, a drum shade.
    brass = Material(_tint(rng, (0.75, 0.6, 0.3)))
    lx, lz = -1.25 + _jitter(rng, 0.04), -1.6 + _jitter(rng, 0.04)
    prims += [
        Cylinder((lx, lz), 0.17, _FLOOR_Y, 0.03, "floor lamp", brass),
        Cylinder((lx, lz), 0.015, 0.03, 1.45, "floor lamp", brass),
        Cylinder((lx, lz), 0.2, 1.45, 1.72, "floor lamp", Material(_tint(rng, (0.95, 0.9, 0.75), 0.02))),
    ]
    rig = ForwardRig(center=(_jitter(rng, 0.05), 1.0 + _jitter(rng, 0.04), 1.0), target=(-0.05, 0.65, -1.1), radius=0.2)
    return SceneSpec("thin_parts", tuple(prims), rig, fov_x_deg=58.0)


def occlusion(seed: int) -> SceneSpec:
    """Objects on the floor lined up in depth, each partly hiding the one behind it."""
    rng = np.random.default_rng(seed)
    prims: list[Primitive] = _room_planes(rng, wall_z=-2.6)
    ball_r = 0.3 + _jitter(rng, 0.02)
    prims.append(
        Sphere(
            (-0.25 + _jitter(rng, 0.05), ball_r, -0.55 + _jitter(rng, 0.05)),
            ball_r,
            "green ball",
            Material(_tint(rng, (0.2, 0.65, 0.25))),
        )
    )
    bx, bz = 0.15 + _jitter(rng, 0.05), -1.25 + _jitter(rng, 0.05)
    prims.append(
        Box(
            (bx - 0.4, _FLOOR_Y, bz - 0.35),
            (bx + 0.4, 0.7 + _jitter(rng, 0.04), bz + 0.35),
            "cardboard box",
            Material(_tint(rng, (0.7, 0.52, 0.32)), "stripes", _tint(rng, (0.64, 0.47, 0.28)), 0.12, 0),
        )
    )
    bucket_x, bucket_z = bx + 0.48 + _jitter(rng, 0.04), bz + 0.5 + _jitter(rng, 0.04)
    prims.append(
        Cylinder((bucket_x, bucket_z), 0.26, _FLOOR_Y, 0.45, "blue bucket", Material(_tint(rng, (0.15, 0.3, 0.75))))
    )
    # Behind the box's left edge and the ball: only part of it shows from any camera.
    prims += _vase(rng, bx - 0.55 + _jitter(rng, 0.04), bz - 0.6 + _jitter(rng, 0.04), _FLOOR_Y, size=1.8)
    rig = ForwardRig(center=(_jitter(rng, 0.05), 1.2 + _jitter(rng, 0.04), 1.2), target=(0.0, 0.35, -1.05), radius=0.3)
    return SceneSpec("occlusion", tuple(prims), rig, fov_x_deg=55.0)


def textured(seed: int) -> SceneSpec:
    """Strong checker and stripe textures on floor, wall and objects: texture edges must not become class edges."""
    rng = np.random.default_rng(seed)
    prims: list[Primitive] = [
        Plane(
            (0.0, _FLOOR_Y, 0.0),
            (0.0, 1.0, 0.0),
            "checkered floor",
            Material(_tint(rng, (0.88, 0.88, 0.86)), "checker", _tint(rng, (0.18, 0.18, 0.2)), scale=0.35),
        ),
        Plane(
            (0.0, 0.0, -2.4),
            (0.0, 0.0, 1.0),
            "striped wallpaper",
            Material(_tint(rng, (0.85, 0.78, 0.6)), "stripes", _tint(rng, (0.55, 0.65, 0.75)), scale=0.18),
        ),
    ]
    bx, bz = -0.45 + _jitter(rng, 0.05), -1.2 + _jitter(rng, 0.05)
    prims.append(
        Box(
            (bx - 0.4, _FLOOR_Y, bz - 0.4),
            (bx + 0.4, 0.8 + _jitter(rng, 0.04), bz + 0.4),
            "striped box",
            Material(_tint(rng, (0.85, 0.25, 0.3)), "stripes", _tint(rng, (0.95, 0.9, 0.85)), 0.1, 1),
        )
    )
    ball_r = 0.35 + _jitter(rng, 0.02)
    prims.append(
        Sphere(
            (0.6 + _jitter(rng, 0.05), ball_r, -0.9 + _jitter(rng, 0.05)),
            ball_r,
            "checkered ball",
            Material(_tint(rng, (0.95, 0.75, 0.1)), "checker", _tint(rng, (0.15, 0.35, 0.7)), scale=0.18),
        )
    )
    rig = ForwardRig(center=(_jitter(rng, 0.05), 1.3 + _jitter(rng, 0.04), 1.1), target=(0.05, 0.4, -1.1), radius=0.22)
    return SceneSpec("textured", tuple(prims), rig, fov_x_deg=55.0)


def orbit360(seed: int) -> SceneSpec:
    """A table with objects in the middle of a room (floor and four walls), captured by cameras orbiting it."""
    rng = np.random.default_rng(seed)
    half = 3.5
    floor_mat = Material(_tint(rng, (0.62, 0.58, 0.52)), "checker", _tint(rng, (0.52, 0.48, 0.43)), scale=0.5)
    wall_mat = Material(_tint(rng, (0.8, 0.82, 0.86)), "stripes", _tint(rng, (0.72, 0.75, 0.8)), scale=0.3)
    prims: list[Primitive] = [
        Plane((0.0, _FLOOR_Y, 0.0), (0.0, 1.0, 0.0), "floor", floor_mat),
        Plane((half, 0.0, 0.0), (-1.0, 0.0, 0.0), "wall", wall_mat),
        Plane((-half, 0.0, 0.0), (1.0, 0.0, 0.0), "wall", wall_mat),
        Plane((0.0, 0.0, half), (0.0, 0.0, -1.0), "wall", wall_mat),
        Plane((0.0, 0.0, -half), (0.0, 0.0, 1.0), "wall", wall_mat),
    ]
    top_y = 0.75
    prims += _table(rng, "wooden table", (-0.7, 0.7), (-0.7, 0.7), top_y, 0.05)
    apple_r = 0.2 + _jitter(rng, 0.02)
    prims.append(
        Sphere(
            (-0.3 + _jitter(rng, 0.05), top_y + apple_r, 0.25 + _jitter(rng, 0.05)),
            apple_r,
            "red apple",
            Material(_tint(rng, (0.8, 0.12, 0.1))),
        )
    )
    ball_r = 0.23 + _jitter(rng, 0.02)
    prims.append(
        Sphere(
            (0.3 + _jitter(rng, 0.05), top_y + ball_r, 0.2 + _jitter(rng, 0.05)),
            ball_r,
            "green ball",
            Material(_tint(rng, (0.2, 0.65, 0.25))),
        )
    )
    prims += _vase(rng, _jitter(rng, 0.05), -0.3 + _jitter(rng, 0.05), top_y, size=1.2)
    rig = OrbitRig(target=(0.0, 0.75, 0.0), distance=2.1 + _jitter(rng, 0.1), elevation_deg=32.0 + _jitter(rng, 2.0))
    return SceneSpec("orbit360", tuple(prims), rig, fov_x_deg=60.0)


PRESETS: dict[str, Callable[[int], SceneSpec]] = {
    "tabletop": tabletop,
    "similar_colors": similar_colors,
    "thin_parts": thin_parts,
    "occlusion": occlusion,
    "textured": textured,
    "orbit360": orbit360,
}
"""Scene builders by name; each maps a seed to a `SceneSpec` deterministically."""


# --------------------------------------------------------------------------------------------------------------------
# Writing a scene to disk
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class SceneInfo:
    """What `make_scene` wrote, with the exact ground truth."""

    out_dir: Path
    """Scene directory."""
    class_names: list[str]
    """Sorted class prompts; label k means class_names[k]."""
    image_paths: list[Path]
    """One RGB image per view, in index order."""
    camera_to_worlds: Float[np.ndarray, "n 4 4"]
    """OpenGL camera-to-world matrices (x right, y up, looking down -z)."""
    intrinsics: tuple[float, float, float, float]
    """Pinhole (fx, fy, cx, cy) in pixels, shared by all views; pixel (u, v) is sampled at (u + 0.5, v + 0.5)."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    annotated_views: list[int]
    """Views with masks under segmentations/."""
    labels: UInt8[np.ndarray, "n h w"]
    """Per-pixel index into `class_names`; `UNLABELLED` where the ray hits nothing."""
    depths: Float[np.ndarray, "n h w"]
    """z-depth of the pixel-centre hit; inf where the ray hits nothing."""
    near_far: Float[np.ndarray, "n 2"]
    """Per-view depth bounds (as written to poses_bounds.npy)."""
    spec: SceneSpec = field(repr=False)
    """The scene description that was rendered."""


def opengl_to_llff(
    camera_to_worlds: Float[np.ndarray, "n 4 4"],
    height: int,
    width: int,
    focal: float,
    near_far: Float[np.ndarray, "n 2"],
) -> Float[np.ndarray, "n 17"]:
    """Rows of poses_bounds.npy: a row-major 3x5 [down, right, backwards, centre, hwf] matrix, then near and far."""
    n = camera_to_worlds.shape[0]
    rot = camera_to_worlds[:, :3, :3]
    pose = np.empty((n, 3, 5), dtype=np.float64)
    pose[:, :, 0] = -rot[:, :, 1]
    pose[:, :, 1] = rot[:, :, 0]
    pose[:, :, 2] = rot[:, :, 2]
    pose[:, :, 3] = camera_to_worlds[:, :3, 3]
    pose[:, :, 4] = (height, width, focal)
    return np.concatenate([pose.reshape(n, 15), near_far], axis=1)


def llff_to_opengl(poses_bounds: Float[np.ndarray, "n 17"]) -> Float[np.ndarray, "n 4 4"]:
    """OpenGL camera-to-world matrices from poses_bounds.npy rows (inverse of `opengl_to_llff`)."""
    pose = poses_bounds[:, :15].reshape(-1, 3, 5)
    c2w = np.tile(np.eye(4), (pose.shape[0], 1, 1))
    c2w[:, :3, 0] = pose[:, :, 1]
    c2w[:, :3, 1] = -pose[:, :, 0]
    c2w[:, :3, 2] = pose[:, :, 2]
    c2w[:, :3, 3] = pose[:, :, 3]
    return c2w


def _depth_bounds(depth: Float[np.ndarray, "h w"]) -> tuple[float, float]:
    """LLFF near/far from the hit depths: robust percentiles with a margin so no visible surface is clipped."""
    finite = depth[np.isfinite(depth)]
    if finite.size == 0:
        return 0.1, 100.0
    near = max(0.9 * float(np.percentile(finite, 1.0)), 1e-3)
    far = 1.1 * float(np.percentile(finite, 99.0))
    return near, max(far, 1.5 * near)


_FRAME_RE = re.compile(r"frame_\d{5}\.png")


def _clear_previous_scene(out_dir: Path) -> None:
    """Remove the files a previous `make_scene` run wrote, so fewer views or another format leave nothing stale.

    Only directories carrying `MARKER_FILE` are touched; anything else that is not empty is refused, because a real
    capture (e.g. from ns-process-data, which also writes images/frame_*.png) must never be overwritten.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(f"Scene output {out_dir} exists and is not a directory; choose another --output-dir.")
    if not (out_dir / MARKER_FILE).exists():
        if any(out_dir.iterdir()):
            raise FileExistsError(
                f"{out_dir} is not empty and was not written by make_scene (no {MARKER_FILE}); "
                "choose an empty or new --output-dir so no existing data is overwritten."
            )
        return
    images = out_dir / "images"
    if images.is_dir():
        foreign = [p.name for p in images.iterdir() if not _FRAME_RE.fullmatch(p.name)]
        if foreign:
            raise FileExistsError(
                f"{images} holds files make_scene did not write ({', '.join(sorted(foreign)[:3])}); "
                "they would be read as extra views. Remove them or choose another --output-dir."
            )
        for p in images.glob("frame_*.png"):
            p.unlink()
    labels = out_dir / "labels"
    for p in [*labels.glob("frame_*.png"), labels / "names.json"]:
        p.unlink(missing_ok=True)
    segmentations = out_dir / "segmentations"
    (segmentations / "classes.txt").unlink(missing_ok=True)
    if segmentations.is_dir():
        for view_dir in segmentations.iterdir():
            if view_dir.is_dir() and view_dir.name.isdigit():
                for p in view_dir.glob("*.png"):
                    p.unlink()
                if not any(view_dir.iterdir()):
                    view_dir.rmdir()
    for name in ("poses_bounds.npy", "transforms.json", MARKER_FILE):
        (out_dir / name).unlink(missing_ok=True)


def default_annotated_views(num_views: int, count: int = 4) -> list[int]:
    """`count` view indices spread evenly over the sequence, first and last included."""
    return sorted({int(i) for i in np.round(np.linspace(0, num_views - 1, min(count, num_views)))})


def make_scene(
    out_dir: Path,
    preset: str = "tabletop",
    *,
    seed: int = 0,
    num_views: int = 24,
    width: int = 128,
    height: int = 96,
    annotated_views: Sequence[int] | None = None,
    fmt: Literal["llff", "nerfstudio"] = "llff",
    write_labels: bool = True,
) -> SceneInfo:
    """Render preset `preset` with `seed` and write it to `out_dir` in the 3D-OVS layout (LLFF or nerfstudio poses).

    Regenerating into a directory previously written by `make_scene` replaces its files; any other non-empty
    directory is refused.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown scene preset {preset!r}; available presets: {', '.join(sorted(PRESETS))}.")
    if fmt not in ("llff", "nerfstudio"):
        raise ValueError(f"Unknown scene format {fmt!r}; use 'llff' or 'nerfstudio'.")
    if width < 1 or height < 1:
        raise ValueError(f"Image size must be positive, got width={width}, height={height}.")
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}.")
    views = default_annotated_views(num_views) if annotated_views is None else sorted({int(i) for i in annotated_views})
    bad = [i for i in views if not 0 <= i < num_views]
    if bad:
        raise ValueError(
            f"Annotated views {bad} are out of range for {num_views} views; use indices 0..{num_views - 1}."
        )

    spec = PRESETS[preset](seed)
    class_names = spec.class_names
    if len(class_names) >= UNLABELLED:
        raise ValueError(f"Preset {preset!r} has {len(class_names)} classes; 8-bit label maps hold at most 254.")
    bad_names = [c for c in class_names if not c or "/" in c or "\\" in c or c != c.strip()]
    if bad_names:
        raise ValueError(f"Class prompts {bad_names} of preset {preset!r} cannot be used as mask file names.")

    out_dir = Path(out_dir)
    _clear_previous_scene(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)

    c2ws = camera_poses(spec.rig, num_views)
    intrinsics = intrinsics_from_fov(spec.fov_x_deg, width, height)
    image_paths, labels, depths, near_far = [], [], [], []
    for i, c2w in enumerate(c2ws):
        view = render_view(spec, c2w, intrinsics, width, height)
        path = out_dir / "images" / f"frame_{i:05d}.png"
        Image.fromarray(view.rgb).save(path)
        image_paths.append(path)
        labels.append(view.labels)
        depths.append(view.depth)
        near_far.append(_depth_bounds(view.depth))
    label_maps = np.stack(labels)
    bounds = np.asarray(near_far, dtype=np.float64)

    if fmt == "llff":
        np.save(out_dir / "poses_bounds.npy", opengl_to_llff(c2ws, height, width, intrinsics[0], bounds))
    else:
        fx, fy, cx, cy = intrinsics
        transforms = {
            "camera_model": "OPENCV",
            "fl_x": fx,
            "fl_y": fy,
            "cx": cx,
            "cy": cy,
            "w": width,
            "h": height,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            # Adding 0.0 turns -0.0 entries into 0.0 so the JSON reads cleanly.
            "frames": [
                {"file_path": f"images/{p.name}", "transform_matrix": (c2w + 0.0).tolist()}
                for p, c2w in zip(image_paths, c2ws, strict=True)
            ],
        }
        (out_dir / "transforms.json").write_text(json.dumps(transforms, indent=2))

    segmentations = out_dir / "segmentations"
    segmentations.mkdir(exist_ok=True)
    (segmentations / "classes.txt").write_text("".join(f"{c}\n" for c in class_names))
    for i in views:
        view_dir = segmentations / str(i)
        view_dir.mkdir(exist_ok=True)
        for k, name in enumerate(class_names):
            mask = np.where(label_maps[i] == k, 255, 0).astype(np.uint8)
            Image.fromarray(mask).save(view_dir / f"{name}.png")

    if write_labels:
        labels_dir = out_dir / "labels"
        labels_dir.mkdir(exist_ok=True)
        (labels_dir / "names.json").write_text(json.dumps(class_names))
        for path, label_map in zip(image_paths, label_maps, strict=True):
            Image.fromarray(label_map).save(labels_dir / path.name)

    marker = {"preset": preset, "seed": seed, "num_views": num_views, "width": width, "height": height, "format": fmt}
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2))

    return SceneInfo(
        out_dir=out_dir,
        class_names=class_names,
        image_paths=image_paths,
        camera_to_worlds=c2ws,
        intrinsics=intrinsics,
        width=width,
        height=height,
        annotated_views=views,
        labels=label_maps,
        depths=np.stack(depths),
        near_far=bounds,
        spec=spec,
    )


__all__ = [
    "PRESETS",
    "UNLABELLED",
    "Box",
    "Cylinder",
    "ForwardRig",
    "Material",
    "OrbitRig",
    "Plane",
    "RayHits",
    "RenderedView",
    "SceneInfo",
    "SceneSpec",
    "Sphere",
    "camera_poses",
    "cast_rays",
    "default_annotated_views",
    "intrinsics_from_fov",
    "llff_to_opengl",
    "look_at",
    "make_scene",
    "opengl_to_llff",
    "pixel_rays",
    "render_view",
]
