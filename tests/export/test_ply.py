"""The labelled PLY opens in plyfile, open3d and trimesh with the declared properties; the legend names them."""

from __future__ import annotations

import numpy as np
import pytest

from laser_ns.export.frames import SceneFrames
from laser_ns.export.ply import legend, read_ply, vertex_properties, write_ply
from tests.export.clouds import make_cloud

DECLARED = ["x", "y", "z", "red", "green", "blue", "class", "relevancy_0", "relevancy_1", "nx", "ny", "nz"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cloud = make_cloud(normals=True)
    return cloud, write_ply(tmp_path_factory.mktemp("ply") / "cloud.ply", cloud)


def test_plyfile_reads_every_declared_property(written):
    from plyfile import PlyData

    cloud, path = written
    data = PlyData.read(str(path))
    assert not data.text and data.byte_order == "<"
    vertices = data["vertex"].data
    assert list(vertices.dtype.names) == DECLARED == [name for name, _ in vertex_properties(cloud)]
    assert vertices["class"].dtype == np.int32 and vertices["red"].dtype == np.uint8
    assert np.array_equal(vertices["class"], cloud.classes)
    assert np.allclose(vertices["relevancy_0"], cloud.relevancy[:, 0])
    assert np.allclose(np.stack([vertices[a] for a in "xyz"], axis=1), cloud.points, atol=1e-6)
    assert "comment class 0 = ball" in str(data.header) and "comment relevancy_1 = floor" in str(data.header)


def test_open3d_reads_points_colours_normals_and_labels(written):
    o3d = pytest.importorskip("open3d")
    cloud, path = written
    legacy = o3d.io.read_point_cloud(str(path))
    assert len(legacy.points) == len(cloud) and legacy.has_colors() and legacy.has_normals()
    assert np.allclose(np.asarray(legacy.colors)[:5], cloud.colors[:5] / 255.0, atol=1e-6)
    tensor = o3d.t.io.read_point_cloud(str(path)).point
    assert np.array_equal(tensor["class"].numpy()[:, 0], cloud.classes)
    assert np.allclose(tensor["relevancy_1"].numpy()[:, 0], cloud.relevancy[:, 1])


def test_trimesh_reads_points_colours_and_labels(written):
    trimesh = pytest.importorskip("trimesh")
    cloud, path = written
    loaded = trimesh.load(str(path))
    assert isinstance(loaded, trimesh.PointCloud) and len(loaded.vertices) == len(cloud)
    assert np.array_equal(loaded.colors[:, :3], cloud.colors)
    raw = loaded.metadata["_ply_raw"]["vertex"]["data"]
    assert list(raw.dtype.names) == DECLARED


def test_without_normals_and_queries_only_the_core_properties(tmp_path):
    cloud = make_cloud()
    cloud = cloud.subset(np.arange(10))
    cloud.queries = []
    cloud.relevancy = cloud.relevancy[:, :0]
    assert list(read_ply(write_ply(tmp_path / "c.ply", cloud)).dtype.names) == DECLARED[:7]


def test_an_empty_cloud_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_ply(tmp_path / "empty.ply", make_cloud().subset(np.zeros(0, dtype=np.int64)))
    assert not (tmp_path / "empty.ply").exists()


def test_legend_names_classes_colours_queries_and_frame():
    cloud = make_cloud(normals=True)
    frames = SceneFrames(np.eye(4)[:3], 0.5, "test")
    content = legend(cloud, frames, ply="cloud.ply")
    assert content["properties"] == DECLARED and content["num_points"] == len(cloud)
    assert content["classes"][1] == {"index": 1, "name": "floor", "color": [26, 115, 230]}
    assert content["queries"][0] == {"property": "relevancy_0", "text": "ball"}
    assert np.allclose(content["dataparser_to_original"], np.diag([2.0, 2.0, 2.0, 1.0]))
