"""Seed spread of the quality benchmark: one table over several ``benchmarks/quality.py`` reports.

    python benchmarks/seeds.py benchmarks/quality_seed0.json benchmarks/quality_seed1.json

Each report is one seed (the seed changes the generated scene's small jitters, the teacher's label noise and the
training's random stream). For every scene and variant present in all reports, the table gives the teacher's 2D
mIoU and Laser's 3D mIoU as mean, minimum and maximum over the seeds, and on how many seeds Laser meets issue 5's
target (3D mIoU at least 10 points above the teacher's own on the same seed).

    python benchmarks/seeds.py --targets defaults "plain, colour-guided targets" benchmarks/quality_seed*.json

``--targets MODEL BASELINE`` prints issue 17's targets instead: per scene and seed, MODEL against the teacher (in
CLIP's space and, where the report holds it, in the run's space), the classes MODEL leaves under 30 IoU that the
teacher has at 20 or more, MODEL against BASELINE with a 95% interval on the mean paired difference, and the largest
reload difference.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from quality import TARGET_GAIN


def load(paths: list[Path]) -> list[dict[str, Any]]:
    """The reports, refusing two of the same seed (they would count one seed twice)."""
    reports = [json.loads(path.read_text()) for path in paths]
    seeds = [report["runs"][0]["settings"]["seed"] for report in reports]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"Reports {[str(p) for p in paths]} have seeds {seeds}; give each seed once.")
    return reports


def _spread(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.1f} ({100 * min(values):.1f}-{100 * max(values):.1f})"


def seed_table(reports: list[dict[str, Any]]) -> str:
    """Markdown: one row per scene and variant found in every report."""
    lines = [
        f"| scene | variant | teacher 2D mIoU | Laser 3D mIoU | gain (pts) | seeds meeting +10 (of {len(reports)}) |",
        "|---|---|---|---|---|---|",
    ]
    scenes = [s for s in reports[0]["scenes"] if all(s in r["scenes"] for r in reports)]
    for scene in scenes:
        variants = list(reports[0]["scenes"][scene]["variants"])
        for variant in [v for v in variants if all(v in r["scenes"][scene]["variants"] for r in reports)]:
            teacher = [r["scenes"][scene]["teacher"]["miou"] for r in reports]
            laser = [r["scenes"][scene]["variants"][variant]["miou"] for r in reports]
            gains = [b - a for a, b in zip(teacher, laser, strict=True)]
            met = sum(g >= TARGET_GAIN for g in gains)
            lines.append(
                f"| {scene} | {variant} | {_spread(teacher)} | {_spread(laser)} "
                f"| {100 * statistics.mean(gains):+.1f} | {met} |"
            )
    return "\n".join(lines)


def per_class_table(reports: list[dict[str, Any]], variant: str) -> str:
    """Markdown: per scene and class, the teacher's 2D IoU and Laser's 3D IoU (``variant``), mean (min-max) over the
    reports that hold it."""
    lines = ["| scene | class | teacher 2D IoU | Laser 3D IoU |", "|---|---|---|---|"]
    for scene in reports[0]["scenes"]:
        found = [
            r["scenes"][scene] for r in reports if scene in r["scenes"] and variant in r["scenes"][scene]["variants"]
        ]
        if not found:
            continue
        for name in found[0]["class_names"]:
            teacher = [f["teacher"]["per_class_iou"][name] or 0.0 for f in found]
            laser = [f["variants"][variant]["per_class_iou"][name] or 0.0 for f in found]
            lines.append(f"| {scene} | {name} | {_spread(teacher)} | {_spread(laser)} |")
    return "\n".join(lines)


def checks_table(reports: list[dict[str, Any]], variant: str) -> str:
    """Markdown: per scene, the reloaded run's mIoU against the in-process one (their largest difference over the
    seeds) and against the same checkpoint scored in the other scoring space, mean (min-max) over the seeds."""
    lines = [
        f"| scene | {variant}: reloaded mIoU | largest reload difference (pts) | other score space | its mIoU |",
        "|---|---|---|---|---|",
    ]
    for scene in reports[0]["scenes"]:
        found = [
            r["scenes"][scene]["variants"][variant]
            for r in reports
            if variant in r["scenes"].get(scene, {}).get("variants", {})
        ]
        if not found:
            continue
        diffs = [abs(f.get("reload_miou_difference", float("nan"))) for f in found]
        others = [f["other_score_space"] for f in found if "other_score_space" in f]
        other = f"{others[0]['score_space']} | {_spread([o['miou'] for o in others])}" if others else "n/a | n/a"
        lines.append(f"| {scene} | {_spread([f['miou'] for f in found])} | {100 * max(diffs):.2f} | {other} |")
    return "\n".join(lines)


# Two-sided 95% quantiles of Student's t by degrees of freedom (the seeds minus one).
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
TARGET_CLASS_FLOOR, TARGET_CLASS_TEACHER = 0.30, 0.20


def _interval(diffs: list[float]) -> str:
    """Mean of paired differences in points, with a 95% t-interval when there are two to ten of them."""
    mean = 100 * statistics.mean(diffs)
    if not 2 <= len(diffs) <= len(T_95) + 1:
        return f"{mean:+.1f}"
    half = T_95[len(diffs) - 1] * 100 * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]"


def _per_seed(diffs: list[float]) -> str:
    return " / ".join(f"{100 * d:+.1f}" for d in diffs)


def _lost_classes(ours: list[dict[str, Any]], teachers: list[dict[str, Any]]) -> str:
    """Classes under 30 IoU on some seed where that seed's teacher has 20 or more."""
    names = set()
    for o, t in zip(ours, teachers, strict=True):
        for name, iou in o["per_class_iou"].items():
            if (iou or 0.0) < TARGET_CLASS_FLOOR and (t["per_class_iou"][name] or 0.0) >= TARGET_CLASS_TEACHER:
                names.add(name)
    return ", ".join(sorted(names)) or "none"


