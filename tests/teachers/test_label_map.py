"""LabelMapTeacher: tile features from label maps, boundary mixing, degradations, errors."""

import pytest
import torch
import torch.nn.functional as F

from laser_ns.conventions import UNLABELLED
from laser_ns.teachers.base import tile_validity
from laser_ns.teachers.label_map import LabelMapTeacherConfig
from laser_ns.teachers.text import hashed_text_embeddings

NAMES = ["chair", "table", "sky"]


def _teacher(**overrides):
    return LabelMapTeacherConfig(**overrides).setup(class_names=NAMES)


def _labels_two_columns() -> torch.Tensor:
    """32x48 map (2x3 tiles): first tile column class 0, the other two class 1; pixel rows 0..15 of column 2 sky."""
    labels = torch.ones(32, 48, dtype=torch.uint8)
    labels[:, :16] = 0
    labels[:16, 32:] = 2
    return labels


def _image(labels: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*labels.shape, 3)


def test_pure_tiles_equal_their_class_embedding():
    teacher = _teacher()
    labels = _labels_two_columns()
    features = teacher.dense_features(_image(labels), labels)
    embeddings = teacher.class_embeddings()
    assert features.shape == (2, 3, 512)
    expected = embeddings[torch.tensor([[0, 1, 2], [0, 1, 1]])]
    torch.testing.assert_close(features, expected)
    assert tile_validity(features).all()


def test_boundary_tiles_mix_their_classes():
    teacher = _teacher()
    labels = torch.zeros(16, 32, dtype=torch.uint8)
    labels[:, 8:24] = 1  # tile 0: half class 0, half class 1
    labels[:4, 24:] = 2  # tile 1: 128 px class 1, 96 px class 0, 32 px (4 rows x 8) class 2
    features = teacher.dense_features(_image(labels), labels)
    e = teacher.class_embeddings()
    torch.testing.assert_close(features[0, 0], F.normalize(0.5 * e[0] + 0.5 * e[1], dim=0))
    torch.testing.assert_close(
        features[0, 1], F.normalize(128 * e[1] + 96 * e[0] + 32 * e[2], dim=0), atol=1e-6, rtol=0
    )


def test_unlabelled_pixels_are_ignored_and_empty_tiles_are_zero():
    teacher = _teacher()
    labels = torch.full((16, 48), UNLABELLED, dtype=torch.uint8)
    labels[:, 16:20] = 2  # tile 1: a few sky pixels, rest unlabelled
    labels[:, 32:] = 0
    features = teacher.dense_features(_image(labels), labels)
    e = teacher.class_embeddings()
    torch.testing.assert_close(features[0, 0], torch.zeros(512))
    torch.testing.assert_close(features[0, 1], e[2])
    torch.testing.assert_close(features[0, 2], e[0])
    assert tile_validity(features).tolist() == [[False, True, True]]


def test_non_multiple_size_follows_the_tile_rule():
    teacher = _teacher()
    labels = torch.zeros(40, 70, dtype=torch.int64)
    assert teacher.dense_features(_image(labels), labels).shape == (3, 4, 512)


def test_boundary_mixing_blurs_edges_but_keeps_uniform_regions():
    labels = torch.zeros(48, 96, dtype=torch.uint8)
    labels[:, 48:] = 1
    clean = _teacher().dense_features(_image(labels), labels)
    mixed = _teacher(boundary_mixing=0.5).dense_features(_image(labels), labels)
    # Tiles away from the edge (column 0 and 5) see only their own class: unchanged.
    torch.testing.assert_close(mixed[:, 0], clean[:, 0])
    torch.testing.assert_close(mixed[:, 5], clean[:, 5])
    # Tiles next to the edge (columns 2 and 3) now lean towards the other class.
    e = _teacher().class_embeddings()
    assert (mixed[:, 2] @ e[1] > clean[:, 2] @ e[1] + 0.1).all()
    assert (mixed[:, 3] @ e[0] > clean[:, 3] @ e[0] + 0.1).all()
    torch.testing.assert_close(mixed.norm(dim=-1), torch.ones(3, 6))


def test_degradations_change_features_deterministically():
    labels = torch.randint(0, 3, (64, 96), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    settings = {"label_noise": 0.5, "feature_noise": 0.3, "boundary_mixing": 0.3}
    clean = _teacher().dense_features(_image(labels), labels)
    noisy = _teacher(**settings).dense_features(_image(labels), labels)
    again = _teacher(**settings).dense_features(_image(labels), labels)
    other_seed = _teacher(seed=1, **settings).dense_features(_image(labels), labels)
    assert (noisy - clean).abs().max() > 0.1
    torch.testing.assert_close(noisy, again, atol=0, rtol=0)
    assert (noisy - other_seed).abs().max() > 0.1
    torch.testing.assert_close(noisy.norm(dim=-1), torch.ones(4, 6))


def test_noise_differs_between_views():
    # Two views differing in one pixel get independent noise everywhere (view-inconsistent, like real teachers).
    labels = torch.zeros(32, 32, dtype=torch.uint8)
    other = labels.clone()
    other[0, 0] = 1
    teacher = _teacher(feature_noise=0.5)
    a = teacher.dense_features(_image(labels), labels)
    b = teacher.dense_features(_image(other), other)
    assert (a[1, 1] - b[1, 1]).abs().max() > 0.05


def test_label_noise_replaces_whole_tiles_by_a_class():
    labels = torch.zeros(160, 160, dtype=torch.uint8)
    features = _teacher(label_noise=1.0).dense_features(_image(labels), labels)
    e = _teacher().class_embeddings()
    similarity = features.reshape(-1, 512) @ e.T  # [100, 3]
    torch.testing.assert_close(similarity.max(dim=1).values, torch.ones(100))  # every tile is exactly one class
    assert len(set(similarity.argmax(dim=1).tolist())) == 3  # and the classes are drawn at random


def test_missing_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="label map"):
        _teacher().dense_features(torch.zeros(32, 32, 3))


