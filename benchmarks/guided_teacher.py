"""The teacher's own 2D segmentation with colour-guided upsampling, beside its plain one (nearest tile).

``language_targets 'colour-guided'`` trains the field on the teacher's tiles upsampled at each ray's point, guided by
the image's colours. Part of what that gains in 3D may be the upsampling alone, which needs no 3D at all. This script
scores that 2D baseline: every pixel of the annotated views gets ``colour_guided_targets`` at its centre, with the
datamanager's widths, and the class whose text is closest, as the teacher 2D column of ``benchmarks/quality.py``
does per tile. It reads the scenes and teacher caches a ``quality.py --workdir`` left, through a saved run of each
scene (nerfstudio's ``eval_setup``).

    python benchmarks/guided_teacher.py --configs /tmp/work/runs/*/*/laser-lite/quality/config.yml --output report.json

Each is scored twice: in CLIP's space (the teacher's features against the class texts, the teacher 2D column of
``quality.py``), and in the run's scoring space (``run_space_nearest``, ``run_space_guided``): the same features
mapped as the run maps its own before scoring (``LaserModel.teacher_in_scoring_space``: centred by the scene's mean
feature, for a centred run). The second is the like-for-like 2D baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import tyro


@dataclass
class GuidedTeacher:
    """Score the teacher's 2D segmentation, nearest tile and colour-guided, on saved runs' annotated views."""

    configs: list[Path]
    """config.yml of saved laser runs (one per scene; the teacher is the one each run trained with)."""
    output: Path | None = None
    """JSON report (per run: nearest and colour-guided mIoU and per-class IoU, in CLIP's and the run's space)."""
    space_sigma: float = 1.0
    """Spatial width of the guided weights, in tiles (the datamanager's default)."""
    colour_sigma: float = 0.1
    """Colour width of the guided weights, RGB in [0, 1] (the datamanager's default)."""

    def main(self) -> None:
        report = {str(path): self.score(path) for path in self.configs}
        for path, result in report.items():
            print(f"{path}: " + ", ".join(f"{key} {100 * value['miou']:.1f}" for key, value in result.items()))
        if self.output is not None:
            self.output.write_text(json.dumps(report, indent=2))

    @torch.no_grad()
    def score(self, config_path: Path) -> dict[str, object]:
        from laser_ns.data.datamanager import colour_guided_targets, guide_colours, teacher_view
        from laser_ns.data.semantics import read_mask_values
        from laser_ns.eval.consistency import teacher_segmentation
        from laser_ns.eval.metrics import aggregate, iou_by_class, view_metrics
        from laser_ns.runs import load_pipeline
        from laser_ns.teachers.cache import FeatureCache

        _, _, pipeline, _, _ = load_pipeline(config_path, "guided_teacher.py")
        dataset = pipeline.datamanager.eval_dataset
        annotated = dataset.metadata["semantics"].annotated_masks
        names = list(pipeline.model.class_names)
        text = F.normalize(pipeline.model.predictor.class_text.float().cpu(), dim=-1)
        config = pipeline.datamanager.config
        images = teacher_view(dataset._dataparser_outputs, config.teacher_image_scale)
        cache = FeatureCache(config.feature_cache_dir(), pipeline.teacher.identity())
        views: dict[str, list] = {"nearest": [], "guided": [], "run_space_nearest": [], "run_space_guided": []}
        model = pipeline.model

        spaces = {  # key prefix -> map of the features before they are scored
            "": lambda features: features,
            "run_space_": lambda features: model.teacher_in_scoring_space(features.to(model.device)).cpu(),
        }

        for idx in range(len(dataset)):
            image_index = dataset.metadata["image_indices"][idx]
            if image_index not in annotated:
                continue
            image = images.get_image_float32(idx)[..., :3]
            height, width = image.shape[:2]
            labels = images.label_map(idx, size=(height, width)) if pipeline.teacher.needs_labels else None
            tiles = cache.features_for_image(pipeline.teacher, image, labels, store=False).float().cpu()  # [h, w, D]
            h, w = tiles.shape[:2]
            masks = torch.from_numpy(read_mask_values(annotated[image_index], names, (width, height)))
            # every pixel centre, in tiles of the grid (the teacher resized the image to whole tiles)
            ys = (torch.arange(height) + 0.5) * h / height
            xs = (torch.arange(width) + 0.5) * w / width
            points = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)  # [H*W, 2]
            cells = points.floor().long()
            guided = colour_guided_targets(
                tiles,
                guide_colours(image, h, w),
                cells[:, 0],
                cells[:, 1],
                points - cells,
                self.space_sigma,
                self.colour_sigma,
            )
            for prefix, to_space in spaces.items():
                guided_pred = (F.normalize(to_space(guided), dim=-1) @ text.T).argmax(dim=-1).reshape(height, width)
                views[f"{prefix}guided"].append(view_metrics(guided_pred, masks, "3dovs"))
                nearest_pred = teacher_segmentation(to_space(tiles), text, height, width)
                views[f"{prefix}nearest"].append(view_metrics(nearest_pred, masks, "3dovs"))
        result = {}
        for key, scored in views.items():
            summary = aggregate(scored)
            result[key] = {"miou": summary["miou"], "per_class_iou": iou_by_class(names, summary["iou_per_class"])}
        return result


if __name__ == "__main__":
    tyro.cli(GuidedTeacher).main()
