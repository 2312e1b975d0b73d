"""Train through every phase boundary, then ns-eval, laser-eval and ns-render, on CUDA (and on the CPU where it can).

The CUDA runs use `laser` (the paper's field sizes) with both teachers: the label-map teacher and DenseClip on random
weights (the full image path: CSA, the feature cache, patches). They are skipped without a CUDA device. The CPU run
covers the same path with DenseClip on `laser-lite`; the label-map teacher on the CPU is covered by tests/test_cli.py.

Phases of a 40-step run: geometry 0-19, language from 20, colour fine-tuning from 27, self-cross from 31.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BIN = Path(sys.executable).parent
STEPS = 40
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
TEACHER_ARGS = {
    "labels": ["--pipeline.teacher-type", "labels", "--pipeline.label-teacher.text-encoder", "hashed"],
    "clip": ["--pipeline.teacher-type", "clip", "--pipeline.teacher.pretrained", "None",
             "--pipeline.teacher.allow-random-weights", "True"],
}  # fmt: skip
PAPER_PARTS = [
    arg
    for part in ("use-adapter", "use-transient-attention", "use-label-volume", "use-text-augmentation")
    for arg in (f"--pipeline.model.{part}", "True")
]
"""Every part of the paper on (laser and laser-lite leave them out by default), so every phase exercises them."""


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def gpu_scene(tmp_path_factory) -> Path:
    """A 320x240 scene: at the teacher's full resolution, 20x15 tiles per view."""
    from laser_ns.scenes import make_scene

    root = tmp_path_factory.mktemp("gpu_scene") / "scene"
    make_scene(root, "tabletop", seed=0, num_views=12, width=320, height=240, annotated_views=[0, 6])
    return root


def train_eval_render(scene: Path, out: Path, method: str, device: str, teacher: str, views: list[int]) -> None:
    run([
        str(BIN / "ns-train"), method, "--data", str(scene), "--output-dir", str(out), "--experiment-name", "e",
        "--timestamp", "run", "--max-num-iterations", str(STEPS), "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--machine.device-type", device,
        "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000",
        "--pipeline.datamanager.teacher-image-scale", "1.0", "--pipeline.datamanager.language-patch-size", "64",
        "--pipeline.datamanager.cache-dir", str(out / "cache"), *TEACHER_ARGS[teacher], *PAPER_PARTS,
    ])  # fmt: skip
    config = out / "e" / method / "run" / "config.yml"
    checkpoint = sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["step"] == STEPS - 1
    assert int(state["pipeline"]["_model.adapter.num_updates"]) > 0  # language ran

    eval_json = out / "eval.json"
    run([str(BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(eval_json)])
    results = json.loads(eval_json.read_text())["results"]
    assert 0.0 <= results["miou"] <= 1.0

    run([str(BIN / "laser-eval"), "--load-config", str(config), "--output-dir", str(out / "laser_eval")])
    metrics = json.loads((out / "laser_eval" / "metrics.json").read_text())
    assert [v["image_index"] for v in metrics["views"]] == views

    video = out / "render.mp4"
    run([
        str(BIN / "ns-render"), "interpolate", "--load-config", str(config), "--output-path", str(video),
        "--rendered-output-names", "rgb", "segmentation", "relevancy_0", "--frame-rate", "4",
        "--interpolation-steps", "1", "--downscale-factor", "2",
    ])  # fmt: skip
    assert video.stat().st_size > 0


@CUDA
@pytest.mark.parametrize("teacher", ["labels", "clip"])
def test_laser_on_cuda_through_every_phase(gpu_scene, tmp_path, teacher):
    train_eval_render(gpu_scene, tmp_path, "laser", "cuda", teacher, views=[0, 6])


def test_laser_lite_on_cpu_with_dense_clip_through_every_phase(tiny_scene, tmp_path):
    train_eval_render(tiny_scene, tmp_path, "laser-lite", "cpu", "clip", views=[0, 5])
