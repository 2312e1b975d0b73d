"""The viewer panel: parsing, handlers and their messages, viser wiring, and how nerfstudio finds the panel."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

import pytest
import torch

from laser_ns.viewer import (
    MAX_QUERIES,
    MAX_QUERY_CHARS,
    NO_LABEL_VOLUME,
    LaserViewerControls,
    escape_markdown,
    legend_markdown,
    parse_queries,
)
from tests.conftest import tiny_pipeline_config


class FakeModel:
    """The hooks the panel drives, recording what reached them."""

    def __init__(self, queries: Sequence[str] = ("floor", "table")) -> None:
        self.queries = list(queries)
        self.negatives = ["object", "things", "stuff", "texture"]
        self.query_mode = "relevancy"
        self.composite_threshold = 0.5
        self.segment_with_label_volume = False
        self.calls: list[tuple[str, list[str]]] = []

    def set_queries(self, queries: Sequence[str]) -> None:
        self.calls.append(("set_queries", list(queries)))
        self.queries = list(queries)

    def set_negatives(self, negatives: Sequence[str]) -> None:
        self.calls.append(("set_negatives", list(negatives)))
        self.negatives = list(negatives) or ["object", "things", "stuff", "texture"]

    def segmentation_legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        extra = self.queries if self.query_mode == "segmentation" else []
        return [(name, (230, 26, 26)) for name in ["floor", "table", *extra]]


class BrokenModel(FakeModel):
    def set_queries(self, queries: Sequence[str]) -> None:
        raise RuntimeError("Encoding text needs the pipeline's teacher; none was given to the model.")


# ---------------------------------------------------------------------- parsing
def test_parse_queries_splits_at_semicolons_and_drops_blanks():
    assert parse_queries("red apple; table") == ["red apple", "table"]
    assert parse_queries("  red   apple ;; ;table;") == ["red apple", "table"]
    assert parse_queries("") == []
    assert parse_queries(" \t ; \n ;  ") == []


def test_parse_queries_keeps_unicode_and_drops_control_characters():
    assert parse_queries("苹果; café ☕; 🍎") == ["苹果", "café ☕", "🍎"]
    assert parse_queries("red\napple\t; ta\u200bble") == ["red apple", "ta ble"]
    assert parse_queries("cafe\u0301") == ["café"]  # NFC: one code point, as CLIP's tokenizer sees typed text
    assert parse_queries("\ud800 x") == ["x"]  # a lone surrogate cannot be encoded as UTF-8 by any text encoder


def test_escape_markdown_shows_markup_literally():
    escaped = escape_markdown("a*b_<c>{d}")
    for char in "*_<>{}":
        assert char not in escaped
    assert escaped.startswith("a&#42;b")


def test_legend_markdown_has_a_colour_chip_per_class():
    text = legend_markdown([("red apple", (230, 26, 26)), ("table", (0, 204, 204))])
    assert "`#e61a1a` red apple" in text and "`#00cccc` table" in text
    assert "no classes" in legend_markdown([])


# ---------------------------------------------------------------------- handlers
def test_typing_two_queries_sets_two_queries():
    model = FakeModel()
    controls = LaserViewerControls(model)
    message = controls.apply_queries("red apple; table")
    assert model.queries == ["red apple", "table"]
    assert "relevancy_0 = red apple" in message and "relevancy_1 = table" in message
    assert controls.status == message


def test_retyping_the_same_queries_does_not_re_encode():
    model = FakeModel()
    controls = LaserViewerControls(model)
    controls.apply_queries("floor;  table")  # what the model already renders
    controls.apply_queries("red apple")
    controls.apply_queries("red apple ")
    message = controls.apply_queries("red apple;")
    assert model.calls == [("set_queries", ["red apple"])]
    assert message == "1 query: relevancy_0 = red apple."


@pytest.mark.parametrize("text", ["", "   ", " ; \t;\n"])
def test_empty_or_whitespace_text_clears_the_queries(text):
    model = FakeModel()
    controls = LaserViewerControls(model)
    controls.apply_queries("red apple")
    message = controls.apply_queries(text)
    assert model.queries == [] and model.calls[-1] == ("set_queries", [])
    assert message.startswith("Queries cleared")


def test_unicode_queries_reach_the_model():
    model = FakeModel()
    controls = LaserViewerControls(model)
    controls.apply_queries("苹果; café ☕; 🍎")
    assert model.queries == ["苹果", "café ☕", "🍎"]


def test_very_long_and_too_many_queries_are_cut_with_a_message():
    model = FakeModel()
    controls = LaserViewerControls(model)
    message = controls.apply_queries("x" * 5000)
    assert len(model.queries[0]) == MAX_QUERY_CHARS
    assert "shortened" in message and "77 tokens" in message
    message = controls.apply_queries(";".join(f"thing {i}" for i in range(MAX_QUERIES + 4)))
    assert len(model.queries) == MAX_QUERIES
    assert f"only the first {MAX_QUERIES} of {MAX_QUERIES + 4}" in message


def test_a_failing_model_gives_a_message_not_an_exception():
    model = BrokenModel()
    controls = LaserViewerControls(model)
    message = controls.apply_queries("red apple")
    assert "Could not use the queries" in message and "teacher" in message
    assert model.queries == ["floor", "table"]


def test_a_model_without_the_hooks_is_named_in_the_message():
    class OldModel:
        queries: list[str] = []

    controls = LaserViewerControls(OldModel())  # type: ignore[arg-type]
    assert "OldModel has no set_queries()" in controls.apply_queries("red apple")
    assert "OldModel has no 'query_mode'" in controls.apply_mode("segmentation")
    assert "no `segmentation_legend()`" in controls.legend()


def test_mode_threshold_label_volume_and_negatives_reach_the_model():
    model = FakeModel()
    controls = LaserViewerControls(model)
    controls.apply_mode("segmentation")
    controls.apply_threshold(0.7)
    controls.apply_label_volume(True)
    controls.apply_negatives("object; stuff")
    assert model.query_mode == "segmentation"
    assert model.composite_threshold == pytest.approx(0.7)
    assert model.segment_with_label_volume is True
    assert model.negatives == ["object", "stuff"]
    message = controls.apply_negatives("  ")
    assert model.calls[-1] == ("set_negatives", []) and "LERF's defaults" in message


def test_invalid_mode_and_threshold_leave_the_model_unchanged():
    model = FakeModel()
    controls = LaserViewerControls(model)
    assert "unknown mode 'panoptic'" in controls.apply_mode("panoptic")
    assert "outside [0, 1]" in controls.apply_threshold(1.5)
    assert model.query_mode == "relevancy" and model.composite_threshold == 0.5


def test_legend_follows_the_mode():
    model = FakeModel()
    controls = LaserViewerControls(model)
    controls.apply_queries("red apple")
    assert "red apple" not in controls.legend()
    controls.apply_mode("segmentation")
    assert "red apple" in controls.legend()


def test_controls_start_from_the_model_state():
    model = FakeModel(queries=["floor", "table"])
    model.composite_threshold = 0.3
    controls = LaserViewerControls(model)
    assert controls.queries_text.value == "floor; table"
    assert controls.threshold.value == pytest.approx(0.3)
    assert controls.mode.value == "relevancy"
    assert list(controls.parameters()) == [] and controls.state_dict() == {}


def test_children_forward_to_the_panel_hook_at_call_time():
    """nerfstudio replaces the panel's cb_hook after install (lock + re-render); children must go through it."""
    model = FakeModel()
    controls = LaserViewerControls(model)
    rerenders = []
    original = controls.cb_hook
    controls.cb_hook = lambda element: [original(element), rerenders.append(element.name)]
    controls.queries_text.value = "red apple; table"
    controls.queries_text.cb_hook(controls.queries_text)
    controls.mode.value = "segmentation"
    controls.mode.cb_hook(controls.mode)
    assert model.queries == ["red apple", "table"] and model.query_mode == "segmentation"
    assert rerenders == ["Queries", "Mode"]


