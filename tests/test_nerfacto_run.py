"""Geometry from a real `ns-train nerfacto` run (pose refinement on, as nerfacto's default), trained offline here.

nerfacto builds an LPIPS metric at init, whose AlexNet weights torchvision would download. The test gives it a
private TORCH_HOME holding random AlexNet weights under the file name torchvision looks for, so nothing is fetched
and nerfstudio stays unchanged. LPIPS values of that run are meaningless; nothing here reads them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from laser_ns.geometry_checkpoint import GeometryCheckpointError, checkpoint_model_state, load_geometry

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory) -> dict[str, str]:
    import torchvision

    torch_home = tmp_path_factory.mktemp("torch_home")
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    weights = torchvision.models.AlexNet_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), checkpoints / weights)
    return {**os.environ, "TORCH_HOME": str(torch_home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def common(output_dir: Path, method: str, steps: int) -> list[str]:
    return [
        "--output-dir", str(output_dir), "--experiment-name", "e", "--timestamp", "run",
        "--max-num-iterations", str(steps), "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
        "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000",
        "--steps-per-save", "1000", "--machine.device-type", "cpu", "--pipeline.model.implementation", "torch",
        "--pipeline.datamanager.train-num-rays-per-batch", "256",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def nerfacto_run(tiny_scene, offline_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nerfacto")
    run([str(BIN / "ns-train"), "nerfacto", "--data", str(tiny_scene), *common(out, "nerfacto", 8), "laser-data"],
        offline_env)  # fmt: skip
    config = out / "e" / "nerfacto" / "run" / "config.yml"
    assert config.exists()
    return config


def test_nerfacto_run_seeds_laser_with_its_geometry_and_pose_corrections(tiny_scene, nerfacto_run, tmp_path):
    from laser_ns.method_configs import laser_config

    source = checkpoint_model_state(sorted((nerfacto_run.parent / "nerfstudio_models").glob("*.ckpt"))[-1])
    assert source["camera_optimizer.pose_adjustment"].abs().sum() > 0  # nerfacto refined its poses

    pipeline_config = laser_config().pipeline
    pipeline_config.teacher_type = "labels"
    pipeline_config.label_teacher.text_encoder = "hashed"
    pipeline_config.datamanager.data = tiny_scene
    pipeline_config.datamanager.cache_dir = tmp_path / "cache"
    pipeline_config.model.implementation = "torch"
    pipeline_config.model.geometry_checkpoint = nerfacto_run
    pipeline = pipeline_config.setup(device="cpu", test_mode="val")
    model = pipeline.model
    for name, value in model.field.state_dict().items():
        assert torch.equal(value, source[f"field.{name}"]), name
    assert model.camera_optimizer.config.mode == "SO3xR3"  # carried over from the run's config.yml
    assert torch.equal(model.camera_optimizer.pose_adjustment, source["camera_optimizer.pose_adjustment"])
    assert not model.camera_optimizer.pose_adjustment.requires_grad  # fixed, not refined further
    model.schedule.set_total_steps(30000)  # what the trainer does with --max-num-iterations
    assert model.schedule.phases.language_start == 0


def test_laser_trains_from_the_nerfacto_run_through_the_cli(tiny_scene, nerfacto_run, offline_env, tmp_path):
    out = tmp_path / "laser"
    run([
        str(BIN / "ns-train"), "laser", "--data", str(tiny_scene), *common(out, "laser", 4),
        "--pipeline.model.geometry-checkpoint", str(nerfacto_run), "--pipeline.teacher-type", "labels",
        "--pipeline.label-teacher.text-encoder", "hashed", "--pipeline.datamanager.language-patch-size", "32",
        "--pipeline.datamanager.cache-dir", str(tmp_path / "cache"),
    ], offline_env)  # fmt: skip
    assert list((out / "e" / "laser" / "run" / "nerfstudio_models").glob("step-*.ckpt"))


def test_a_tcnn_checkpoint_names_the_implementation(nerfacto_run, tmp_path):
    checkpoint = sorted((nerfacto_run.parent / "nerfstudio_models").glob("*.ckpt"))[-1]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    # what tiny-cuda-nn's modules store: one flat 'params' tensor per encoding or network
    pipeline = state["pipeline"]
    base = [k for k in pipeline if k.startswith("_model.field.mlp_base.")]
    pipeline["_model.field.mlp_base.model.params"] = torch.cat([pipeline.pop(k).flatten() for k in base])
    (tmp_path / "nerfstudio_models").mkdir()
    fake = tmp_path / "nerfstudio_models" / "step-000000008.ckpt"
    torch.save(state, fake)
    model = torch.nn.Module()
    model.field = torch.nn.Module()
    model.field.mlp_base = torch.nn.Linear(2, 2)  # a torch-resolved model: no 'params' tensors
    with pytest.raises(GeometryCheckpointError, match="trained with the tcnn hash grids.*implementation torch"):
        load_geometry(model, fake, tmp_path)


def test_a_truncated_checkpoint_is_named(tmp_path):
    broken = tmp_path / "step-000000001.ckpt"
    broken.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(GeometryCheckpointError, match="step-000000001.ckpt.*truncated"):
        load_geometry(torch.nn.Module(), broken, tmp_path)


def test_nerfacto_lite_trains_offline_and_seeds_laser_lite(tiny_scene, tmp_path):
    # issue 18: the nerfacto route failed offline on a CPU (LPIPS download) and fitted only `laser`
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty_torch_home")}  # no AlexNet weights anywhere
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    out = tmp_path / "geometry"
    args = [str(BIN / "ns-train"), "nerfacto-lite", "--data", str(tiny_scene), *common(out, "nerfacto-lite", 8)]
    run(args, env)
    config = out / "e" / "nerfacto-lite" / "run" / "config.yml"
    source = checkpoint_model_state(sorted((config.parent / "nerfstudio_models").glob("*.ckpt"))[-1])

    pipeline_config = _laser_lite_pipeline(tiny_scene, tmp_path)
    pipeline_config.model.geometry_checkpoint = config
    model = pipeline_config.setup(device="cpu", test_mode="val").model
    for name, value in model.field.state_dict().items():
        assert torch.equal(value, source[f"field.{name}"]), name


def test_a_full_size_nerfacto_run_into_laser_lite_names_nerfacto_lite(tiny_scene, nerfacto_run, tmp_path):
    pipeline_config = _laser_lite_pipeline(tiny_scene, tmp_path)
    pipeline_config.model.geometry_checkpoint = nerfacto_run
    with pytest.raises(GeometryCheckpointError, match="ns-train nerfacto-lite --data <scene>"):
        pipeline_config.setup(device="cpu", test_mode="val")


def _laser_lite_pipeline(scene: Path, tmp_path: Path):
    from laser_ns.method_configs import laser_lite_config

    pipeline_config = laser_lite_config().pipeline
    pipeline_config.teacher_type = "labels"
    pipeline_config.label_teacher.text_encoder = "hashed"
    pipeline_config.datamanager.data = scene
    pipeline_config.datamanager.cache_dir = tmp_path / "cache"
    return pipeline_config
