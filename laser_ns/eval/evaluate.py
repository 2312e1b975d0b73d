"""Closed-set evaluation on a scene's annotated views, by default exactly as 3D-OVS evaluates
(docs/method.md#3d-ovs-data-format-and-metric).

``laser-eval --load-config outputs/.../config.yml`` renders every annotated view, scores the predicted class per
pixel against the masks, and writes ``metrics.json`` plus side-by-side images (RGB | prediction | ground truth).
The same function runs on a live pipeline, so numbers during training and on a checkpoint agree.

``--protocol 3dovs`` (default) follows 3D-OVS's own evaluator (``renderer.py`` ``evaluation_segmentation_test`` and
``dataLoader/llff.py``), so the numbers compare with published ones:

- Size: with ``--downscale d`` the view is scored at ``(int(W / d), int(H / d))`` for an image file of W x H pixels
  (their ``img_wh``; the reference uses d = 8). ``d`` is relative to the image files, whatever the training's
  ``camera_res_scale_factor``.
- Rays and masks cover the same area: the camera is squeezed to that size per axis (fx, cx times w'/W; fy, cy times
  h'/H), as llff.py scales its focal length, so the rays span the whole image even when W or H is not a multiple of d
  (nerfstudio's ``rescale_output_resolution`` floors the size with one factor, and its rays then cover a crop).
- Masks: each class's PNG is read as PIL "L", resized with PIL NEAREST to that size (the pixel under each output
  pixel's centre), and a pixel is in the class only when its value is exactly 255 (their ``int8(v / 255.0)``, after
  the resize).
- Per view: GT is the [pixels, classes] indicator matrix, the prediction the one-hot of the argmax class;
  per-class IoU is ``jaccard_score(gt, pred, average=None)`` (a class absent from both scores 0 and is averaged into
  the view's mIoU) and accuracy is ``accuracy_score(gt, pred)``, subset accuracy (a pixel in no mask or in two masks
  is always wrong). mIoU and accuracy are averaged over the annotated views.

``--protocol labelled`` is ours: unlabelled pixels ignored, classes absent from both skipped (a mask pixel counts when
its value is above 127; an overlapping pixel is right when the prediction matches any of its masks). It renders and
resamples the masks exactly as above; only the scoring differs (:mod:`laser_ns.eval.metrics`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image

from laser_ns.data.semantics import image_size, read_mask_values
from laser_ns.eval.metrics import (
    DEFAULT_PROTOCOL,
    Protocol,
    aggregate,
    check_protocol,
    iou_by_class,
    masks_from_values,
    view_metrics,
)
from laser_ns.runs import load_pipeline, read_run_config


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)


def scored_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """(width, height) a W x H image is scored at: 3D-OVS's ``img_wh = int(W / downsample), int(H / downsample)``."""
    if downscale <= 0:
        raise ValueError(f"downscale must be positive (8 for the reference's 1/8 size), got {downscale}.")
    size = (int(width / downscale), int(height / downscale))
    if min(size) < 1:
        raise ValueError(f"downscale {downscale} shrinks a {width}x{height} image to nothing; use a smaller one.")
    return size


def squeeze_camera(camera: Cameras, width: int, height: int) -> Cameras:
    """A copy of ``camera`` rendering its whole field of view at ``width`` x ``height`` pixels.

    fx, cx scale by width / W and fy, cy by height / H, as 3D-OVS's llff.py scales its focal length per axis, so the
    ray through the centre of output pixel (i, j) passes through the centre of the matching block of the full image.
    """
    squeezed = copy.deepcopy(camera)
    scale_x = width / camera.width.to(camera.fx)  # [N, 1]
    scale_y = height / camera.height.to(camera.fy)
    squeezed.fx, squeezed.cx = camera.fx * scale_x, camera.cx * scale_x
    squeezed.fy, squeezed.cy = camera.fy * scale_y, camera.cy * scale_y
    squeezed.width = torch.full_like(camera.width, width)
    squeezed.height = torch.full_like(camera.height, height)
    return squeezed


