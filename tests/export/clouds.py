"""Hand-made labelled clouds with known shapes, for the export unit tests."""

from __future__ import annotations

import numpy as np

from laser_ns.export.point_cloud import LabelledCloud


def sphere_points(rng: np.random.Generator, center, radius: float, count: int) -> np.ndarray:
    directions = rng.normal(size=(count, 3))
    return np.asarray(center) + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def make_cloud(seed: int = 0, normals: bool = False) -> LabelledCloud:
    """Class 0 'ball': a sphere of 2000 points plus a 6-point speck far away; class 1 'floor': a plane patch.

    Relevancy of 'ball' is 0.9 on the sphere (0.95 at one known point), 0.8 on the speck and 0.3 on the floor.
    """
    rng = np.random.default_rng(seed)
    ball = sphere_points(rng, (0.0, 0.5, 0.0), 0.2, 2000)
    speck = np.array([1.5, 1.5, 1.5]) + 0.002 * rng.normal(size=(6, 3))
    floor = np.stack([rng.uniform(-1, 1, 3000), np.zeros(3000), rng.uniform(-1, 1, 3000)], axis=1)
    points = np.concatenate([ball, speck, floor])
    classes = np.array([0] * (len(ball) + len(speck)) + [1] * len(floor), dtype=np.int32)
    relevancy = np.full((len(points), 2), 0.3, dtype=np.float32)
    relevancy[: len(ball), 0] = 0.9
    relevancy[len(ball) : len(ball) + len(speck), 0] = 0.8
    relevancy[len(ball) :, 1] = 0.7
    relevancy[17, 0] = 0.95  # the ball's best point
    cloud_normals = None
    if normals:
        cloud_normals = np.zeros_like(points)
        cloud_normals[: len(ball)] = (ball - np.array([0.0, 0.5, 0.0])) / 0.2
        cloud_normals[len(ball) :] = (0.0, 1.0, 0.0)
    return LabelledCloud(
        points=points,
        colors=rng.integers(0, 256, size=(len(points), 3)).astype(np.uint8),
        classes=classes,
        relevancy=relevancy,
        normals=cloud_normals,
        class_names=["ball", "floor"],
        class_colors=[(230, 26, 26), (26, 115, 230)],
        queries=["ball", "floor"],
    )
