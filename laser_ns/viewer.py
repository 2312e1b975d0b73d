"""Viewer panel "Laser: talk to the scene": type queries, pick relevancy or segmentation, read the class legend.

How nerfstudio 1.1.5 finds and refreshes it (facts this module relies on):

- ``Viewer.__init__`` walks the pipeline with ``nerfstudio.viewer.utils.parse_object``: every public attribute
  (not starting with ``_``) of the pipeline and, recursively, of its nn.Module attributes; each ``ViewerElement``
  found is installed once, inside folders named after its attribute path below a "Custom Elements" folder. The
  walk does not look inside a ``ViewerElement``. :class:`LaserViewerControls` is therefore itself the element
  (an nn.Module without parameters that is also a ``ViewerElement``): attached as a public attribute of the
  pipeline it lands directly in "Custom Elements" and opens its own clearly named folder, with its controls in a
  fixed order (the walk would otherwise sort them alphabetically by attribute name).
- After installing an element the viewer replaces its ``cb_hook`` with one that runs the old hook under the
  viewer's train lock and then re-renders every client. The render thread holds that lock for a whole frame, and a
  full-resolution frame on a CPU takes tens of seconds, so a change would wait for it: the panel first interrupts
  the frame the way a camera move does (through a ``ViewerControl``, which the same walk hands the viewer), then
  goes through the hook. A change never races a frame and shows on the next one, without restarting anything.
- The "Output type" dropdown is refreshed by the render thread whenever a frame's set of output names differs
  from the previous frame's (``RenderStateMachine._send_output_to_viewer``); when the selected output disappears
  (queries cleared) viser falls back to the first option, ``rgb``. New ``relevancy_<i>`` outputs therefore appear
  in the dropdown one frame after a query is typed.
- "Show 3D boxes" localises every query (:mod:`laser_ns.export.locate`, on a small labelled point cloud of the
  training views) and draws its axis-aligned box, best point and name with viser's scene API. The pipeline and the
  viser server come from the ``ViewerControl`` the viewer set up; scene positions are the dataparser frame's times
  nerfstudio's ``VISER_NERFSTUDIO_SCALE_RATIO``. The panel's Mode and Threshold choose how the region is selected.
- viser's markdown (MDX with ``rehype-color-chips``) draws a colour chip after inline code that holds a colour
  such as ``#e61a1a``; the legend uses it. viser serves its prebuilt web client from the installed package, so
  the viewer page works offline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerCheckbox,
    ViewerControl,
    ViewerDropdown,
    ViewerElement,
    ViewerParameter,
    ViewerSlider,
    ViewerText,
)
from torch import nn

from laser_ns.conventions import CANONICAL_NEGATIVES
from laser_ns.errors import warn
from laser_ns.export.sanity import geometry_steps, geometry_warnings, short_geometry_warning
from laser_ns.predictor import parse_queries

PANEL_LABEL = "Laser: talk to the scene"
"""Title of the viewer folder that holds the controls."""
MODES = ("relevancy", "segmentation")
"""Values of ``predictor.query_mode``: open-vocabulary relevancy, or closed-set segmentation over the classes."""
MAX_QUERIES = 16
"""Queries beyond this many are dropped: each one adds outputs to every frame."""
MAX_QUERY_CHARS = 300
"""Longer queries are shortened: CLIP's text encoder reads at most 77 tokens anyway."""
LOCATE_POINTS = 16384
"""Rays cast to localise the queries for the 3D boxes (a few seconds on a CPU for laser-lite)."""
BOX_ROOT = "/laser_boxes"
"""viser scene node under which the 3D boxes are drawn."""
BOX_NODES = 14
"""Scene nodes per drawn box: 12 edges, the best point and the label."""
CPU_PREVIEW_FPS = 4
"""Frame rate nerfstudio sizes a moving frame for, on a CPU (its own is 30): at 30 a CPU's few tens of thousands of
rays a second give frames about 30 pixels high, a mosaic; at 4 they are about 80 to 100."""
CPU_PREVIEW_MAX_RES = (64, 512)
"""On a CPU the resting frame's "Max res" starts at the training images' longer side, within these bounds (the
slider's own minimum and nerfstudio's default), so a resting frame comes in about a second instead of tens."""


