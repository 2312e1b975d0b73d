"""The language predictor: one object for queries, negatives and a stable, saved PCA basis."""

from __future__ import annotations

import torch

from laser_ns.components.adapter import AdapterConfig
from laser_ns.conventions import CANONICAL_NEGATIVES
from laser_ns.predictor import LanguagePredictorConfig, parse_queries
from tests.conftest import tiny_pipeline_config


def _frame(pipeline, index: int) -> dict[str, torch.Tensor]:
    camera = pipeline.datamanager.train_dataset.cameras[index : index + 1]
    camera.rescale_output_resolution(0.25)
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)


def test_pca_basis_comes_from_the_fixed_training_sample_not_the_first_frame(tiny_scene):
    first = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    second = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    second.model.load_state_dict(first.model.state_dict())
    first.model.eval(), second.model.eval()
    # a render never fits the basis (the predictor only answers on features): grey until the pipeline fits it
    unfitted = _frame(first, 0)["clip_pca"]
    assert not bool(first.model.predictor.pca_fitted) and torch.all(unfitted == 0.5)
    _frame(second, 5)  # the frames rendered before fitting differ: view 0 here, view 5 there
    first.fit_feature_pca(), second.fit_feature_pca()
    torch.testing.assert_close(_frame(first, 3)["clip_pca"], _frame(second, 3)["clip_pca"])


def test_a_checkpoint_without_a_basis_gets_one_when_the_pipeline_loads_it(tiny_scene):
    saved = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    state = {k: v for k, v in saved.state_dict().items()}
    assert not bool(state["_model.predictor.pca_fitted"])
    loaded = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="inference")
    loaded.load_state_dict(state)  # what eval_setup calls
    assert bool(loaded.model.predictor.pca_fitted)


def test_pca_basis_is_saved_and_fitting_draws_nothing_from_the_global_rng(tiny_scene):
    pipeline = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    state = torch.random.get_rng_state()
    pipeline.fit_feature_pca()
    assert torch.equal(state, torch.random.get_rng_state())
    saved = pipeline.model.state_dict()
    assert bool(saved["predictor.pca_fitted"]) and saved["predictor.pca_basis"].abs().sum() > 0
    restored = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="inference")
    restored.model.load_state_dict(saved)
    torch.testing.assert_close(restored.model.predictor.pca_basis, pipeline.model.predictor.pca_basis)


def test_checkpoints_from_before_the_predictor_still_score_their_classes(tiny_scene):
    pipeline = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    old = {
        k.replace("predictor.", "", 1) if k.startswith("predictor.class_text") else k: v
        for k, v in pipeline.model.state_dict().items()
    }
    assert "class_text" in old
    fresh = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")
    fresh.model.predictor.class_text.zero_()
    fresh.model.load_state_dict(old, strict=False)
    torch.testing.assert_close(fresh.model.predictor.class_text, pipeline.model.predictor.class_text)


def test_one_definition_of_queries_and_negatives():
    import laser_ns.scripts.export as export_script
    import laser_ns.viewer as viewer

    assert viewer.parse_queries is parse_queries and viewer.CANONICAL_NEGATIVES is CANONICAL_NEGATIVES
    assert export_script.split_texts("red mug; chair;; red mug") == ["red mug", "chair"]
    assert LanguagePredictorConfig().negatives == CANONICAL_NEGATIVES


def test_the_feature_size_is_never_a_config_field():
    assert "dim" not in AdapterConfig.__dataclass_fields__
    from laser_ns.components.transient_attention import TransientQueryAttentionConfig

    assert "in_dim" not in TransientQueryAttentionConfig.__dataclass_fields__


def test_a_config_saved_before_the_split_still_loads():
    """config.yml of older runs: yaml restores the dataclass through __setstate__ with the old field names."""
    import yaml

    from laser_ns.model import LaserModelConfig

    text = yaml.dump(LaserModelConfig())
    old = yaml.load(text, Loader=yaml.Loader).__dict__
    for moved in ("schedule", "predictor", "transient_attention"):
        del old[moved]
    old.update(queries=("red apple",), transient_embed_dim=64, language_start_fraction=0.25, max_num_iterations=7)
    config = LaserModelConfig.__new__(LaserModelConfig)
    config.__setstate__(old)
    assert config.predictor.queries == ("red apple",) and config.transient_attention.embed_dim == 64
    assert config.schedule.language_start_fraction == 0.25 and not hasattr(config, "max_num_iterations")
    assert yaml.load(yaml.dump(config), Loader=yaml.Loader) == config


