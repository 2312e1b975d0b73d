"""``laser-export``: a trained laser run as a labelled point cloud, plus one point cloud (and mesh) per object.

    laser-export --load-config outputs/.../config.yml --output-dir export/ --objects "red apple; green ball"

writes ``point_cloud.ply`` (x y z, colour, class, relevancy_<i> per query, optional normals), ``legend.json``
(class names and colours, queries, frame, transform to the capture frame) and, per object,
``objects/<name>.ply`` (and ``objects/<name>_mesh.ply`` with ``--meshes``). Points come from nerfstudio's own
point-cloud generator (see :mod:`laser_ns.export.point_cloud`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from laser_ns.errors import ExportError
from laser_ns.export.objects import ClusterSettings, Selection
from laser_ns.predictor import split_texts


def file_stem(text: str, taken: set[str]) -> str:
    """A file-name-safe, unique stem for a query ('red mug' -> 'red_mug')."""
    stem = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()[:60] or "query"
    unique, n = stem, 2
    while unique in taken:
        unique, n = f"{stem}_{n}", n + 1
    taken.add(unique)
    return unique


@dataclass
class ExportLaser:
    """Export a laser run's labelled point cloud, and one object per text query."""

    load_config: Path
    """config.yml of a laser training run."""
    output_dir: Path = Path("laser_export")
    """Where point_cloud.ply, legend.json and objects/ go."""
    queries: str | None = None
    """';'-separated texts stored as relevancy_<i> per point; default: the run's queries (its classes)."""
    objects: str | None = None
    """';'-separated texts to extract, one PLY each (e.g. "red mug; chair"); they are added to the queries."""
    selection: Selection = "segmentation"
    """Which points make an object: 'segmentation' (its closed-set class, queries joining the scene's classes;
    no threshold to tune) or 'relevancy' (relevancy >= --relevancy-threshold)."""
    relevancy_threshold: float = 0.6
    """With --selection relevancy: the relevancy a point needs to belong to an object (0.5 = no preference)."""
    num_points: int = 300_000
    """Rays cast through random training pixels; points left after opacity and outlier filtering are fewer."""
    num_rays_per_batch: int | None = None
    """Rays rendered per forward pass; default: the model's eval_num_rays_per_chunk."""
    normals: bool = False
    """Estimate normals (open3d, oriented against the viewing rays) and store nx, ny, nz."""
    meshes: bool = False
    """Also write a Poisson mesh per object (objects/<name>_mesh.ply); implies --normals."""
    mesh_depth: int = 8
    """Octree depth of Poisson meshing (higher: finer and slower)."""
    frame: Literal["dataparser", "original"] = "dataparser"
    """Frame of the written coordinates: the dataparser's (like ns-export and the viewer) or the original capture's
    (the frame of poses_bounds.npy / transforms.json before nerfstudio's normalisation)."""
    min_accumulation: float = 0.5
    """Drop points whose rendered opacity is below this (rays into empty space)."""
    remove_outliers: bool = True
    """Statistical outlier removal on the whole cloud, as ns-export does."""
    std_ratio: float = 10.0
    """Outlier removal: how many standard deviations of the neighbour distance a point may be away."""
    cluster_eps: float | None = None
    """DBSCAN radius for removing floating clusters from objects, in the dataparser frame's units; default: 4x the
    median point spacing."""
    min_cluster_fraction: float = 0.1
    """Object clusters smaller than this fraction of the object's largest cluster are removed."""
    seed: int = 0
    """Seed of the random rays."""

    def main(self) -> None:
        from laser_ns.errors import check_output_dir, warn
        from laser_ns.export.objects import extract_object, poisson_mesh
        from laser_ns.export.ply import legend, write_legend, write_ply
        from laser_ns.export.point_cloud import render_labelled_cloud
        from laser_ns.export.run import geometry_warnings, load_run

        objects = split_texts(self.objects)
        if self.objects is not None and not objects:
            raise ExportError(f"--objects {self.objects!r} holds no query; separate queries with ';'.")
        # every check before the expensive work: a writable output folder, then a laser run with a checkpoint
        check_output_dir(self.output_dir, "--output-dir")
        start = time.perf_counter()
        run = load_run(self.load_config)
        model = run.pipeline.model
        queries = split_texts(self.queries) if self.queries is not None else list(model.predictor.queries)
        queries += [q for q in objects if q not in queries]
        cloud = render_labelled_cloud(
            run.pipeline,
            queries,
            num_points=self.num_points,
            queries_as_classes=self.selection == "segmentation" and bool(objects),
            normals=self.normals or self.meshes,
            remove_outliers=self.remove_outliers,
            std_ratio=self.std_ratio,
            min_accumulation=self.min_accumulation,
            num_rays_per_batch=self.num_rays_per_batch,
            seed=self.seed,
        )
        render_seconds = time.perf_counter() - start
        warnings = geometry_warnings(run, cloud.points)
        for warning in warnings:
            warn(warning)

        clusters = ClusterSettings(eps=self.cluster_eps, min_cluster_fraction=self.min_cluster_fraction)
        entries = []
        extracted = []
        taken: set[str] = set()
        progress = Progress(TextColumn("[laser_ns] objects"), BarColumn(), TextColumn("{task.description}"),
                            TimeElapsedColumn(), console=CONSOLE)  # fmt: skip
        with progress:
            task = progress.add_task("", total=len(objects))
            for query in objects:
                progress.update(task, description=query)
                obj = extract_object(cloud, query, self.selection, self.relevancy_threshold, clusters)
                extracted.append(obj)
                stem = file_stem(query, taken)
                entry = {**obj.summary(), "ply": f"objects/{stem}.ply"}
                out_cloud = obj.cloud if self.frame == "dataparser" else obj.cloud.in_original_frame(run.frames)
                write_ply(self.output_dir / entry["ply"], out_cloud)
                if self.meshes:
                    entry["mesh"] = f"objects/{stem}_mesh.ply"
                    self._write_mesh(poisson_mesh(obj, depth=self.mesh_depth), self.output_dir / entry["mesh"], run)
                entries.append(entry)
                progress.advance(task)

        scene = cloud if self.frame == "dataparser" else cloud.in_original_frame(run.frames)
        write_ply(self.output_dir / "point_cloud.ply", scene)
        content = legend(
            scene,
            run.frames,
            ply="point_cloud.ply",
            config=str(run.config_path),
            checkpoint_step=run.step,
            selection=self.selection,
            relevancy_threshold=self.relevancy_threshold if self.selection == "relevancy" else None,
            objects=entries,
            seconds={"render": round(render_seconds, 2), "total": round(time.perf_counter() - start, 2)},
        )
        content["warnings"] = warnings
        write_legend(self.output_dir / "legend.json", content)
        ply = self.output_dir / "point_cloud.ply"
        CONSOLE.print(f"[laser_ns] wrote {ply} ({len(scene)} points, {scene.frame} frame)")
        for entry in entries:
            CONSOLE.print(f"[laser_ns]   {entry['query']!r}: {entry['num_points']} points -> {entry['ply']}")
        CONSOLE.print(f"[laser_ns] legend: {self.output_dir / 'legend.json'}")

    def _write_mesh(self, mesh, path: Path, run) -> None:
        import open3d as o3d

        if self.frame == "original":
            mesh.transform(run.frames.dataparser_to_original)
            mesh.compute_vertex_normals()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False):
            raise ExportError(f"open3d could not write {path}; check the folder is writable.")


def main(command, tool: str = "laser-export") -> None:
    """Runs a parsed command; user errors end with their message and exit status 1, not a traceback."""
    from laser_ns.errors import run_tool

    run_tool(tool, command.main)


def entrypoint() -> None:
    main(tyro.cli(ExportLaser))


if __name__ == "__main__":
    entrypoint()
