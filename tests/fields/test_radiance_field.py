"""The radiance field is nerfacto's own, built by nerfacto's code without LPIPS; inherited options do something."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.models.nerfacto import NerfactoModel

from tests.conftest import tiny_pipeline_config


def test_built_by_nerfacto_without_lpips(tiny_scene, monkeypatch):
    import torchmetrics.image.lpip as lpip

    def no_download(*args, **kwargs):
        raise AssertionError("LPIPS was constructed (its weights would be downloaded)")

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", no_download)
    calls = []
    original = NerfactoModel.populate_modules
    monkeypatch.setattr(NerfactoModel, "populate_modules", lambda self: calls.append(1) or original(self))
    model = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val").model
    assert calls == [1]  # nerfacto's code built the radiance field
    assert not hasattr(model, "lpips")
    assert lpip.LearnedPerceptualImagePatchSimilarity is no_download  # restored after construction
    assert model.config.implementation == "torch"  # the user's config is left as it was (laser-lite: torch)


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("predict_normals", True, "predict-normals"),
        ("orientation_loss_mult", 0.5, "orientation-loss-mult"),
        ("enable_collider", False, "enable-collider"),
        ("loss_coefficients", {"rgb_loss_coarse": 2.0}, "loss-coefficients"),
        ("prompt", "a chair", "predictor.queries"),
    ],
)
def test_inherited_options_without_effect_are_refused(tiny_scene, option, value, words):
    config = tiny_pipeline_config(tiny_scene, **{option: value})
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        config.setup(device="cpu", test_mode="val")


def test_gradient_scaling_is_applied(tiny_scene, monkeypatch):
    import laser_ns.model as model_module

    pipeline = tiny_pipeline_config(tiny_scene, use_gradient_scaling=True).setup(device="cpu", test_mode="val")
    calls = []
    original = model_module.scale_gradients_by_distance_squared
    monkeypatch.setattr(model_module, "scale_gradients_by_distance_squared", lambda *a: calls.append(1) or original(*a))
    pipeline.train()
    _, loss_dict, _ = pipeline.get_train_loss_dict(0)
    assert calls and torch.isfinite(loss_dict["rgb_loss"])
