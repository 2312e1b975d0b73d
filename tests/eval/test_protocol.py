"""The 3D-OVS evaluation protocol rule by rule, cross-checked with scikit-learn (which 3D-OVS's evaluator calls).

Each rule's case scores differently under our "labelled" protocol (the test asserts both), so it fails if the default
falls back to it. The mask resampling and camera squeeze are shared by both protocols.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras, CameraType
from PIL import Image

from laser_ns.data.semantics import SceneSemantics, read_mask_values
from laser_ns.eval.evaluate import evaluate_pipeline, scored_size, squeeze_camera
from laser_ns.eval.metrics import (
    aggregate,
    masks_from_values,
    segmentation_metrics,
    segmentation_metrics_3dovs,
    view_metrics,
)


def _masks(label_map: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.stack([label_map == c for c in range(num_classes)])


def _values(masks: torch.Tensor) -> torch.Tensor:
    """Boolean masks as the 0/255 values of mask files."""
    return masks.to(torch.uint8) * 255


# ---------------------------------------------------------------------------------------------------------------------
# Scoring rules
# ---------------------------------------------------------------------------------------------------------------------


def test_absent_class_scores_zero_and_is_averaged():
    # Class 2 is in the scene but neither in this view's GT nor predicted.
    gt = torch.tensor([[0, 1, 1], [0, 1, 1]])
    pred = torch.tensor([[0, 0, 1], [0, 1, 1]])
    out = view_metrics(pred, _values(_masks(gt, 3)), "3dovs")
    assert out["iou_per_class"].tolist() == pytest.approx([2 / 3, 3 / 4, 0.0])
    assert out["miou"] == pytest.approx((2 / 3 + 3 / 4) / 3)
    ours = view_metrics(pred, _values(_masks(gt, 3)), "labelled")
    assert ours["miou"] == pytest.approx((2 / 3 + 3 / 4) / 2)  # skipped there


def test_unlabelled_pixel_is_wrong_for_accuracy():
    masks = torch.zeros(2, 2, 3, dtype=torch.bool)
    masks[0, :, 0] = True  # class 0: left column
    masks[1, :, 1] = True  # class 1: middle column; the right column is in no mask
    pred = torch.tensor([[0, 1, 0], [0, 1, 1]])  # right wherever the GT is known
    out = view_metrics(pred, _values(masks), "3dovs")
    assert out["accuracy"] == pytest.approx(4 / 6)
    # and the unlabelled pixels are false positives of the classes predicted there
    assert out["iou_per_class"].tolist() == pytest.approx([2 / 3, 2 / 3])
    ours = view_metrics(pred, _values(masks), "labelled")
    assert ours["accuracy"] == 1.0 and ours["miou"] == 1.0


def test_overlapping_pixel_is_wrong_for_accuracy():
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0] = True  # class 0 everywhere
    masks[1, 0, 0] = True  # class 1 also at (0, 0)
    for pred_at_overlap in (0, 1):  # either answer is wrong: the GT row has two ones, the prediction one
        pred = torch.zeros(2, 2, dtype=torch.long)
        pred[0, 0] = pred_at_overlap
        out = view_metrics(pred, _values(masks), "3dovs")
        assert out["accuracy"] == pytest.approx(3 / 4)
        assert view_metrics(pred, _values(masks), "labelled")["accuracy"] == 1.0


def test_prediction_outside_the_classes_is_an_all_zero_row():
    masks = _masks(torch.tensor([[0, 1]]), 2)
    out = segmentation_metrics_3dovs(torch.tensor([[0, 2]]), masks)  # a typed query's index, say
    assert out["iou_per_class"].tolist() == pytest.approx([1.0, 0.0])
    assert out["accuracy"] == pytest.approx(0.5)


def test_mask_value_254_is_not_in_the_class(tmp_path: Path):
    values = np.array([[255, 254], [128, 0]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "gray.png")
    Image.fromarray(np.stack([values] * 3, axis=-1)).save(tmp_path / "rgb.png")  # read as "L", as 3D-OVS does
    read = read_mask_values({"gray": tmp_path / "gray.png", "rgb": tmp_path / "rgb.png"}, ["gray", "rgb"])
    assert read.dtype == np.uint8 and (read == values).all()
    expected_3dovs = torch.tensor([[True, False], [False, False]])
    assert torch.equal(masks_from_values(torch.from_numpy(read), "3dovs"), expected_3dovs.expand(2, 2, 2))
    assert masks_from_values(torch.from_numpy(read), "labelled")[0].tolist() == [[True, True], [True, False]]
    # So a view whose class-0 mask is all 254 has no class-0 pixel: predicting class 0 there is wrong.
    pred = torch.zeros(1, 2, dtype=torch.long)
    mask_values = torch.tensor([[[254, 254]], [[0, 0]]], dtype=torch.uint8)
    assert view_metrics(pred, mask_values, "3dovs")["accuracy"] == 0.0
    assert view_metrics(pred, mask_values, "labelled")["accuracy"] == 1.0


def test_unknown_protocol_and_non_uint8_values_are_clear_errors():
    with pytest.raises(ValueError, match="3dovs, labelled"):
        view_metrics(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, 1, dtype=torch.uint8), "ours")
    with pytest.raises(ValueError, match="uint8"):
        masks_from_values(torch.zeros(1, 1, 1, dtype=torch.bool), "3dovs")
    with pytest.raises(ValueError, match="resolution"):
        segmentation_metrics_3dovs(torch.zeros(2, 2, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.bool))


def _random_view(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random view with unlabelled, overlapping and (every third seed) absent classes."""
    gen = torch.Generator().manual_seed(seed)
    num_classes = int(torch.randint(2, 6, (1,), generator=gen))
    density = torch.rand(num_classes, 1, 1, generator=gen) * 0.7
    masks = torch.rand(num_classes, 7, 9, generator=gen) < density  # [C, H, W]
    predicted_classes = num_classes
    if seed % 3 == 0:  # the last class in neither GT nor prediction
        masks[-1] = False
        predicted_classes -= 1
    pred = torch.randint(0, predicted_classes, (7, 9), generator=gen)
    return pred, masks


