"""What a 2D-only use of a teacher scores, and whether a segmentation agrees with itself across views.

Two questions the quality benchmark (``benchmarks/quality.py``) asks of every scene:

- Teacher 2D segmentation: one class per 16x16 tile (the argmax of the tile feature against the class embeddings),
  sampled back to pixels with nearest-neighbour. This is what the teacher gives without any 3D lifting; scoring it
  with :func:`laser_ns.eval.metrics.segmentation_metrics` is the baseline that Laser's 3D segmentation must beat.
- Cross-view consistency: the fraction of surface points, seen by two views, that both views label alike. Pixel
  correspondences come from exact geometry (z-depth per pixel, OpenGL cameras and shared pinhole intrinsics, as the
  scene generator writes them), so no learned depth is involved. A point counts only where it is visible in both
  views: its depth seen from the second view must match that view's depth map at the pixel it lands on.

Conventions: pixel ``(row v, column u)`` is the ray through image point ``(u + 0.5, v + 0.5)`` and ``cx = W / 2``,
as in :mod:`laser_ns.scenes`. A class index of -1 means "no prediction" (it never matches a class).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from laser_ns.conventions import UNLABELLED

NO_CLASS = -1
"""Class index of a tile or pixel without a prediction (e.g. a teacher tile that carries no feature)."""

ArrayOrTensor = np.ndarray | Tensor


def tile_classes(features: Float[Tensor, "h w D"], class_embeddings: Float[Tensor, "C D"]) -> Int[Tensor, "h w"]:
    """Class of each tile: the argmax of its cosine similarity to the class embeddings; ``NO_CLASS`` for zero tiles.

    Teachers return an all-zero feature for a tile they know nothing about (``tile_validity``); such a tile gets no
    class rather than whichever class happens to come first.
    """
    if features.shape[-1] != class_embeddings.shape[-1]:
        raise ValueError(
            f"Tile features have {features.shape[-1]} channels but the class embeddings have "
            f"{class_embeddings.shape[-1]}; encode the classes with the same teacher that made the features."
        )
    feats = features.float()
    scores = F.normalize(feats, dim=-1) @ F.normalize(class_embeddings.float().to(feats.device), dim=-1).T  # [h, w, C]
    classes = scores.argmax(dim=-1)
    return torch.where(feats.abs().amax(dim=-1) > 0, classes, torch.full_like(classes, NO_CLASS))


def upsample_tile_labels(tile_labels: Int[Tensor, "h w"], height: int, width: int) -> Int[Tensor, "H W"]:
    """Nearest-neighbour labels at ``height x width`` pixels: pixel centre ``(v + 0.5) * h / H`` picks the tile row.

    Matches how teachers tile an image: the image is resized to ``h x w`` whole tiles, so each tile covers
    ``H / h`` by ``W / w`` pixels of the original, whether or not that is a whole number.
    """
    if height < 1 or width < 1:
        raise ValueError(f"Output size must be positive, got {height}x{width}.")
    h, w = tile_labels.shape
    rows = ((torch.arange(height, dtype=torch.float64) + 0.5) * h / height).floor().long().clamp(0, h - 1)
    cols = ((torch.arange(width, dtype=torch.float64) + 0.5) * w / width).floor().long().clamp(0, w - 1)
    return tile_labels[rows.to(tile_labels.device)[:, None], cols.to(tile_labels.device)[None, :]]


def teacher_segmentation(
    features: Float[Tensor, "h w D"], class_embeddings: Float[Tensor, "C D"], height: int, width: int
) -> Int[Tensor, "H W"]:
    """The teacher's own 2D segmentation of a ``height x width`` image from its tile features (see the module doc)."""
    return upsample_tile_labels(tile_classes(features, class_embeddings), height, width)


