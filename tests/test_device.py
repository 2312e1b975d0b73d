"""A run refuses a device this machine lacks, before any work, with the flags that fix it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from laser_ns import device
from laser_ns.device import CPU_FLAGS, DeviceUnavailableError, check_training_device

BIN = Path(sys.executable).parent


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(device, "_cuda_device_count", lambda: 0)


def test_laser_without_cuda_names_the_cpu_flags(no_cuda):
    from laser_ns.method_configs import laser_config

    with pytest.raises(DeviceUnavailableError, match="no CUDA device") as err:
        check_training_device(laser_config(), command="laser-train bed")
    assert CPU_FLAGS in str(err.value) and "laser-lite" in str(err.value) and "laser-train bed" in str(err.value)


def test_cpu_runs_pass(no_cuda):
    from laser_ns.method_configs import laser_config, laser_lite_config

    check_training_device(laser_lite_config())
    config = laser_config()
    config.machine.device_type = "cpu"
    config.pipeline.model.implementation = "torch"
    check_training_device(config)


def test_more_gpus_than_present(monkeypatch):
    from laser_ns.method_configs import laser_config

    monkeypatch.setattr(device, "_cuda_device_count", lambda: 1)
    config = laser_config()
    config.machine.num_devices = 2
    with pytest.raises(DeviceUnavailableError, match="--machine.num-devices 2 .* finds 1"):
        check_training_device(config)


def test_tcnn_needs_cuda(no_cuda):
    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.pipeline.model.implementation = "tcnn"
    with pytest.raises(DeviceUnavailableError, match="implementation tcnn needs CUDA"):
        check_training_device(config)


def test_ns_train_refuses_before_saving_the_config(no_cuda, tmp_path):
    """ns-train calls save_config() once, before launching: laser refuses there, so no run folder is written."""
    from laser_ns.method_configs import laser_config

    config = laser_config()
    config.output_dir = tmp_path / "outputs"
    with pytest.raises(DeviceUnavailableError, match="ns-train laser"):
        config.save_config()
    assert not (tmp_path / "outputs").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_laser_train_preset_on_a_cpu_machine_says_what_to_do(tiny_scene, tmp_path):
    args = [str(BIN / "laser-train"), "bed", "--data", str(tiny_scene), "--output-dir", str(tmp_path / "outputs")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    expected = "laser-train: laser-paper trains on --machine.device-type cuda, but torch finds no CUDA device"
    assert expected in result.stderr
    assert CPU_FLAGS in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()
