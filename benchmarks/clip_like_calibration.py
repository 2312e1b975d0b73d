"""The CLIP-like teacher's own 2D segmentation of every generated preset, three seeds (its calibration).

    python benchmarks/clip_like_calibration.py                         # the defaults
    python benchmarks/clip_like_calibration.py '{"view_noise": 0.45}'  # ClipLikeTeacherConfig overrides, as JSON

Each preset is rendered at 160x120 (6 views, all scored by 3D-OVS's rules). Per view, the teacher's tile features
are segmented (each tile's closest class, nearest back to pixels). Prints per-class IoU (with the class's share of the
labelled pixels in brackets), the mean cosine of each tile with its closest class and that class's margin over the
runner-up, the mean mIoU per preset, and the mean IoU of each scene's smallest and largest class (dense CLIP finds
small objects harder; the teacher's region_bleed imitates that). Takes seconds.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from laser_ns.eval.consistency import label_map_to_masks, teacher_segmentation
from laser_ns.eval.metrics import aggregate, segmentation_metrics_3dovs
from laser_ns.scenes import make_scene
from laser_ns.teachers.clip_like import ClipLikeTeacherConfig

PRESETS = ["tabletop", "similar_colors", "thin_parts", "occlusion", "textured"]
SEEDS = (0, 1, 2)
VIEWS = 6


def calibrate(overrides: dict) -> dict[str, float]:
    """Mean teacher 2D mIoU per preset over the seeds; prints one line per preset and seed."""
    torch.set_num_threads(1)
    scores: dict[tuple[str, int], float] = {}
    smallest, largest = [], []  # IoU of each scene's smallest and largest class (by labelled pixels)
    for preset in PRESETS:
        for seed in SEEDS:
            folder = Path(tempfile.gettempdir()) / "laser_calibration" / f"{preset}_{seed}"
            info = make_scene(folder, preset, seed=seed, num_views=VIEWS, width=160, height=120, annotated_views=[])
            teacher = ClipLikeTeacherConfig(seed=seed, **overrides).setup(class_names=info.class_names)
            text = teacher.class_embeddings()
            views, cosines, margins = [], [], []
            for i in range(VIEWS):
                image = torch.from_numpy(np.array(Image.open(info.image_paths[i]))).float()[..., :3] / 255
                labels = torch.from_numpy(info.labels[i].astype(np.int64))
                features = teacher.dense_features(image, labels)
                pred = teacher_segmentation(features, text, info.height, info.width)
                views.append(segmentation_metrics_3dovs(pred, label_map_to_masks(labels, len(info.class_names))))
                tiles = features[features.norm(dim=-1) > 0]
                top = (tiles @ text.T).topk(2, dim=-1).values
                cosines.append(float(top[:, 0].mean()))
                margins.append(float((top[:, 0] - top[:, 1]).mean()))
            summary = aggregate(views)
            scores[(preset, seed)] = summary["miou"]
            counts = np.bincount(np.concatenate([m.ravel() for m in info.labels[:VIEWS]]), minlength=256)
            area = counts[: len(info.class_names)] / counts[: len(info.class_names)].sum()
            ious = summary["iou_per_class"].tolist()
            smallest.append(ious[int(np.argmin(area))])
            largest.append(ious[int(np.argmax(area))])
            per_class = zip(info.class_names, ious, area, strict=True)
            print(
                f"{preset} seed {seed}: mIoU {100 * summary['miou']:.1f} ("
                + ", ".join(f"{name} {100 * iou:.0f} [{100 * share:.0f}%]" for name, iou, share in per_class)
                + f"); closest-class cosine {np.mean(cosines):.3f}, margin {np.mean(margins):.3f}",
                flush=True,
            )
    means = {p: float(np.mean([scores[(p, s)] for s in SEEDS])) for p in PRESETS}
    for preset, value in means.items():
        print(f"{preset}: {100 * value:.1f}")
    print(f"mean over presets: {100 * np.mean(list(means.values())):.1f}")
    small, large = 100 * np.mean(smallest), 100 * np.mean(largest)
    print(f"IoU of each scene's smallest class (mean over presets and seeds) {small:.1f}, largest class {large:.1f}")
    return means


if __name__ == "__main__":
    calibrate(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
