"""Export accuracy on a generated scene: precision and recall of the exported points per class, localisation, time.

    python benchmarks/export_accuracy.py --steps 2000 --output benchmarks/export_accuracy.json
    python benchmarks/export_accuracy.py --load-config <run of a generated scene>/config.yml

Trains laser-lite on a generated preset with the label-map teacher (hashed text), or loads a finished run of one,
then exports with ``render_labelled_cloud`` + ``extract_object`` (what ``laser-export --objects`` runs) and scores
against the generator's exact geometry, in the original (generator) frame:

- precision of class c: the fraction of the points exported for c that lie within ``--tolerance`` of c's true
  surface; for the scene cloud's class-c points ("labelled") and for the extracted object ("object", floaters
  removed);
- recall of class c: the fraction of c's visible true surface (every pixel-centre hit of class c in the training
  views, from the generator's ray caster) that has an exported object point of c within ``--tolerance``;
- localisation: whether ``laser-locate``'s best point lies in c's true box (classes with a bounded box only);
- the time of the export (rendering the cloud; object extraction) on this machine.
"""

from __future__ import annotations

import copy
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro


@dataclass
class ExportAccuracy:
    """Precision / recall of laser-export on a generated scene."""

    output: Path = Path("benchmarks/export_accuracy.json")
    """JSON with every number, the settings and the machine."""
    load_config: Path | None = None
    """A finished run of a generated scene (its data folder must hold synthetic_scene.json); None: train one."""
    workdir: Path = Path("/tmp/laser_export_accuracy")
    """Scene and run when training."""
    preset: str = "tabletop"
    """Generated scene preset (when training)."""
    steps: int = 2000
    """laser-lite training steps (when training)."""
    num_views: int = 24
    """Views of the generated scene (when training)."""
    width: int = 128
    """Image width (when training)."""
    height: int = 96
    """Image height (when training)."""
    seed: int = 0
    """Scene and training seed."""
    num_points: int = 100_000
    """Rays cast by the export."""
    tolerance: float = 0.05
    """Distance to the true surface, in the generator's world units, under which a point counts as on it."""
    threads: int = 1
    """torch CPU threads."""

    def main(self) -> None:
        from scipy.spatial import cKDTree

        from laser_ns.export.locate import localise
        from laser_ns.export.objects import extract_object
        from laser_ns.export.point_cloud import render_labelled_cloud
        from laser_ns.export.run import ExportError, load_run
        from laser_ns.scenes import PRESETS, camera_poses, cast_rays, intrinsics_from_fov, pixel_rays

        torch.set_num_threads(self.threads)
        config_path = self.load_config or self.train()
        run = load_run(config_path)
        scene_dir = Path(run.pipeline.datamanager.config.dataparser.data)
        marker = json.loads((scene_dir / "synthetic_scene.json").read_text())
        spec = PRESETS[marker["preset"]](marker["seed"])
        names = spec.class_names

        start = time.perf_counter()
        cloud = render_labelled_cloud(run.pipeline, names, num_points=self.num_points, queries_as_classes=True)
        render_seconds = time.perf_counter() - start
        original = run.frames.to_original(cloud.points)

        # visible true surface of each class: pixel-centre hits of every training view
        c2ws = camera_poses(spec.rig, marker["num_views"])
        intrinsics = intrinsics_from_fov(spec.fov_x_deg, marker["width"], marker["height"])
        labels = spec.primitive_labels()
        truth_points, truth_labels = [], []
        for c2w in c2ws:
            o, d = pixel_rays(c2w, intrinsics, marker["width"], marker["height"])
            o, d = o.reshape(-1, 3), d.reshape(-1, 3)
            hits = cast_rays(spec.primitives, o, d)
            hit = hits.index >= 0
            truth_points.append(o[hit] + d[hit] * hits.t[hit, None])
            truth_labels.append(labels[hits.index[hit]])
        truth_points, truth_labels = np.concatenate(truth_points), np.concatenate(truth_labels)

        per_class: dict[str, Any] = {}
        extract_seconds = 0.0
        for k, name in enumerate(names):
            entry: dict[str, Any] = {"labelled_points": int((cloud.classes == k).sum())}
            if entry["labelled_points"]:
                d = spec.class_surface_distance(name, original[cloud.classes == k])
                entry["labelled_precision"] = float(np.mean(d < self.tolerance))
            t0 = time.perf_counter()
            try:
                obj = extract_object(cloud, name)
            except ExportError as error:
                entry["error"] = str(error)
                per_class[name] = entry
                continue
            extract_seconds += time.perf_counter() - t0
            points = run.frames.to_original(obj.cloud.points)
            entry["object_points"] = len(points)
            entry["object_precision"] = float(np.mean(spec.class_surface_distance(name, points) < self.tolerance))
            truth = truth_points[truth_labels == k]
            distance, _ = cKDTree(points).query(truth, k=1)
            entry["recall"] = float(np.mean(distance < self.tolerance))
            entry["visible_truth_points"] = len(truth)
            bounds = spec.class_bounds(name)
            if bounds is not None:
                found = localise(cloud, name).in_frames(run.frames)["original_frame"]
                best = np.asarray(found["best_point"])
                entry["best_point_in_true_box"] = bool(np.all(best >= bounds[0]) and np.all(best <= bounds[1]))
            per_class[name] = entry
            print(f"{name:>14s}: {json.dumps(entry)}", flush=True)

        report = {
            "command": shlex.join(["python", *sys.argv]),
            "config": str(config_path),
            "checkpoint_step": run.step,
            "scene": marker,
            "settings": {k: str(v) for k, v in vars(self).items()},
            "num_points": len(cloud),
            "seconds": {"render_cloud": render_seconds, "extract_objects": extract_seconds},
            "per_class": per_class,
            "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                        "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        }  # fmt: skip
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(report, indent=2))
        print(markdown(report))
        print(f"wrote {self.output}")

    def train(self) -> Path:
        from laser_ns.method_configs import laser_lite_config
        from laser_ns.scenes import make_scene

        torch.manual_seed(self.seed)
        scene = self.workdir / "scene"
        make_scene(scene, self.preset, seed=self.seed, num_views=self.num_views, width=self.width, height=self.height)
        config = copy.deepcopy(laser_lite_config())
        config.max_num_iterations = self.steps
        config.vis = "tensorboard"
        config.output_dir = self.workdir / "runs"
        config.experiment_name, config.timestamp = self.preset, "export_accuracy"
        config.steps_per_eval_image = config.steps_per_eval_all_images = config.steps_per_eval_batch = 10**9
        config.pipeline.datamanager.data = scene
        config.pipeline.teacher_type = "labels"
        config.pipeline.label_teacher.text_encoder = "hashed"
        config.save_config()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.train()
        return config.get_base_dir() / "config.yml"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    rows = [
        "| class | labelled points | labelled precision | object points | object precision | recall "
        "| best point in box |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in report["per_class"].items():
        inside = e.get("best_point_in_true_box")
        rows.append(
            f"| {name} | {e['labelled_points']} | {_pct(e.get('labelled_precision'))} | {e.get('object_points', 0)} | "
            f"{_pct(e.get('object_precision'))} | {_pct(e.get('recall'))} | "
            f"{'-' if inside is None else ('yes' if inside else 'no')} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    tyro.cli(ExportAccuracy).main()
