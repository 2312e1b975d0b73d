"""Saved runs hold absolute paths, and runs saved with relative ones (or moved) are still found."""

from __future__ import annotations

from pathlib import Path

import yaml

from laser_ns import device
from laser_ns.trainer_config import LaserTrainerConfig, locate_saved_run, training_folder


def _relative_run(scene: Path) -> LaserTrainerConfig:
    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.data = Path(scene.name)
    config.pipeline.datamanager.data = Path(scene.name)
    config.pipeline.datamanager.cache_dir = Path("cache")
    config.output_dir = Path("outputs")
    config.experiment_name = "exp"
    config.timestamp = "run"
    return config


def test_methods_use_the_laser_trainer_config():
    from nerfstudio.configs.method_configs import all_methods

    assert type(all_methods["laser"]) is LaserTrainerConfig and type(all_methods["laser-lite"]) is LaserTrainerConfig


def test_saved_config_holds_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_cuda_device_count", lambda: 0)  # laser-lite trains on the CPU anyway
    tmp_path = tmp_path.resolve()  # saved paths are resolved (no symlinks, no "..")
    monkeypatch.chdir(tmp_path)
    config = _relative_run(tmp_path / "scene")
    config.save_config()  # what ns-train calls before launching
    saved = yaml.load((tmp_path / "outputs/exp/laser-lite/run/config.yml").read_text(), Loader=yaml.Loader)
    assert saved.output_dir == tmp_path / "outputs"
    assert saved.data == tmp_path / "scene"
    assert saved.pipeline.datamanager.data == tmp_path / "scene"
    assert saved.pipeline.datamanager.cache_dir == tmp_path / "cache"
    assert saved.get_checkpoint_dir() == tmp_path / "outputs/exp/laser-lite/run/nerfstudio_models"


def test_run_saved_with_relative_paths_is_found_from_elsewhere(tmp_path, monkeypatch):
    start = tmp_path / "train_here"
    (start / "scene").mkdir(parents=True)
    config = _relative_run(start / "scene")
    run_dir = start / "outputs/exp/laser-lite/run"
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # not where training ran
    assert training_folder(config, run_dir / "config.yml") == start
    locate_saved_run(config, run_dir / "config.yml")
    assert config.get_checkpoint_dir() == run_dir / "nerfstudio_models"
    assert config.pipeline.datamanager.data == start / "scene"


def test_moved_run_reads_the_checkpoints_next_to_its_config(tmp_path):
    config = _relative_run(tmp_path / "scene")
    config.output_dir = tmp_path / "old_place"  # absolute, and since moved away
    moved = tmp_path / "new_place" / "run"
    (moved / "nerfstudio_models").mkdir(parents=True)
    locate_saved_run(config, moved / "config.yml")
    assert config.get_checkpoint_dir() == moved / "nerfstudio_models"
