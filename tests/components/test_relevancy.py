import math

import pytest
import torch

from laser_ns.components.relevancy import (
    class_colormap,
    closed_set_segmentation,
    cosine_scores,
    label_volume_scores,
    lerf_relevancy,
)


def test_cosine_scores_normalises_and_keeps_batch_shape():
    features = torch.tensor([[[3.0, 0.0], [1.0, 1.0]]])  # [1, 2, 2]
    text = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    scores = cosine_scores(features, text)
    assert scores.shape == (1, 2, 2)
    torch.testing.assert_close(scores[0], torch.tensor([[1.0, 0.0], [2**-0.5, 2**-0.5]]))


def test_lerf_relevancy_hand_case():
    features = torch.tensor([[1.0, 0.0, 0.0]])
    positives = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    negatives = torch.tensor([[0.0, 1.0, 0.0], [0.6, 0.8, 0.0]])
    rel = lerf_relevancy(features, positives, negatives)
    assert rel.shape == (1, 2)
    # Positive 0: cos 1 vs negatives cos 0 and 0.6 -> the closest negative (0.6) decides.
    expected0 = math.exp(10 * 1.0) / (math.exp(10 * 1.0) + math.exp(10 * 0.6))
    # Positive 1: cos 0 vs 0 and 0.6 -> min over j picks the 0.6 negative.
    expected1 = math.exp(0.0) / (math.exp(0.0) + math.exp(10 * 0.6))
    assert rel[0, 0].item() == pytest.approx(expected0, abs=1e-6)
    assert rel[0, 1].item() == pytest.approx(expected1, abs=1e-6)


def test_lerf_relevancy_is_half_when_query_equals_negative():
    torch.manual_seed(0)
    features = torch.randn(4, 5, 8)
    query = torch.randn(1, 8)
    rel = lerf_relevancy(features, query, query.clone())
    torch.testing.assert_close(rel, torch.full((4, 5, 1), 0.5))
    with pytest.raises(ValueError, match="negative"):
        lerf_relevancy(features, query, torch.zeros(0, 8))


def test_closed_set_segmentation_argmax():
    text = torch.eye(3)
    features = torch.tensor([[0.1, 0.9, 0.0], [5.0, 0.0, 1.0], [0.0, 0.2, 0.3]])
    labels = closed_set_segmentation(features, text)
    assert labels.dtype == torch.int64
    assert labels.tolist() == [1, 0, 2]


def test_label_volume_scores_is_plain_product():
    s = torch.softmax(torch.randn(2, 3, 8), dim=-1)
    text = torch.randn(4, 8)
    torch.testing.assert_close(label_volume_scores(s, text), torch.einsum("abd,cd->abc", s, text))


@pytest.mark.parametrize("num_classes", [0, 1, 5, 12, 13, 64])
def test_class_colormap_distinct_and_deterministic(num_classes):
    colours = class_colormap(num_classes)
    assert colours.shape == (num_classes, 3) and colours.dtype == torch.float32
    assert torch.equal(colours, class_colormap(num_classes))
    assert bool(((colours >= 0) & (colours <= 1)).all())
    if num_classes > 1:
        distances = torch.cdist(colours, colours) + torch.eye(num_classes) * 10
        assert distances.min().item() > 0.05
    # A longer map extends a shorter one, so class k keeps its colour as classes are added.
    assert torch.equal(class_colormap(num_classes + 3)[:num_classes], colours)


def test_class_colours_do_not_contradict_class_names():
    # issue 18: "red apple" was drawn green
    from laser_ns.components.relevancy import class_colours
    from laser_ns.conventions import COLOUR_WORDS

    names = ["table", "red apple", "green ball", "red mug", "wall", "blue cup", "pear", "white plate"]
    colours = class_colours(names)
    assert colours.shape == (len(names), 3) and torch.equal(colours, class_colours(names))
    red_apple, green_ball, red_mug, blue_cup = colours[1], colours[2], colours[3], colours[5]
    assert red_apple.argmax() == 0 and red_mug.argmax() == 0 and green_ball.argmax() == 1 and blue_cup.argmax() == 2
    assert (red_apple - red_mug).norm() > 0.1  # two red classes stay apart (a darker shade)
    assert colours[7].min() > 0.9  # white is white
    distances = torch.cdist(colours, colours) + torch.eye(len(names)) * 10
    assert distances.min() > 0.1
    # a class without a colour word takes no colour close to one the names use
    for k in (0, 4, 6):
        for word in ("red", "green", "blue", "white"):
            assert (colours[k] - torch.tensor(COLOUR_WORDS[word])).norm() > 0.35
    # colours given to typed queries avoid those on screen
    extra = class_colours(["chair", "red book"], taken=colours.tolist())
    assert extra[1].argmax() == 0
    assert (torch.cdist(extra[:1], colours).min()) > 0.35
