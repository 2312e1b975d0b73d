"""laser-eval names the file and the fix for a missing config, an empty checkpoint folder or a truncated checkpoint."""

from __future__ import annotations

import copy
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


def _laser_eval(monkeypatch, config: Path, tmp_path: Path, capsys, output_dir: Path | None = None) -> str:
    """laser-eval's one-line error (exit status 1, no traceback), without the 'laser-eval: error: ' prefix."""
    output_dir = tmp_path if output_dir is None else output_dir
    monkeypatch.setattr(sys, "argv", ["laser-eval", "--load-config", str(config), "--output-dir", str(output_dir)])
    monkeypatch.delenv("LASER_NS_VERBOSE", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        entrypoint()
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    first = out.splitlines()[0]
    assert first.startswith("laser-eval: error: ")
    return first.removeprefix("laser-eval: error: ")


def test_empty_checkpoint_folder(tiny_scene, tmp_path, monkeypatch, capsys):
    run_dir = _saved_run(tmp_path, tiny_scene)
    message = _laser_eval(monkeypatch, run_dir / "config.yml", tmp_path, capsys)
    assert message.startswith(f"{run_dir / 'nerfstudio_models'} holds no checkpoint (step-*.ckpt)")
    assert "--steps-per-save" in message


def test_truncated_checkpoint(tiny_scene, tmp_path, monkeypatch, capsys):
    run_dir = _saved_run(tmp_path, tiny_scene)
    checkpoint = run_dir / "nerfstudio_models" / "step-000000030.ckpt"
    torch.save({"step": 30, "pipeline": {"weights": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1500])  # cut short, as by a run killed while saving
    (run_dir / "nerfstudio_models" / "step-000000010.ckpt").write_bytes(b"")  # an older one is not chosen
    message = _laser_eval(monkeypatch, run_dir / "config.yml", tmp_path, capsys)
    assert message.startswith(f"Cannot read checkpoint {checkpoint} (1500 bytes")
    assert "truncated or corrupt" in message


def test_missing_config(tmp_path, monkeypatch, capsys):
    message = _laser_eval(monkeypatch, tmp_path / "config.yml", tmp_path, capsys)
    assert message.startswith(f"No training config at {tmp_path / 'config.yml'}")


def _nerfacto_run(tmp_path: Path, scene: Path) -> Path:
    """A nerfacto run's config.yml (another method's run), saved as ns-train saves it."""
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods["nerfacto"])
    config.pipeline.datamanager.data = scene
    config.output_dir = tmp_path / "outputs"
    config.experiment_name, config.timestamp = "exp", "run"
    run_dir = config.get_base_dir()
    (run_dir / "nerfstudio_models").mkdir(parents=True)
    (run_dir / "config.yml").write_text(yaml.dump(config))
    return run_dir / "config.yml"


def test_another_methods_run_is_named_before_loading(tiny_scene, tmp_path, monkeypatch, capsys):
    # issue 18: laser-eval on a nerfacto run failed with URLError (LPIPS download) or UnpicklingError
    from nerfstudio.utils import eval_utils

    monkeypatch.setattr(eval_utils, "eval_setup", lambda *a, **k: pytest.fail("loaded another method's run"))
    message = _laser_eval(monkeypatch, _nerfacto_run(tmp_path, tiny_scene), tmp_path / "eval", capsys)
    assert "is a 'nerfacto' run" in message and "not a laser run" in message and "ns-eval" in message


def test_unwritable_output_folder_fails_before_rendering(tiny_scene, tmp_path, monkeypatch, capsys):
    # issue 18: a read-only --output-dir failed with a raw OSError after every view was rendered
    from nerfstudio.utils import eval_utils

    run_dir = _saved_run(tmp_path, tiny_scene)
    monkeypatch.setattr(eval_utils, "eval_setup", lambda *a, **k: pytest.fail("rendered before checking the output"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a file in the path stops root too, where a chmod would not
    message = _laser_eval(monkeypatch, run_dir / "config.yml", tmp_path, capsys, output_dir=blocker / "eval")
    assert message.startswith(f"Cannot write to {blocker / 'eval'}") and "--output-dir" in message