# ---------------------------------------------------------------------- viser wiring
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_installed_panel_applies_changes_from_viser():
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    try:
        model = FakeModel()
        controls = LaserViewerControls(model)
        controls.install(server)
        # every input sits in the panel's folder, in display order
        inputs = [element.gui_handle._impl for element in controls.children_elements()]
        assert all(state.parent_container_id == controls.gui_handle._id for state in inputs)
        assert [state.label for state in sorted(inputs, key=lambda state: state.order)] == [
            "Queries",
            "Mode",
            "Negatives",
            "Threshold",
            "Use label volume",
        ]
        controls.queries_text.gui_handle.value = "red apple; table"  # viser runs on_update callbacks in a pool
        assert _wait_for(lambda: model.queries == ["red apple", "table"])
        assert _wait_for(lambda: "relevancy&#95;1 = table" in controls._status_handle.content)
        controls.threshold.gui_handle.value = 0.25
        assert _wait_for(lambda: model.composite_threshold == pytest.approx(0.25))
        controls.mode.gui_handle.value = "segmentation"
        assert _wait_for(lambda: "red apple" in controls._legend_handle.content)
    finally:
        server.stop()


# ---------------------------------------------------------------------- real pipeline
@pytest.fixture(scope="module")
def pipeline(tiny_scene):
    torch.manual_seed(0)
    return tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="val")


