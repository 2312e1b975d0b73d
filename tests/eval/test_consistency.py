"""Teacher 2D segmentation and cross-view consistency, against hand-computed cases and exact generated geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from laser_ns.eval.consistency import (
    NO_CLASS,
    cross_view_consistency,
    label_agreement,
    label_map_to_masks,
    pixel_correspondences,
    teacher_segmentation,
    tile_classes,
    upsample_tile_labels,
)
from laser_ns.eval.metrics import segmentation_metrics

INTRINSICS = (10.0, 10.0, 4.0, 3.0)  # fx, fy, cx, cy of an 8x6 image


def _camera(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """An OpenGL camera at (x, y, z) looking down -z (identity rotation)."""
    c2w = np.eye(4)
    c2w[:3, 3] = (x, y, z)
    return c2w


# ---------------------------------------------------------------------------------------------------------------------
# Teacher 2D segmentation
# ---------------------------------------------------------------------------------------------------------------------


def test_tile_classes_is_the_cosine_argmax_and_zero_tiles_get_no_class():
    embeddings = torch.eye(3, 4)  # class c is axis c
    features = torch.tensor(
        [
            [[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
            [[0.2, 0.3, 0.5, 0.0], [0.0, 5.0, 4.0, 0.0]],  # the norm must not matter, only the direction
        ]
    )
    assert tile_classes(features, embeddings).tolist() == [[0, NO_CLASS], [2, 1]]


def test_tile_classes_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="channels"):
        tile_classes(torch.ones(2, 2, 4), torch.eye(3, 5))


def test_upsample_covers_whole_tiles_and_uneven_sizes():
    tiles = torch.tensor([[0, 1], [2, 3]])
    up = upsample_tile_labels(tiles, 32, 32)
    assert up.shape == (32, 32)
    assert (up[:16, :16] == 0).all() and (up[:16, 16:] == 1).all()
    assert (up[16:, :16] == 2).all() and (up[16:, 16:] == 3).all()
    # 2 tiles over 5 pixels: pixel centres 0.5..4.5 times 2/5 -> rows 0, 0, 1, 1, 1 (nearest by pixel centre).
    assert upsample_tile_labels(torch.tensor([[7], [9]]), 5, 1)[:, 0].tolist() == [7, 7, 9, 9, 9]


def test_label_map_to_masks_leaves_unlabelled_pixels_out():
    labels = torch.tensor([[0, 1], [255, 1]])
    masks = label_map_to_masks(labels, 2)
    assert masks.tolist() == [[[True, False], [False, False]], [[False, True], [False, True]]]
    with pytest.raises(ValueError, match="Label value 3"):
        label_map_to_masks(torch.tensor([[3]]), 2)


def test_teacher_segmentation_of_an_undegraded_label_teacher_is_exact_on_tile_aligned_labels():
    from laser_ns.teachers.label_map import LabelMapTeacherConfig

    teacher = LabelMapTeacherConfig(text_encoder="hashed", hashed_dim=64).setup(class_names=["a", "b", "c"])
    labels = torch.zeros(32, 48, dtype=torch.long)
    labels[:16, 16:32] = 1
    labels[16:, 32:] = 2
    features = teacher.dense_features(torch.zeros(32, 48, 3), labels)
    pred = teacher_segmentation(features, teacher.class_embeddings(), 32, 48)
    assert torch.equal(pred, labels)
    assert segmentation_metrics(pred, label_map_to_masks(labels, 3))["miou"] == 1.0


def test_teacher_segmentation_loses_detail_finer_than_a_tile():
    # One 16x16 tile that is 3/4 class 0 and 1/4 class 1: the tile says class 0, so class 1 is lost in 2D.
    embeddings = torch.eye(2, 8)
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[:8, :8] = 1
    features = (torch.tensor([0.75, 0.25]) @ embeddings)[None, None]  # the label teacher's tile mixture
    pred = teacher_segmentation(features, embeddings, 16, 16)
    out = segmentation_metrics(pred, label_map_to_masks(labels, 2))
    assert out["iou_per_class"].tolist() == pytest.approx([0.75, 0.0])
    assert out["accuracy"] == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------------------------------
# Pixel correspondences
# ---------------------------------------------------------------------------------------------------------------------


def test_same_camera_maps_every_pixel_to_itself():
    depth = np.full((6, 8), 2.0)
    a, b = pixel_correspondences(depth, depth, _camera(), _camera(), INTRINSICS)
    assert len(a) == 48 and torch.equal(a, b)


def test_sideways_camera_shifts_a_fronto_parallel_plane_by_fx_tx_over_z():
    # Plane at z-depth 2; camera B 0.4 to the right: points move 10 * 0.4 / 2 = 2 columns left in B.
    depth = np.full((6, 8), 2.0)
    a, b = pixel_correspondences(depth, depth, _camera(), _camera(x=0.4), INTRINSICS)
    assert torch.equal(b[:, 0], a[:, 0])
    assert torch.equal(b[:, 1], a[:, 1] - 2)
    assert sorted(set(a[:, 1].tolist())) == [2, 3, 4, 5, 6, 7]  # the two left columns leave B's image
    assert len(a) == 6 * 6


def test_occluded_and_empty_pixels_have_no_correspondence():
    depth_a = np.full((6, 8), 2.0)
    depth_a[0, 0] = np.inf  # A sees nothing there
    depth_b = np.full((6, 8), 2.0)
    depth_b[3, 4] = 1.0  # something nearer covers this pixel in B
    a, b = pixel_correspondences(depth_a, depth_b, _camera(), _camera(), INTRINSICS)
    kept = {tuple(p) for p in a.tolist()}
    assert (0, 0) not in kept and (3, 4) not in kept and len(kept) == 46


def test_camera_behind_or_looking_away_gives_nothing():
    depth = np.full((6, 8), 2.0)
    a, _ = pixel_correspondences(depth, depth, _camera(), _camera(z=-5.0), INTRINSICS)  # B is behind the plane
    assert len(a) == 0
    with pytest.raises(ValueError, match="depth_tolerance"):
        pixel_correspondences(depth, depth, _camera(), _camera(), INTRINSICS, depth_tolerance=0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Agreement and consistency
# ---------------------------------------------------------------------------------------------------------------------


def test_label_agreement_hand_computed():
    labels_a = torch.tensor([[0, 1], [2, NO_CLASS]])
    labels_b = torch.tensor([[0, 2], [2, NO_CLASS]])
    pixels = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    # (0,0) agree, (0,1) differ, (1,0) agree, (1,1) both "no class": that is not agreement.
    assert label_agreement(labels_a, labels_b, pixels, pixels) == (2, 4)
    assert label_agreement(labels_a, labels_b, pixels, pixels, keep=torch.tensor([True, True, False, False])) == (1, 2)


def test_consistency_of_a_prediction_that_flips_in_one_view():
    depth = np.full((6, 8), 2.0)
    cams = [_camera(), _camera(), _camera()]
    labels = [torch.zeros(6, 8, dtype=torch.long) for _ in range(3)]
    labels[2] = labels[2].clone()
    labels[2][:, :4] = 1  # half of view 2 disagrees with views 0 and 1
    out = cross_view_consistency(labels, [depth] * 3, cams, INTRINSICS)
    # Pairs (0,1): 48/48, (0,2): 24/48, (1,2): 24/48.
    assert out["consistency"] == pytest.approx(96 / 144)
    assert out["num_correspondences"] == 144 and out["num_view_pairs"] == 3


def test_gt_filter_drops_points_whose_ground_truth_differs():
    depth = np.full((6, 8), 2.0)
    gt_a = np.zeros((6, 8), dtype=np.uint8)
    gt_b = gt_a.copy()
    gt_b[:, :2] = 1  # e.g. correspondences rounded across a class edge
    gt_b[0, :] = 255  # unlabelled
    labels = [torch.from_numpy(gt_a.astype(np.int64)), torch.from_numpy(gt_b.astype(np.int64))]
    out = cross_view_consistency(labels, [depth, depth], [_camera(), _camera()], INTRINSICS, gt_labels=[gt_a, gt_b])
    assert out["consistency"] == 1.0 and out["num_correspondences"] == 5 * 6


def test_consistency_without_shared_points_is_nan_and_inputs_must_match():
    depth = np.full((6, 8), np.inf)
    labels = [torch.zeros(6, 8, dtype=torch.long)] * 2
    out = cross_view_consistency(labels, [depth, depth], [_camera(), _camera()], INTRINSICS)
    assert math.isnan(out["consistency"]) and out["num_view_pairs"] == 0
    with pytest.raises(ValueError, match="one depth map"):
        cross_view_consistency(labels, [depth], [_camera(), _camera()], INTRINSICS)


def test_generated_scene_ground_truth_is_perfectly_consistent_and_noise_is_not(tmp_path):
    from laser_ns.scenes import make_scene

    info = make_scene(tmp_path / "scene", "tabletop", seed=0, num_views=6, width=48, height=36)
    views = info.annotated_views
    gt = [torch.from_numpy(info.labels[i].astype(np.int64)) for i in views]
    depths = [info.depths[i] for i in views]
    cams = [info.camera_to_worlds[i] for i in views]
    exact = cross_view_consistency(gt, depths, cams, info.intrinsics, gt_labels=[info.labels[i] for i in views])
    assert exact["consistency"] == 1.0
    assert exact["num_view_pairs"] == len(views) * (len(views) - 1) // 2
    # Without the GT filter the exact geometry still matches labels almost everywhere (only pixel rounding at edges).
    unfiltered = cross_view_consistency(gt, depths, cams, info.intrinsics)
    assert unfiltered["consistency"] > 0.97
    # Random labels in one view: agreement drops by about that view's share of the pairs.
    generator = torch.Generator().manual_seed(0)
    noisy = list(gt)
    noisy[0] = torch.randint(len(info.class_names), gt[0].shape, generator=generator)
    assert cross_view_consistency(noisy, depths, cams, info.intrinsics)["consistency"] < 0.8