def label_map_to_masks(
    label_map: Int[Tensor, "H W"], num_classes: int, ignore_index: int = UNLABELLED
) -> Bool[Tensor, "C H W"]:
    """One boolean mask per class from a label map; ``ignore_index`` and negative labels are in no mask.

    This is the form :func:`laser_ns.eval.metrics.segmentation_metrics` takes (and the 3D-OVS masks on disk have).
    """
    labels = torch.as_tensor(label_map).long()
    bad = labels[(labels != ignore_index) & (labels >= num_classes)]
    if bad.numel() > 0:
        raise ValueError(
            f"Label value {int(bad[0])} has no class: there are {num_classes} classes (values 0..{num_classes - 1}, "
            f"{ignore_index} = unlabelled)."
        )
    return labels[None] == torch.arange(num_classes, device=labels.device)[:, None, None]


def _as_float64(value: ArrayOrTensor) -> Tensor:
    return torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value).to(torch.float64).cpu()


def pixel_correspondences(
    depth_a: Float[ArrayOrTensor, "H W"],
    depth_b: Float[ArrayOrTensor, "H W"],
    camera_to_world_a: Float[ArrayOrTensor, "4 4"],
    camera_to_world_b: Float[ArrayOrTensor, "4 4"],
    intrinsics: tuple[float, float, float, float],
    depth_tolerance: float = 0.03,
) -> tuple[Int[Tensor, "P 2"], Int[Tensor, "P 2"]]:
    """Pixels of view A whose surface point is visible in view B, and the pixel of B it lands in.

    Each pixel of A with a finite z-depth is lifted to 3D, projected into B, and kept if it falls inside B's image,
    in front of B, and within ``depth_tolerance`` (relative) of B's z-depth at that pixel; a larger difference means
    something else covers the point in B (occlusion) or the point sits on a depth edge.

    Args:
        depth_a, depth_b: z-depth (distance along the camera's viewing axis) per pixel; inf where nothing is hit.
        camera_to_world_a, camera_to_world_b: OpenGL camera-to-world matrices (x right, y up, looking down -z).
        intrinsics: pinhole ``(fx, fy, cx, cy)`` in pixels, shared by both views.
        depth_tolerance: largest relative depth difference that still counts as the same surface point.

    Returns:
        ``(pixels_a, pixels_b)``: matching ``(row, column)`` indices, one row per correspondence.
    """
    if depth_tolerance <= 0:
        raise ValueError(f"depth_tolerance must be positive, got {depth_tolerance}.")
    depth_a, depth_b = _as_float64(depth_a), _as_float64(depth_b)
    c2w_a, c2w_b = _as_float64(camera_to_world_a), _as_float64(camera_to_world_b)
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    height_b, width_b = depth_b.shape

    # Lift A's pixels to camera space: OpenGL cameras look down -z and image rows grow downwards.
    rows, cols = torch.nonzero(torch.isfinite(depth_a) & (depth_a > 0), as_tuple=True)
    z = depth_a[rows, cols]
    camera_a = torch.stack([(cols + 0.5 - cx) / fx * z, -(rows + 0.5 - cy) / fy * z, -z], dim=-1)  # [P, 3]
    world = camera_a @ c2w_a[:3, :3].T + c2w_a[:3, 3]

    # Into B's camera: world_to_camera = [R^T, -R^T t] for a rigid camera_to_world.
    camera_b = (world - c2w_b[:3, 3]) @ c2w_b[:3, :3]  # [P, 3]
    z_b = -camera_b[:, 2]
    in_front = z_b > 1e-9
    safe_z = torch.where(in_front, z_b, torch.ones_like(z_b))
    u_b = torch.floor(fx * camera_b[:, 0] / safe_z + cx)
    v_b = torch.floor(-fy * camera_b[:, 1] / safe_z + cy)
    inside = in_front & (u_b >= 0) & (u_b < width_b) & (v_b >= 0) & (v_b < height_b)
    u_b = u_b.long().clamp(0, width_b - 1)
    v_b = v_b.long().clamp(0, height_b - 1)

    # Visible in B: B sees a surface at (about) the same depth at that pixel, not something nearer.
    seen = depth_b[v_b, u_b]
    visible = inside & torch.isfinite(seen) & ((seen - z_b).abs() <= depth_tolerance * z_b)
    pixels_a = torch.stack([rows[visible], cols[visible]], dim=-1)
    pixels_b = torch.stack([v_b[visible], u_b[visible]], dim=-1)
    return pixels_a, pixels_b


