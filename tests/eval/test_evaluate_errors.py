"""laser-eval names the file and the fix for a missing config, an empty checkpoint folder or a truncated checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from laser_ns.eval.evaluate import entrypoint


def _saved_run(tmp_path: Path, scene: Path) -> Path:
    """A run folder as ns-train leaves it: config.yml and nerfstudio_models/ (filled by each test)."""
    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.pipeline.datamanager.data = scene
    config.pipeline.teacher_type = "labels"  # no CLIP weights to fetch if a regression gets as far as the pipeline
    config.pipeline.label_teacher.text_encoder = "hashed"
    config.output_dir = tmp_path / "outputs"
    config.experiment_name, config.timestamp = "exp", "run"
    run_dir = config.get_base_dir()
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    (run_dir / "config.yml").write_text(yaml.dump(config))
    return run_dir


def _laser_eval(monkeypatch, config: Path, tmp_path: Path) -> str:
    monkeypatch.setattr(sys, "argv", ["laser-eval", "--load-config", str(config), "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        entrypoint()
    return str(exit_info.value.code)


def test_empty_checkpoint_folder(tiny_scene, tmp_path, monkeypatch):
    run_dir = _saved_run(tmp_path, tiny_scene)
    message = _laser_eval(monkeypatch, run_dir / "config.yml", tmp_path)
    assert message.startswith(f"laser-eval: {run_dir / 'nerfstudio_models'} holds no checkpoint (step-*.ckpt)")
    assert "--steps-per-save" in message


def test_truncated_checkpoint(tiny_scene, tmp_path, monkeypatch):
    run_dir = _saved_run(tmp_path, tiny_scene)
    checkpoint = run_dir / "nerfstudio_models" / "step-000000030.ckpt"
    torch.save({"step": 30, "pipeline": {"weights": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1500])  # cut short, as by a run killed while saving
    (run_dir / "nerfstudio_models" / "step-000000010.ckpt").write_bytes(b"")  # an older one is not chosen
    message = _laser_eval(monkeypatch, run_dir / "config.yml", tmp_path)
    assert message.startswith(f"laser-eval: Cannot read checkpoint {checkpoint} (1500 bytes")
    assert "truncated or corrupt" in message


def test_missing_config(tmp_path, monkeypatch):
    message = _laser_eval(monkeypatch, tmp_path / "config.yml", tmp_path)
    assert message.startswith(f"laser-eval: {tmp_path / 'config.yml'} does not exist")