@torch.no_grad()
def teacher_prediction(
    pipeline, teacher_images, idx: int, width: int, height: int, cache: Any, store: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's own 2D segmentation of eval image ``idx`` at ``width x height``: each tile's closest class
    (nearest back to pixels), with the tiles scored in CLIP's space (as dense CLIP is used by itself) and in the run's
    scoring space (``LaserModel.teacher_in_scoring_space``: centred like the run's features, for a like-for-like
    comparison). ``teacher_images`` is the eval dataset as the teacher sees it in training (``teacher_image_scale``
    of the files); ``cache`` (a FeatureCache) is the training's: a view it holds is not computed again, and a
    computed one is stored when ``store``."""
    from laser_ns.eval.consistency import teacher_segmentation

    teacher = pipeline.teacher  # a label-map teacher got the scene's class names when the pipeline was built
    model = pipeline.model
    image = teacher_images.get_image_float32(idx)[..., :3]
    labels = teacher_images.label_map(idx, size=(image.shape[0], image.shape[1])) if teacher.needs_labels else None
    features = cache.features_for_image(teacher, image, labels, store=store).float().to(model.device)
    text = model.predictor.class_text.float().to(model.device)
    in_run_space = model.teacher_in_scoring_space(features)
    return (
        teacher_segmentation(features, text, height, width).cpu(),
        teacher_segmentation(in_run_space, text, height, width).cpu(),
    )


@torch.no_grad()
def annotated_view_outputs(
    pipeline, annotated: dict[int, dict[str, Path]], downscale: float = 1.0
) -> Iterator[tuple[int, int, torch.Tensor, dict[str, torch.Tensor]]]:
    """Renders each annotated view of ``pipeline``'s eval split at ``downscale`` of its image file's size (see the
    module docstring), one at a time. Yields the view's dataset index, its image index, its mask values ``[C, h, w]``
    read at that size, and the model's outputs. ``annotated`` maps image indices to their class masks' paths."""
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    class_names = list(model.class_names)
    # Cameras at the image files' size: the dataset's own are rescaled by camera_res_scale_factor.
    file_cameras = dataset._dataparser_outputs.cameras
    for idx in range(len(dataset)):
        image_index = dataset.metadata["image_indices"][idx]
        if image_index not in annotated:
            continue
        mask_paths = annotated[image_index]
        camera = file_cameras[idx : idx + 1]
        full_size = int(camera.width[0, 0]), int(camera.height[0, 0])
        mask_size = image_size(next(iter(mask_paths.values())))
        if mask_size != full_size:
            raise ValueError(
                f"The masks of view {image_index} are {mask_size[0]}x{mask_size[1]} but its camera is "
                f"{full_size[0]}x{full_size[1]}; the masks must have the image file's size."
            )
        width, height = scored_size(*full_size, downscale)
        mask_values = torch.from_numpy(read_mask_values(mask_paths, class_names, (width, height)))  # [C, h, w]
        yield (
            idx,
            image_index,
            mask_values,
            model.get_outputs_for_camera(squeeze_camera(camera, width, height).to(model.device)),
        )


@torch.no_grad()
def evaluate_pipeline(
    pipeline,
    output_dir: Path | None = None,
    downscale: float = 1.0,
    protocol: Protocol = DEFAULT_PROTOCOL,
    score_teacher: bool = False,
) -> dict[str, Any]:
    """mIoU / accuracy over the annotated views of ``pipeline``'s eval split under ``protocol`` (see the module
    docstring), at ``downscale`` of the image files' size; optionally writes images + JSON. With ``score_teacher``,
    ``result["teacher"]`` scores the teacher's own 2D segmentation of the same views by the same rules, and
    ``result["teacher_in_run_space"]`` the same tiles scored in the run's space (see :func:`teacher_prediction`)."""
    check_protocol(protocol)
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    class_names = list(model.class_names)
    if not class_names:
        raise ValueError("This scene has no classes (no segmentations/classes.txt or labels/): nothing to evaluate.")
    semantics = dataset.metadata.get("semantics")
    annotated = semantics.annotated_masks if semantics is not None else {}
    if annotated and list(semantics.class_names) != class_names:
        raise ValueError(
            f"The model's classes {class_names} differ from the scene's {list(semantics.class_names)}; evaluate the "
            "checkpoint on the scene it was trained on."
        )
    model.eval()
    views, teacher_views, teacher_run_views = [], [], []
    if score_teacher:
        from laser_ns.data.datamanager import teacher_view
        from laser_ns.teachers.cache import FeatureCache

        config = pipeline.datamanager.config
        teacher_images = teacher_view(dataset._dataparser_outputs, config.teacher_image_scale)
        cache = FeatureCache(config.feature_cache_dir(), pipeline.teacher.identity())
        store = cache.writable()  # a read-only cache is read, not written
    for idx, image_index, mask_values, outputs in annotated_view_outputs(pipeline, annotated, downscale):
        height, width = mask_values.shape[1:]
        pred = outputs["segmentation_class"][..., 0].long().cpu()
        view = view_metrics(pred, mask_values, protocol)
        views.append({"image_index": image_index, **view})
        if score_teacher:
            teacher_pred, teacher_run_pred = teacher_prediction(
                pipeline, teacher_images, idx, width, height, cache, store
            )
            teacher_views.append(view_metrics(teacher_pred, mask_values, protocol))
            teacher_run_views.append(view_metrics(teacher_run_pred, mask_values, protocol))
        if output_dir is not None:
            masks = masks_from_values(mask_values, protocol).permute(1, 2, 0)  # [h, w, C]
            colors = model.predictor.class_colors.cpu()
            gt = masks.float().argmax(dim=-1)
            gt_rgb = colors[gt] * masks.any(dim=-1, keepdim=True)
            panel = torch.cat([outputs["rgb"].cpu(), colors[pred.clamp(0, len(colors) - 1)], gt_rgb], dim=1)
            output_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_to_uint8(panel)).save(output_dir / f"view_{image_index:03d}.png")
    if not views:
        raise ValueError("The eval split has no annotated views (segmentations/<i>/): nothing to evaluate.")
    summary = aggregate(views)
    result = {
        "class_names": class_names,
        "miou": summary["miou"],
        "accuracy": summary["accuracy"],
        "per_class_iou": iou_by_class(class_names, summary["iou_per_class"]),
        "views": [{"image_index": v["image_index"], "miou": v["miou"], "accuracy": v["accuracy"]} for v in views],
        "downscale": downscale,
        "protocol": protocol,
    }
    for key, scored in (("teacher", teacher_views), ("teacher_in_run_space", teacher_run_views)):
        if scored:
            teacher_summary = aggregate(scored)
            result[key] = {
                "miou": teacher_summary["miou"],
                "accuracy": teacher_summary["accuracy"],
                "per_class_iou": iou_by_class(class_names, teacher_summary["iou_per_class"]),
            }
    if output_dir is not None:
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


