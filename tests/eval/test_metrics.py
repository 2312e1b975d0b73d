import math

import pytest
import torch

from laser_ns.eval.metrics import aggregate, boundary_band, boundary_iou, iou_by_class, segmentation_metrics


def _masks(label_map: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.stack([label_map == c for c in range(num_classes)])


def test_hand_computed_view_with_absent_class():
    # GT: left column class 0, the rest class 1; class 2 is listed for the scene but absent from this view.
    gt = torch.tensor([[0, 1, 1], [0, 1, 1]])
    pred = torch.tensor([[0, 0, 1], [0, 1, 1]])
    out = segmentation_metrics(pred, _masks(gt, 3))
    # Class 0: inter 2, union 3. Class 1: inter 3, union 4. Class 2: in neither -> NaN, skipped.
    assert out["iou_per_class"][0].item() == pytest.approx(2 / 3)
    assert out["iou_per_class"][1].item() == pytest.approx(3 / 4)
    assert math.isnan(out["iou_per_class"][2].item())
    assert out["miou"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["num_pixels"] == 6


def test_predicted_class_absent_from_gt_scores_zero():
    gt = torch.tensor([[0, 0], [1, 1]])
    pred = torch.tensor([[0, 2], [1, 1]])
    out = segmentation_metrics(pred, _masks(gt, 3))
    assert out["iou_per_class"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert out["miou"] == pytest.approx(0.5)
    assert out["accuracy"] == pytest.approx(3 / 4)


def test_view_where_every_pixel_is_one_class():
    gt = torch.zeros(4, 4, dtype=torch.long)
    out = segmentation_metrics(torch.zeros(4, 4, dtype=torch.long), _masks(gt, 2))
    assert out["iou_per_class"][0].item() == 1.0 and math.isnan(out["iou_per_class"][1].item())
    assert out["miou"] == 1.0 and out["accuracy"] == 1.0

    pred = torch.zeros(4, 4, dtype=torch.long)
    pred[0, 0] = 1
    out = segmentation_metrics(pred, _masks(gt, 2))
    assert out["iou_per_class"].tolist() == pytest.approx([15 / 16, 0.0])
    assert out["miou"] == pytest.approx(15 / 32)
    assert out["accuracy"] == pytest.approx(15 / 16)


def test_ignore_unlabelled_overlap_and_out_of_range():
    masks = torch.zeros(2, 2, 3, dtype=torch.bool)
    masks[0, 0, :] = True  # class 0 on the top row
    masks[1, 0, 2] = True  # class 1 overlaps class 0 at (0, 2)
    masks[1, 1, 0] = True  # class 1 at (1, 0); (1, 1) and (1, 2) are unlabelled
    pred = torch.tensor([[0, 5, 1], [1, 0, 0]])
    ignore = torch.zeros(2, 3, dtype=torch.bool)
    ignore[0, 0] = True

    out = segmentation_metrics(pred, masks, ignore=ignore)
    # Kept pixels: (0, 1), (0, 2), (1, 0). Class 0: pred {} vs GT {(0,1), (0,2)} -> 0. Class 1: pred {(0,2), (1,0)}
    # vs GT {(0,2), (1,0)} -> 1. Accuracy: (0,1) predicts 5 (wrong), (0,2) matches the class-1 mask, (1,0) right.
    assert out["iou_per_class"].tolist() == pytest.approx([0.0, 1.0])
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["num_pixels"] == 3

    # Counting unlabelled pixels makes class 0's predictions there false positives, but not accuracy errors.
    out = segmentation_metrics(pred, masks, ignore=ignore, exclude_unlabelled=False)
    assert out["iou_per_class"].tolist() == pytest.approx([0.0, 1.0])
    assert out["num_pixels"] == 5
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="resolution"):
        segmentation_metrics(torch.zeros(2, 2, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.bool))


def test_aggregate_averages_views_and_skips_nan():
    views = [
        {"iou_per_class": torch.tensor([1.0, math.nan]), "miou": 1.0, "accuracy": 1.0},
        {"iou_per_class": torch.tensor([0.5, 0.0]), "miou": 0.25, "accuracy": 0.5},
    ]
    out = aggregate(views)
    assert out["miou"] == pytest.approx(0.625)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["iou_per_class"].tolist() == pytest.approx([0.75, 0.0])
    assert out["num_views"] == 2
    with pytest.raises(ValueError, match="no views"):
        aggregate([])


def test_boundary_band_and_iou():
    gt = torch.zeros(6, 6, dtype=torch.long)
    gt[:, 3:] = 1
    band = boundary_band(gt, 1)
    expected_band = torch.zeros(6, 6, dtype=torch.bool)
    expected_band[:, 2:4] = True
    assert torch.equal(band, expected_band)

    pred = gt.clone()
    pred[:, 2] = 1  # the edge moved one pixel left: wrong on column 2 only
    pred[0, 0] = 1  # an error far from the edge does not count
    out = boundary_iou(pred, gt, width_px=1)
    # In the band: class 0 GT = column 2 (6 px), predicted nowhere -> 0; class 1 GT = column 3, predicted on 2..3.
    assert out["iou_per_class"].tolist() == pytest.approx([0.0, 0.5])
    assert out["num_pixels"] == 12

    gt_ignored = gt.clone()
    gt_ignored[0, :] = 255
    out = boundary_iou(pred, gt_ignored, width_px=1, num_classes=2)
    # Row 0 leaves the score; its border with row 1 is an edge, so all of row 1 joins the band: 6 + 4 * 2.
    assert out["num_pixels"] == 14
    with pytest.raises(ValueError, match="width_px"):
        boundary_band(gt, 0)


def test_iou_by_class_names_each_iou_and_writes_absent_classes_as_none():
    iou = torch.tensor([0.5, math.nan, 1.0], dtype=torch.float64)
    assert iou_by_class(["a", "b", "c"], iou) == {"a": 0.5, "b": None, "c": 1.0}
    with pytest.raises(ValueError, match="2 classes"):
        iou_by_class(["a", "b"], iou)
