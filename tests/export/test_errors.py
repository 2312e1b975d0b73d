"""laser-export and laser-locate check their inputs before rendering: another method's run, an unwritable output."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from laser_ns.export import run as run_module


def _nerfacto_config(tmp_path: Path) -> Path:
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods["nerfacto"])
    config.pipeline.datamanager.data = tmp_path / "scene"
    path = tmp_path / "nerfacto" / "config.yml"
    path.parent.mkdir()
    path.write_text(yaml.dump(config))
    return path


def _run(tool: str, args: list[str], capsys) -> tuple[int, str]:
    import tyro

    from laser_ns.scripts.export import ExportLaser, main
    from laser_ns.scripts.locate import LocateLaser

    command = tyro.cli(ExportLaser if tool == "laser-export" else LocateLaser, args=args)
    with pytest.raises(SystemExit) as exit_info:
        main(command, tool)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    return int(exit_info.value.code), out


@pytest.mark.parametrize("tool", ["laser-export", "laser-locate"])
def test_another_methods_run_is_named(tool, tmp_path, capsys):
    args = ["--load-config", str(_nerfacto_config(tmp_path))] + (["chair"] if tool == "laser-locate" else [])
    args += ["--output-dir" if tool == "laser-export" else "--output", str(tmp_path / "out" / "x.json")]
    status, out = _run(tool, args, capsys)
    assert status == 1 and "is a 'nerfacto' run" in out and "not a laser run" in out and "ns-export" in out


@pytest.mark.parametrize("tool", ["laser-export", "laser-locate"])
def test_unwritable_output_fails_before_loading_the_run(tool, tmp_path, capsys, monkeypatch):
    # issue 18: laser-export rendered the whole point cloud, then lost it to a raw OSError on a read-only folder
    monkeypatch.setattr(run_module, "load_run", lambda *a: pytest.fail("loaded the run before checking the output"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a file in the path stops root too, where a chmod would not
    config = str(tmp_path / "config.yml")
    if tool == "laser-export":
        args = ["--load-config", config, "--output-dir", str(blocker / "export")]
    else:
        args = ["--load-config", config, "chair", "--output", str(blocker / "locate.json")]
    status, out = _run(tool, args, capsys)
    assert status == 1 and f"Cannot write to {blocker}" in out
    assert ("--output-dir" if tool == "laser-export" else "--output") in out


def test_read_run_config_accepts_every_laser_method_and_preset(tmp_path):
    from nerfstudio.configs.method_configs import all_methods

    from laser_ns.runs import RunError, read_run_config

    for method in ("laser", "laser-lite", "laser-paper"):
        path = tmp_path / method / "config.yml"
        path.parent.mkdir()
        path.write_text(yaml.dump(all_methods[method]))
        config, found = read_run_config(path.parent)  # a run folder names its config.yml
        assert found == path and config.method_name == method
    with pytest.raises(RunError, match="'nerfacto' run"):
        read_run_config(_nerfacto_config(tmp_path))


def _fake_run(geometry_steps):
    from types import SimpleNamespace

    import torch

    box = SimpleNamespace(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    outputs = SimpleNamespace(scene_box=box)
    pipeline = SimpleNamespace(datamanager=SimpleNamespace(train_dataparser_outputs=outputs))
    return run_module.LaserRun(Path("run/config.yml"), pipeline, Path("x.ckpt"), 400, None, geometry_steps)


def test_geometry_too_short_or_far_outside_the_scene_is_named():
    # issue 18: after 400 steps laser-locate put a box 40 units wide at z = -128 in a unit-scaled scene, silently
    import numpy as np

    inside = np.random.default_rng(0).uniform(-0.9, 0.9, size=(1000, 3))
    assert run_module.geometry_warnings(_fake_run(500), inside) == []
    assert run_module.geometry_warnings(_fake_run(None), inside) == []  # geometry from a nerfacto run
    (short,) = run_module.geometry_warnings(_fake_run(100), inside)
    assert "only 100 steps" in short and "nerfacto-lite" in short
    far = inside.copy()
    far[:300, 2] = -128.0
    (outside,) = run_module.geometry_warnings(_fake_run(500), far)
    assert outside.startswith("30% of the rendered points lie more than 2x the scene box")


def test_geometry_steps_follow_the_schedule_and_the_checkpoint():
    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.max_num_iterations = 2000
    assert run_module.geometry_steps(config, 2000) == 500 and run_module.geometry_steps(config, 300) == 300
    config.pipeline.model.geometry_checkpoint = Path("nerfacto/config.yml")
    assert run_module.geometry_steps(config, 2000) is None