class Queryable(Protocol):
    """What the panel drives: the model's language predictor (:class:`laser_ns.predictor.LanguagePredictor`)."""

    queries: list[str]
    negatives: list[str]
    query_mode: str
    composite_threshold: float
    segment_with_label_volume: bool

    def set_queries(self, queries: Sequence[str]) -> None: ...

    def set_negatives(self, negatives: Sequence[str]) -> None: ...

    def segmentation_legend(self) -> list[tuple[str, tuple[int, int, int]]]: ...


NO_LABEL_VOLUME = (
    "This run has no label volume (it trained with --pipeline.model.use-label-volume False); "
    "segmentation uses the distilled features. Train with --pipeline.model.use-label-volume True to have one."
)
"""The panel's word for a run without a label volume (the checkbox is disabled and says so)."""


class ControlError(Exception):
    """A value typed into the panel that cannot be applied; its message is shown in the panel."""


def describe_queries(queries: Sequence[str]) -> str:
    """Which output shows which query: '2 queries: relevancy_0 = red apple, relevancy_1 = table.'"""
    names = ", ".join(f"relevancy_{i} = {query}" for i, query in enumerate(queries))
    return f"{len(queries)} {'query' if len(queries) == 1 else 'queries'}: {names}."


def legend_markdown(legend: Sequence[tuple[str, tuple[int, int, int]]]) -> str:
    """One line per class: a colour chip (viser draws it after inline code holding a hex colour) and the name."""
    if not legend:
        return "**Legend** (segmentation): no classes."
    lines = ["**Legend** (segmentation colours)", ""]
    for name, (r, g, b) in legend:
        lines.append(f"- `#{int(r):02x}{int(g):02x}{int(b):02x}` {escape_markdown(name)}")
    return "\n".join(lines)


def escape_markdown(text: str) -> str:
    """Text shown literally by viser's MDX renderer: markup characters become numeric character references."""
    special = set("\\`*_{}[]<>#|~&")  # inline markup, MDX expressions and JSX; messages never start a line
    return "".join(f"&#{ord(ch)};" if ch in special else ch for ch in text)