@dataclass
class EvaluateLaser:
    """Evaluate a trained laser checkpoint on the scene's annotated views (by default exactly as 3D-OVS does)."""

    load_config: Path
    """Path to the config.yml of a laser training run."""
    output_dir: Path = Path("laser_eval")
    """Where metrics.json and the side-by-side images go."""
    downscale: float = 1.0
    """Render and score at (int(W / downscale), int(H / downscale)) for W x H image files (the reference uses 8)."""
    protocol: Protocol = DEFAULT_PROTOCOL
    """3dovs: exactly 3D-OVS's evaluator (mask pixel = value 255; a class absent from both scores 0 and is averaged
    in; unlabelled or overlapping pixels are wrong). labelled: ours: unlabelled pixels ignored, classes absent from
    both skipped."""
    score_teacher: bool = False
    """Also score the teacher's own 2D segmentation of the same views (its tiles' closest classes), to show what 3D
    fusion added: in CLIP's space, and in the run's scoring space (centred like the run's features: the like-for-like
    baseline). Runs the teacher on each annotated view (needs its weights for dense CLIP)."""

    def main(self) -> None:
        from laser_ns.errors import check_output_dir

        # every check before the expensive work: a laser run, a readable checkpoint, a writable output folder
        read_run_config(self.load_config, "laser-eval")
        check_output_dir(self.output_dir, "--output-dir")
        _, _, pipeline, checkpoint, step = load_pipeline(self.load_config, "laser-eval", test_mode="test")
        result = evaluate_pipeline(pipeline, self.output_dir, self.downscale, self.protocol, self.score_teacher)
        CONSOLE.print(f"checkpoint {checkpoint} (step {step})")
        print_result(result)
        CONSOLE.print(f"wrote {self.output_dir / 'metrics.json'}")


def print_result(result: dict[str, Any]) -> None:
    CONSOLE.print(
        f"mIoU {100 * result['miou']:.1f}  accuracy {100 * result['accuracy']:.1f}  "
        f"({result.get('protocol', DEFAULT_PROTOCOL)} protocol, downscale {result['downscale']})"
    )
    teacher, in_run_space = result.get("teacher"), result.get("teacher_in_run_space")
    if teacher is not None:
        CONSOLE.print(f"teacher's own 2D: mIoU {100 * teacher['miou']:.1f}  accuracy {100 * teacher['accuracy']:.1f}")
    if in_run_space is not None:
        CONSOLE.print(
            f"teacher's 2D scored in the run's space (like for like): mIoU {100 * in_run_space['miou']:.1f}  "
            f"accuracy {100 * in_run_space['accuracy']:.1f}"
        )
    columns = [("teacher 2D", teacher), ("in run space", in_run_space)]
    columns = [(title, scores) for title, scores in columns if scores is not None]
    CONSOLE.print(f"  {'class':>24s}  Laser 3D" + "".join(f"  {title:>12s}" for title, _ in columns))
    for name, iou in result["per_class_iou"].items():
        line = f"  {name:>24s}: " + ("  absent" if iou is None else f"{100 * iou:8.1f}")
        for _, scores in columns:
            other = scores["per_class_iou"][name]
            line += f"  {'absent':>12s}" if other is None else f"  {100 * other:12.1f}"
        CONSOLE.print(line)


def entrypoint() -> None:
    from laser_ns.errors import run_tool

    command = tyro.cli(EvaluateLaser)
    run_tool("laser-eval", command.main)