def target_table(reports: list[dict[str, Any]], model: str, baseline: str) -> str:
    """Markdown: issue 17's targets for ``model`` on every scene that holds both variants in every report."""
    lines = [
        f"| scene | seeds | {model} - teacher (CLIP space), per seed: mean | - teacher in the run's space | "
        f"classes under 30 with teacher >= 20 (CLIP space; run space) | {model} - {baseline}, per seed: mean [95%] "
        "| largest reload difference (pts) |",
        "|---|---|---|---|---|---|---|",
    ]
    for scene in reports[0]["scenes"]:
        found = [r["scenes"].get(scene) for r in reports]
        if not all(f and model in f["variants"] and baseline in f["variants"] for f in found):
            continue
        ours = [f["variants"][model] for f in found]
        theirs = [f["variants"][baseline] for f in found]
        teacher = [f["teacher"] for f in found]
        over_teacher = [o["miou"] - t["miou"] for o, t in zip(ours, teacher, strict=True)]
        fair = [o.get("teacher_in_run_space") for o in ours]
        if all(fair):
            over_fair = [o["miou"] - t["miou"] for o, t in zip(ours, fair, strict=True)]
            fair_text = f"{_per_seed(over_fair)}: {100 * statistics.mean(over_fair):+.1f}"
        else:
            fair_text = f"not recorded on {sum(not f for f in fair)} of {len(fair)} seeds"

        over_baseline = [o["miou"] - b["miou"] for o, b in zip(ours, theirs, strict=True)]
        reload = max(abs(v.get("reload_miou_difference", float("nan"))) for v in ours + theirs)
        lines.append(
            f"| {scene} | {len(found)} | {_per_seed(over_teacher)}: {100 * statistics.mean(over_teacher):+.1f} "
            f"| {fair_text} | {_lost_classes(ours, teacher)}; {_lost_classes(ours, fair) if all(fair) else 'n/a'} "
            f"| {_per_seed(over_baseline)}: {_interval(over_baseline)} | {100 * reload:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0)
    if len(sys.argv) < 2:
        raise SystemExit(
            "usage: python benchmarks/seeds.py [--targets MODEL BASELINE] REPORT.json [REPORT.json ...] (one per seed)"
        )
    if sys.argv[1] == "--targets":
        if len(sys.argv) < 5:
            raise SystemExit("usage: python benchmarks/seeds.py --targets MODEL BASELINE REPORT.json [REPORT.json ...]")
        print(target_table(load([Path(p) for p in sys.argv[4:]]), sys.argv[2], sys.argv[3]))
        raise SystemExit(0)
    loaded = load([Path(p) for p in sys.argv[1:]])
    print(seed_table(loaded))
    for variant in loaded[0]["scenes"][next(iter(loaded[0]["scenes"]))]["variants"]:
        print(f"\nPer class, {variant}:\n")
        print(per_class_table(loaded, variant))
        print(f"\nReload and scoring space, {variant}:\n")
        print(checks_table(loaded, variant))
