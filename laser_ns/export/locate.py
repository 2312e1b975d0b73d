"""Text localisation, as LERF evaluates it: the 3D point of highest relevancy and the box of the relevant region.

The region of a query is its extracted object (:mod:`laser_ns.export.objects`: closed-set or thresholded points,
floating clusters removed). The best point is the region's point of highest relevancy, so that a lone speck of
high relevancy elsewhere cannot win. Boxes are axis-aligned in each frame: the original frame's box is the box of
the region's points mapped into that frame (not the dataparser box's corners mapped, which would be looser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from laser_ns.export.frames import SceneFrames
from laser_ns.export.objects import ClusterSettings, Selection, extract_object
from laser_ns.export.point_cloud import LabelledCloud


@dataclass
class Localisation:
    """Where a query is, in the dataparser frame (see ``in_frames`` for both frames)."""

    query: str
    """The text query."""
    best_point: Float[np.ndarray, " 3"]
    """The region's point of highest relevancy (dataparser frame)."""
    best_relevancy: float
    """Its relevancy."""
    region: Float[np.ndarray, "n 3"]
    """The region's points (dataparser frame)."""
    selection: str
    """How the region was selected ('segmentation' or 'relevancy')."""

    @property
    def box(self) -> tuple[Float[np.ndarray, " 3"], Float[np.ndarray, " 3"]]:
        """(min corner, max corner) of the region in the dataparser frame."""
        return self.region.min(axis=0), self.region.max(axis=0)

    def in_frames(self, frames: SceneFrames) -> dict[str, Any]:
        """JSON-ready description in the dataparser frame and in the original capture frame."""
        original = frames.to_original(self.region)
        return {
            "query": self.query,
            "selection": self.selection,
            "best_relevancy": self.best_relevancy,
            "num_points": int(len(self.region)),
            "dataparser_frame": _frame_entry(self.best_point, self.region),
            "original_frame": _frame_entry(frames.to_original(self.best_point[None])[0], original),
        }


def localise(
    cloud: LabelledCloud,
    query: str,
    selection: Selection = "segmentation",
    threshold: float = 0.6,
    clusters: ClusterSettings | None = None,
) -> Localisation:
    """The best point and the region of ``query`` in ``cloud`` (which must carry relevancy for it)."""
    obj = extract_object(cloud, query, selection, threshold, clusters)
    relevancy = obj.cloud.query_column(query)
    best = int(np.argmax(relevancy))
    return Localisation(
        query=query,
        best_point=obj.cloud.points[best].copy(),
        best_relevancy=float(relevancy[best]),
        region=obj.cloud.points,
        selection=selection,
    )


def _frame_entry(best: Float[np.ndarray, " 3"], region: Float[np.ndarray, "n 3"]) -> dict[str, Any]:
    low, high = region.min(axis=0), region.max(axis=0)
    return {
        "best_point": [float(v) for v in best],
        "box_min": [float(v) for v in low],
        "box_max": [float(v) for v in high],
        "box_center": [float(v) for v in (low + high) / 2],
        "box_size": [float(v) for v in high - low],
    }
