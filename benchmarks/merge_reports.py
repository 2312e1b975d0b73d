"""Merges ``benchmarks/quality.py`` reports of one seed (runs split over several commands) into one report.

    python benchmarks/merge_reports.py --output out.json a.json b.json --rename "all parts=defaults"

Scenes and variants are added in order (a later report's variant replaces an earlier one of the same name); each
variant keeps a pointer to the command that produced it. Settings that change a score must match, as for --merge.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW: a variant run under another name")
    args = parser.parse_args()
    renames = dict(item.split("=", 1) for item in args.rename)
    args.output.write_text(json.dumps(merge(args.reports, renames), indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
