"""Deterministic procedural scenes whose geometry and per-pixel labels are known exactly (demo, tests, benchmarks).

Scenes are built from a few analytic primitives (planes, spheres, axis-aligned boxes, vertical cylinders), each
carrying a class prompt and a colour or procedural texture, and rendered by pure-numpy ray casting with Lambertian
shading, a directional light with hard shadows and an ambient term. The label of a pixel is the class of the
primitive hit first by the ray through the pixel centre, so the demo, the tests and the benchmarks can score
segmentation against exact ground truth.

- :mod:`~laser_ns.scenes.geometry`: primitives and ray casting;
- :mod:`~laser_ns.scenes.shading`: materials, lighting and rendering one view;
- :mod:`~laser_ns.scenes.cameras`: capture rigs, poses, intrinsics, pixel rays, LLFF poses;
- :mod:`~laser_ns.scenes.spec` and :mod:`~laser_ns.scenes.presets`: scene descriptions and the named scenes;
- :mod:`~laser_ns.scenes.writers`: ``make_scene``, which writes the 3D-OVS layout
(docs/method.md#3d-ovs-data-format-and-metric, docs/method.md#per-view-label-maps).
"""

from laser_ns.conventions import UNLABELLED
from laser_ns.scenes.cameras import (
    ForwardRig,
    OrbitRig,
    camera_poses,
    intrinsics_from_fov,
    llff_to_opengl,
    look_at,
    opengl_to_llff,
    pixel_rays,
)
from laser_ns.scenes.geometry import Box, Cylinder, Plane, RayHits, Sphere, cast_rays
from laser_ns.scenes.presets import PRESETS
from laser_ns.scenes.shading import Material, RenderedView, render_view
from laser_ns.scenes.spec import SceneSpec
from laser_ns.scenes.writers import MARKER_FILE, SceneInfo, default_annotated_views, make_scene

__all__ = [
    "MARKER_FILE",
    "PRESETS",
    "UNLABELLED",
    "Box",
    "Cylinder",
    "ForwardRig",
    "Material",
    "OrbitRig",
    "Plane",
    "RayHits",
    "RenderedView",
    "SceneInfo",
    "SceneSpec",
    "Sphere",
    "camera_poses",
    "cast_rays",
    "default_annotated_views",
    "intrinsics_from_fov",
    "llff_to_opengl",
    "look_at",
    "make_scene",
    "opengl_to_llff",
    "pixel_rays",
    "render_view",
]
