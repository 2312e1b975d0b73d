"""Cameras of generated scenes: the capture rigs, poses, pinhole intrinsics, pixel rays and the LLFF pose format.

Cameras follow OpenGL (x right, y up, looking down -z); the pixel in column ``u`` and row ``v`` is sampled by the
ray through image point ``(u + 0.5, v + 0.5)``, ``cx = W / 2``, ``cy = H / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from laser_ns.scenes.geometry import Vec3


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
