"""One object per text query: select its points, drop small floating clusters, optionally mesh it.

Selection has two modes (``--selection``):

- ``segmentation`` (the default): a point belongs to the query when the query is its closed-set class, the scene's
  classes and the typed queries competing (the viewer's segmentation mode). Every point gets exactly one class, so
  objects never overlap and no threshold has to be tuned; relevancy against canonical negatives is not calibrated
  across teachers and queries (a hashed-text label-map run scores its classes near 1, a CLIP run near 0.6).
- ``relevancy``: the points whose LERF relevancy reaches ``--relevancy-threshold``, for open-vocabulary queries
  that should not be forced into the closed set (objects may then overlap).

Floating clusters are found with DBSCAN (open3d). Clusters smaller than ``min_cluster_fraction`` of the largest one,
and DBSCAN's noise points, are removed, so several instances of a query survive while specks do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from jaxtyping import Float

from laser_ns.errors import ExportError
from laser_ns.export.point_cloud import LabelledCloud

Selection = Literal["segmentation", "relevancy"]

EPS_PER_SPACING = 4.0
"""Automatic DBSCAN radius: this many times the median nearest-neighbour spacing of the selected points."""


@dataclass
class ClusterSettings:
    """How floating clusters are found and removed."""

    eps: float | None = None
    """DBSCAN neighbourhood radius in the cloud's units; None: EPS_PER_SPACING x the median point spacing."""
    min_points: int = 5
    """DBSCAN: neighbours within eps that make a core point."""
    min_cluster_fraction: float = 0.1
    """Clusters with fewer points than this fraction of the largest cluster are removed as floaters."""


@dataclass
class ExtractedObject:
    """The points of one query, after floater removal."""

    query: str
    """The text query."""
    cloud: LabelledCloud
    """The kept points."""
    num_selected: int
    """Points selected before floater removal."""
    num_clusters: int
    """Clusters kept."""
    num_removed_clusters: int
    """Clusters removed as floaters."""
    eps: float
    """DBSCAN radius used."""

    def summary(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "num_points": len(self.cloud),
            "num_selected": self.num_selected,
            "clusters_kept": self.num_clusters,
            "clusters_removed": self.num_removed_clusters,
            "dbscan_eps": self.eps,
        }


def select(cloud: LabelledCloud, query: str, selection: Selection, threshold: float) -> np.ndarray:
    """Boolean mask of the points that belong to ``query``."""
    if selection == "segmentation":
        if query not in cloud.class_names:
            raise ExportError(
                f"{query!r} is not among the closed-set classes {cloud.class_names}; render the cloud with the query "
                "joining the classes (queries_as_classes), or use --selection relevancy."
            )
        return cloud.classes == cloud.class_names.index(query)
    if selection == "relevancy":
        if not 0.0 <= threshold <= 1.0:
            raise ExportError(f"--relevancy-threshold {threshold} is outside [0, 1]; relevancy is a probability.")
        return cloud.query_column(query) >= threshold
    raise ExportError(f"Unknown selection {selection!r}; use 'segmentation' or 'relevancy'.")


def extract_object(
    cloud: LabelledCloud,
    query: str,
    selection: Selection = "segmentation",
    threshold: float = 0.6,
    clusters: ClusterSettings | None = None,
) -> ExtractedObject:
    """The points of ``query`` without floaters; an ExportError when nothing matches or nothing survives."""
    clusters = clusters or ClusterSettings()
    mask = select(cloud, query, selection, threshold)
    selected = cloud.subset(mask)
    if len(selected) == 0:
        how = (
            "no point has it as its closest class"
            if selection == "segmentation"
            else f"no point reaches relevancy {threshold}"
        )
        best = float(cloud.query_column(query).max()) if query in cloud.queries and len(cloud) else float("nan")
        raise ExportError(
            f"The query {query!r} matches nothing: {how} (highest relevancy anywhere: {best:.3f}). Check the "
            "spelling, try another wording, or use --selection relevancy with a lower --relevancy-threshold."
        )
    eps = clusters.eps if clusters.eps is not None else EPS_PER_SPACING * median_spacing(selected.points)
    labels = dbscan(selected.points, eps, clusters.min_points)
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, dtype=np.int64)
    keep_clusters = np.flatnonzero(sizes >= max(clusters.min_cluster_fraction * sizes.max(initial=0), 1))
    kept = selected.subset(np.isin(labels, keep_clusters))
    if len(kept) == 0:
        raise ExportError(
            f"The query {query!r} selected {len(selected)} points, but all were scattered specks (DBSCAN radius "
            f"{eps:.4g}, {clusters.min_points} neighbours): the output would be empty. Export more points "
            "(--num-points) or raise --cluster-eps."
        )
    return ExtractedObject(query, kept, len(selected), len(keep_clusters), int(len(sizes) - len(keep_clusters)), eps)


def median_spacing(points: Float[np.ndarray, "n 3"]) -> float:
    """Median distance from each point to its nearest neighbour (a scale for cluster radii)."""
    import open3d as o3d

    if len(points) < 2:
        return 0.0
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    return float(np.median(np.asarray(pcd.compute_nearest_neighbor_distance())))


def dbscan(points: Float[np.ndarray, "n 3"], eps: float, min_points: int) -> np.ndarray:
    """open3d's DBSCAN cluster label per point (-1 = noise)."""
    import open3d as o3d

    if eps <= 0 or len(points) == 0:
        return np.zeros(len(points), dtype=np.int64)  # coincident points: one cluster
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    return np.asarray(pcd.cluster_dbscan(eps=float(eps), min_points=int(min_points), print_progress=False))


def poisson_mesh(obj: ExtractedObject, depth: int = 8, density_quantile: float = 0.05):
    """A watertight-ish open3d TriangleMesh of the object (screened Poisson), trimmed to where points support it.

    Vertices whose Poisson density is in the lowest ``density_quantile`` are removed (the surface Poisson invents
    far from any point), then the mesh is cropped to the points' box grown by the DBSCAN radius.
    """
    import open3d as o3d

    cloud = obj.cloud
    if cloud.normals is None:
        raise ExportError("Meshing needs normals; render the cloud with normals=True (laser-export --meshes does).")
    if len(cloud) < 20:
        raise ExportError(f"{obj.query!r} has {len(cloud)} points; too few to mesh (need 20).")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points))
    pcd.colors = o3d.utility.Vector3dVector(cloud.colors.astype(np.float64) / 255.0)
    pcd.normals = o3d.utility.Vector3dVector(cloud.normals)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    low = cloud.points.min(axis=0) - obj.eps
    high = cloud.points.max(axis=0) + obj.eps
    mesh = mesh.crop(o3d.geometry.AxisAlignedBoundingBox(low, high))
    if len(mesh.triangles) == 0:
        raise ExportError(f"Poisson meshing of {obj.query!r} left no triangles; export its points instead.")
    mesh.compute_vertex_normals()
    return mesh
