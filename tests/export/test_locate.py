"""Localisation: the region's best point and its box in both frames."""

from __future__ import annotations

import numpy as np

from laser_ns.export.frames import SceneFrames
from laser_ns.export.locate import localise
from tests.export.clouds import make_cloud


def test_best_point_and_box_of_the_ball():
    cloud = make_cloud()
    where = localise(cloud, "ball")
    assert np.allclose(where.best_point, cloud.points[17]) and where.best_relevancy == np.float32(0.95)
    low, high = where.box
    assert np.allclose(low, [-0.2, 0.3, -0.2], atol=0.02) and np.allclose(high, [0.2, 0.7, 0.2], atol=0.02)


def test_the_speck_never_wins_even_with_the_highest_relevancy():
    cloud = make_cloud()
    cloud.relevancy[2000:2006, 0] = 1.0  # the floating speck is the most relevant, but not part of the region
    assert localise(cloud, "ball").best_relevancy < 1.0


def test_both_frames_are_reported_with_boxes_of_the_mapped_points():
    frames = SceneFrames(np.concatenate([np.eye(3)[[1, 0, 2]], [[1.0], [2.0], [3.0]]], axis=1), 0.5, "test")
    result = localise(make_cloud(), "ball").in_frames(frames)
    original = result["original_frame"]
    region = frames.to_original(localise(make_cloud(), "ball").region)
    assert np.allclose(original["box_min"], region.min(axis=0)) and np.allclose(original["box_max"], region.max(axis=0))
    best = frames.to_original(np.array([result["dataparser_frame"]["best_point"]]))[0]
    assert np.allclose(original["best_point"], best)
    assert result["num_points"] == 2000 and result["selection"] == "segmentation"
