"""Saved runs hold absolute paths, and runs saved with relative ones (or moved) are still found."""

from __future__ import annotations

from pathlib import Path

import yaml

from laser_ns import device
from laser_ns.runs import locate_saved_run, training_folder
from laser_ns.trainer_config import LaserTrainerConfig


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


def test_a_run_that_never_trained_leaves_no_folder(tmp_path):
    from laser_ns.trainer_config import remove_empty_run_folder

    run_dir = tmp_path / "outputs" / "exp" / "laser-lite" / "run"
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    (run_dir / "config.yml").write_text("")
    assert remove_empty_run_folder(run_dir)
    assert not (tmp_path / "outputs" / "exp").exists() and (tmp_path / "outputs").is_dir()
    # a run with anything else in it (a checkpoint, another run of the experiment) is left alone
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    (run_dir / "config.yml").write_text("")
    (run_dir / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"")
    assert not remove_empty_run_folder(run_dir) and (run_dir / "config.yml").exists()


def test_switches_that_do_nothing_are_named(capsys):
    from laser_ns.method_configs import laser_lite_config
    from laser_ns.trainer_config import warn_ignored_switches

    config = laser_lite_config()
    assert warn_ignored_switches(config) == []
    config.pipeline.model.use_adapter = False
    config.pipeline.model.adapter_at_inference = True
    warnings = warn_ignored_switches(config)
    assert len(warnings) == 3
    out = capsys.readouterr().out
    for switch in ("use-self-cross", "use-text-augmentation", "adapter-at-inference"):
        assert f"--pipeline.model.{switch} True does nothing without the adapter" in out


def test_several_devices_on_a_cpu_are_refused_before_the_config_is_printed(capsys):
    import pytest

    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.machine.num_devices = 2
    with pytest.raises(device.DeviceUnavailableError, match="CUDA GPUs only"):
        device.check_training_device(config)
    with pytest.raises(SystemExit) as exit_info:
        config.print_to_terminal()
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "ns-train laser-lite: error:" in out and "--machine.num-devices 1" in out and "pipeline=" not in out


def test_a_broken_scene_is_named_before_the_config_is_printed(tiny_scene, tmp_path, capsys):
    """Issue 18: a scene error came after nerfstudio's 250-line config dump; the scene is now read first."""
    import pytest

    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.pipeline.datamanager.data = tmp_path / "no_such_scene"
    with pytest.raises(SystemExit) as exit_info:
        config.print_to_terminal()
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "ns-train laser-lite: error:" in out and "no_such_scene does not exist" in out and "pipeline=" not in out

    config.pipeline.datamanager.data = tiny_scene
    config.pipeline.model.use_adapter = False
    config.print_to_terminal()  # a readable scene: the config, then the switches that do nothing, after it
    out = capsys.readouterr().out
    assert "pipeline=" in out
    assert out.index("--pipeline.model.use-self-cross True does nothing") > out.index("pipeline=")