def test_bad_label_values_and_shapes_are_errors():
    teacher = _teacher()
    labels = torch.full((32, 32), 7, dtype=torch.uint8)
    with pytest.raises(ValueError, match="Label value 7"):
        teacher.dense_features(_image(labels), labels)
    with pytest.raises(ValueError, match="image is"):
        teacher.dense_features(torch.zeros(16, 16, 3), labels)


def test_class_names_are_required_and_validated():
    teacher = LabelMapTeacherConfig().setup()
    labels = torch.zeros(16, 16, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="set_class_names"):
        teacher.dense_features(_image(labels), labels)
    with pytest.raises(ValueError, match="unique"):
        teacher.set_class_names(["a", "b", "a"])
    teacher.set_class_names(["only"])
    assert teacher.dense_features(_image(labels), labels).shape == (1, 1, 512)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="label_noise"):
        LabelMapTeacherConfig(label_noise=1.5).setup()
    with pytest.raises(ValueError, match="feature_noise"):
        LabelMapTeacherConfig(feature_noise=-1.0).setup()


def test_identity_records_names_and_settings():
    base = _teacher().identity()
    assert base["class_names"] == NAMES
    assert base["text"] == {"encoder": "hashed", "dim": 512}
    for change in ({"boundary_mixing": 0.1}, {"label_noise": 0.1}, {"feature_noise": 0.1}, {"seed": 3}):
        assert _teacher(**change).identity() != base
    renamed = _teacher()
    renamed.set_class_names(["chair", "table", "cloud"])
    assert renamed.identity() != base


def test_hashed_text_matches_class_embeddings_and_state_dict_is_empty():
    teacher = _teacher()
    torch.testing.assert_close(teacher.encode_text(["table"]), teacher.class_embeddings()[1:2])
    torch.testing.assert_close(teacher.class_embeddings(), hashed_text_embeddings(NAMES, 512))
    assert teacher.state_dict() == {}


def test_clip_text_encoder_uses_dense_clip_text():
    pytest.importorskip("open_clip")
    from laser_ns.teachers.dense_clip import DenseClipConfig

    clip = DenseClipConfig(pretrained=None, allow_random_weights=True)
    teacher = _teacher(text_encoder="clip", clip=clip)
    assert teacher.feature_dim == 512
    torch.testing.assert_close(teacher.class_embeddings(), teacher.clip_teacher.encode_text(NAMES))
    labels = _labels_two_columns()
    features = teacher.dense_features(_image(labels), labels)
    torch.testing.assert_close(features[0, 0], teacher.class_embeddings()[0])
    assert teacher.identity()["text"]["encoder"] == "clip"
    assert teacher.state_dict() == {}


def test_hashed_text_warns_once_per_prompt_that_is_not_a_class_name(caplog):
    teacher = _teacher()
    with caplog.at_level("WARNING", logger="laser_ns.teachers.label_map"):
        teacher.encode_text(["chair", "table table", "object", "stuff"])  # classes, augmentation, baselines
        assert caplog.records == []
        teacher.encode_text(["red chair", "chair", "red chair"])
        teacher.encode_text(["red chair", "lamp", "lamp lamp"])
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2  # "red chair" once, "lamp" once; "lamp lamp" is internal
    assert "'red chair' is not one of this scene's class names ['chair', 'table', 'sky']" in messages[0]
    assert "'lamp'" in messages[1]
    assert "random vector that means nothing" in messages[0]
    assert "--pipeline.label-teacher.text-encoder clip" in messages[0]


def test_clip_text_encoder_does_not_warn(caplog):
    pytest.importorskip("open_clip")
    from laser_ns.teachers.dense_clip import DenseClipConfig

    teacher = _teacher(text_encoder="clip", clip=DenseClipConfig(pretrained=None, allow_random_weights=True))
    with caplog.at_level("WARNING", logger="laser_ns.teachers.label_map"):
        teacher.encode_text(["red chair"])
    assert caplog.records == []


def test_baseline_prompts_are_the_models_canonical_negatives():
    from laser_ns.conventions import CANONICAL_NEGATIVES
    from laser_ns.teachers.label_map import BASELINE_PROMPTS

    assert tuple(BASELINE_PROMPTS) == tuple(CANONICAL_NEGATIVES)


def test_feature_dim_follows_the_clip_text_model_without_building():
    from laser_ns.teachers.dense_clip import DenseClipConfig

    teacher = _teacher(text_encoder="clip", clip=DenseClipConfig(model_name="ViT-L-16"))
    assert teacher.feature_dim == 768 and not teacher.clip_teacher.is_built
    assert _teacher(hashed_dim=384).feature_dim == 384
