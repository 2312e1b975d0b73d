"""Segmentation metrics of one view, under two protocols; both average the views' numbers with `aggregate`.

``"3dovs"`` (the default of ``laser-eval`` and ``ns-eval``) is exactly 3D-OVS's evaluator (``renderer.py``
``evaluation_segmentation_test`` with ``dataLoader/llff.py``), which published numbers follow
(docs/method.md#3d-ovs-data-format-and-metric):
- GT is a multilabel indicator matrix [pixels, classes], one column per class mask; a mask pixel is in the class only
  when its 8-bit value is exactly 255 (their ``(np.array(img) / 255.0).astype(np.int8)``): `masks_from_values`.
- The prediction is the one-hot of the predicted class (an index outside [0, C) is an all-zero row).
- Per-class IoU is scikit-learn's ``jaccard_score(gt, pred, average=None)``: a class absent from both the GT and the
  prediction scores 0 and IS averaged into the view's mIoU (every view's mean runs over all C classes).
- Accuracy is ``accuracy_score(gt, pred)``, subset accuracy: a pixel is right only when its GT row equals the one-hot
  row, so a pixel in no mask (unlabelled) or in two masks (overlap) is always wrong.

``"labelled"`` (ours): a mask pixel is in the class when its value is above 127; pixels in no mask are left out,
a class absent from both prediction and GT of a view is left out of its mean (NaN), and an overlapping pixel is right
when the prediction matches any of its masks:
- Evaluated pixels: those not in `ignore` and, by default, covered by at least one GT mask; a pixel whose
  true class is unknown can be neither right nor wrong (the usual "ignore label" rule).
- Per-class IoU = |pred == c and GT_c| / |pred == c or GT_c| over the evaluated pixels. A class absent from
  both the prediction and the GT of a view gets NaN and is left out of that view's mean; a class predicted
  but absent from the GT gets 0 (it is a pure false positive); present in the GT but never predicted gets 0.
- Overlapping masks: each class's IoU uses its own mask as given, so a pixel in two masks counts as GT for
  both; for pixel accuracy the pixel is correct if the prediction matches any mask that covers it.
- `aggregate` averages each view's numbers over the views (NaN-aware), as the 3D-OVS tables do.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int, UInt8
from torch import Tensor

Protocol = Literal["3dovs", "labelled"]
PROTOCOLS: tuple[str, ...] = ("3dovs", "labelled")
DEFAULT_PROTOCOL: Protocol = "3dovs"
"""The protocol of ``laser-eval`` and of the model's ``ns-eval`` metrics unless told otherwise."""


