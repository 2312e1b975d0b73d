"""Where a saved run's segmentation errors are: how many wrong pixels lie within 1, 2, 3, ... pixels of a class edge
of the ground truth, and which class took which (a confusion matrix), on the scene's annotated views.

Errors all within a pixel or two of the edges say that the classes are right and their boundaries blurred or
shifted; errors far from the edges say that whole regions are misread. The run is loaded through nerfstudio's
``eval_setup`` (``laser_ns.runs.load_pipeline``), as ``laser-eval`` loads it, and scored by 3D-OVS's mask rules.

    python benchmarks/error_bands.py --config outputs/scene/laser-lite/<run>/config.yml
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro


@dataclass
class ErrorBands:
    """Wrong pixels by distance to the ground truth's class edges, and the confusion matrix, of a saved run."""

    config: Path
    """config.yml of a saved laser run whose scene has annotated views."""
    bands: tuple[int, ...] = (1, 2, 3, 4, 6)
    """Band widths in pixels (Chebyshev distance to a change of ground-truth class)."""
    output: Path | None = None
    """JSON report."""

    @torch.no_grad()
    def main(self) -> None:
        from laser_ns.eval.evaluate import annotated_view_outputs
        from laser_ns.eval.metrics import boundary_band, masks_from_values
        from laser_ns.runs import load_pipeline

        _, _, pipeline, _, _ = load_pipeline(self.config, "error_bands.py")
        model = pipeline.model
        model.eval()
        annotated = pipeline.datamanager.eval_dataset.metadata["semantics"].annotated_masks
        names = list(model.class_names)
        wrong_in = dict.fromkeys(self.bands, 0)
        band_pixels = dict.fromkeys(self.bands, 0)
        wrong = labelled = 0
        confusion = torch.zeros(len(names), len(names), dtype=torch.long)  # [ground truth, prediction]
        for _, _, values, outputs in annotated_view_outputs(pipeline, annotated):  # at the image files' size
            masks = masks_from_values(values, "3dovs")  # [C, H, W]
            has_label = masks.sum(dim=0) == 1  # exactly one class: the pixels 3D-OVS can score as right
            truth = masks.float().argmax(dim=0)
            pred = outputs["segmentation_class"][..., 0].long().cpu()
            is_wrong = (pred != truth) & has_label
            for width_px in self.bands:
                band = boundary_band(truth, width_px) & has_label
                wrong_in[width_px] += int((is_wrong & band).sum())
                band_pixels[width_px] += int(band.sum())
            wrong += int(is_wrong.sum())
            labelled += int(has_label.sum())
            confusion += torch.bincount(
                truth[has_label] * len(names) + pred[has_label], minlength=len(names) ** 2
            ).reshape(len(names), len(names))
        report = {
            "config": str(self.config),
            "class_names": names,
            "wrong_pixels": wrong,
            "labelled_pixels": labelled,
            "wrong_within_band": {str(b): wrong_in[b] for b in self.bands},
            "band_pixels": {str(b): band_pixels[b] for b in self.bands},
            "confusion": confusion.tolist(),
        }
        print(f"{wrong} wrong of {labelled} labelled pixels; within the edge band of:")
        for b in self.bands:
            share = wrong_in[b] / max(wrong, 1)
            print(f"  {b} px: {wrong_in[b]} ({100 * share:.0f}% of the errors; {band_pixels[b]} pixels in the band)")
        print("confusion (rows: ground truth, columns: prediction):", names)
        for name, row in zip(names, confusion.tolist(), strict=True):
            print(f"  {name}: {row}")
        if self.output is not None:
            self.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    tyro.cli(ErrorBands).main()
