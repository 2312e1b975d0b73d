"""The exporter and the localiser on the generated scene's exact geometry (tests.export.oracle): the issue's
accuracy criteria, with NeRF training noise taken out so that any miss is the export code's own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from laser_ns.export.locate import localise
from laser_ns.export.objects import extract_object
from laser_ns.export.point_cloud import render_labelled_cloud
from laser_ns.scenes import PRESETS
from tests.export.oracle import oracle_pipeline

pytest.importorskip("open3d", reason="nerfstudio's point-cloud generator needs open3d")

SURFACE_TOLERANCE = 0.05
"""World units (the tabletop is 2.3 wide, the apple's radius 0.21)."""


@pytest.fixture(scope="module")
def scene(tiny_scene):
    marker = json.loads((tiny_scene / "synthetic_scene.json").read_text())
    return tiny_scene, PRESETS[marker["preset"]](marker["seed"])


@pytest.fixture(scope="module")
def exported(scene):
    scene_dir, spec = scene
    pipeline = oracle_pipeline(scene_dir, spec, floater_fraction=0.15)
    cloud = render_labelled_cloud(pipeline, spec.class_names, num_points=20000, queries_as_classes=True)
    return pipeline, spec, cloud


def test_every_class_exports_points_on_its_own_surface(exported):
    pipeline, spec, cloud = exported
    frames = pipeline.model.frames
    for name in spec.class_names:
        obj = extract_object(cloud, name)
        distance = spec.class_surface_distance(name, frames.to_original(obj.cloud.points))
        precision = float(np.mean(distance < SURFACE_TOLERANCE))
        assert precision >= 0.9, f"{name}: only {100 * precision:.1f}% of {len(distance)} points on its surface"


def test_floaters_are_what_cleaning_removes(exported):
    """Without floater removal the 15% floaters sink the precision of the objects below the 90% bar."""
    pipeline, spec, cloud = exported
    frames = pipeline.model.frames
    k = spec.class_names.index("red apple")
    raw = frames.to_original(cloud.points[cloud.classes == k])
    assert np.mean(spec.class_surface_distance("red apple", raw) < SURFACE_TOLERANCE) < 0.9


def test_each_object_is_localised_inside_its_true_box(exported):
    pipeline, spec, cloud = exported
    frames = pipeline.model.frames
    objects = [name for name in spec.class_names if spec.class_bounds(name) is not None]
    assert len(objects) >= 3
    for name in objects:
        found = localise(cloud, name).in_frames(frames)["original_frame"]
        low, high = (np.asarray(v) for v in spec.class_bounds(name))
        best = np.asarray(found["best_point"])
        assert np.all(best >= low - 1e-3) and np.all(best <= high + 1e-3), f"{name}: {best} not in {low}..{high}"
        # the region's box lies within the true box grown by the tolerance
        assert np.all(np.asarray(found["box_min"]) >= low - SURFACE_TOLERANCE), name
        assert np.all(np.asarray(found["box_max"]) <= high + SURFACE_TOLERANCE), name


def test_model_state_is_restored_after_export(exported):
    pipeline, spec, _ = exported
    model = pipeline.model
    model.predictor.set_queries(["wall"])
    model.predictor.query_mode = "relevancy"
    model.train(True)
    render_labelled_cloud(pipeline, ["red apple", "chair"], num_points=500, queries_as_classes=True)
    assert model.predictor.queries == ["wall"] and model.predictor.query_mode == "relevancy" and model.training
