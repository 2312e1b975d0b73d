"""The labelled cloud on disk: a binary PLY that Open3D, CloudCompare, MeshLab, Blender and trimesh open, plus a
JSON legend that names the class indices, their colours and the queries.

Vertex properties, in order: ``x y z`` (float), ``red green blue`` (uchar), ``class`` (int; -1 = none),
``relevancy_<i>`` (float, one per query), and ``nx ny nz`` (float) when normals were estimated. The header's
comments repeat the legend, so a tool that shows only the PLY still tells which class is which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from laser_ns.export.frames import SceneFrames
from laser_ns.export.point_cloud import NO_CLASS, LabelledCloud

LEGEND_VERSION = 1
"""Bumped when the legend's layout changes."""


def vertex_properties(cloud: LabelledCloud) -> list[tuple[str, str]]:
    """(name, numpy dtype) of each vertex property, in file order."""
    properties = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    properties.append(("class", "<i4"))
    properties += [(f"relevancy_{i}", "<f4") for i in range(len(cloud.queries))]
    if cloud.normals is not None:
        properties += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    return properties


def write_ply(path: Path, cloud: LabelledCloud) -> Path:
    """Writes ``cloud`` as a binary little-endian PLY; refuses an empty cloud (an empty PLY opens as nothing)."""
    from plyfile import PlyData, PlyElement

    if len(cloud) == 0:
        raise ValueError(f"Refusing to write {path}: the point cloud is empty.")
    vertices = np.empty(len(cloud), dtype=vertex_properties(cloud))
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = cloud.colors[:, channel]
    vertices["class"] = cloud.classes
    for i in range(len(cloud.queries)):
        vertices[f"relevancy_{i}"] = cloud.relevancy[:, i]
    if cloud.normals is not None:
        for axis, name in enumerate(("nx", "ny", "nz")):
            vertices[name] = cloud.normals[:, axis]
    comments = [f"laser_ns labelled point cloud, {cloud.frame} frame"]
    comments += [f"class {k} = {_one_line(name)}" for k, name in enumerate(cloud.class_names)]
    comments += [f"class {NO_CLASS} = none"]
    comments += [f"relevancy_{i} = {_one_line(query)}" for i, query in enumerate(cloud.queries)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<", comments=comments).write(str(path))
    return path


def read_ply(path: Path) -> np.ndarray:
    """The vertex records of a PLY (a numpy structured array), for checks and scripts."""
    from plyfile import PlyData

    return PlyData.read(str(path))["vertex"].data


def legend(cloud: LabelledCloud, frames: SceneFrames, **extra: Any) -> dict[str, Any]:
    """The JSON legend of ``cloud``: properties, classes with colours, queries, frame and transforms."""
    return {
        "version": LEGEND_VERSION,
        "frame": cloud.frame,
        "num_points": len(cloud),
        "properties": [name for name, _ in vertex_properties(cloud)],
        "classes": [
            {"index": k, "name": name, "color": list(color)}
            for k, (name, color) in enumerate(zip(cloud.class_names, cloud.class_colors, strict=True))
        ],
        "no_class": NO_CLASS,
        "queries": [{"property": f"relevancy_{i}", "text": query} for i, query in enumerate(cloud.queries)],
        "relevancy": "LERF relevancy against the canonical negatives, in [0, 1]; 0.5 means no preference",
        "dataparser_to_original": frames.dataparser_to_original.tolist(),
        "transform_source": frames.source,
        "settings": cloud.settings,
        **extra,
    }


def write_legend(path: Path, content: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2))
    return path


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
