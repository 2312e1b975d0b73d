"""Merges ``benchmarks/quality.py`` reports of one seed (runs split over several commands) into one report.

    python benchmarks/merge_reports.py --output out.json a.json b.json --rename "all parts=defaults"

Scenes and variants are added in order (a later report's variant replaces an earlier one of the same name); each
variant keeps a pointer to the command that produced it. Settings that change a score must match, as for --merge.

Reports from before ``quality.py`` recorded the teacher in the run's space can take it from a
``benchmarks/guided_teacher.py`` report of the same scenes and seeds:

    python benchmarks/merge_reports.py --output out.json a.json \
        --teacher-in-run-space benchmarks/teacher_like_for_like_seeds012.json

A scene takes the entry whose teacher, scored in CLIP's space with nearest tiles, has the same mIoU as the scene's
teacher (the same teacher on the same views); its ``run_space_nearest`` becomes ``teacher_in_run_space`` of every
variant that lacks one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCORE_SETTINGS = ("steps", "language_start_fraction", "seed", "num_views", "width", "height", "teacher", "tile_size")


def merge(paths: list[Path], renames: dict[str, str]) -> dict:
    merged: dict = {"runs": [], "scenes": {}}
    for path in paths:
        report = json.loads(path.read_text())
        offset = len(merged["runs"])
        for run in report["runs"]:
            mine = {k: run["settings"].get(k) for k in SCORE_SETTINGS}
            if merged["runs"]:
                first = {k: merged["runs"][0]["settings"].get(k) for k in SCORE_SETTINGS}
                if mine != first:
                    raise SystemExit(f"{path} was run with {mine}, unlike the earlier reports ({first}).")
            merged["runs"].append({**run, "source": str(path)})
        for scene, result in report["scenes"].items():
            target = merged["scenes"].setdefault(scene, {**result, "variants": {}})
            for name, scores in result["variants"].items():
                target["variants"][renames.get(name, name)] = {**scores, "run": scores["run"] + offset}
    return merged


def add_teacher_in_run_space(merged: dict, guided: dict, source: str) -> None:
    for scene, result in merged["scenes"].items():
        if all("teacher_in_run_space" in scores for scores in result["variants"].values()):
            continue
        teacher = result["teacher"]["miou"]
        matches = [
            entry
            for key, entry in guided.items()
            if f"/runs/{scene}/" in key and abs(entry["nearest"]["miou"] - teacher) < 1e-9
        ]
        if len(matches) != 1:
            raise SystemExit(
                f"{source} has {len(matches)} entries for scene {scene!r} whose CLIP-space teacher scores "
                f"{teacher:.6f} mIoU; it needs exactly one. Run benchmarks/guided_teacher.py on a run of this scene "
                "and seed."
            )
        if "run_space_nearest" not in matches[0]:
            raise SystemExit(
                f"{source}'s entry for scene {scene!r} has no 'run_space_nearest' (it predates scoring in the run's "
                "space). Run the current benchmarks/guided_teacher.py on a run of this scene and seed."
            )
        for scores in result["variants"].values():
            scores.setdefault("teacher_in_run_space", {**matches[0]["run_space_nearest"], "source": source})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW: a variant run under another name")
    parser.add_argument(
        "--teacher-in-run-space",
        type=Path,
        help="a benchmarks/guided_teacher.py report to take each scene's teacher in the run's space from",
    )
    args = parser.parse_args()
    renames = dict(item.split("=", 1) for item in args.rename)
    merged = merge(args.reports, renames)
    if args.teacher_in_run_space is not None:
        guided = json.loads(args.teacher_in_run_space.read_text())
        add_teacher_in_run_space(merged, guided, args.teacher_in_run_space.name)
    args.output.write_text(json.dumps(merged, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
