"""laser-export and laser-locate end to end on a short real ns-train laser-lite run, and their error messages.

A 30-step run has no usable geometry, so this checks the plumbing (files, properties, legend, frames, exit codes);
accuracy against ground truth is checked in test_ground_truth.py and measured by benchmarks/export_accuracy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import train

pytest.importorskip("open3d", reason="nerfstudio's point-cloud generator needs open3d")
pytestmark = pytest.mark.slow


def laser(tool: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """Runs the real command line (``python -m``: the console scripts need a reinstall to appear)."""
    result = subprocess.run(
        [sys.executable, "-m", f"laser_ns.scripts.{tool}", *args], capture_output=True, text=True, timeout=600
    )
    if ok:
        assert result.returncode == 0, f"{tool} {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory) -> Path:
    return train(tiny_scene, tmp_path_factory.mktemp("export_runs"))


@pytest.fixture(scope="module")
def scene_export(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    laser("export", "--load-config", str(trained), "--output-dir", str(out), "--num-points", "3000", "--normals")
    return out


def test_scene_cloud_and_legend(scene_export, trained):
    from plyfile import PlyData

    legend = json.loads((scene_export / "legend.json").read_text())
    vertices = PlyData.read(str(scene_export / "point_cloud.ply"))["vertex"].data
    assert list(vertices.dtype.names) == legend["properties"]
    assert legend["properties"][:7] == ["x", "y", "z", "red", "green", "blue", "class"]
    assert legend["properties"][-3:] == ["nx", "ny", "nz"]
    names = [c["name"] for c in legend["classes"]]
    assert names == sorted(names) and "red apple" in names
    assert [q["text"] for q in legend["queries"]] == names  # the run's queries default to its classes
    assert len(vertices) == legend["num_points"] > 1000
    assert set(np.unique(vertices["class"])) <= set(range(len(names)))
    assert legend["transform_source"].endswith("dataparser_transforms.json")
    assert legend["config"] == str(trained)
    # a 30-step run trained geometry for 8 steps: the legend (and the console) say not to trust it
    assert any("trained geometry for only 8 steps" in w for w in legend["warnings"])


def test_object_export_in_the_original_frame_matches_the_transform(scene_export, trained, tmp_path):
    legend = json.loads((scene_export / "legend.json").read_text())
    vertices = _vertices(scene_export / "point_cloud.ply")
    # the most frequent class of this short run is the one sure to match something
    common = legend["classes"][int(np.bincount(vertices["class"]).argmax())]["name"]
    laser("export", "--load-config", str(trained), "--output-dir", str(tmp_path), "--num-points", "3000",
          "--normals", "--frame", "original", "--objects", common, "--meshes", "--mesh-depth", "6")  # fmt: skip
    original = _vertices(tmp_path / "point_cloud.ply")
    matrix = np.asarray(legend["dataparser_to_original"])
    expected = _xyz(vertices) @ matrix[:3, :3].T + matrix[:3, 3]
    assert np.allclose(_xyz(original), expected, atol=1e-4 * max(1.0, np.abs(expected).max()))  # same seed, same rays
    entry = json.loads((tmp_path / "legend.json").read_text())["objects"][0]
    obj = _vertices(tmp_path / entry["ply"])
    assert entry["query"] == common and len(obj) == entry["num_points"] > 0
    index = next(c["index"] for c in legend["classes"] if c["name"] == common)
    assert set(np.unique(obj["class"])) == {index}
    assert (tmp_path / entry["mesh"]).stat().st_size > 0


def test_locate_reports_both_frames(scene_export, trained, tmp_path):
    legend = json.loads((scene_export / "legend.json").read_text())
    vertices = _vertices(scene_export / "point_cloud.ply")
    common = legend["classes"][int(np.bincount(vertices["class"]).argmax())]["name"]
    out = tmp_path / "locate.json"
    result = laser("locate", "--load-config", str(trained), common, "--output", str(out), "--num-points", "3000")
    assert common in result.stdout and "original frame" in result.stdout
    found = json.loads(out.read_text())["queries"][0]
    matrix = np.asarray(legend["dataparser_to_original"])
    best = np.asarray(found["dataparser_frame"]["best_point"])
    assert np.allclose(found["original_frame"]["best_point"], matrix[:3, :3] @ best + matrix[:3, 3], atol=1e-6)
    for frame in ("dataparser_frame", "original_frame"):
        entry = found[frame]
        assert np.all(np.asarray(entry["box_min"]) <= entry["best_point"])
        assert np.all(np.asarray(entry["best_point"]) <= entry["box_max"])


def in_process(tool: str, *args: str, capsys) -> tuple[int, str]:
    """The same command in this process (no interpreter start-up): exit status and printed text."""
    import tyro

    from laser_ns.scripts.export import ExportLaser, main
    from laser_ns.scripts.locate import LocateLaser

    command = tyro.cli(ExportLaser if tool == "export" else LocateLaser, args=list(args))
    try:
        main(command)
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, capsys.readouterr().out


def test_unknown_config_is_a_clear_error(tmp_path):
    result = laser("export", "--load-config", str(tmp_path / "nope.yml"), ok=False)
    assert result.returncode == 1 and "No training config at" in result.stdout and "Traceback" not in result.stderr


def test_locate_without_a_query_or_config(tmp_path, capsys):
    status, out = in_process("locate", "--load-config", str(tmp_path / "nope.yml"), "chair", capsys=capsys)
    assert status == 1 and "No training config at" in out
    status, out = in_process("locate", "--load-config", str(tmp_path), capsys=capsys)
    assert status == 1 and "Give a query to locate" in out


def test_a_laser_paper_run_is_read(trained, tmp_path, capsys):
    # issue 18: an allow-list of method names refused every laser-paper run (every 3D-OVS preset); the pipeline
    # type decides now
    renamed = tmp_path / "config.yml"
    renamed.write_text(trained.read_text().replace("method_name: laser-lite", "method_name: laser-paper"))
    (tmp_path / "nerfstudio_models").symlink_to(trained.parent / "nerfstudio_models")
    # a 30-step run segments nothing reliably: every point is relevant at threshold 0, so the run itself is tested
    status, out = in_process("locate", "--load-config", str(renamed), "table", "--output", str(tmp_path / "l.json"),
                             "--num-points", "500", "--selection", "relevancy", "--relevancy-threshold", "0",
                             capsys=capsys)  # fmt: skip
    assert status == 0, out
    assert json.loads((tmp_path / "l.json").read_text())["queries"][0]["query"] == "table"


def test_a_query_that_matches_nothing_is_a_clear_error(trained, tmp_path, capsys):
    # hashed text: an unknown prompt's embedding is unrelated to every rendered feature, so no point picks it
    status, out = in_process("export", "--load-config", str(trained), "--output-dir", str(tmp_path),
                             "--num-points", "1000", "--objects", "purple elephant", capsys=capsys)  # fmt: skip
    assert status == 1 and "'purple elephant' matches nothing" in out
    assert not (tmp_path / "point_cloud.ply").exists()


def test_an_empty_output_is_a_clear_error(trained, tmp_path, capsys):
    status, out = in_process("export", "--load-config", str(trained), "--output-dir", str(tmp_path),
                             "--num-points", "500", "--min-accumulation", "2", capsys=capsys)  # fmt: skip
    assert status == 1 and "No point of" in out and "survived" in out


def test_entry_points_are_declared():
    import tomllib

    scripts = tomllib.loads(Path("pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["laser-export"] == "laser_ns.scripts.export:entrypoint"
    assert scripts["laser-locate"] == "laser_ns.scripts.locate:entrypoint"


def _vertices(path: Path):
    from plyfile import PlyData

    return PlyData.read(str(path))["vertex"].data


def _xyz(vertices) -> np.ndarray:
    return np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1).astype(np.float64)
