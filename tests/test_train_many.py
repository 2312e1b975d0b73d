"""laser-train-many: two generated scenes trained and evaluated end to end, a summary table, and a resumed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from laser_ns.scripts.train_many import ManyScenesError, scene_list, summary_markdown, train_command

BIN = Path(sys.executable).parent
STEPS = 30
TINY = [
    "--max-num-iterations", str(STEPS), "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000",
    "--steps-per-eval-all-images", "1000", "--pipeline.teacher-type", "clip-like",
    "--pipeline.datamanager.train-num-rays-per-batch", "128",
]  # fmt: skip


def _many(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "laser-train-many"), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory) -> tuple[list[Path], Path, subprocess.CompletedProcess]:
    from laser_ns.scenes import make_scene

    root = tmp_path_factory.mktemp("many")
    scenes = []
    for name, preset in (("kitchen", "tabletop"), ("desk", "similar_colors")):
        make_scene(root / name, preset, seed=0, num_views=8, width=64, height=48, annotated_views=[0, 5])
        scenes.append(root / name)
    out = root / "runs"
    result = _many(
        *map(str, scenes), "--method", "laser-lite", "--output-dir", str(out), "--devices", "cpu", "--", *TINY
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return scenes, out, result


def test_each_scene_is_trained_and_scored_in_its_own_folders(two_scenes):
    scenes, out, result = two_scenes
    summary = json.loads((out / "summary.json").read_text())
    assert [row["scene"] for row in summary] == ["kitchen", "desk"]
    for row, scene in zip(summary, scenes, strict=True):
        assert row["state"] == "trained" and 0 <= row["miou"] <= 1 and row["per_class_iou"]
        run = out / scene.name / "laser-lite" / "run"
        assert Path(row["config"]) == run / "config.yml"
        assert list((run / "nerfstudio_models").glob("step-*.ckpt"))
        assert (out / scene.name / "eval" / "metrics.json").exists()
        assert list((scene / "laser_cache").rglob("*.pt"))  # each scene's own teacher cache
    table = (out / "summary.md").read_text()
    assert "| kitchen | trained | cpu |" in table and "mean of 2" in table and table in result.stdout


def test_running_again_resumes_finished_scenes_and_retrains_a_stopped_one(two_scenes):
    scenes, out, _ = two_scenes
    kitchen_ckpt = next((out / "kitchen" / "laser-lite" / "run" / "nerfstudio_models").glob("*.ckpt"))
    kitchen_mtime = kitchen_ckpt.stat().st_mtime
    before = json.loads((out / "summary.json").read_text())
    # the desk scene "stopped midway": its status says nothing finished, its partial run is still there
    (out / "desk" / "status.json").unlink()
    result = _many(
        *map(str, scenes), "--method", "laser-lite", "--output-dir", str(out), "--devices", "cpu", "--", *TINY
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = {row["scene"]: row for row in json.loads((out / "summary.json").read_text())}
    assert after["kitchen"]["state"] == "already trained"
    assert after["kitchen"]["miou"] == before[0]["miou"]  # read back, not re-scored
    assert kitchen_ckpt.stat().st_mtime == kitchen_mtime
    assert after["desk"]["state"] == "trained"
    assert len(list((out / "desk" / "laser-lite" / "run" / "nerfstudio_models").glob("*.ckpt"))) == 1


def test_a_failing_scene_is_reported_and_the_others_still_run(tmp_path, tiny_scene):
    broken = tmp_path / "broken"
    broken.mkdir()
    result = _many(
        str(broken), "--method", "laser-lite", "--output-dir", str(tmp_path / "runs"), "--devices", "cpu", "--", *TINY
    )
    assert result.returncode == 1
    row = json.loads((tmp_path / "runs" / "summary.json").read_text())[0]
    assert row["state"] == "failed" and (tmp_path / "runs" / "broken" / "train.log").exists()
    assert "poses_bounds.npy" in row["message"] and "poses_bounds.npy" in result.stdout  # the run's own error


def test_scene_names_must_differ(tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "scene").mkdir(parents=True)
    with pytest.raises(ManyScenesError, match="Two scenes are named 'scene'"):
        scene_list([tmp_path / "a" / "scene", tmp_path / "b" / "scene"], None)
    with pytest.raises(ManyScenesError, match="not found"):
        scene_list([tmp_path / "missing"], None)


def test_the_train_command_puts_the_run_in_the_scene_folder(tmp_path):
    command = train_command(tmp_path / "bed", tmp_path / "runs" / "bed", "laser", False, ["--max-num-iterations", "5"])
    assert command[1:2] == ["laser"] and command[-2:] == ["--max-num-iterations", "5"]
    assert command[command.index("--output-dir") + 1] == str(tmp_path / "runs")
    assert command[command.index("--experiment-name") + 1] == "bed"
    preset = train_command(tmp_path / "bed", tmp_path / "runs" / "bed", "laser", True, [])
    assert Path(preset[0]).name == "laser-train" and preset[1] == "bed"


def test_summary_table_gives_the_mean_of_scored_scenes():
    from laser_ns.scripts.train_many import SceneResult

    rows = [SceneResult("a", "a", "trained", "0", 1.0, 0.5, 0.9), SceneResult("b", "b", "failed", "1")]
    assert "| **mean of 1** | | | | 50.0 |" in summary_markdown(rows)


def test_device_indices_count_within_the_visible_gpus(monkeypatch):
    from laser_ns.scripts.train_many import _env_for

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # e.g. the two GPUs SLURM gave this job
    assert _env_for("1")["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _env_for("1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in _env_for("cpu")
