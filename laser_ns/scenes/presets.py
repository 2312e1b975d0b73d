"""The named generated scenes (``PRESETS``): each maps a seed to a :class:`SceneSpec` deterministically."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from laser_ns.scenes.cameras import ForwardRig, OrbitRig
from laser_ns.scenes.geometry import Box, Cylinder, Plane, Primitive, Sphere
from laser_ns.scenes.shading import RGB, Material
from laser_ns.scenes.spec import SceneSpec

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