class LaserViewerControls(nn.Module, ViewerElement[str]):
    """The panel's controls; attach it as a public attribute of the pipeline. Holds no parameters.

    Each handler (``apply_queries``, ``apply_mode``, ...) applies one control's value to the predictor and returns the
    message shown in the panel; a value that cannot be applied leaves the predictor as it was and explains why.
    """

    def __init__(self, predictor: Queryable, has_label_volume: bool = True) -> None:
        nn.Module.__init__(self)
        ViewerElement.__init__(self, name=PANEL_LABEL, cb_hook=self._dispatch)
        # Kept out of the module tree: the predictor belongs to the model, and registering it here would save it twice.
        self.__dict__["_predictor"] = predictor
        model = predictor
        queries = list(getattr(model, "queries", []) or [])
        self.status = describe_queries(queries) if queries else "Type what to look for, e.g. 'red apple; table'."
        self._status_handle: Any = None
        self._legend_handle: Any = None
        self._box_handles: list[Any] = []  # viser scene nodes of the drawn 3D boxes
        self._geometry_checked = False  # a saved run's geometry is checked once per viewer
        self._has_label_volume = has_label_volume

        initial_queries = "; ".join(queries)
        negatives = getattr(model, "negatives", None) or CANONICAL_NEGATIVES
        mode = getattr(model, "query_mode", MODES[0])
        self.queries_text = ViewerText(
            "Queries",
            initial_queries,
            hint="What to look for; separate several with ';' (e.g. 'red apple; table'). "
            "Each becomes relevancy_<i> and composited_<i> in 'Output type'. Empty clears.",
        )
        self.mode = ViewerDropdown(
            "Mode",
            mode if mode in MODES else MODES[0],
            list(MODES),
            hint="relevancy: LERF-style score of each query against the negatives. "
            "segmentation: each pixel gets the scene's class (or typed query) it matches best.",
        )
        self.negatives_text = ViewerText(
            "Negatives",
            "; ".join(negatives),
            hint="Canonical phrases every query competes against in relevancy mode; separate with ';'.",
        )
        self.threshold = ViewerSlider(
            "Threshold",
            float(getattr(model, "composite_threshold", 0.5)),
            0.0,
            1.0,
            0.01,
            hint="composited_<i>: relevancy above this is highlighted over the RGB image.",
        )
        self.use_label_volume = ViewerCheckbox(
            "Use label volume",
            bool(getattr(model, "segment_with_label_volume", False)) and has_label_volume,
            disabled=not has_label_volume,
            hint="Segment with the label volume (on) or with the distilled CLIP features (off)."
            if has_label_volume
            else NO_LABEL_VOLUME,
        )
        self.show_boxes = ViewerButton("Show 3D boxes", cb_hook=lambda element: None)
        self.clear_boxes = ViewerButton("Clear 3D boxes", cb_hook=lambda element: None)
        self._handlers: dict[int, Callable[[Any], str]] = {
            id(self.show_boxes): lambda element: self.apply_show_boxes(),
            id(self.clear_boxes): lambda element: self.apply_clear_boxes(),
            id(self.queries_text): lambda element: self.apply_queries(element.value),
            id(self.mode): lambda element: self.apply_mode(element.value),
            id(self.negatives_text): lambda element: self.apply_negatives(element.value),
            id(self.threshold): lambda element: self.apply_threshold(element.value),
            id(self.use_label_volume): lambda element: self.apply_label_volume(element.value),
        }
        self._applied_queries = queries  # what the predictor renders now; retyping it costs nothing
        # Public so that the viewer's walk finds it and hands it the viewer (ViewerControl._setup).
        self.viewer_control = _PanelControl(self._on_viewer_ready)
        for element in [*self.children_elements(), *self.action_elements()]:
            element.cb_hook = self._forward

    @property
    def predictor(self) -> Queryable:
        """The language predictor the controls drive (``model.predictor``)."""
        return self.__dict__["_predictor"]

    def children_elements(self) -> list[ViewerParameter]:
        """The panel's input elements, in display order."""
        return [self.queries_text, self.mode, self.negatives_text, self.threshold, self.use_label_volume]

    def action_elements(self) -> list[ViewerButton]:
        """The panel's buttons, shown after the inputs."""
        return [self.show_boxes, self.clear_boxes]

    # ------------------------------------------------------------------ viewer element
    def _create_gui_handle(self, viser_server: Any) -> None:
        self.gui_handle = viser_server.gui.add_folder(PANEL_LABEL)

    def install(self, viser_server: Any) -> None:
        """Adds the folder, the inputs, the status line and the legend to the viewer (called by nerfstudio)."""
        self._create_gui_handle(viser_server)
        with self.gui_handle:
            for element in [*self.children_elements(), *self.action_elements()]:
                element.install(viser_server)
            self._status_handle = viser_server.gui.add_markdown(escape_markdown(self.status))
            self._legend_handle = viser_server.gui.add_markdown(self.legend())
        viser_server.on_client_connect(self._on_client_connect)

    def _on_client_connect(self, client: Any) -> None:
        self.show_saved_run_state()
        self.fit_preview_to_device(client)
        self.check_saved_run_geometry()

    def _on_viewer_ready(self, viewer: Any) -> None:
        """The viewer handed over its state. A browser that connected while the viewer was being built (a tab left
        open, or the page opened as soon as viser served it) was announced before that, when the panel could not yet
        reach the viewer, so it is set up now. The header's step is the viewer's at this point; ns-viewer sets the
        checkpoint's step just after."""
        server = getattr(viewer, "viser_server", None)
        if server is None:
            return
        for client in list(server.get_clients().values()):
            self._on_client_connect(client)

    def show_saved_run_state(self) -> None:
        """``ns-viewer`` on a saved run (a viewer without a trainer): the header shows the checkpoint's step instead
        of nerfstudio's "Step: 0", and no Pause/Resume Training button for a run that is not training. ns-viewer
        sets the viewer's step before any browser connects; this runs when one does."""
        viewer = getattr(self.viewer_control, "viewer", None)
        if viewer is None or getattr(viewer, "trainer", None) is not None:
            return  # a training run: nerfstudio keeps its header up to date
        for name in ("pause_train", "resume_train"):
            handle = getattr(viewer, name, None)
            if handle is not None:
                handle.visible = False
        markdown = getattr(viewer, "stats_markdown", None)
        if markdown is not None:
            markdown.content = viewer.make_stats_markdown(int(getattr(viewer, "step", 0)), None)

    def check_saved_run_geometry(self) -> None:
        """``ns-viewer`` on a saved run that trained geometry for too few steps: says so once, in the panel and the
        terminal, with the fix (its depths, 3D boxes and exports are not usable). Training runs are still training
        their geometry; "Show 3D boxes" checks them when asked."""
        viewer = getattr(self.viewer_control, "viewer", None)
        if self._geometry_checked or viewer is None or getattr(viewer, "trainer", None) is not None:
            return
        self._geometry_checked = True
        warning = short_geometry_warning(*viewed_geometry(viewer))
        if warning is None:
            return
        warn(warning)
        self._show_status(f"Warning: {warning}", f"**Warning**: {escape_markdown(warning)}")

    def fit_preview_to_device(self, client: Any) -> None:
        """On a CPU, frames nerfstudio sizes for a GPU come as 30-pixel mosaics while moving and take tens of
        seconds at rest. Size them for the CPU instead: moving frames for CPU_PREVIEW_FPS, and, once per viewer,
        "Max res" at the training images' size (the user's slider stays theirs afterwards). Does nothing on a GPU.
        nerfstudio creates the client's render state machine on connect, before this runs."""
        viewer = getattr(self.viewer_control, "viewer", None)
        if viewer is None or _model_device_type(viewer) != "cpu":
            return
        machine = getattr(viewer, "render_statemachines", {}).get(getattr(client, "client_id", None))
        if machine is not None:
            machine.target_fps = min(machine.target_fps, CPU_PREVIEW_FPS)
        if self.__dict__.get("_preview_fitted"):
            return
        self.__dict__["_preview_fitted"] = True
        slider = getattr(getattr(viewer, "control_panel", None), "_max_res", None)
        longest = _training_image_side(viewer)
        if slider is None or longest is None:
            return
        low, high = CPU_PREVIEW_MAX_RES
        slider.value = max(low, min(high, longest))
        CONSOLE.print(
            f"[laser_ns] viewer on a CPU: frames at rest render at most {slider.value} pixels ('Max res' in the "
            f"Control panel) and moving frames are sized for {CPU_PREVIEW_FPS} fps, so previews come in seconds."
        )

    def _forward(self, element: Any) -> None:
        # The viewer runs the panel's hook under the lock that a frame holds while it renders; a full-resolution
        # frame on a CPU takes seconds, so interrupt it first (as a camera move does) instead of waiting for it.
        viewer = getattr(self.viewer_control, "viewer", None)
        if viewer is not None:
            try:
                viewer._trigger_rerender()
            except Exception:  # best effort (a client may be leaving); the change itself must still go through
                pass
        self.cb_hook(element)  # looked up now: the viewer replaced it with "lock, apply, re-render" after install

    def _dispatch(self, element: Any) -> None:
        handler = self._handlers.get(id(element))
        if handler is not None:
            handler(element)

    # ------------------------------------------------------------------ handlers
    def apply_queries(self, text: str) -> str:
        """Encodes the ';'-separated queries in ``text``; empty or whitespace-only text clears them."""

        def apply() -> str:
            queries, notes = _limit_queries(parse_queries(text))
            if queries != self._applied_queries:  # typing a space or a trailing ';' does not re-encode
                _call_hook(self.predictor, "set_queries", queries)
                self._applied_queries = queries
            return (describe_queries(queries) if queries else "Queries cleared.") + notes

        return self._run("Could not use the queries", apply)

    def apply_negatives(self, text: str) -> str:
        """Encodes the ';'-separated canonical negatives in ``text``; empty text restores LERF's."""

        def apply() -> str:
            negatives, notes = _limit_queries(parse_queries(text))
            _call_hook(self.predictor, "set_negatives", negatives)  # empty: LERF's negatives
            shown = ", ".join(negatives) if negatives else f"LERF's defaults ({', '.join(CANONICAL_NEGATIVES)})"
            return f"Negatives: {shown}." + notes

        return self._run("Could not use the negatives", apply)

    def apply_mode(self, mode: str) -> str:
        """Switches between open-vocabulary relevancy and closed-set segmentation."""

        def apply() -> str:
            if mode not in MODES:
                raise ControlError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
            _set_attribute(self.predictor, "query_mode", mode)
            if mode == "segmentation":
                return "Mode: segmentation; typed queries join the scene's classes (output 'segmentation')."
            return "Mode: relevancy; each query against the negatives (outputs 'relevancy_<i>', 'composited_<i>')."

        return self._run("Could not switch the mode", apply)

    def apply_threshold(self, value: float) -> str:
        """Sets the relevancy above which composited_<i> highlights a pixel."""

        def apply() -> str:
            threshold = float(value)
            if not 0.0 <= threshold <= 1.0:
                raise ControlError(f"threshold {threshold} is outside [0, 1]; relevancy is a probability.")
            _set_attribute(self.predictor, "composite_threshold", threshold)
            return f"Threshold: {threshold:.2f}."

        return self._run("Could not set the threshold", apply)

    def apply_label_volume(self, enabled: bool) -> str:
        """Chooses the label volume (True) or the distilled features (False) for segmentation."""

        def apply() -> str:
            if enabled and not self._has_label_volume:
                raise ControlError(NO_LABEL_VOLUME)
            _set_attribute(self.predictor, "segment_with_label_volume", bool(enabled))
            return f"Segmentation uses the {'label volume' if enabled else 'distilled features'}."

        return self._run("Could not switch the segmentation source", apply)

    def apply_show_boxes(self) -> str:
        """Localises every query in 3D and draws its box, best point and name in the viewer's scene."""

        def apply() -> str:
            from laser_ns.export.locate import localise
            from laser_ns.export.point_cloud import render_labelled_cloud

            viewer = getattr(self.viewer_control, "viewer", None)
            if viewer is None:
                raise ControlError("3D boxes need the running viewer (its pipeline and scene); none is attached.")
            queries = list(getattr(self.predictor, "queries", []) or [])
            if not queries:
                raise ControlError("type one or more queries first; each gets a box.")
            segmentation = getattr(self.predictor, "query_mode", "relevancy") == "segmentation"
            threshold = float(getattr(self.predictor, "composite_threshold", 0.5))
            cloud = render_labelled_cloud(
                viewer.pipeline, queries, num_points=LOCATE_POINTS, queries_as_classes=segmentation
            )
            scene = viewer.viser_server.scene
            self._remove_boxes()
            found, missing = [], []
            colors = dict(zip(cloud.class_names, cloud.class_colors, strict=True))
            for query in queries:
                try:
                    where = localise(cloud, query, "segmentation" if segmentation else "relevancy", threshold)
                except ValueError as error:  # ExportError: the query matches nothing
                    missing.append(f"{query} ({error})")
                    continue
                color = colors.get(query, (255, 200, 0))
                self._box_handles += draw_box(scene, f"{BOX_ROOT}/{len(found)}", where, color)
                found.append(f"{query} ({len(where.region)} points)")
            how = "segmentation" if segmentation else f"relevancy >= {threshold:.2f}"
            message = f"3D boxes ({how}): " + (", ".join(found) if found else "none")
            message += (f". Not found: {'; '.join(missing)}" if missing else "") + "."
            for doubt in geometry_warnings(*viewed_geometry(viewer), viewed_scene_box(viewer), cloud.points):
                warn(doubt)
                message += f" Warning: {doubt}"
            return message

        return self._run("Could not show 3D boxes", apply)

    def apply_clear_boxes(self) -> str:
        """Removes the drawn 3D boxes."""

        def apply() -> str:
            count = self._remove_boxes()
            return f"3D boxes cleared ({count // BOX_NODES} removed)."

        return self._run("Could not clear 3D boxes", apply)

    def _remove_boxes(self) -> int:
        handles, self._box_handles = self._box_handles, []
        for handle in handles:
            handle.remove()
        return len(handles)

    def legend(self) -> str:
        """Markdown legend of the segmentation colours (class name -> colour), or why there is none."""
        hook = getattr(self.predictor, "segmentation_legend", None)
        if hook is None:
            return "**Legend**: this model has no `segmentation_legend()`; update laser_ns."
        try:
            return legend_markdown(hook())
        except Exception as error:  # the panel must survive a broken legend
            return f"**Legend** unavailable: {escape_markdown(str(error))}"

    def _show_status(self, message: str, markdown: str) -> None:
        """The panel's status line: ``message`` as text (``self.status``) and as the shown markdown."""
        self.status = message
        if self._status_handle is not None:
            self._status_handle.content = markdown

    def _run(self, action: str, apply: Callable[[], str]) -> str:
        try:
            message = apply()
            markdown = escape_markdown(message)
        except Exception as error:  # a bad value must never take the viewer down; say what happened instead
            reason = str(error) if isinstance(error, ControlError) else f"{type(error).__name__}: {error}"
            message = f"{action}: {reason}"
            markdown = f"**{escape_markdown(action)}**: {escape_markdown(reason)}"
            CONSOLE.print(f"[laser_ns] viewer: {message}", markup=False)
        self._show_status(message, markdown)
        if self._legend_handle is not None:
            self._legend_handle.content = self.legend()
        return message


