"""The six 3D-OVS presets hold the paper's per-scene values and build valid laser configs."""

from __future__ import annotations

import pytest

from laser_ns.scripts.train_preset import PRESET_DIR, PresetError, apply_overrides, preset_config

PAPER = {  # METHOD.md section 8: mode, patch_size, patch_num, E, w_rel, w_aug, w_self
    "bed": ("csa", 256, 8, 48, 0.95, 0.33, 1.0),
    "bench": ("csa", 192, 8, 64, 0.35, 0.6, 1.0),
    "lawn": ("maskclip", 256, 8, 48, 0.9, 0.9, 0.9),
    "room": ("csa", 224, 8, 48, 1.15, 1.15, 1.0),
    "sofa": ("csa", 192, 8, 64, 0.04, 1.0, 1.0),
    "table": ("csa", 192, 16, 48, 0.8, 1.0, 1.0),
}


def test_every_preset_file_is_listed():
    assert sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) == sorted(PAPER)


@pytest.mark.parametrize("scene", sorted(PAPER))
def test_preset_holds_paper_values(scene):
    config = preset_config(scene)
    pipeline = config.pipeline
    mode, patch_size, patch_num, embed, w_rel, w_aug, w_self = PAPER[scene]
    assert config.method_name == "laser"
    assert pipeline.teacher.mode == mode
    assert pipeline.datamanager.language_patch_size == patch_size
    assert pipeline.datamanager.language_patches_per_step == patch_num
    assert pipeline.model.transient_embed_dim == embed
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