def _render(pipeline, width: int = 16) -> dict[str, torch.Tensor]:
    """One frame from the first training camera, shrunk to ``width`` pixels (as the viewer's low-res preview)."""
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    camera.rescale_output_resolution(width / int(camera.width))
    pipeline.model.eval()
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)


def test_pipeline_carries_the_panel_where_the_viewer_finds_it(pipeline):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    found = parse_object(pipeline, ViewerElement, "Custom Elements")
    assert [(path, type(element)) for path, element in found] == [
        ("Custom Elements/viewer_controls", LaserViewerControls)
    ]
    assert found[0][1].predictor is pipeline.model.predictor
    controls = parse_object(pipeline, ViewerControl, "Custom Elements")
    assert [(path, control) for path, control in controls] == [
        ("Custom Elements/viewer_controls/viewer_control", pipeline.viewer_controls.viewer_control)
    ]
    assert not any("viewer_controls" in key for key in pipeline.state_dict())


def test_typed_queries_appear_as_outputs_of_the_next_frame(pipeline):
    controls = pipeline.viewer_controls
    controls.apply_queries("苹果; café ☕")
    outputs = _render(pipeline)
    assert {"relevancy_0", "relevancy_1", "composited_0", "composited_1"} <= outputs.keys()
    assert "relevancy_2" not in outputs
    controls.apply_queries("   ")
    assert not any(key.startswith("relevancy_") for key in _render(pipeline))
    controls.apply_mode("segmentation")
    controls.apply_queries("red apple; glass of water")
    names = [name for name, _ in pipeline.model.predictor.segmentation_legend()]
    assert "glass of water" in names and "glass of water" in controls.legend()
    controls.apply_mode("relevancy")


def test_a_run_without_label_volume_disables_its_checkbox_and_says_why(tiny_scene, pipeline):
    """A run trained with --pipeline.model.use-label-volume False: ticking "Use label volume" did nothing, silently."""
    assert not pipeline.viewer_controls.use_label_volume.disabled  # the fixture's run has one

    without = tiny_pipeline_config(tiny_scene, use_label_volume=False).setup(device="cpu", test_mode="val")
    controls = without.viewer_controls
    assert controls.use_label_volume.disabled and controls.use_label_volume.default_value is False
    assert controls.use_label_volume.hint == NO_LABEL_VOLUME
    message = controls.apply_label_volume(True)
    assert "no label volume" in message and "--pipeline.model.use-label-volume True" in message
    assert without.model.predictor.segment_with_label_volume is False
    assert "distilled features" in controls.apply_label_volume(False)


def test_the_viewer_can_walk_a_pipeline_loaded_for_viewing(tiny_scene):
    """ns-viewer builds the pipeline in 'test' mode and walks every public attribute of every module."""
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerElement

    viewing = tiny_pipeline_config(tiny_scene).setup(device="cpu", test_mode="test")
    found = parse_object(viewing, ViewerElement, "Custom Elements")
    assert [path for path, _ in found] == ["Custom Elements/viewer_controls"]