class _PanelControl(ViewerControl):
    """The panel's ViewerControl: tells the panel when nerfstudio hands it the viewer."""

    def __init__(self, on_setup: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_setup = on_setup

    def _setup(self, viewer: Any) -> None:
        super()._setup(viewer)
        self._on_setup(viewer)


def viewed_geometry(viewer: Any) -> tuple[str, int, int | None]:
    """What the viewer shows (for messages), its step, and how many steps its geometry trained (None: unknown, or
    seeded from a nerfacto run). A saved run's come from its config.yml beside the viewer's log file, where
    nerfstudio's own viewer finds it, and from the checkpoint ns-viewer loaded."""
    step = int(getattr(viewer, "step", 0) or 0)
    if getattr(viewer, "trainer", None) is not None:
        schedule = getattr(viewer.get_model(), "schedule", None)
        try:
            phases = schedule.phases
        except (AttributeError, RuntimeError):  # no laser schedule, or the trainer has not set the run's length
            return "the training run", step, None
        return "the training run", step, None if schedule.skip_geometry else min(step, phases.language_start)
    checkpoint_step = getattr(viewer.pipeline, "checkpoint_step", None)
    step = step if checkpoint_step is None else int(checkpoint_step)
    log_filename = getattr(viewer, "log_filename", None)
    if log_filename is None:
        return "the viewed run", step, None
    config_path = Path(log_filename).parent / "config.yml"
    try:
        import yaml

        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)  # as nerfstudio's eval_setup reads it
        return str(config_path), step, geometry_steps(config, step)
    except Exception:  # noqa: BLE001 - without the config the step check is skipped; the viewer must not fail
        return str(config_path), step, None


