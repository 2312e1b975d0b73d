"""The CLIP-like teacher: each simulated property of dense CLIP, one test each (laser_ns/teachers/clip_like.py)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from laser_ns.conventions import UNLABELLED
from laser_ns.teachers.clip_like import ClipLikeTeacherConfig, StructuredTextEncoder

NAMES = ["floor", "green ball", "red apple", "red mug", "wooden table"]
QUIET = {
    "view_noise": 0.0,
    "consistent_confusion": 0.0,
    "label_noise": 0.0,
    "feature_noise": 0.0,
    "context_blur": 0.0,
    "region_bleed": 0.0,
}
"""The teacher without its noise, confusions, blur and bleeding: what is left is deterministic structure."""


def _teacher(**overrides):
    return ClipLikeTeacherConfig(**overrides).setup(class_names=NAMES)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=-1))


def _halves(left: int, right: int, size=(40, 80)) -> torch.Tensor:
    labels = torch.full(size, left, dtype=torch.int64)
    labels[:, size[1] // 2 :] = right
    return labels


def _grey(size=(40, 80)) -> torch.Tensor:
    return torch.full((*size, 3), 0.5)


def test_prompt_structure_follows_the_words():
    text = StructuredTextEncoder()
    prompts = ["apple", "apple apple", "red apple", "red mug", "wooden table", "a photo of an apple"]
    e = dict(zip(prompts, text.embed(prompts), strict=True))
    # The doubled prompt (text augmentation's) is close to the plain one but not equal.
    assert 0.85 < _cos(e["apple"], e["apple apple"]) < 0.99
    # Shared words make prompts closer; the head noun weighs most.
    assert _cos(e["red apple"], e["red mug"]) > _cos(e["red apple"], e["wooden table"]) + 0.05
    assert _cos(e["apple"], e["red apple"]) > _cos(e["apple"], e["red mug"]) + 0.1
    assert _cos(e["apple"], e["a photo of an apple"]) > 0.85
    # Modality gap on the text side: unrelated prompts are far from orthogonal.
    assert 0.5 < _cos(e["apple"], e["wooden table"]) < 0.8


def test_modality_gap_small_cosines_and_small_margins():
    teacher = _teacher(**QUIET, colour_bias=0.0, texture_bias=0.0)
    labels = _halves(2, 4)
    features = teacher.dense_features(_grey(), labels)
    text = teacher.class_embeddings()
    scores = features.reshape(-1, features.shape[-1]) @ text.T  # [tiles, C]
    own = scores[:, 2][labels[::4, ::4].reshape(-1) == 2]
    assert 0.2 < float(own.mean()) < 0.4  # matched image-text cosines of CLIP ViT-B/16
    top2 = scores.topk(2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1]).mean())
    assert 0.0 < margin < 0.1  # the right class wins by a few hundredths
    # Image side of the gap: tiles of different classes are still very similar to each other.
    assert _cos(features[0, 0], features[0, -1]) > 0.8


def test_colour_bias_correlates_tiles_of_similar_colour():
    teacher = _teacher(**QUIET)
    labels = _halves(2, 1)  # red apple | green ball
    red, green = _grey(), _grey()
    red[:] = torch.tensor([0.8, 0.12, 0.1])
    green[:] = torch.tensor([0.2, 0.65, 0.25])
    both_red = teacher.dense_features(red, labels)
    red_green = red.clone()
    red_green[:, 40:] = torch.tensor([0.2, 0.65, 0.25])
    mixed = teacher.dense_features(red_green, labels)
    centred = teacher.dense_features(_grey(), labels).mean(dim=(0, 1))  # remove the shared modality direction
    apple, ball_red, ball_green = both_red[0, 0] - centred, both_red[0, -1] - centred, mixed[0, -1] - centred
    assert _cos(apple, ball_red) > _cos(apple, ball_green) + 0.1
    # Colour alone does not decide the class: with no noise every tile still gets its own class.
    assert (teacher.class_embeddings() @ both_red[0, -1]).argmax() == 1


def test_context_blur_mixes_only_near_edges():
    labels = _halves(0, 4)
    sharp = _teacher(**QUIET).dense_features(_grey(), labels)
    blurred = _teacher(**{**QUIET, "context_blur": 1.0}).dense_features(_grey(), labels)
    torch.testing.assert_close(blurred[:, 0], sharp[:, 0], atol=1e-5, rtol=0)  # 10 tiles from the edge
    assert (blurred[:, 9] - sharp[:, 9]).norm(dim=-1).min() > 1e-3  # the tile next to the edge


def _margin_errors(labels: torch.Tensor, names: list[str], **overrides) -> torch.Tensor:
    """Per (true class, other class): mean over the true class's tiles of the other class's score minus its own,
    less the same without confusion (the deterministic structure of the text embeddings)."""

    def margins(teacher) -> torch.Tensor:
        features = teacher.dense_features(_grey(labels.shape), labels)
        scores = features @ teacher.class_embeddings().T  # [h, w, C]
        tiles = labels[::4, ::4]
        rows = [(scores[tiles == c] - scores[tiles == c][:, c : c + 1]).mean(dim=0) for c in range(len(names))]
        return torch.stack(rows)  # [C, C]

    quiet = {**QUIET, "view_noise": 0.15}
    noisy = margins(ClipLikeTeacherConfig(**{**quiet, **overrides}).setup(class_names=names))
    errors = noisy - margins(ClipLikeTeacherConfig(**QUIET).setup(class_names=names))
    return errors[~torch.eye(len(names), dtype=torch.bool)]  # the wrong-class pairs


def test_consistent_confusion_repeats_across_views():
    names = [f"object {k}" for k in range(10)]
    stripes = torch.arange(80) // 8  # ten vertical stripes of 2 tiles
    view_a = stripes.expand(40, 80).clone()
    view_b = torch.roll(view_a.flip(1), 3 * 8, dims=1)  # another view: the classes elsewhere, other view noise

    def correlation(strength: float) -> float:
        a = _margin_errors(view_a, names, consistent_confusion=strength)
        b = _margin_errors(view_b, names, consistent_confusion=strength)
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    # Half the confusion variance is the same in both views; without it the two views' errors are unrelated.
    assert correlation(0.15) > 0.5
    assert abs(correlation(0.0)) < 0.25


def test_region_bleed_takes_more_from_small_objects():
    def own_margin(size: int, bleed: float) -> float:
        labels = torch.zeros(120, 160, dtype=torch.int64)  # floor
        top, left = 60 - 4 * (size // 2), 80 - 4 * (size // 2)
        labels[top : top + 4 * size, left : left + 4 * size] = 1  # a green ball of size x size tiles
        teacher = _teacher(**{**QUIET, "region_bleed": bleed})
        scores = teacher.dense_features(_grey((120, 160)), labels)[15, 20] @ teacher.class_embeddings().T
        return float(scores[1] - torch.cat([scores[:1], scores[2:]]).max())

    gaps = [own_margin(15, bleed) - own_margin(3, bleed) for bleed in (0.0, 0.25, 0.5, 1.0)]
    assert abs(gaps[0]) < 1e-5  # no bleeding: a pure tile is a pure tile, whatever its object's size
    assert 0 < gaps[1] < gaps[2] < gaps[3]  # the small object loses more, and more with the option
    assert own_margin(3, 1.0) < 0.5 * own_margin(3, 0.0)


def test_noise_differs_per_view_and_repeats_per_view():
    teacher = _teacher()
    view_a, view_b = _halves(0, 4), _halves(0, 4)
    view_b[0, 0] = 3  # another view: another label map, so other noise
    a1, a2 = teacher.dense_features(_grey(), view_a), teacher.dense_features(_grey(), view_a)
    b = teacher.dense_features(_grey(), view_b)
    torch.testing.assert_close(a1, a2)
    assert (a1[5:, 5:] - b[5:, 5:]).norm(dim=-1).mean() > 1e-2


def test_grid_is_40_by_30_at_160_by_120_and_unlabelled_tiles_are_empty():
    teacher = _teacher()
    labels = torch.zeros(120, 160, dtype=torch.int64)
    labels[:, :8] = UNLABELLED
    features = teacher.dense_features(torch.rand(120, 160, 3), labels)
    assert features.shape == (30, 40, 512)
    assert (features[:, :2].abs().amax(dim=-1) == 0).all()
    assert (features[:, 2:].norm(dim=-1) - 1).abs().max() < 1e-5


def test_identity_changes_with_every_setting():
    default = ClipLikeTeacherConfig()
    base = _teacher().identity()
    for option in dataclasses.fields(ClipLikeTeacherConfig):
        value = getattr(default, option.name)
        if option.name == "_target":
            continue
        if isinstance(value, StructuredTextEncoder):
            changed = dataclasses.replace(value, phrasing=value.phrasing / 2)
        elif isinstance(value, int):
            changed = value + 1
        else:
            changed = value / 2 if value else 0.1  # stays in every option's range
        assert _teacher(**{option.name: changed}).identity() != base, option.name


@pytest.mark.parametrize(
    "name,value",
    [
        ("colour_bias", -1.0),
        ("label_noise", 1.5),
        ("view_noise_scale", 0.5),
        ("consistent_confusion", -0.1),
        ("region_bleed", 1.5),
        ("region_bleed_scale", 0.5),
    ],
)
def test_bad_settings_name_the_option(name, value):
    with pytest.raises(ValueError, match=name):
        _teacher(**{name: value})


def test_missing_labels_are_refused_with_the_layout():
    with pytest.raises(ValueError, match="labels/"):
        _teacher().dense_features(_grey(), None)