def _sklearn_view(pred: torch.Tensor, masks: torch.Tensor, metrics) -> tuple[np.ndarray, float]:
    """renderer.py's evaluation_segmentation_test on one view: indicator matrices and scikit-learn."""
    num_classes = masks.shape[0]
    gt_seg = masks.reshape(num_classes, -1).T.numpy().astype(np.int8)  # [H*W, n_classes]
    one_hot = F.one_hot(pred.reshape(-1), num_classes=num_classes).numpy().astype(np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero_division: absent classes score 0 with a warning
        ious = metrics.jaccard_score(gt_seg, one_hot, average=None)
    return ious, metrics.accuracy_score(gt_seg, one_hot)


@pytest.mark.parametrize("seed", range(12))
def test_view_metrics_equal_scikit_learn(seed: int):
    metrics = pytest.importorskip("sklearn.metrics", reason="the cross-check needs scikit-learn (the test extra)")
    pred, masks = _random_view(seed)
    ref_iou, ref_accuracy = _sklearn_view(pred, masks, metrics)
    out = segmentation_metrics_3dovs(pred, masks)
    np.testing.assert_allclose(out["iou_per_class"].numpy(), ref_iou, rtol=0, atol=1e-12)
    assert out["miou"] == pytest.approx(float(np.mean(ref_iou)), abs=1e-12)
    assert out["accuracy"] == pytest.approx(ref_accuracy, abs=1e-12)
    if seed % 3 == 0:
        assert out["iou_per_class"][-1] == 0.0
        assert not segmentation_metrics(pred, masks)["iou_per_class"][-1].isfinite()  # NaN under "labelled"


def test_views_average_as_in_3dovs():
    """renderer.py reports np.mean(IoUs) over every view's per-class IoUs, and the mean of the views' accuracies."""
    metrics = pytest.importorskip("sklearn.metrics", reason="the cross-check needs scikit-learn (the test extra)")
    gen = torch.Generator().manual_seed(7)
    ious, accuracies, views = [], [], []
    for _ in range(4):
        masks = torch.rand(3, 6, 5, generator=gen) < 0.4
        pred = torch.randint(0, 3, (6, 5), generator=gen)
        iou, accuracy = _sklearn_view(pred, masks, metrics)
        ious.append(iou)
        accuracies.append(accuracy)
        views.append(segmentation_metrics_3dovs(pred, masks))
    summary = aggregate(views)
    assert summary["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-12)
    assert summary["accuracy"] == pytest.approx(float(np.mean(accuracies)), abs=1e-12)
    np.testing.assert_allclose(summary["iou_per_class"].numpy(), np.mean(ious, axis=0), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# Resampling: masks with PIL NEAREST, rays by a per-axis squeeze of the camera
# ---------------------------------------------------------------------------------------------------------------------


def test_masks_are_sampled_at_block_centres(tmp_path: Path):
    # 16x16 -> 2x2 (8x): each block's top-left pixel differs from its centre pixel (4, 4).
    values = np.zeros((16, 16), dtype=np.uint8)
    values[0, 0] = 255  # block (0, 0): top-left in, centre out
    values[4, 12] = 255  # block (0, 1): centre in, top-left out
    values[8:, 8:] = 255  # block (1, 1): all in
    values[8, 8] = 0  # ... but its top-left
    Image.fromarray(values).save(tmp_path / "a.png")
    read = read_mask_values({"a": tmp_path / "a.png"}, ["a"], size=(2, 2))[0]
    assert read.tolist() == [[0, 255], [0, 255]]
    assert (read == values[4::8, 4::8]).all() and not (read == values[::8, ::8]).all()  # centre, not top-left


def _camera(width: int = 100, height: int = 75) -> Cameras:
    """An OpenGL camera at the origin looking down -z."""
    return Cameras(
        camera_to_worlds=torch.eye(4)[None, :3],
        fx=80.0,
        fy=70.0,
        cx=width / 2,
        cy=height / 2,
        width=width,
        height=height,
        camera_type=CameraType.PERSPECTIVE,
    )


def _pixel_hit(camera: Cameras, full: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each ray of ``camera`` crosses the image of ``full`` (same pose), in ``full``'s pixel coordinates."""
    directions = camera.generate_rays(camera_indices=0).directions  # [h, w, 3]
    x = directions[..., 0] / -directions[..., 2]
    y = directions[..., 1] / -directions[..., 2]
    return float(full.fx) * x + float(full.cx), float(full.cy) - float(full.fy) * y  # image y runs down


def test_squeezed_rays_hit_the_centres_of_the_full_image_blocks():
    full = _camera(100, 75)  # not a multiple of 8 in either direction
    width, height = scored_size(100, 75, 8)
    assert (width, height) == (12, 9)  # 3D-OVS's img_wh: int(W / 8), int(H / 8)
    u, v = _pixel_hit(squeeze_camera(full, width, height), full)
    assert u.shape == (9, 12)
    # Output pixel (i, j) stands for the block [j W/w, (j+1) W/w) x [i H/h, (i+1) H/h) of the full image.
    expected_u = (torch.arange(12) + 0.5) * 100 / 12
    expected_v = (torch.arange(9) + 0.5) * 75 / 9
    torch.testing.assert_close(u, expected_u.expand(9, 12), atol=1e-3, rtol=0)
    torch.testing.assert_close(v, expected_v[:, None].expand(9, 12), atol=1e-3, rtol=0)
    assert int(full.width) == 100  # the dataset's camera is left alone

    # nerfstudio's uniform rescale keeps the size but covers a 96x72 crop: almost 4 pixels off at the far edge.
    cropped = _camera(100, 75)
    cropped.rescale_output_resolution(1 / 8)
    assert (int(cropped.width), int(cropped.height)) == (12, 9)
    u_crop, _ = _pixel_hit(cropped, full)
    assert (u_crop - expected_u).abs().max() > 3


def test_scored_size_rejects_a_bad_downscale():
    with pytest.raises(ValueError, match="positive"):
        scored_size(100, 75, 0)
    with pytest.raises(ValueError, match="nothing"):
        scored_size(100, 75, 200)


class _FakeDataset:
    """The parts of an eval dataset evaluate_pipeline reads."""

    def __init__(self, camera: Cameras, semantics: SceneSemantics) -> None:
        self.metadata = {"semantics": semantics, "image_indices": [0]}
        self._dataparser_outputs = SimpleNamespace(cameras=camera)
        self.cameras = camera

    def __len__(self) -> int:
        return 1


class _OracleModel:
    """Renders, for each ray, the class of the full-size label map where the ray crosses the image."""

    def __init__(self, labels: np.ndarray, full: Cameras, class_names: list[str]) -> None:
        self.labels, self.full, self.class_names = torch.from_numpy(labels), full, class_names
        self.device = torch.device("cpu")
        self.predictor = SimpleNamespace(class_colors=torch.eye(3))

    def eval(self) -> None:
        pass

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, torch.Tensor]:
        u, v = _pixel_hit(camera, self.full)
        classes = self.labels[v.floor().long(), u.floor().long()]  # [h, w]
        return {"segmentation_class": classes[..., None].float(), "rgb": torch.zeros(*classes.shape, 3)}


def test_evaluate_pipeline_scores_a_perfect_renderer_perfectly_at_an_odd_size(tmp_path: Path):
    """A renderer that is right everywhere scores 1 only if rays and masks sample the same full-image pixels."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(75, 100))  # per-pixel classes: any shift between rays and masks shows
    names = ["a", "b", "c"]
    paths = {}
    for k, name in enumerate(names):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(((labels == k) * 255).astype(np.uint8)).save(paths[name])
    full = _camera(100, 75)
    semantics = SceneSemantics(class_names=names, annotated_masks={0: paths})
    pipeline = SimpleNamespace(
        model=_OracleModel(labels, full, names),
        datamanager=SimpleNamespace(eval_dataset=_FakeDataset(full, semantics)),
    )
    out_dir = tmp_path / "eval"
    result = evaluate_pipeline(pipeline, out_dir, downscale=8)
    assert result["miou"] == 1.0 and result["accuracy"] == 1.0
    assert result["protocol"] == "3dovs" and result["downscale"] == 8
    assert result["views"] == [{"image_index": 0, "miou": 1.0, "accuracy": 1.0}]
    assert json.loads((out_dir / "metrics.json").read_text())["protocol"] == "3dovs"
    assert Image.open(out_dir / "view_000.png").size == (3 * 12, 9)
    assert evaluate_pipeline(pipeline, downscale=8, protocol="labelled")["protocol"] == "labelled"


# ---------------------------------------------------------------------------------------------------------------------
# A real pipeline: laser-eval and ns-eval (the model's image metrics) score the same way
# ---------------------------------------------------------------------------------------------------------------------


def test_ns_eval_metrics_equal_laser_eval_and_scikit_learn(tiny_scene):
    metrics = pytest.importorskip("sklearn.metrics", reason="the cross-check needs scikit-learn (the test extra)")
    from tests.conftest import tiny_pipeline_config

    torch.manual_seed(0)
    pipeline = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="test")  # untrained: any prediction
    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    result = evaluate_pipeline(pipeline)
    assert result["protocol"] == "3dovs"
    views = {v["image_index"]: v for v in result["views"]}
    assert sorted(views) == [0, 5]
    semantics = dataset.metadata["semantics"]
    with torch.no_grad():
        for idx in range(len(dataset)):
            data = dataset[idx]
            image_index = dataset.metadata["image_indices"][idx]
            assert data["segmentation_masks"].dtype == torch.uint8  # the values; the protocol thresholds them
            outputs = model.get_outputs_for_camera(dataset.cameras[idx : idx + 1])
            image_metrics, _ = model.get_image_metrics_and_images(outputs, data)
            assert image_metrics["miou"] == pytest.approx(views[image_index]["miou"], abs=1e-12)
            assert image_metrics["accuracy"] == pytest.approx(views[image_index]["accuracy"], abs=1e-12)

            # 3D-OVS's own reading of the mask files (llff.py; no resize at downsample 1) and scoring (renderer.py)
            files = semantics.annotated_masks[image_index]
            gt = [(np.array(Image.open(files[n]).convert("L")) / 255.0).astype(np.int8) for n in semantics.class_names]
            pred = outputs["segmentation_class"][..., 0].long()
            ref_iou, ref_accuracy = _sklearn_view(pred, torch.from_numpy(np.stack(gt)).bool(), metrics)
            assert image_metrics["miou"] == pytest.approx(float(np.mean(ref_iou)), abs=1e-12)
            assert image_metrics["accuracy"] == pytest.approx(ref_accuracy, abs=1e-12)


def test_score_teacher_scores_the_teachers_own_2d_segmentation(tiny_scene):
    """A clean label-map teacher with 1-pixel tiles segments every labelled pixel right: its 2D mIoU is exactly 1
    under the labelled rules, whatever the (untrained) model predicts; a coarse, noisy teacher scores below it."""
    from tests.conftest import tiny_pipeline_config

    config = tiny_pipeline_config(tiny_scene)
    config.datamanager.teacher_image_scale = 1.0
    config.label_teacher.tile_size = 1
    pipeline = config.setup(device="cpu", test_mode="test")
    exact = evaluate_pipeline(pipeline, protocol="labelled", score_teacher=True)["teacher"]
    assert exact["miou"] == pytest.approx(1.0) and exact["accuracy"] == pytest.approx(1.0)

    config = tiny_pipeline_config(tiny_scene)
    config.label_teacher.tile_size = 16
    config.label_teacher.label_noise = 0.5
    pipeline = config.setup(device="cpu", test_mode="test")
    result = evaluate_pipeline(pipeline, score_teacher=True)
    assert result["teacher"]["miou"] < 0.9
    assert set(result["teacher"]["per_class_iou"]) == set(result["per_class_iou"])
    assert "teacher" not in evaluate_pipeline(pipeline)


def test_score_teacher_also_scores_it_in_the_runs_space(tiny_scene, capsys):
    """--score-teacher reports the teacher twice: in CLIP's space and where the run scores its own features. Without
    centring both are the same segmentation; with it, a second, like-for-like column is printed."""
    from laser_ns.eval.evaluate import print_result
    from tests.conftest import tiny_pipeline_config

    config = tiny_pipeline_config(tiny_scene)
    config.label_teacher.tile_size = 16
    config.label_teacher.label_noise = 0.5
    config.model.centre_teacher_features = False
    result = evaluate_pipeline(config.setup(device="cpu", test_mode="test"), score_teacher=True)
    assert result["teacher_in_run_space"] == result["teacher"]

    config.model.centre_teacher_features = True
    result = evaluate_pipeline(config.setup(device="cpu", test_mode="test"), score_teacher=True)
    assert set(result["teacher_in_run_space"]["per_class_iou"]) == set(result["per_class_iou"])
    assert 0.0 < result["teacher_in_run_space"]["miou"] <= 1.0
    print_result(result)
    out = capsys.readouterr().out
    assert "scored in the run's space (like for like): mIoU" in out and "in run space" in out
