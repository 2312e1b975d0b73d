"""End to end through the real command lines: ns-train laser-lite, ns-eval, ns-render, laser-eval, laser-train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
STEPS = 30


def run(
    args: list[str], env_extra: dict | None = None, timeout: int = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    # the environment's bin first: the tools and the ffmpeg that ns-render needs live there
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env_extra or {})}
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def train(scene: Path, output_dir: Path, *extra: str, cwd: Path | None = None) -> Path:
    """Trains laser-lite for a few steps; ``scene`` and ``output_dir`` may be relative to ``cwd``."""
    run(
        [
            str(BIN / "ns-train"), "laser-lite", "--data", str(scene), "--output-dir", str(output_dir),
            "--experiment-name", "e2e", "--timestamp", "run", "--max-num-iterations", str(STEPS),
            "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
            "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000",
            "--pipeline.teacher-type", "labels", "--pipeline.label-teacher.text-encoder", "hashed",
            "--pipeline.datamanager.train-num-rays-per-batch", "128", *extra,
        ],
        cwd=cwd,
    )  # fmt: skip
    config = (cwd or Path.cwd()) / output_dir / "e2e" / "laser-lite" / "run" / "config.yml"
    assert config.exists()
    assert list((config.parent / "nerfstudio_models").glob("step-*.ckpt"))
    return config


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory) -> Path:
    """One run, trained as a user would: from its own folder, with relative --data and --output-dir.

    Every test below reads it from another folder, which works only because the saved config holds absolute paths.
    """
    start = tmp_path_factory.mktemp("train_here")
    return train(Path(os.path.relpath(tiny_scene, start)), Path("runs"), cwd=start)


def test_saved_config_holds_absolute_paths(trained, tiny_scene):
    import yaml

    config = yaml.load(trained.read_text(), Loader=yaml.Loader)
    assert config.pipeline.datamanager.data == tiny_scene.resolve()
    assert config.get_checkpoint_dir() == trained.parent / "nerfstudio_models"


def test_the_checkpoint_carries_the_pca_basis_fitted_before_it_was_saved(trained):
    """ns-render and the viewer read the same clip_pca basis: the trainer's last step fits it, then saves it."""
    import torch

    checkpoint = sorted((trained.parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]
    assert bool(state["_model.predictor.pca_fitted"])
    assert state["_model.predictor.pca_basis"].abs().sum() > 0


@pytest.fixture(scope="module")
def ns_eval_results(trained, tmp_path_factory) -> dict:
    """ns-eval's averaged metrics of the trained run (run once for the tests below)."""
    folder = tmp_path_factory.mktemp("ns_eval")
    out = folder / "eval.json"
    run([str(BIN / "ns-eval"), "--load-config", str(trained), "--output-path", str(out)], cwd=folder)
    return json.loads(out.read_text())["results"]


def test_ns_eval_reports_segmentation_metrics(ns_eval_results):
    assert 0.0 <= ns_eval_results["miou"] <= 1.0 and 0.0 <= ns_eval_results["accuracy"] <= 1.0
    assert "psnr" in ns_eval_results


def test_laser_eval_matches_ns_eval_protocol(trained, ns_eval_results, tmp_path):
    run([str(BIN / "laser-eval"), "--load-config", str(trained), "--output-dir", str(tmp_path)], cwd=tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [v["image_index"] for v in metrics["views"]] == [0, 5]
    assert len(list(tmp_path.glob("view_*.png"))) == 2
    # Same views, same (full) resolution, same default protocol: ns-eval's per-image means are laser-eval's numbers.
    assert metrics["protocol"] == "3dovs" and metrics["downscale"] == 1.0
    assert metrics["miou"] == pytest.approx(ns_eval_results["miou"], abs=1e-6)
    assert metrics["accuracy"] == pytest.approx(ns_eval_results["accuracy"], abs=1e-6)


def test_ns_render_writes_query_videos(trained, tmp_path):
    import imageio.v2 as imageio

    video = tmp_path / "spiral.mp4"
    run(
        [
            str(BIN / "ns-render"), "spiral", "--load-config", str(trained), "--output-path", str(video),
            "--rendered-output-names", "segmentation", "relevancy_0", "composited_0",
            "--seconds", "1", "--frame-rate", "4",
        ],
        env_extra={"LASER_QUERIES": "red apple"},
        cwd=tmp_path,
    )  # fmt: skip
    reader = imageio.get_reader(str(video))
    assert reader.count_frames() == 4
    frame = reader.get_data(0)
    assert frame.shape[1] == 3 * 64  # three outputs side by side
    reader.close()


def test_ns_train_on_nerfstudio_format(tmp_path):
    from laser_ns.scenes import make_scene

    scene = tmp_path / "ns_scene"
    make_scene(scene, "tabletop", seed=1, num_views=8, width=64, height=48, annotated_views=[0, 5], fmt="nerfstudio")
    config = train(scene, tmp_path / "runs")
    assert "laser-lite" in config.read_text()


def test_ns_train_rejects_broken_scene_with_clear_message(tmp_path):
    # issue 18: one message, no traceback, no config dump, no run folder left holding only config.yml
    scene = tmp_path / "scene"
    (scene / "images").mkdir(parents=True)
    (scene / "poses_bounds.npy").write_bytes(b"junk")
    args = [str(BIN / "ns-train"), "laser-lite", "--data", str(scene), "--vis", "tensorboard",
            "--output-dir", str(tmp_path / "outputs")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "LASER_NS_VERBOSE"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 1
    assert "ns-train laser-lite: error:" in out and "poses_bounds.npy" in out
    assert "pipeline=" not in out  # the scene is read before nerfstudio's 250-line config dump
    assert "Traceback" not in out
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("config.yml"))


def test_ns_train_refuses_several_cpu_devices_before_printing_the_config(tmp_path):
    # issue 18: --machine.num-devices 2 on a CPU gave nerfstudio's CUDA assertion
    args = [str(BIN / "ns-train"), "laser-lite", "--data", str(tmp_path), "--vis", "tensorboard",
            "--output-dir", str(tmp_path / "outputs"), "--machine.num-devices", "2"]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "CUDA GPUs only" in out and "--machine.num-devices 1" in out
    assert "Traceback" not in out and "AssertionError" not in out
    assert "pipeline=" not in out  # refused before nerfstudio's config dump
    assert not (tmp_path / "outputs").exists()


def test_laser_train_applies_a_preset(tmp_path):
    result = subprocess.run([str(BIN / "laser-train"), "nope"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "No preset named 'nope'" in result.stderr
