"""A labelled point cloud of a trained laser model, from nerfstudio's own point-cloud generator.

``nerfstudio.exporter.exporter_utils.generate_point_cloud`` casts batches of training-camera rays, renders them,
keeps the points with opacity above 0.5 and returns an open3d cloud of positions, colours and (optionally) normals.
It has no way to carry other outputs. We reuse it unchanged and give it two stand-ins:

- a ray source in place of the datamanager (random pixels of the training cameras), so that it never touches a
  live training run's pixel sampler, language patches or image loader;
- a recording wrapper around the model that keeps, for the very rays it renders, the per-ray outputs we need
  (``segmentation_class``, ``relevancy_<i>``, ``accumulation``), masked exactly as the generator masks its points.

Both lists therefore line up point for point (checked). Outlier removal is done here instead of inside the
generator, because the generator does not return which points it removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.rich_utils import CONSOLE

from laser_ns.errors import ExportError
from laser_ns.export.frames import SceneFrames

NO_CLASS = -1
"""Class index of points the model gives no class (a run without classes)."""


@dataclass
class LabelledCloud:
    """Points with colour, closed-set class and per-query relevancy."""

    points: Float[np.ndarray, "n 3"]
    """Positions (float64)."""
    colors: UInt8[np.ndarray, "n 3"]
    """Rendered RGB, 0-255."""
    classes: Int[np.ndarray, " n"]
    """Index into ``class_names`` (int32); NO_CLASS where the model has no classes."""
    relevancy: Float[np.ndarray, "n q"]
    """Relevancy of each query in ``queries`` (float32, in [0, 1], 0.5 = no preference)."""
    normals: Float[np.ndarray, "n 3"] | None
    """Unit normals, when estimated."""
    class_names: list[str]
    """Names of the class indices: the scene's classes, then typed queries that joined the closed set."""
    class_colors: list[tuple[int, int, int]]
    """0-255 colour of each class (the ``segmentation`` output's colours)."""
    queries: list[str]
    """Texts of the relevancy columns."""
    frame: str = "dataparser"
    """Frame of ``points``: 'dataparser' (the model's and viewer's) or 'original' (the capture's)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """How the cloud was made, for the legend."""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def subset(self, index: np.ndarray) -> LabelledCloud:
        """The points selected by a boolean mask or an index array."""
        return replace(
            self,
            points=self.points[index],
            colors=self.colors[index],
            classes=self.classes[index],
            relevancy=self.relevancy[index],
            normals=None if self.normals is None else self.normals[index],
        )

    def in_original_frame(self, frames: SceneFrames) -> LabelledCloud:
        """The cloud with positions (and normals) in the original capture frame."""
        if self.frame == "original":
            return self
        normals = None if self.normals is None else frames.directions_to_original(self.normals)
        return replace(self, points=frames.to_original(self.points), normals=normals, frame="original")

    def query_column(self, query: str) -> Float[np.ndarray, " n"]:
        """Relevancy of ``query`` at every point."""
        if query not in self.queries:
            raise ExportError(f"{query!r} was not rendered; this cloud has relevancy for {self.queries}.")
        return self.relevancy[:, self.queries.index(query)]


class CameraRaySource:
    """Stands in for the datamanager in ``generate_point_cloud``: rays through random pixels of the given cameras."""

    def __init__(self, cameras: Cameras, num_rays_per_batch: int, device: torch.device, seed: int = 0) -> None:
        if len(cameras) == 0:
            raise ExportError("The run has no training cameras to cast rays from.")
        self.cameras = cameras
        self.num_rays_per_batch = int(num_rays_per_batch)
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        """A batch of rays through uniformly random points of uniformly random training images."""
        n = self.num_rays_per_batch
        camera_indices = torch.randint(len(self.cameras), (n, 1), generator=self.generator)
        sizes = torch.stack([self.cameras.height[camera_indices[:, 0], 0], self.cameras.width[camera_indices[:, 0], 0]])
        coords = torch.rand(n, 2, generator=self.generator) * sizes.T.float()  # (row, col) in pixels
        device = self.cameras.device
        bundle = self.cameras.generate_rays(camera_indices=camera_indices.to(device), coords=coords.to(device))
        return bundle.to(self.device), {}


class RecordingModel:
    """Wraps the model for ``generate_point_cloud``: records chosen outputs of the rays whose point it keeps."""

    def __init__(self, model: Any, names: Sequence[str]) -> None:
        self.model = model
        self.names = list(names)
        self.records: list[dict[str, torch.Tensor]] = []

    def __call__(self, ray_bundle: RayBundle) -> dict[str, torch.Tensor]:
        outputs = self.model(ray_bundle)
        # the generator keeps the points whose alpha is above 0.5; recording the same mask keeps both lists aligned
        kept = self.model.get_rgba_image(outputs, "rgb")[..., -1] > 0.5  # [R]
        self.records.append({name: outputs[name][kept].detach().cpu() for name in self.names})
        return outputs

    def get_rgba_image(self, outputs: dict[str, torch.Tensor], output_name: str = "rgb") -> torch.Tensor:
        return self.model.get_rgba_image(outputs, output_name)

    def collected(self, name: str) -> torch.Tensor:
        """Every recorded value of output ``name``, in point order."""
        return torch.cat([record[name] for record in self.records])


@torch.no_grad()
def render_labelled_cloud(
    pipeline: Any,
    queries: Sequence[str],
    *,
    num_points: int = 300_000,
    queries_as_classes: bool = False,
    normals: bool = False,
    remove_outliers: bool = True,
    std_ratio: float = 10.0,
    min_accumulation: float = 0.5,
    num_rays_per_batch: int | None = None,
    seed: int = 0,
) -> LabelledCloud:
    """Renders ``num_points`` surface points of the training views with colour, class and each query's relevancy.

    ``queries_as_classes``: typed queries that are not scene classes join the closed set (the viewer's segmentation
    mode), so a point can be classified as a query. Points whose rendered opacity is below ``min_accumulation`` are
    dropped (nerfacto's 'last_sample' background gives every ray an alpha of 1, so the generator keeps them all),
    then statistical outliers (open3d, 20 neighbours, ``std_ratio``) as ``ns-export`` does.
    """
    from nerfstudio.exporter.exporter_utils import generate_point_cloud

    if num_points < 1:
        raise ExportError(f"num_points must be at least 1, got {num_points}.")
    model = pipeline.model
    predictor = model.predictor  # queries, mode and colours: the same object the viewer and ns-render use
    queries = [q.strip() for q in queries if q.strip()]
    saved = (model.training, list(predictor.queries), predictor.query_mode)
    try:
        model.eval()
        if queries != predictor.queries:
            predictor.set_queries(queries)
        predictor.query_mode = "segmentation" if queries_as_classes else "relevancy"
        class_names = predictor.segmentation_classes()[0]
        class_colors = [tuple(int(v) for v in color) for _, color in predictor.segmentation_legend()]
        names = ["accumulation"] + [f"relevancy_{i}" for i in range(len(queries))]
        if class_names:
            names.append("segmentation_class")
        cameras = pipeline.datamanager.train_dataset.cameras
        batch = num_rays_per_batch or int(model.config.eval_num_rays_per_chunk)
        recorder = RecordingModel(model, names)
        stand_in = SimpleNamespace(datamanager=CameraRaySource(cameras, batch, model.device, seed), model=recorder)
        pcd = generate_point_cloud(
            stand_in,  # type: ignore[arg-type]
            num_points=num_points,
            remove_outliers=False,
            estimate_normals=normals,
            reorient_normals=normals,
        )
    finally:
        model.train(saved[0])
        if list(predictor.queries) != saved[1]:
            predictor.set_queries(saved[1])
        predictor.query_mode = saved[2]

    # Our additions to the generator's points, aligned with them.
    points = np.asarray(pcd.points)
    count = points.shape[0]
    columns = {name: recorder.collected(name).numpy() for name in names}
    if any(column.shape[0] != count for column in columns.values()):
        raise RuntimeError(
            "nerfstudio's generate_point_cloud kept another set of points than the recorded rays; this nerfstudio "
            "version is not the one laser_ns was written for (1.1.5)."
        )
    relevancy = np.concatenate(
        [columns[f"relevancy_{i}"] for i in range(len(queries))] or [np.zeros((count, 0))], axis=1
    ).astype(np.float32)
    classes = (
        columns["segmentation_class"][:, 0].round().astype(np.int32)
        if "segmentation_class" in columns
        else np.full(count, NO_CLASS, dtype=np.int32)
    )
    cloud = LabelledCloud(
        points=points.astype(np.float64),
        colors=(np.asarray(pcd.colors).clip(0, 1) * 255).round().astype(np.uint8),
        classes=classes,
        relevancy=relevancy,
        normals=np.asarray(pcd.normals).astype(np.float64) if normals else None,
        class_names=list(class_names),
        class_colors=class_colors,
        queries=queries,
        settings={
            "num_rays_cast": count,
            "queries_as_classes": queries_as_classes,
            "min_accumulation": min_accumulation,
            "remove_outliers": remove_outliers,
            "std_ratio": std_ratio,
            "seed": seed,
        },
    )
    cloud = cloud.subset(columns["accumulation"][:, 0] >= min_accumulation)
    if remove_outliers and len(cloud) > 20:
        cloud = cloud.subset(np.asarray(_statistical_inliers(cloud.points, std_ratio), dtype=np.int64))
    if len(cloud) == 0:
        raise ExportError(
            f"No point of {count} rendered rays survived (opacity >= {min_accumulation}, outlier removal): the "
            "model renders nothing opaque. Check the run trained, or lower --min-accumulation."
        )
    CONSOLE.print(f"[laser_ns] {len(cloud)} labelled points (of {count} rays)")
    return cloud


def _statistical_inliers(points: Float[np.ndarray, "n 3"], std_ratio: float) -> list[int]:
    """Indices kept by open3d's statistical outlier removal (20 neighbours), as ns-export uses it."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    _, index = pcd.remove_statistical_outlier(nb_neighbors=20, std_ratio=std_ratio)
    return list(index)
