"""Whether a run's geometry can be trusted for 3D output (point clouds, objects, boxes), each doubt with its fix.

Shared by ``laser-export``, ``laser-locate`` and the viewer's "Show 3D boxes": a run that trained geometry for a few
hundred steps has density that is mostly fog, and its rendered points can lie far outside the scene."""

from __future__ import annotations

from typing import Any

MIN_GEOMETRY_STEPS = 250
"""Below this many geometry steps a run's density is mostly fog: depths, boxes and point clouds are not usable."""

FAR_OUTSIDE = 2.0
"""A point further out than this multiple of the scene box's half-size is far outside the scene."""


def geometry_steps(config: Any, step: int) -> int | None:
    """Steps of the geometry phase a checkpoint at ``step`` had, from the run's trainer config (None when geometry
    came from a nerfacto run)."""
    model = config.pipeline.model
    if getattr(model, "geometry_checkpoint", None) is not None:
        return None
    fraction = model.schedule.language_start_fraction
    return min(step, int(round(fraction * config.max_num_iterations)))


def short_geometry_warning(source: str, step: int, steps: int | None) -> str | None:
    """The warning for a run that trained geometry for too few steps, naming the fix (None when enough)."""
    if steps is None or steps >= MIN_GEOMETRY_STEPS:
        return None
    return (
        f"{source} trained geometry for only {steps} steps (step {step}), so its depths are unreliable and points "
        f"may lie far from any surface. Train with more steps (laser-lite: the default --max-num-iterations 2000 "
        "gives 500), or seed the geometry from a finished `ns-train nerfacto-lite` run with "
        "--pipeline.model.geometry-checkpoint."
    )


def geometry_warnings(source: str, step: int, steps: int | None, aabb: Any, points: Any) -> list[str]:
    """Why the geometry behind ``points`` should not be trusted (empty when it looks usable): too few geometry
    ``steps``, or many points far outside the scene box ``aabb`` (2x3, the dataparser frame; None skips that check)."""
    import numpy as np

    warnings = [w for w in [short_geometry_warning(source, step, steps)] if w is not None]
    points = np.asarray(points)
    if len(points) and aabb is not None:
        aabb = np.asarray(aabb)
        centre, half = aabb.mean(axis=0), (aabb[1] - aabb[0]) / 2
        outside = float((np.abs(points - centre) > FAR_OUTSIDE * half).any(axis=1).mean())
        if outside > 0.1:
            warnings.append(
                f"{100 * outside:.0f}% of the rendered points lie more than {FAR_OUTSIDE:g}x the scene box away from "
                "its centre: the run's geometry is not usable for 3D output (too few steps, or a scene its cameras do "
                "not cover). Train longer, or check the scene's poses."
            )
    return warnings