def viewed_scene_box(viewer: Any) -> Any:
    """The viewed scene's box as a (2, 3) array, from the dataparser's outputs or the model (None: unknown, and the
    far-outside check is skipped)."""
    outputs = getattr(viewer.pipeline.datamanager, "train_dataparser_outputs", None)
    scene_box = getattr(outputs, "scene_box", None)
    if scene_box is None:
        scene_box = getattr(viewer.pipeline.model, "scene_box", None)
    aabb = getattr(scene_box, "aabb", None)
    return None if aabb is None else aabb.detach().cpu().numpy()


def _model_device_type(viewer: Any) -> str | None:
    """The device type of the viewed model's parameters (None when the viewer has no model yet)."""
    try:
        return next(viewer.get_model().parameters()).device.type
    except (AttributeError, StopIteration, TypeError):
        return None


def _training_image_side(viewer: Any) -> int | None:
    """The longer side, in pixels, of the largest training image (None when the pipeline has no training data)."""
    cameras = getattr(getattr(getattr(viewer, "pipeline", None), "datamanager", None), "train_dataset", None)
    cameras = getattr(cameras, "cameras", None)
    if cameras is None:
        return None
    return int(max(cameras.width.max(), cameras.height.max()))


def box_edges(low: Sequence[float], high: Sequence[float]) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """The 12 edges (pairs of corners) of the axis-aligned box from ``low`` to ``high``."""
    corners = [tuple(high[a] if (i >> a) & 1 else low[a] for a in range(3)) for i in range(8)]
    # corners i and j share an edge when their indices differ in exactly one bit (one axis)
    return [(corners[i], corners[j]) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1]


