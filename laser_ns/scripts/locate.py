"""``laser-locate``: where is "red mug"? The 3D point of highest relevancy and the box of the relevant region.

    laser-locate --load-config outputs/.../config.yml "red mug" "chair" --output locate.json

prints, per query, the best point and the axis-aligned box in the dataparser frame (the viewer's) and in the
original capture frame, and writes the same as JSON (see :mod:`laser_ns.export.locate`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from laser_ns.errors import ExportError, run_tool
from laser_ns.export.objects import ClusterSettings, Selection
from laser_ns.predictor import split_texts


@dataclass
class LocateLaser:
    """Localise text queries in a trained laser run (LERF-style localisation)."""

    load_config: Path
    """config.yml of a laser training run."""
    queries: tyro.conf.Positional[list[str]] = field(default_factory=list)
    """What to find: one or more texts (each may also hold several separated by ';')."""
    output: Path = Path("locate.json")
    """JSON file with every query's best point and box in both frames."""
    selection: Selection = "segmentation"
    """The relevant region: the query's closed-set points ('segmentation') or relevancy >= threshold ('relevancy')."""
    relevancy_threshold: float = 0.6
    """With --selection relevancy: the relevancy a point needs to be part of the region."""
    num_points: int = 100_000
    """Rays cast through random training pixels."""
    num_rays_per_batch: int | None = None
    """Rays rendered per forward pass; default: the model's eval_num_rays_per_chunk."""
    cluster_eps: float | None = None
    """DBSCAN radius for dropping floating clusters from the region (dataparser units); default: automatic."""
    min_cluster_fraction: float = 0.1
    """Region clusters smaller than this fraction of its largest cluster are dropped."""
    seed: int = 0
    """Seed of the random rays."""

    def main(self) -> None:
        from laser_ns.errors import check_output_dir, warn
        from laser_ns.export.locate import localise
        from laser_ns.export.point_cloud import render_labelled_cloud
        from laser_ns.export.run import geometry_warnings, load_run

        queries = [q for text in self.queries for q in split_texts(text)]
        queries = list(dict.fromkeys(queries))
        if not queries:
            raise ExportError('Give a query to locate, e.g. laser-locate --load-config config.yml "red mug".')
        check_output_dir(self.output.parent, "--output")
        start = time.perf_counter()
        run = load_run(self.load_config)
        cloud = render_labelled_cloud(
            run.pipeline,
            queries,
            num_points=self.num_points,
            queries_as_classes=self.selection == "segmentation",
            num_rays_per_batch=self.num_rays_per_batch,
            seed=self.seed,
        )
        warnings = geometry_warnings(run, cloud.points)
        for warning in warnings:
            warn(warning)
        clusters = ClusterSettings(eps=self.cluster_eps, min_cluster_fraction=self.min_cluster_fraction)
        results = []
        for query in queries:
            found = localise(cloud, query, self.selection, self.relevancy_threshold, clusters)
            results.append(found.in_frames(run.frames))
            print_localisation(results[-1])
        report = {
            "config": str(run.config_path),
            "checkpoint_step": run.step,
            "transform_source": run.frames.source,
            "num_points": len(cloud),
            "seconds": round(time.perf_counter() - start, 2),
            "queries": results,
            "warnings": warnings,
        }
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(report, indent=2))
        CONSOLE.print(f"[laser_ns] wrote {self.output}")


def _xyz(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:+.4f}" for v in values) + ")"


def print_localisation(result: dict) -> None:
    """Prints one query's best point and box in both frames."""
    CONSOLE.print(
        f"[bold]{escape(result['query'])}[/bold]: {result['num_points']} points, "
        f"best relevancy {result['best_relevancy']:.3f}",
        highlight=False,
    )
    for frame in ("dataparser_frame", "original_frame"):
        entry = result[frame]
        CONSOLE.print(
            f"  {frame.replace('_', ' '):>16s}: best point {_xyz(entry['best_point'])}  "
            f"box {_xyz(entry['box_min'])} .. {_xyz(entry['box_max'])}",
            highlight=False,
        )


def entrypoint() -> None:
    run_tool("laser-locate", tyro.cli(LocateLaser).main)


if __name__ == "__main__":
    entrypoint()