def test_a_change_interrupts_the_frame_before_taking_the_render_lock():
    model = FakeModel()
    controls = LaserViewerControls(model)
    events = []

    class FakeViewer:
        viser_server = None

        def _trigger_rerender(self) -> None:
            events.append("interrupt")

    controls.viewer_control._setup(FakeViewer())  # what the viewer does to every ViewerControl it finds
    original = controls.cb_hook
    controls.cb_hook = lambda element: [events.append("lock"), original(element)]
    controls.queries_text.value = "red apple"
    controls.queries_text.cb_hook(controls.queries_text)
    assert events == ["interrupt", "lock"] and model.queries == ["red apple"]


def test_a_saved_run_shows_its_step_and_no_pause_button():
    """ns-viewer on a finished run showed "Step: 0" and "Pause Training" (issue 18)."""
    from types import SimpleNamespace

    from nerfstudio.viewer.viewer import Viewer

    controls = LaserViewerControls(FakeModel())

    class SavedRunViewer:
        viser_server = None
        trainer = None  # ns-viewer: no trainer
        step = 1999  # set by ns-viewer's update_scene(step=...) from the checkpoint
        make_stats_markdown = Viewer.make_stats_markdown

        def __init__(self) -> None:
            self.pause_train = SimpleNamespace(visible=True)
            self.resume_train = SimpleNamespace(visible=False)
            self.stats_markdown = SimpleNamespace(content="Step: 0  \nResolution: 512x384px")

    viewer = SavedRunViewer()
    controls.viewer_control._setup(viewer)
    controls.show_saved_run_state()
    assert viewer.stats_markdown.content.startswith("Step: 1999") and "512x384px" in viewer.stats_markdown.content
    assert not viewer.pause_train.visible and not viewer.resume_train.visible

    training = SavedRunViewer()
    training.trainer = object()  # during training nerfstudio keeps the header itself
    controls.viewer_control._setup(training)
    controls.show_saved_run_state()
    assert training.pause_train.visible and training.stats_markdown.content.startswith("Step: 0")


def _viewer_on(device: str, width: int = 160, height: int = 120):
    from types import SimpleNamespace

    model = torch.nn.Linear(2, 2, device=device)
    cameras = SimpleNamespace(width=torch.tensor([[width]]), height=torch.tensor([[height]]))
    return SimpleNamespace(
        viser_server=None,  # ViewerControl._setup reads it
        trainer=object(),
        get_model=lambda: model,
        render_statemachines={7: SimpleNamespace(target_fps=30), 8: SimpleNamespace(target_fps=30)},
        control_panel=SimpleNamespace(_max_res=SimpleNamespace(value=512)),
        pipeline=SimpleNamespace(datamanager=SimpleNamespace(train_dataset=SimpleNamespace(cameras=cameras))),
    )


def test_on_a_cpu_the_preview_is_sized_for_the_cpu_once():
    """On a CPU the viewer showed 30-pixel mosaics and waited tens of seconds for a 512-pixel frame (issue 18)."""
    from types import SimpleNamespace

    from laser_ns.viewer import CPU_PREVIEW_FPS

    controls = LaserViewerControls(FakeModel())
    viewer = _viewer_on("cpu")
    controls.viewer_control._setup(viewer)
    controls.fit_preview_to_device(SimpleNamespace(client_id=7))
    assert viewer.render_statemachines[7].target_fps == CPU_PREVIEW_FPS
    assert viewer.control_panel._max_res.value == 160  # the training images' longer side
    viewer.control_panel._max_res.value = 300  # the user's choice stays theirs when another browser connects
    controls.fit_preview_to_device(SimpleNamespace(client_id=8))
    assert viewer.render_statemachines[8].target_fps == CPU_PREVIEW_FPS
    assert viewer.control_panel._max_res.value == 300

    big = _viewer_on("cpu", width=4000, height=3000)
    fresh = LaserViewerControls(FakeModel())
    fresh.viewer_control._setup(big)
    fresh.fit_preview_to_device(SimpleNamespace(client_id=7))
    assert big.control_panel._max_res.value == 512  # never above nerfstudio's default


