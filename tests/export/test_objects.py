"""Object selection, floater removal and meshing on a hand-made cloud."""

from __future__ import annotations

import numpy as np
import pytest

from laser_ns.errors import ExportError
from laser_ns.export.objects import ClusterSettings, extract_object, poisson_mesh
from tests.export.clouds import make_cloud


def test_segmentation_selection_keeps_the_ball_and_drops_the_floating_speck():
    cloud = make_cloud()
    obj = extract_object(cloud, "ball")
    assert obj.num_selected == 2006 and len(obj.cloud) == 2000
    assert obj.num_clusters == 1  # the speck went, as a small cluster or as DBSCAN noise
    assert np.all(np.abs(np.linalg.norm(obj.cloud.points - [0.0, 0.5, 0.0], axis=1) - 0.2) < 1e-6)


def test_relevancy_selection_follows_the_threshold():
    cloud = make_cloud()
    assert len(extract_object(cloud, "ball", "relevancy", threshold=0.85).cloud) == 2000
    # at 0.5 the floor (0.3 for 'ball') still stays out; the speck (0.8) is selected, then removed as a floater
    obj = extract_object(cloud, "ball", "relevancy", threshold=0.5)
    assert obj.num_selected == 2006 and len(obj.cloud) == 2000


def test_several_large_clusters_all_survive():
    cloud = make_cloud()
    two = cloud.subset(np.r_[0:2000, 0:2000])
    two.points = two.points.copy()
    two.points[2000:] += (3.0, 0.0, 0.0)  # a second ball, far from the first
    obj = extract_object(two, "ball")
    assert obj.num_clusters == 2 and len(obj.cloud) == 4000


def test_a_query_that_matches_nothing_says_so():
    cloud = make_cloud()
    cloud.classes[:] = 1
    with pytest.raises(ExportError, match="'ball' matches nothing"):
        extract_object(cloud, "ball")
    with pytest.raises(ExportError, match="matches nothing.*highest relevancy anywhere: 0.950"):
        extract_object(make_cloud(), "ball", "relevancy", threshold=0.99)
    with pytest.raises(ExportError, match="not among the closed-set classes"):
        extract_object(make_cloud(), "chair")


def test_only_specks_is_an_empty_output_error():
    cloud = make_cloud()
    specks = cloud.subset(np.arange(2000, 2006))  # the 6 speck points only
    with pytest.raises(ExportError, match="output would be empty"):
        extract_object(specks, "ball", clusters=ClusterSettings(eps=1e-6, min_points=5))


def test_poisson_mesh_of_the_ball_stays_on_its_surface():
    pytest.importorskip("open3d")
    obj = extract_object(make_cloud(normals=True), "ball")
    mesh = poisson_mesh(obj, depth=6)
    vertices = np.asarray(mesh.vertices)
    assert len(mesh.triangles) > 100
    assert np.median(np.abs(np.linalg.norm(vertices - [0.0, 0.5, 0.0], axis=1) - 0.2)) < 0.02
    with pytest.raises(ExportError, match="needs normals"):
        poisson_mesh(extract_object(make_cloud(), "ball"))
