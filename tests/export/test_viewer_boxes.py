"""The viewer panel's "Show 3D boxes": each query's localised box drawn in viser's scene, and cleared again."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import numpy as np
import pytest

from laser_ns.scenes import PRESETS
from laser_ns.viewer import BOX_NODES, LaserViewerControls, box_edges
from tests.export.oracle import oracle_pipeline

pytest.importorskip("open3d", reason="nerfstudio's point-cloud generator needs open3d")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_box_edges_are_the_twelve_edges_of_the_box():
    edges = box_edges((0, 0, 0), (1, 2, 3))
    assert len(edges) == 12
    assert all(sum(a != b for a, b in zip(p, q, strict=True)) == 1 for p, q in edges)


def test_show_and_clear_boxes_in_a_real_viser_scene(tiny_scene):
    import viser
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    marker = json.loads((tiny_scene / "synthetic_scene.json").read_text())
    spec = PRESETS[marker["preset"]](marker["seed"])
    pipeline = oracle_pipeline(tiny_scene, spec)
    model = pipeline.model
    server = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    try:
        controls = LaserViewerControls(model)
        controls.install(server)
        assert "3D boxes need the running viewer" in controls.apply_show_boxes()
        controls.viewer_control.viewer = SimpleNamespace(pipeline=pipeline, viser_server=server)
        model.predictor.set_queries(["red apple", "purple elephant"])
        message = controls.apply_show_boxes()
        assert "red apple (" in message and "Not found: purple elephant" in message, message
        assert len(controls._box_handles) == BOX_NODES
        best = np.asarray(controls._box_handles[12].position) / VISER_NERFSTUDIO_SCALE_RATIO  # the best-point sphere
        low, high = spec.class_bounds("red apple")
        original = model.frames.to_original(best[None])[0]
        assert np.all(original >= np.asarray(low) - 1e-3) and np.all(original <= np.asarray(high) + 1e-3)
        assert "Warning" not in message  # the oracle's geometry is exact
        assert "1 removed" in controls.apply_clear_boxes() and controls._box_handles == []
        model.predictor.set_queries([])
        assert "type one or more queries first" in controls.apply_show_boxes()
    finally:
        server.stop()


def test_boxes_of_a_run_with_too_little_geometry_come_with_the_warning(tiny_scene, tmp_path):
    """Issue 18: the viewer's 3D boxes trusted any geometry; a saved run of 400 steps (100 of geometry) is named."""
    import viser
    import yaml

    from laser_ns.method_configs import laser_lite_config

    marker = json.loads((tiny_scene / "synthetic_scene.json").read_text())
    pipeline = oracle_pipeline(tiny_scene, PRESETS[marker["preset"]](marker["seed"]))
    config = laser_lite_config()
    config.max_num_iterations = 400
    (tmp_path / "config.yml").write_text(yaml.dump(config))
    server = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    try:
        controls = LaserViewerControls(pipeline.model)
        controls.install(server)
        controls.viewer_control.viewer = SimpleNamespace(
            pipeline=pipeline, viser_server=server, trainer=None, step=399, log_filename=tmp_path / "viewer_log.txt"
        )
        pipeline.model.predictor.set_queries(["red apple"])
        message = controls.apply_show_boxes()
        assert "red apple (" in message and "Warning: " in message, message
        assert "trained geometry for only 100 steps (step 399)" in message and "nerfacto-lite" in message
    finally:
        server.stop()