def label_agreement(
    labels_a: Int[Tensor, "H W"],
    labels_b: Int[Tensor, "H W"],
    pixels_a: Int[Tensor, "P 2"],
    pixels_b: Int[Tensor, "P 2"],
    keep: Bool[Tensor, " P"] | None = None,
) -> tuple[int, int]:
    """``(agreeing, total)`` over the correspondences (optionally only where ``keep``); -1 agrees with nothing."""
    a = torch.as_tensor(labels_a).long().cpu()[pixels_a[:, 0], pixels_a[:, 1]]
    b = torch.as_tensor(labels_b).long().cpu()[pixels_b[:, 0], pixels_b[:, 1]]
    agree = (a == b) & (a != NO_CLASS)
    if keep is not None:
        agree, total = agree[keep], int(keep.sum())
    else:
        total = int(a.numel())
    return int(agree.sum()), total


def cross_view_consistency(
    labels: Sequence[Int[Tensor, "H W"]],
    depths: Sequence[Float[ArrayOrTensor, "H W"]],
    camera_to_worlds: Sequence[Float[ArrayOrTensor, "4 4"]],
    intrinsics: tuple[float, float, float, float],
    gt_labels: Sequence[Int[ArrayOrTensor, "H W"]] | None = None,
    depth_tolerance: float = 0.03,
    ignore_index: int = UNLABELLED,
) -> dict[str, float | int]:
    """How often two views give the same class to the same 3D point, pooled over every pair of the given views.

    Each unordered pair (i, j), i < j, contributes the correspondences from view i into view j. With ``gt_labels``,
    only correspondences whose two ground-truth labels exist and agree are counted: a point on a class edge can land
    on the neighbouring class after rounding to pixels, and that is no fault of the segmentation. With it, the ground
    truth itself scores exactly 1.

    Returns:
        ``{"consistency": agreeing / total (NaN if no point is seen twice), "num_correspondences": total,
        "num_view_pairs": pairs with at least one correspondence}``.
    """
    count = len(labels)
    if not (len(depths) == len(camera_to_worlds) == count) or (gt_labels is not None and len(gt_labels) != count):
        raise ValueError(
            f"cross_view_consistency needs one depth map, camera and (optional) GT label map per view; got "
            f"{count} label maps, {len(depths)} depth maps, {len(camera_to_worlds)} cameras"
            + (f", {len(gt_labels)} GT label maps." if gt_labels is not None else ".")
        )
    agreeing = total = pairs = 0
    for i, j in itertools.combinations(range(count), 2):
        pixels_i, pixels_j = pixel_correspondences(
            depths[i], depths[j], camera_to_worlds[i], camera_to_worlds[j], intrinsics, depth_tolerance
        )
        keep = None
        if gt_labels is not None:
            gi = torch.as_tensor(np.asarray(gt_labels[i])).long()[pixels_i[:, 0], pixels_i[:, 1]]
            gj = torch.as_tensor(np.asarray(gt_labels[j])).long()[pixels_j[:, 0], pixels_j[:, 1]]
            keep = (gi == gj) & (gi >= 0) & (gi != ignore_index)
        agree, seen = label_agreement(labels[i], labels[j], pixels_i, pixels_j, keep)
        agreeing += agree
        total += seen
        pairs += int(seen > 0)
    return {
        "consistency": agreeing / total if total > 0 else math.nan,
        "num_correspondences": total,
        "num_view_pairs": pairs,
    }


__all__ = [
    "NO_CLASS",
    "UNLABELLED",
    "cross_view_consistency",
    "label_agreement",
    "label_map_to_masks",
    "pixel_correspondences",
    "teacher_segmentation",
    "tile_classes",
    "upsample_tile_labels",
]
