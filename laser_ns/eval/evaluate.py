"""Closed-set evaluation on a scene's annotated views (the 3D-OVS protocol, METHOD.md section 9).

``laser-eval --load-config outputs/.../config.yml`` renders every annotated view, scores the predicted class per
pixel against the masks, and writes ``metrics.json`` plus side-by-side images (RGB | prediction | ground truth).
The same function runs on a live pipeline, so numbers during training and on a checkpoint agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image

from laser_ns.eval.metrics import aggregate, iou_by_class, segmentation_metrics


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)


@torch.no_grad()
def evaluate_pipeline(pipeline, output_dir: Path | None = None, downscale: float = 1.0) -> dict[str, Any]:
    """mIoU / accuracy over the annotated views of ``pipeline``'s eval split; optionally writes images + JSON."""
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    class_names = list(model.class_names)
    if not class_names:
        raise ValueError("This scene has no classes (no segmentations/classes.txt or labels/): nothing to evaluate.")
    model.eval()
    views = []
    for idx in range(len(dataset)):
        data = dataset[idx]
        if "segmentation_masks" not in data:
            continue
        camera = dataset.cameras[idx : idx + 1]
        masks = data["segmentation_masks"]  # [H, W, C]
        if downscale != 1.0:
            camera.rescale_output_resolution(1.0 / downscale)
            size = (int(camera.height[0, 0]), int(camera.width[0, 0]))
            masks = torch.nn.functional.interpolate(masks.permute(2, 0, 1)[None].float(), size=size, mode="nearest")
            masks = masks[0].permute(1, 2, 0) > 0.5
        outputs = model.get_outputs_for_camera(camera.to(model.device))
        pred = outputs["segmentation_class"][..., 0].long().cpu()
        view = segmentation_metrics(pred, masks.permute(2, 0, 1).cpu())
        image_index = dataset.metadata["image_indices"][idx]
        views.append({"image_index": image_index, **view})
        if output_dir is not None:
            colors = model.class_colors.cpu()
            gt = masks.float().argmax(dim=-1)
            gt_rgb = colors[gt] * masks.any(dim=-1, keepdim=True)
            panel = torch.cat([outputs["rgb"].cpu(), colors[pred], gt_rgb], dim=1)
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
    }
    if output_dir is not None:
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


@dataclass
class EvaluateLaser:
    """Evaluate a trained laser checkpoint on the scene's annotated views (3D-OVS protocol)."""

    load_config: Path
    """Path to the config.yml of a laser training run."""
    output_dir: Path = Path("laser_eval")
    """Where metrics.json and the side-by-side images go."""
    downscale: float = 1.0
    """Render and score at this downsampling of the dataset images (the reference uses 8 on full-size 3D-OVS)."""

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup

        _, pipeline, checkpoint, step = eval_setup(self.load_config, test_mode="test")
        result = evaluate_pipeline(pipeline, self.output_dir, self.downscale)
        CONSOLE.print(f"checkpoint {checkpoint} (step {step})")
        print_result(result)
        CONSOLE.print(f"wrote {self.output_dir / 'metrics.json'}")


def print_result(result: dict[str, Any]) -> None:
    CONSOLE.print(f"mIoU {100 * result['miou']:.1f}  accuracy {100 * result['accuracy']:.1f}")
    for name, iou in result["per_class_iou"].items():
        CONSOLE.print(f"  {name:>24s}: " + ("absent" if iou is None else f"{100 * iou:.1f}"))


def entrypoint() -> None:
    tyro.cli(EvaluateLaser).main()