def test_on_another_device_the_preview_is_nerfstudios():
    from types import SimpleNamespace

    controls = LaserViewerControls(FakeModel())
    viewer = _viewer_on("meta")  # any device but the CPU (a GPU in practice)
    controls.viewer_control._setup(viewer)
    controls.fit_preview_to_device(SimpleNamespace(client_id=7))
    assert viewer.render_statemachines[7].target_fps == 30 and viewer.control_panel._max_res.value == 512


def test_nerfstudio_sizes_frames_by_the_attributes_the_preview_sets():
    """The CPU preview sets RenderStateMachine.target_fps and the control panel's Max res; nerfstudio must read them."""
    import inspect

    from nerfstudio.viewer.control_panel import ControlPanel
    from nerfstudio.viewer.render_state_machine import RenderStateMachine

    source = inspect.getsource(RenderStateMachine._calculate_image_res)
    assert "self.target_fps" in source and "control_panel.max_res" in source
    assert "self._max_res.value" in inspect.getsource(ControlPanel.max_res.fget)


def test_a_browser_connected_before_the_viewer_was_ready_gets_the_cpu_preview():
    """viser announces a browser that is already connected when the panel installs, before nerfstudio hands the
    panel the viewer; the browser test's page did exactly that, so the preview must be applied at hand-over."""
    from types import SimpleNamespace

    from laser_ns.viewer import CPU_PREVIEW_FPS

    controls = LaserViewerControls(FakeModel())
    viewer = _viewer_on("cpu")
    viewer.viser_server = SimpleNamespace(get_clients=lambda: {7: SimpleNamespace(client_id=7)})
    controls.fit_preview_to_device(SimpleNamespace(client_id=7))  # announced early: no viewer yet, nothing to do
    assert viewer.render_statemachines[7].target_fps == 30
    controls.viewer_control._setup(viewer)
    assert viewer.render_statemachines[7].target_fps == CPU_PREVIEW_FPS
    assert viewer.control_panel._max_res.value == 160


def _saved_run_viewer(tmp_path, max_num_iterations: int, checkpoint_step: int):
    from types import SimpleNamespace

    import yaml

    from laser_ns.method_configs import laser_lite_config

    config = laser_lite_config()
    config.max_num_iterations = max_num_iterations
    (tmp_path / "config.yml").write_text(yaml.dump(config))  # as nerfstudio's save_config writes it
    return SimpleNamespace(
        viser_server=None,
        trainer=None,  # ns-viewer
        step=0,  # a browser connected early: ns-viewer has not set the step yet
        log_filename=tmp_path / "viewer_log_filename.txt",  # where ns-viewer puts it, beside config.yml
        pipeline=SimpleNamespace(checkpoint_step=checkpoint_step),
    )


def test_a_saved_run_with_too_little_geometry_is_named_once_with_the_fix(tmp_path, capsys):
    """Issue 18: ns-viewer showed a 400-step run's fog without a word; its boxes and depths are not usable."""
    controls = LaserViewerControls(FakeModel())
    controls.viewer_control._setup(_saved_run_viewer(tmp_path, 400, 399))
    controls.check_saved_run_geometry()
    out = capsys.readouterr().out
    assert "warning:" in out and "only 100 steps (step 399)" in out and "nerfacto-lite" in out
    assert controls.status.startswith("Warning: ") and str(tmp_path / "config.yml") in controls.status
    controls.check_saved_run_geometry()  # another browser: said once per viewer
    assert "warning:" not in capsys.readouterr().out


def test_a_saved_run_with_enough_geometry_or_a_training_run_gets_no_warning(tmp_path, capsys):
    from types import SimpleNamespace

    controls = LaserViewerControls(FakeModel())
    controls.viewer_control._setup(_saved_run_viewer(tmp_path, 2000, 1999))  # 500 geometry steps
    controls.check_saved_run_geometry()
    training = LaserViewerControls(FakeModel())
    training.viewer_control._setup(SimpleNamespace(viser_server=None, trainer=object(), step=10))
    training.check_saved_run_geometry()  # still training its geometry: "Show 3D boxes" checks when asked
    assert "warning:" not in capsys.readouterr().out and not controls.status.startswith("Warning")