def draw_box(scene: Any, name: str, where: Any, color: Sequence[int]) -> list[Any]:
    """Draws a localisation (laser_ns.export.locate.Localisation) as a wire box, a sphere at its best point and a
    label; returns the BOX_NODES scene handles. Positions are the dataparser frame's, scaled as the viewer does."""
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO as SCALE

    low, high = where.box
    rgb = tuple(int(c) for c in color)
    handles = [
        scene.add_spline_catmull_rom(f"{name}/edge_{k}", (a, b), line_width=3.0, color=rgb)
        for k, (a, b) in enumerate(box_edges(low * SCALE, high * SCALE))
    ]
    best = tuple(float(v) for v in where.best_point * SCALE)
    handles.append(scene.add_icosphere(f"{name}/best_point", radius=0.02 * SCALE, color=rgb, position=best))
    handles.append(scene.add_label(f"{name}/label", where.query, position=tuple(float(v) for v in high * SCALE)))
    return handles


def _limit_queries(queries: list[str]) -> tuple[list[str], str]:
    """Applies MAX_QUERIES and MAX_QUERY_CHARS; returns the kept queries and a note saying what was cut."""
    notes = []
    if len(queries) > MAX_QUERIES:
        notes.append(f"only the first {MAX_QUERIES} of {len(queries)} are used")
        queries = queries[:MAX_QUERIES]
    long = [i for i, q in enumerate(queries) if len(q) > MAX_QUERY_CHARS]
    if long:
        notes.append(
            f"{'query' if len(long) == 1 else 'queries'} {', '.join(map(str, long))} shortened to "
            f"{MAX_QUERY_CHARS} characters (CLIP reads at most 77 tokens)"
        )
        queries = [q[:MAX_QUERY_CHARS].rstrip() for q in queries]
    return queries, (" Note: " + "; ".join(notes) + "." if notes else "")


def _call_hook(model: Any, name: str, values: list[str]) -> None:
    hook = getattr(model, name, None)
    if hook is None:
        raise ControlError(f"{type(model).__name__} has no {name}(); this laser_ns model is too old for the panel.")
    hook(values)


def _set_attribute(model: Any, name: str, value: Any) -> None:
    if not hasattr(model, name):
        raise ControlError(f"{type(model).__name__} has no '{name}'; this laser_ns model is too old for the panel.")
    setattr(model, name, value)
