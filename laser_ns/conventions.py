"""Conventions shared across laser_ns: the ground floor, importing nothing of laser_ns.

Values that several parts must agree on live here once: label maps (the teachers, the generated scenes, the
evaluation), query text (the predictor, the viewer, the teachers' baselines) and class colours (relevancy,
export, the demo's legend).
"""

from __future__ import annotations

UNLABELLED = 255
"""Label-map value for pixels that carry no class (docs/method.md, 3D-OVS data); used by the teachers, the generated
scenes and the evaluation."""

CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")
"""LERF's canonical negative phrases for open-vocabulary relevancy."""

QUERY_SEPARATOR = ";"
"""Separates several queries typed into one text (viewer box, LASER_QUERIES, laser-export --queries)."""

QUERIES_ENV = "LASER_QUERIES"
"""Environment variable with ';'-separated queries that replace the saved ones when a model is built (ns-render)."""

COLOUR_WORDS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.10, 0.35, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "purple": (0.55, 0.20, 0.75),
    "violet": (0.55, 0.20, 0.75),
    "pink": (1.00, 0.50, 0.75),
    "brown": (0.50, 0.30, 0.12),
    "wooden": (0.60, 0.40, 0.20),
    "black": (0.08, 0.08, 0.08),
    "white": (0.97, 0.97, 0.97),
    "grey": (0.55, 0.55, 0.55),
    "gray": (0.55, 0.55, 0.55),
    "cyan": (0.00, 0.80, 0.80),
    "gold": (0.85, 0.70, 0.15),
    "golden": (0.85, 0.70, 0.15),
    "silver": (0.75, 0.75, 0.80),
    "beige": (0.90, 0.85, 0.65),
}
"""Colour words a class name may hold, and the colour such a class is drawn in (so "red apple" is drawn red). The
simulated CLIP teacher has its own table (``teachers/clip_like.py``'s ``COLOUR_PROTOTYPES``): the typical colours of
surfaces it associates with each word, part of its feature definition, not a drawing colour."""