def check_protocol(protocol: str) -> None:
    """A clear error for an unknown protocol name."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown evaluation protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")


def masks_from_values(values: UInt8[Tensor, "C H W"], protocol: Protocol) -> Bool[Tensor, "C H W"]:
    """The class masks from the masks' 8-bit values: exactly 255 under "3dovs" (3D-OVS's ``int8(v / 255.0)``, which
    truncates 254 to 0), above 127 under "labelled"."""
    check_protocol(protocol)
    if values.dtype != torch.uint8:
        raise ValueError(f"masks_from_values takes the masks' 8-bit values (uint8), got {values.dtype}.")
    return values == 255 if protocol == "3dovs" else values > 127


def segmentation_metrics_3dovs(pred: Int[Tensor, "H W"], gt_masks: Bool[Tensor, "C H W"]) -> dict[str, object]:
    """Metrics of one view by 3D-OVS's rules (see the module docstring): `{"iou_per_class": [C] float64 (never NaN),
    "miou", "accuracy", "num_pixels"}`, equal to scikit-learn's ``jaccard_score(gt, pred, average=None)`` and
    ``accuracy_score(gt, pred)`` on the [pixels, classes] indicator matrices."""
    if pred.shape != gt_masks.shape[1:]:
        raise ValueError(
            f"segmentation_metrics_3dovs: prediction is {tuple(pred.shape)} but the GT masks are "
            f"{tuple(gt_masks.shape[1:])}; render the prediction at the resolution of the masks."
        )
    num_classes = gt_masks.shape[0]
    if num_classes == 0:
        raise ValueError("segmentation_metrics_3dovs got no GT masks; the scene's classes.txt must list a class.")
    gt = gt_masks.bool().reshape(num_classes, -1)  # [C, P]
    predicted = pred.reshape(1, -1).long() == torch.arange(num_classes, device=pred.device)[:, None]  # [C, P]

    # jaccard_score per column: 0 where the class is in neither (scikit-learn's zero_division default).
    intersection = (predicted & gt).sum(dim=1).double()
    union = (predicted | gt).sum(dim=1).double()
    iou = intersection / union.clamp_min(1)

    # Subset accuracy: the GT row must equal the one-hot row, so an unlabelled or overlapping pixel is never right.
    right = (predicted == gt).all(dim=0)  # [P]
    return {
        "iou_per_class": iou,
        "miou": float(iou.mean()),
        "accuracy": float(right.double().mean()),
        "num_pixels": int(gt.shape[1]),
    }


def view_metrics(
    pred: Int[Tensor, "H W"], mask_values: UInt8[Tensor, "C H W"], protocol: Protocol = DEFAULT_PROTOCOL
) -> dict[str, object]:
    """Metrics of one view from the masks' 8-bit values, under ``protocol`` (see the module docstring)."""
    gt_masks = masks_from_values(mask_values, protocol)
    if protocol == "3dovs":
        return segmentation_metrics_3dovs(pred, gt_masks)
    return segmentation_metrics(pred, gt_masks)


def _per_class_iou(pred: Int[Tensor, " P"], gt_masks: Bool[Tensor, "C P"], num_classes: int) -> Float[Tensor, " C"]:
    """IoU of each class over already-selected pixels; NaN where the class is in neither pred nor GT."""
    predicted = pred[None, :] == torch.arange(num_classes, device=pred.device)[:, None]  # [C, P]
    intersection = (predicted & gt_masks).sum(dim=1).double()
    union = (predicted | gt_masks).sum(dim=1).double()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.full_like(union, math.nan))


def _nanmean(values: Tensor) -> float:
    """Mean of the non-NaN entries, NaN when there are none."""
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() > 0 else math.nan


def segmentation_metrics(
    pred: Int[Tensor, "H W"],
    gt_masks: Bool[Tensor, "C H W"],
    ignore: Bool[Tensor, "H W"] | None = None,
    exclude_unlabelled: bool = True,
) -> dict[str, object]:
    """Metrics of one view by our "labelled" rules (see the module docstring): `{"iou_per_class": [C] float64
    (NaN = skipped), "miou", "accuracy", "num_pixels"}`.

    Args:
        pred: predicted class index per pixel (values outside [0, C) are always wrong).
        gt_masks: one boolean mask per class of the scene, in the scene's class order.
        ignore: pixels to leave out entirely (e.g. an invalid border).
        exclude_unlabelled: also leave out pixels that no GT mask covers (see the module docstring).
    """
    if pred.shape != gt_masks.shape[1:]:
        raise ValueError(
            f"segmentation_metrics: prediction is {tuple(pred.shape)} but the GT masks are "
            f"{tuple(gt_masks.shape[1:])}; render the prediction at the resolution of the masks."
        )
    num_classes = gt_masks.shape[0]
    if num_classes == 0:
        raise ValueError("segmentation_metrics got no GT masks; the scene's classes.txt must list at least one class.")
    gt_masks = gt_masks.bool()
    labelled = gt_masks.any(dim=0)  # [H, W]
    keep = labelled.clone() if exclude_unlabelled else torch.ones_like(labelled)
    if ignore is not None:
        keep &= ~ignore.bool()

    pred_kept = pred[keep].long()  # [P]
    masks_kept = gt_masks[:, keep]  # [C, P]
    iou = _per_class_iou(pred_kept, masks_kept, num_classes)

    # Accuracy only where the truth is known: the predicted class's own mask must cover the pixel.
    in_range = (pred_kept >= 0) & (pred_kept < num_classes)
    hit = masks_kept.gather(0, pred_kept.clamp(0, num_classes - 1)[None, :])[0] & in_range  # [P]
    known = masks_kept.any(dim=0)  # [P]
    num_known = int(known.sum())
    accuracy = float((hit & known).sum()) / num_known if num_known > 0 else math.nan
    return {"iou_per_class": iou, "miou": _nanmean(iou), "accuracy": accuracy, "num_pixels": int(keep.sum())}


def aggregate(views: list[dict[str, object]]) -> dict[str, object]:
    """Averages per-view metrics over views: mIoU and accuracy (NaN views skipped) and per-class IoU."""
    if len(views) == 0:
        raise ValueError("aggregate got no views; check that the scene has annotated views in segmentations/.")
    per_class = torch.stack([torch.as_tensor(v["iou_per_class"], dtype=torch.float64) for v in views])  # [V, C]
    valid = ~torch.isnan(per_class)
    counts = valid.sum(dim=0)
    sums = torch.where(valid, per_class, torch.zeros_like(per_class)).sum(dim=0)
    iou_per_class = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, math.nan))
    return {
        "miou": _nanmean(torch.tensor([float(v["miou"]) for v in views], dtype=torch.float64)),
        "accuracy": _nanmean(torch.tensor([float(v["accuracy"]) for v in views], dtype=torch.float64)),
        "iou_per_class": iou_per_class,
        "num_views": len(views),
    }


def iou_by_class(class_names: list[str], iou_per_class: Tensor) -> dict[str, float | None]:
    """Per-class IoU as a JSON-ready dict; NaN (a class absent from every view) becomes None (null)."""
    ious = iou_per_class.tolist()
    if len(ious) != len(class_names):
        raise ValueError(f"iou_by_class got {len(ious)} IoUs for {len(class_names)} classes {class_names}.")
    return {name: None if math.isnan(iou) else float(iou) for name, iou in zip(class_names, ious, strict=True)}


def boundary_band(label_map: Int[Tensor, "H W"], width_px: int) -> Bool[Tensor, "H W"]:
    """Pixels within `width_px` (Chebyshev distance) of a change of label; the image border is not an edge."""
    if width_px < 1:
        raise ValueError(f"boundary_band needs width_px >= 1, got {width_px}.")
    labels = label_map.double()[None, None]  # [1, 1, H, W]; float64 holds any int label exactly
    padded = F.pad(labels, (width_px,) * 4, mode="replicate")
    window = 2 * width_px + 1
    high = F.max_pool2d(padded, window, stride=1)
    low = -F.max_pool2d(-padded, window, stride=1)
    return (high != low)[0, 0]


def boundary_iou(
    pred: Int[Tensor, "H W"],
    gt_label_map: Int[Tensor, "H W"],
    width_px: int,
    num_classes: int | None = None,
    ignore_index: int = 255,
) -> dict[str, object]:
    """Per-class IoU and mIoU restricted to the GT's boundary band (where blurry language fields fail).

    `gt_label_map` holds class indices, with `ignore_index` (or any negative value) for unlabelled pixels;
    those are excluded from the scores but their borders with labelled regions still count as edges.
    Returns `{"iou_per_class", "miou", "num_pixels"}` with the same NaN rule as `segmentation_metrics`.
    """
    if pred.shape != gt_label_map.shape:
        raise ValueError(
            f"boundary_iou: prediction is {tuple(pred.shape)} but the GT label map is {tuple(gt_label_map.shape)}."
        )
    unlabelled = (gt_label_map < 0) | (gt_label_map == ignore_index)
    if num_classes is None:
        labelled_values = gt_label_map[~unlabelled]
        num_classes = int(max(labelled_values.max().item() if labelled_values.numel() else -1, pred.max().item())) + 1
    keep = boundary_band(gt_label_map, width_px) & ~unlabelled  # [H, W]
    gt_kept = gt_label_map[keep].long()  # [P]
    gt_masks = gt_kept[None, :] == torch.arange(num_classes, device=gt_kept.device)[:, None]  # [C, P]
    iou = _per_class_iou(pred[keep].long(), gt_masks, num_classes)
    return {"iou_per_class": iou, "miou": _nanmean(iou), "num_pixels": int(keep.sum())}