def test_segment_with_label_volume_option_drives_the_scored_segmentation(tiny_scene):
    """--pipeline.model.predictor.segment-with-label-volume True: segmentation / segmentation_class (what laser-eval
    scores) come from the label volume; the viewer's toggle still switches it at run time."""
    torch.manual_seed(0)
    config = tiny_pipeline_config(tiny_scene)
    config.model.predictor.segment_with_label_volume = True
    pipeline = config.setup(device="cpu", test_mode="val")
    model = pipeline.model.eval()
    with torch.no_grad():  # distinct label-volume and feature segmentations
        model.label_volume.linear.weight.normal_(0.0, 3.0)
    assert model.predictor.segment_with_label_volume is True
    from_label_volume = _frame(pipeline, 0)
    colors = model.predictor.class_colors
    expected = colors[from_label_volume["segmentation_class"][..., 0].long()]
    torch.testing.assert_close(from_label_volume["segmentation"], expected)
    torch.testing.assert_close(from_label_volume["segmentation"], from_label_volume["segmentation_label_volume"])

    model.predictor.segment_with_label_volume = False  # the viewer's "Use label volume" checkbox
    from_features = _frame(pipeline, 0)
    assert not torch.equal(from_features["segmentation_class"], from_label_volume["segmentation_class"])
    assert LanguagePredictorConfig().segment_with_label_volume is False


def test_segment_with_label_volume_needs_the_label_volume(tiny_scene):
    import pytest

    config = tiny_pipeline_config(tiny_scene, use_label_volume=False)
    config.model.predictor.segment_with_label_volume = True
    with pytest.raises(ValueError, match="use-label-volume is False"):
        config.setup(device="cpu", test_mode="val")


def test_a_config_saved_before_the_label_volume_options_still_loads():
    """config.yml without label_volume_loss / segment_with_label_volume: the defaults; the new values round-trip."""
    import yaml

    from laser_ns.model import LaserModelConfig

    config = LaserModelConfig(label_volume_loss="detached")
    config.predictor.segment_with_label_volume = True
    assert yaml.load(yaml.dump(config), Loader=yaml.Loader) == config

    text = yaml.dump(LaserModelConfig())
    text = "\n".join(line for line in text.splitlines() if "label_volume_loss" not in line)
    text = "\n".join(line for line in text.splitlines() if "segment_with_label_volume" not in line)
    assert "label_volume_loss" not in text and "segment_with_label_volume" not in text
    old = yaml.load(text, Loader=yaml.Loader)
    assert old.label_volume_loss == "balanced" and old.predictor.segment_with_label_volume is False


def test_a_config_saved_before_this_round_loads_with_what_it_trained():
    """config.yml from before the 'balanced' loss, the scoring space and the residual attention: 'mutual' is
    'balanced' at full strength, features were scored restored to CLIP's space, the attention replaced features."""
    import yaml

    from laser_ns.model import LaserModelConfig

    text = yaml.dump(LaserModelConfig())
    text = text.replace("label_volume_loss: balanced", "label_volume_loss: mutual")
    dropped = ("label_volume_strength", "score_space", "residual")
    text = "\n".join(line for line in text.splitlines() if not any(name in line for name in dropped))
    assert "label_volume_loss: mutual" in text and not any(name in text for name in dropped)
    old = yaml.load(text, Loader=yaml.Loader)
    assert (old.label_volume_loss, old.label_volume_strength) == ("balanced", 1.0)
    assert old.score_space == "clip" and old.transient_attention.residual is False
    new = LaserModelConfig()
    assert new.score_space == "centred" and new.transient_attention.residual is True


def test_options_added_since_a_run_was_saved_load_with_what_it_trained():
    """One table per config (``LEGACY``) says what a run saved before an option existed trained with: raw teacher
    features, text scored against adapter(F), tile-centre rays; the method's current default is not it."""
    import yaml

    from laser_ns.data.datamanager import LaserDataManagerConfig
    from laser_ns.model_config import LaserModelConfig

    dropped = ("centre_teacher_features", "adapter_at_inference")
    text = yaml.dump(LaserModelConfig())
    text = "\n".join(line for line in text.splitlines() if not any(name in line for name in dropped))
    old = yaml.load(text, Loader=yaml.Loader)
    assert old.centre_teacher_features is False and old.adapter_at_inference is True
    assert not any(name in old.__dict__ for name in ("LEGACY",))  # a class table, never saved with the config
    text = "\n".join(line for line in yaml.dump(LaserDataManagerConfig()).splitlines() if "ray_jitter" not in line)
    assert yaml.load(text, Loader=yaml.Loader).language_ray_jitter is False
    assert LaserDataManagerConfig().language_ray_jitter is True


def test_configs_saved_under_the_old_module_path_load():
    """config.yml of runs before LaserModelConfig moved to laser_ns.model_config name it laser_ns.model.*."""
    import yaml

    from laser_ns.model_config import LaserModelConfig

    text = yaml.dump(LaserModelConfig()).replace(
        "laser_ns.model_config.LaserModelConfig", "laser_ns.model.LaserModelConfig"
    )
    assert "laser_ns.model.LaserModelConfig" in text
    assert yaml.load(text, Loader=yaml.Loader) == LaserModelConfig()
