"""laser-demo's plan: what it asks ns-train, laser-eval and ns-render for, without training (the README's first
command; its timing is in benchmarks/RESULTS.md, 'Demo')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laser_ns.scripts import demo


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def planned(monkeypatch, tmp_path: Path):
    """Runs laser-demo with every tool replaced by a recorder; returns the commands it would run."""
    commands: list[list[str]] = []

    def record(command: list[str]) -> float:
        commands.append(command)
        if Path(command[0]).name == "laser-eval":
            out = Path(_option(command, "--output-dir"))
            out.mkdir(parents=True, exist_ok=True)
            names = ["wall", "red apple"]
            metrics = {"miou": 0.7, "accuracy": 0.9, "views": [0, 1], "class_names": names}
            metrics["teacher"] = {"miou": 0.5, "accuracy": 0.8}
            metrics["teacher_in_run_space"] = {"miou": 0.6, "accuracy": 0.85}
            (out / "metrics.json").write_text(json.dumps(metrics))
        return 1.0

    monkeypatch.setattr(demo, "_run", record)
    monkeypatch.setattr(demo, "_tool", lambda name: name)

    def run(**options) -> list[list[str]]:
        commands.clear()
        demo.Demo(output_dir=tmp_path / "demo_output", num_views=6, **options).main()
        return list(commands)

    return run


def test_the_quick_demo_trains_the_measured_schedule(planned, tmp_path: Path):
    train, evaluate, render = planned()
    assert [Path(c[0]).name for c in (train, evaluate, render)] == ["ns-train", "laser-eval", "ns-render"]
    quick = demo.QUALITIES["quick"]
    assert _option(train, "--max-num-iterations") == str(quick["steps"]) == "1600"
    geometry_fraction = float(_option(train, "--pipeline.model.schedule.language-start-fraction"))
    assert geometry_fraction == quick["language_start_fraction"] == 0.4
    assert _option(train, "--pipeline.teacher-type") == "clip-like"
    assert (tmp_path / "demo_output" / "scene" / "images").is_dir()
    assert "--score-teacher" in evaluate
    assert _option(render, "--output-path").endswith("segmentation.mp4")


def test_steps_and_quality_reach_ns_train(planned):
    train = planned(steps=400)[0]
    assert _option(train, "--max-num-iterations") == "400"
    full = planned(quality="full")[0]
    assert _option(full, "--max-num-iterations") == str(demo.QUALITIES["full"]["steps"])
    assert _option(full, "--pipeline.clip-like-teacher.tile-size") == str(demo.QUALITIES["full"]["tile_size"])


def test_too_few_steps_are_refused_before_anything_runs(planned):
    with pytest.raises(SystemExit, match="--steps 50 is too few"):
        planned(steps=50)
