"""The six 3D-OVS presets hold the paper's per-scene values and build valid laser configs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from laser_ns.model_config import PART_SWITCHES
from laser_ns.scripts.train_preset import (
    PRESET_DIR,
    PresetError,
    apply_overrides,
    parse_args,
    preset_config,
    preset_names,
)

REPO = Path(__file__).resolve().parents[1]

PAPER = {  # docs/method.md#reference-hyperparameters: mode, patch_size, patch_num, E, w_rel, w_aug, w_self
    "bed": ("csa", 256, 8, 48, 0.95, 0.33, 1.0),
    "bench": ("csa", 192, 8, 64, 0.35, 0.6, 1.0),
    "lawn": ("maskclip", 256, 8, 48, 0.9, 0.9, 0.9),
    "room": ("csa", 224, 8, 48, 1.15, 1.15, 1.0),
    "sofa": ("csa", 192, 8, 64, 0.04, 1.0, 1.0),
    "table": ("csa", 192, 16, 48, 0.8, 1.0, 1.0),
}


def test_every_preset_file_is_listed():
    assert preset_names() == sorted(PAPER)
    # the package's presets are the repository's top-level configs/ folder
    assert sorted(p.stem for p in (REPO / "configs" / "3dovs").glob("*.yaml")) == sorted(PAPER)


@pytest.mark.parametrize("scene", sorted(PAPER))
def test_preset_holds_paper_values(scene):
    config = preset_config(scene)
    pipeline = config.pipeline
    mode, patch_size, patch_num, embed, w_rel, w_aug, w_self = PAPER[scene]
    assert config.method_name == "laser-paper"
    for part in PART_SWITCHES:
        assert getattr(pipeline.model, part), part  # the per-scene weights below are the paper's parts' weights
    assert not pipeline.model.centre_teacher_features
    assert pipeline.teacher.mode == mode
    assert pipeline.datamanager.language_patch_size == patch_size
    assert pipeline.datamanager.language_patches_per_step == patch_num
    assert pipeline.model.transient_attention.embed_dim == embed
    assert pipeline.model.classification_loss_mult == w_rel
    assert pipeline.model.text_aug_loss_mult == w_aug
    assert pipeline.model.self_loss_mult == w_self


def test_presets_do_not_change_the_registered_method():
    from nerfstudio.configs.method_configs import all_methods

    preset_config("lawn")
    assert all_methods["laser"].pipeline.teacher.mode == "csa"


def test_unknown_override_names_the_file(tmp_path):
    from laser_ns.method_configs import laser_config

    with pytest.raises(PresetError, match="bad.yaml: 'pipeline.model.nope' does not exist"):
        apply_overrides(laser_config(), {"pipeline.model.nope": 1}, tmp_path / "bad.yaml")


@pytest.mark.parametrize("scene", sorted(PAPER))
def test_presets_keep_rgb_and_eval_resolution(scene):
    # camera_res_scale_factor shrinks RGB, geometry and evaluation too; the teacher's input scale is its own setting
    assert "camera_res_scale_factor" not in yaml.safe_load((PRESET_DIR / f"{scene}.yaml").read_text())["overrides"]
    assert preset_config(scene).pipeline.datamanager.camera_res_scale_factor == 1.0


def test_wheel_ships_the_presets(tmp_path):
    """A normal (non-editable) install finds the presets: they are package data, read with importlib.resources."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "laser_cache")
    for name in ("laser_ns", "configs"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("laser_ns-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.endswith(".yaml")) == [
        f"laser_ns/configs/3dovs/{s}.yaml" for s in sorted(PAPER)
    ]

    site = tmp_path / "site"
    install = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True)
    assert install.returncode == 0, install.stderr[-3000:]
    code = "from laser_ns.scripts.train_preset import preset_path, read_preset; p = preset_path('bed'); "
    code += "print(p); print(read_preset(p)[0])"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed wheel, not this checkout
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert found.returncode == 0, found.stderr[-3000:]
    path, method = found.stdout.split()
    assert Path(path) == site / "laser_ns" / "configs" / "3dovs" / "bed.yaml" and method == "laser-paper"


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"--[a-z0-9][a-z0-9._-]*", help_text))


def _exit_text(capsys, parse) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        parse()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_laser_train_takes_ns_train_syntax():
    args = ["--pipeline.model.use-adapter", "False", "--viewer.quit-on-train-completion", "True", "--data", "scene"]
    config = parse_args(preset_config("bed"), args, prog="laser-train bed")
    assert config.pipeline.model.use_adapter is False
    assert config.viewer.quit_on_train_completion is True
    assert config.data == Path("scene")
    assert config.pipeline.datamanager.language_patch_size == 256  # the preset still applies


def test_laser_train_offers_exactly_the_options_of_ns_train(capsys):
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    code, ns_train = _exit_text(capsys, lambda: tyro.cli(AnnotatedBaseConfigUnion, args=["laser-paper", "--help"]))
    assert code == 0 and "--pipeline.model.use-adapter" in ns_train
    code, ours = _exit_text(capsys, lambda: parse_args(preset_config("bed"), ["--help"], prog="laser-train bed"))
    assert code == 0
    assert _options(ours) == _options(ns_train)
    assert "--pipeline.model.no-use-adapter" not in ours  # tyro's flag pairs are what ns-train turns off


def test_laser_train_refuses_a_dataparser_subcommand_as_ns_train_does(capsys):
    """laser's dataparser is fixed (laser-data), so ns-train laser takes no dataparser subcommand; nor do we."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    args = ["--data", "scene", "laser-data"]
    code, ns_train = _exit_text(capsys, lambda: tyro.cli(AnnotatedBaseConfigUnion, args=["laser", *args]))
    assert code == 2 and "Unrecognized options: laser-data" in ns_train
    code, ours = _exit_text(capsys, lambda: parse_args(preset_config("bed"), args, prog="laser-train bed"))
    assert code == 2 and "Unrecognized options: laser-data" in ours


def test_model_options_reach_nested_parts_and_unknown_names_are_refused():
    from laser_ns.method_configs import laser_lite_config
    from laser_ns.model_config import set_model_options

    model = laser_lite_config().pipeline.model
    set_model_options(model, {"use_adapter": False, "adapter.input_norm": 10.0, "language_field.grid.max_res": 128})
    assert model.use_adapter is False and model.adapter.input_norm == 10.0
    assert model.language_field.grid.max_res == 128
    with pytest.raises(ValueError, match=r"'language_field\.gird\.max_res'.*'gird'"):
        set_model_options(model, {"language_field.gird.max_res": 64})
    with pytest.raises(ValueError, match=r"'adapter\.input_nrom' names no option of AdapterConfig"):
        set_model_options(model, {"adapter.input_nrom": 1.0})
