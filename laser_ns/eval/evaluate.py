"""Closed-set evaluation on a scene's annotated views (the 3D-OVS protocol, METHOD.md section 9).

``laser-eval --load-config outputs/.../config.yml`` renders every annotated view, scores the predicted class per
pixel against the masks, and writes ``metrics.json`` plus side-by-side images (RGB | prediction | ground truth).
The same function runs on a live pipeline, so numbers during training and on a checkpoint agree.
"""

from __future__ import annotations

import json
import re
import zipfile
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
            colors = model.predictor.class_colors.cpu()
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

        if not self.load_config.is_file():
            raise RunError(f"{self.load_config} does not exist. Pass the config.yml of a training run (outputs/...).")
        _, pipeline, checkpoint, step = eval_setup(
            self.load_config, test_mode="test", update_config_callback=lambda c: prepare_run(c, self.load_config)
        )
        result = evaluate_pipeline(pipeline, self.output_dir, self.downscale)
        CONSOLE.print(f"checkpoint {checkpoint} (step {step})")
        print_result(result)
        CONSOLE.print(f"wrote {self.output_dir / 'metrics.json'}")


class RunError(ValueError):
    """A training run cannot be evaluated (missing or unreadable checkpoint...); the message names the file."""


def latest_checkpoint(folder: Path) -> Path:
    """The checkpoint of the highest step in ``folder``; a clear error when there is none."""
    steps = {}
    for path in folder.glob("step-*.ckpt") if folder.is_dir() else []:
        match = re.fullmatch(r"step-(\d+)\.ckpt", path.name)
        if match:
            steps[int(match.group(1))] = path
    if not steps:
        what = "holds no checkpoint (step-*.ckpt)" if folder.is_dir() else "does not exist"
        raise RunError(
            f"{folder} {what}. Training writes one every --steps-per-save steps and at the end: let the run finish "
            "(or train longer than one save interval), or pass the config.yml of a run that has checkpoints."
        )
    return steps[max(steps)]


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint whose file is cut short (torch saves a zip; a truncated one has no central directory)."""
    try:
        with zipfile.ZipFile(path):
            pass
    except (zipfile.BadZipFile, OSError) as error:
        size = path.stat().st_size if path.exists() else 0
        raise RunError(
            f"Cannot read checkpoint {path} ({size} bytes: {error}); it is truncated or corrupt, e.g. training was "
            "stopped while saving it. Delete it (laser-eval then takes the previous one, if the run kept one), or "
            "train again."
        ) from error


def prepare_run(config: Any, config_path: Path) -> Any:
    """Point a saved config at its checkpoints and scene from any folder, and check its latest checkpoint."""
    from laser_ns.trainer_config import locate_saved_run

    locate_saved_run(config, config_path)
    checkpoint = latest_checkpoint(config.get_checkpoint_dir())
    check_checkpoint(checkpoint)
    config.load_step = int(checkpoint.stem.split("-")[1])  # so nerfstudio loads exactly the checked file
    return config


def print_result(result: dict[str, Any]) -> None:
    CONSOLE.print(f"mIoU {100 * result['miou']:.1f}  accuracy {100 * result['accuracy']:.1f}")
    for name, iou in result["per_class_iou"].items():
        CONSOLE.print(f"  {name:>24s}: " + ("absent" if iou is None else f"{100 * iou:.1f}"))


def entrypoint() -> None:
    try:
        tyro.cli(EvaluateLaser).main()
    except RunError as err:
        raise SystemExit(f"laser-eval: {err}") from None
