"""The analytic primitives of generated scenes (planes, spheres, axis-aligned boxes, vertical cylinders) and exact
ray casting against them.

World convention: y is up. Each primitive carries a class prompt (its label) and a :class:`Material`, and knows its
distance to any point and its bounds (the export tests' ground truth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np
from jaxtyping import Float, Int

if TYPE_CHECKING:  # annotations only: shading imports this module for its ray casting
    from laser_ns.scenes.shading import Material

Vec3 = tuple[float, float, float]

_T_EPS = 1e-6


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
