"""The dashboard's Solara components. `Page` is the whole page; dashboards/app.py serves it.

Layout: a header; on the left the scenario (preset, upload, save), the run controls (years x seeds,
run, step, cancel, progress) and the policy levers generated from the schema, grouped as the schema
groups them; on the right the results in tabs (overview, charts, district map, events, compare,
export). Every component reads one session's :class:`~portfolio_sim.dashboard.state.DashboardState`.
"""

from __future__ import annotations

import html
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import ipyvuetify as v
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import reacton.ipyvuetify as rv
import solara
import traitlets
from ipyvue import Template
from ipyvuetify.extra import FileInput
from ipywidgets import widget_serialization

from portfolio_sim.dashboard import exports, figures, levers, workshop
from portfolio_sim.dashboard.exports import MAX_UPLOAD_BYTES
from portfolio_sim.dashboard.simulation import MAX_SEEDS, RunSnapshot, RunStatus
from portfolio_sim.dashboard.state import TABS, DashboardState
from portfolio_sim.decisions import SCHOOL_CHOICES

log = logging.getLogger("portfolio_sim.dashboard")

TAB_LABELS = {"overview": "Overview", "charts": "Charts", "map": "District map", "events": "Event log",
              "compare": "Compare scenarios", "export": "Export"}
TAB_ICONS = {"overview": "mdi-view-dashboard-outline", "charts": "mdi-chart-line", "map": "mdi-map-marker-radius",
             "events": "mdi-format-list-bulleted", "compare": "mdi-compare", "export": "mdi-download"}

# The stylesheet: served by Solara as /static/assets/custom.css, which its page template puts in the
# <head> (the page is styled from its first paint, not when the widgets arrive); solara.Style(CSS) in
# Dashboard styles it where no such template runs (a notebook).
HEAD = Path(__file__).parent / "head"
CSS = (HEAD / "custom.css").read_text(encoding="utf-8")

PLOTLY_CONFIG = {"displaylogo": False, "responsive": False,
                 "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "portfolio-sim-chart"},
                 "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def esc(value: Any) -> str:
    return html.escape(str(value))


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------

class FigureRef:
    """A figure handed between components. Compared by identity: reacton compares props on every
    render, and plotly's own == serializes both figures."""

    __slots__ = ("fig",)

    def __init__(self, fig: go.Figure):
        self.fig = fig

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def ref(fig: go.Figure) -> FigureRef:
    return FigureRef(fig)


PLOTLY_SRC = "/static/assets/plotly.min.js"


def serve_plotly_js() -> None:
    """Let Solara serve plotly.py's own plotly.min.js at /static/assets/ (no CDN, no copy), and the
    dashboard's stylesheet as custom.css (head/)."""
    try:
        import plotly
        import solara.server.settings as server_settings
    except ImportError:  # pragma: no cover
        return
    package_data = str(Path(plotly.__file__).parent / "package_data")
    for location in (str(HEAD), package_data):
        if location not in server_settings.assets.extra_locations:
            server_settings.assets.extra_locations.append(location)


serve_plotly_js()


class PlotlyView(v.VuetifyTemplate):
    """A plotly figure drawn by plotly.js in the browser (see plotly_view.vue).

    Unlike plotly's FigureWidget (an anywidget that sends its 5 MB bundle with every chart), the page
    loads plotly.js once and each chart only sends its figure's JSON."""

    template = traitlets.Instance(Template).tag(sync=True, **widget_serialization)  # type: ignore[assignment]
    template_file = (__file__, "plotly_view.vue")
    figure = traitlets.Unicode("").tag(sync=True)
    config = traitlets.Dict({}).tag(sync=True)
    height = traitlets.Int(400).tag(sync=True)
    filename = traitlets.Unicode("chart").tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)     # under the title of a downloaded PNG (with the date)
    src = traitlets.Unicode(PLOTLY_SRC).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        self.click_handler: Callable[[dict], None] | None = None
        super().__init__(**kwargs)

    def vue_plotly_click(self, data: dict) -> None:
        if self.click_handler is not None:
            self.click_handler(data)

    def png(self) -> None:
        """Ask the browser to draw this chart as a PNG and download it (plotly.js, client side)."""
        self.send({"method": "png", "args": []})


@solara.component
def PlotlyChart(figure: FigureRef, on_click: Callable[[dict], None] | None = None, filename: str = "chart",
                png_request: int = 0, caption: str = ""):
    """A plotly figure that fills its container's width at the figure's height. `on_click(point)` gets
    {curve, index, customdata} of a clicked point; raising `png_request` downloads a PNG."""
    payload = solara.use_memo(lambda: pio.to_json(figure.fig, validate=False), [figure])
    height = int(figure.fig.layout.height or 420)
    config = {**PLOTLY_CONFIG, "toImageButtonOptions": {**PLOTLY_CONFIG["toImageButtonOptions"], "filename": filename}}
    element = PlotlyView.element(figure=payload, config=config, height=height, filename=filename, caption=caption)

    def attach() -> None:
        widget = cast(PlotlyView, solara.get_widget(element))
        widget.click_handler = on_click

    solara.use_effect(attach, [on_click])

    def png() -> None:
        if png_request:
            cast(PlotlyView, solara.get_widget(element)).png()

    solara.use_effect(png, [png_request])
    return element


def H2(text: str, testid: str = ""):
    """A section heading (h2: the page's outline for screen readers)."""
    return rv.Html(tag="h2", class_="pz-h2", children=[text], attributes={"data-testid": testid} if testid else {})


def Anchor(name: str):
    """A skip-link target (focusable by the link, not by Tab)."""
    return rv.Html(tag="div", attributes={"id": name, "tabindex": "-1"}, class_="pz-anchor")


def Txt(text: str, classes: list[str] = [], testid: str = "", style: str = ""):
    """A span of text with an optional data-testid (solara.Text takes no attributes)."""
    return rv.Html(tag="span", children=[text], class_=" ".join(classes), style_=style,
                   attributes={"data-testid": testid} if testid else {})


@solara.component
def Card(title: str = "", step: str = "", children: list = [], classes: list[str] = [], subtitle: str = ""):
    with solara.Column(classes=["pz-card", *classes], gap="8px") as main:
        if title:
            with solara.Row(classes=["pz-card-title"], gap="6px", style={"align-items": "center"}):
                if step:
                    solara.Text(step, classes=["pz-step"])
                rv.Html(tag="h2", class_="pz-card-h", children=[title])
        if subtitle:
            solara.Text(subtitle, classes=["pz-help"])
        solara.Column(gap="8px", children=children)
    return main


def html_table(df: pd.DataFrame, classes: str = "pz-table", numeric: set[str] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{esc(c)}</th>' for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cells = "".join(f'<td class="{"num" if c in numeric else ""}">{esc(v)}</td>'
                        for c, v in zip(df.columns, row, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


@solara.component
def Message(kind: str, text: str, testid: str = ""):
    """An info/success/warning/error box; text keeps its line breaks (validation errors are multi-line)."""
    icons = {"info": "mdi-information-outline", "success": "mdi-check-circle-outline",
             "warning": "mdi-alert-outline", "error": "mdi-alert-circle-outline"}
    with solara.Row(classes=["pz-msg", f"pz-msg--{kind}"], gap="8px",
                    style={"align-items": "flex-start"}) as main:
        rv.Icon(children=[icons.get(kind, icons["info"])], size="small", class_="pz-msg-icon")
        solara.HTML(tag="div", unsafe_innerHTML=esc(text), classes=["pz-msg-text"],
                    attributes={"data-testid": testid} if testid else None)
    return main


# ------------------------------------------------------------------------------------------------
# Levers generated from the schema
# ------------------------------------------------------------------------------------------------

@solara.component
def LeverControl(state: DashboardState, spec: levers.LeverSpec, value: Any, base_value: Any, error: str | None):
    changed = value != base_value
    path = spec.path

    def set_(v_: Any) -> None:
        state.set_lever(path, v_)

    unit = f" {spec.unit}" if spec.unit and spec.unit not in ("$",) else ""
    shown = (f"${float(value):,.0f}" if spec.unit == "$" and value is not None else spec.format(value)) + unit
    with solara.Column(gap="2px", classes=["pz-lever", f"pz-lever-{spec.group.replace('.', '-')}-{spec.name}",
                                            *(["pz-lever--changed"] if changed else [])],
                       style={"padding-left": "8px"} if changed else {}) as main:
        with solara.Row(gap="6px", style={"align-items": "center", "justify-content": "space-between"}):
            solara.Text(spec.label, classes=["pz-lever-label"])
            with solara.Row(gap="2px", style={"align-items": "center"}):
                if spec.widget in ("slider", "readonly"):
                    solara.Text(shown, classes=["pz-lever-value"])
                elif spec.unit:
                    solara.Text(spec.unit, classes=["pz-help"])
                if changed:
                    solara.Button(icon_name="mdi-restore", icon=True, small=True, text=True,
                                  on_click=lambda: state.reset_lever(path), classes=["pz-reset"],
                                  attributes={"title": f"back to {spec.format(base_value)}"})
        hi = spec.hi
        if path == "run.seeds":
            hi = min(hi or MAX_SEEDS, MAX_SEEDS)
        if spec.widget == "slider" and spec.kind == "float":
            solara.SliderFloat("", value=float(value), min=float(spec.lo), max=float(hi), step=spec.step,
                               on_value=set_, thumb_label=False)
        elif spec.widget == "slider":
            solara.SliderInt("", value=int(value), min=int(spec.lo), max=int(hi), step=1, on_value=set_,
                             thumb_label=False)
        elif spec.widget == "number" and spec.kind == "float":
            solara.InputFloat("", value=float(value), on_value=set_, continuous_update=False,
                              classes=["pz-input", "pz-number"])
        elif spec.widget == "number":
            solara.InputInt("", value=int(value), on_value=set_, continuous_update=False,
                            classes=["pz-input", "pz-number"])
        elif spec.widget == "select":
            rv.Select(items=[{"title": levers.choice_label(c), "value": c} for c in spec.choices],
                     v_model=value, on_v_model=set_, density="compact", variant="outlined", hide_details=True,
                     class_="pz-select")
        elif spec.widget == "switch":
            solara.Switch(color="primary", label="yes" if value else "no", value=bool(value), on_value=set_)
        else:
            solara.Text(str(value) if value else "(none: a synthetic district)", classes=["pz-help"])
        allowed = (f"an integer from 1 to {MAX_SEEDS} on this server" if path == "run.seeds" else spec.allowed)
        solara.Text(f"{spec.description} Allowed: {allowed}{' (' + spec.unit + ')' if spec.unit else ''}.",
                    classes=["pz-help"])
        if error:
            solara.Text(error, classes=["pz-error"])
    return main


@solara.component
def LeverGroup(state: DashboardState, group: levers.GroupSpec, scenario, base, errors: dict, open_: bool,
               filter_text: str, only_changed: bool, on_toggle: Callable[[], None]):
    specs = [s for s in group.levers if s.matches(filter_text)]
    n_changed = sum(1 for s in group.levers if levers.get_value(scenario, s.path) != levers.get_value(base, s.path))
    if only_changed:
        specs = [s for s in specs if levers.get_value(scenario, s.path) != levers.get_value(base, s.path)]
    if (filter_text or only_changed) and not specs:
        return solara.Div()
    expanded = open_ or bool(filter_text) or only_changed
    with solara.Column(gap="0px", classes=["pz-group", f"pz-group-{group.name.replace('.', '-')}"]) as main:
        with solara.Row(classes=["pz-group-head"], style={"align-items": "center"}, gap="6px"):
            solara.Button(group.title, icon_name="mdi-chevron-down" if expanded else "mdi-chevron-right",
                          text=True, on_click=on_toggle, classes=["pz-group-btn"])
            solara.Text(f"{len(group.levers)} {'assumptions' if group.name.startswith('assumptions.') else 'levers'}",
                        classes=["pz-help"])
            if n_changed:
                solara.Text(f"{n_changed} changed", classes=["pz-badge"])
        solara.Text(group.question, classes=["pz-question"])
        if expanded:
            for s in specs:
                LeverControl(state, s, levers.get_value(scenario, s.path), levers.get_value(base, s.path),
                             errors.get(s.path))
    return main


@solara.component
def LeverPanel(state: DashboardState):
    scenario, base, errors = state.scenario.value, state.base.value, state.lever_errors.value
    filter_text, set_filter = solara.use_state("")
    only_changed, set_only_changed = solara.use_state(False)
    open_groups, set_open = solara.use_state(())
    changed = levers.changed(scenario, base)

    def toggle(name: str) -> Callable[[], None]:
        def f() -> None:
            set_open(tuple(g for g in open_groups if g != name) if name in open_groups else (*open_groups, name))
        return f

    with Card("Policy levers", step="3",
              subtitle="Every lever of the scenario schema, grouped as the schema groups them. Changes are marked "
                       "in amber; the results say when they are out of date.") as main:
        solara.InputText("Find a lever", value=filter_text, on_value=set_filter, continuous_update=True,
                         classes=["pz-search"])
        with solara.Row(style={"align-items": "center", "justify-content": "space-between"}):
            solara.Switch(color="primary", label=f"Only changed ({len(changed)})", value=only_changed, on_value=set_only_changed)
            solara.Button("Reset all", icon_name="mdi-restore", text=True, disabled=not changed,
                          on_click=state.reset_all)
        for g in levers.group_specs():
            LeverGroup(state, g, scenario, base, errors, g.name in open_groups, filter_text, only_changed,
                       toggle(g.name))
        AssumptionsPanel(state, scenario, base, errors, open_groups, filter_text, only_changed, toggle)
    return main


@solara.component
def AssumptionsPanel(state: DashboardState, scenario, base, errors: dict, open_groups: tuple, filter_text: str,
                     only_changed: bool, toggle: Callable[[str], Callable[[], None]]):
    """The declared assumptions (docs/ASSUMPTIONS.md) by mechanism, collapsed: editable like levers."""
    groups = levers.assumption_group_specs()
    open_, set_open = solara.use_state(False)
    n_changed = sum(1 for g in groups for s in g.levers if levers.get_value(scenario, s.path) != levers.get_value(base, s.path))
    title = "Assumptions" + (f" ({n_changed} changed)" if n_changed else "")
    found = bool(filter_text) and any(s.matches(filter_text) for g in groups for s in g.levers)
    shown = open_ or found or (only_changed and n_changed > 0)    # (its controls are built only when shown)
    with rv.ExpansionPanels(flat=True, class_="pz-assumptions", v_model=["assumptions"] if shown else [],
                            on_v_model=lambda v_: set_open(bool(v_))) as main:
        with rv.ExpansionPanel(value="assumptions"):
            rv.ExpansionPanelTitle(children=[title])
            with rv.ExpansionPanelText():
                if not shown:
                    return main
                solara.Text("The model's coefficients: what it takes to be true about how a district responds "
                            "(defaults, plausible ranges and sources in docs/ASSUMPTIONS.md).", classes=["pz-help"])
                for g in groups:
                    LeverGroup(state, g, scenario, base, errors, g.name in open_groups, filter_text, only_changed,
                               toggle(g.name))
    return main


# ------------------------------------------------------------------------------------------------
# Scenario: preset, name, upload, save
# ------------------------------------------------------------------------------------------------

class ScenarioUploadWidget(FileInput):
    """A file picker + drop zone for one scenario file (reads it in chunks, like solara.FileDrop)."""

    template = traitlets.Instance(Template).tag(sync=True, **widget_serialization)  # type: ignore[assignment]
    template_file = (__file__, "upload.vue")
    label = traitlets.Unicode("Load a scenario file").tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)


@solara.component
def ScenarioUpload(state: DashboardState):
    """Pick or drop a scenario file; it is checked for size before it is read, read in a thread (the
    browser sends it in chunks), validated, and the result shown by ScenarioCard."""
    file_info, set_file_info = solara.use_state(None)
    files, set_files = solara.use_state(cast(Any, None))
    widget_el = ScenarioUploadWidget.element(label="Load a scenario (.toml)", multiple=False, accept=".toml,text/plain",
                                             hint=f"or drop it here; at most {MAX_UPLOAD_BYTES // 1024} KB",
                                             on_file_info=set_file_info)

    def wire() -> None:
        if not file_info:
            return
        info = file_info[0]
        if int(info.get("size") or 0) > MAX_UPLOAD_BYTES:      # refuse before reading a byte
            state.apply_upload(str(info.get("name", "upload")), None, size=int(info["size"]))
            return
        widget = cast(ScenarioUploadWidget, solara.get_widget(widget_el))
        widget.version += 1
        widget.reset_stats()
        set_files(widget.get_files(timeout=20))

    solara.use_effect(wire, [file_info])

    def read(cancel: threading.Event | None = None) -> None:
        if not files:
            return
        name = str(files[0].get("name", "upload"))
        try:
            data = files[0]["file_obj"].read(MAX_UPLOAD_BYTES + 1)
        except Exception as exc:  # noqa: BLE001 - a message on the page, never a traceback
            log.warning("upload failed: %s", exc)
            state.upload.value = exports.UploadResult(False, f"{name}: the upload did not complete; try again.")
            return
        state.apply_upload(name, data)

    solara.use_thread(read, [files])
    return widget_el


@solara.component
def ScenarioCard(state: DashboardState):
    preset = state.preset.value
    scenario = state.scenario.value
    upload = state.upload.value
    items = [{"title": name.replace("_", " "), "value": name} for name, _ in state.presets]
    with Card("Scenario", step="1") as main:
        rv.Select(label="Start from a preset", items=items, v_model=preset,
                 on_v_model=lambda name: name and state.load_preset(name), density="comfortable",
                 variant="outlined", hide_details=True, class_="pz-preset",
                 attributes={"data-testid": "preset-select"})
        desc = state.preset_description if preset else scenario.description.splitlines()[0] if scenario.description else ""
        if state.source.value:
            solara.Text(f"From {state.source.value}" + (f": {desc}" if desc else ""), classes=["pz-help"])
        solara.InputText("Scenario name (for exports and comparisons)", value=scenario.name,
                         on_value=state.set_name, continuous_update=False, classes=["pz-input", "pz-name"])
        ScenarioUpload(state)
        if upload is not None:
            Message("success" if upload.ok else "error", upload.message, testid="upload-message")
        with solara.Row(gap="8px", style={"flex-wrap": "wrap", "align-items": "center"}, classes=["pz-save-row"]):
            solara.FileDownload(lambda: exports.scenario_toml(state.scenario.value),
                                filename=f"{exports.safe_name(scenario.name)}.toml", label="Save scenario (.toml)",
                                icon_name="mdi-content-save-outline", mime_type="application/toml")
            solara.Text("runs with `portfolio-sim run FILE`", classes=["pz-help"])
    return main


# ------------------------------------------------------------------------------------------------
# Run controls
# ------------------------------------------------------------------------------------------------

class ProgressView(v.VuetifyTemplate):
    """Progress bar + status line. Its traits are set straight from the worker thread on every progress
    report (see RunProgress), without re-rendering the page."""

    template = traitlets.Instance(Template).tag(sync=True, **widget_serialization)  # type: ignore[assignment]
    template_file = (__file__, "progress.vue")
    active = traitlets.Bool(False).tag(sync=True)
    value = traitlets.Float(0.0).tag(sync=True)
    text = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("idle").tag(sync=True)


class PageFixes(v.VuetifyTemplate):
    """Accessibility fixes for markup Solara's template and Vuetify leave out (page_fixes.vue): the page
    language, a zoomable viewport, accessible names for sliders, inputs and progress bars. Every page
    (the dashboard, each room page) mounts one."""

    template = traitlets.Instance(Template).tag(sync=True, **widget_serialization)  # type: ignore[assignment]
    template_file = (__file__, "page_fixes.vue")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def progress_text(status: RunStatus) -> str:
    """The one status line: what runs, counts, time so far and time left (or the queue position)."""
    if not status.busy:
        return status.message
    what = {"run": "Running", "step": "Stepping", "compare": "Comparing"}.get(status.kind, "Running")
    if status.queued:
        return f"{what}: waiting for a free worker ({status.queued} run(s) ahead of yours)"
    parts = [status.message]
    if status.total:
        parts.append(f"{status.done}/{status.total} seed-years")
    parts.append(f"{_duration(status.seconds)} so far")
    left = status.seconds_left
    if left is not None:
        parts.append(f"about {_duration(left)} left")
    return " · ".join(p for p in parts if p)


def progress_props(status: RunStatus, kinds: tuple[str, ...] = ("run", "step", "compare")) -> dict[str, Any]:
    if status.kind and status.kind not in kinds:
        return {"active": False, "value": 0.0, "text": "", "state": "idle"}
    return {"active": status.busy, "value": max(2.0, 100 * status.fraction) if status.busy else 0.0,
            "text": progress_text(status), "state": status.state}


@solara.component
def RunProgress(state: DashboardState, kinds: tuple[str, ...] = ("run", "step", "compare")):
    """The page's one progress indicator (in the sticky header). One ProgressView widget per session,
    created once and only ever changed by progress reports (never by a re-render, which could put an
    older status back). Reports going backwards within a job are dropped: the line never jumps back."""
    def make() -> ProgressView:
        widget = ProgressView(**progress_props(state.live_status, kinds))
        last: dict[str, Any] = {"started": 0.0, "done": -1}

        def sink(st: RunStatus) -> None:
            if st.busy and st.started == last["started"] and st.done < last["done"]:
                return
            last["started"], last["done"] = st.started, st.done
            props = progress_props(st, kinds)
            with widget.hold_sync():
                for key, value in props.items():
                    if getattr(widget, key) != value:
                        setattr(widget, key, value)

        widget.remove_sink = state.add_progress_sink(sink)
        return widget

    widget = solara.use_memo(make, [])
    solara.use_effect(lambda: widget.remove_sink, [])
    return solara.Div(children=[widget], classes=["pz-progress-box"])


@solara.component
def RunError(state: DashboardState, kinds: tuple[str, ...]):
    status = state.status.value
    with solara.Column(gap="4px") as main:
        if status.state == "error" and status.error and (status.kind in kinds or not status.kind):
            Message("error", status.error, testid="run-error")
    return main


@solara.component
def ResultLine(state: DashboardState):
    result = state.result.value
    with solara.Column(gap="4px") as main:
        if result is not None:
            Txt(f"Showing: {result.label} · {result.progress_note}", classes=["pz-help"], testid="result-line")
            if state.results_stale:
                Message("warning", "The levers changed since these results: press Run (or Step) to update them.",
                        testid="stale-warning")
    return main


@solara.component
def RunButtons(state: DashboardState):
    busy = state.status.value.busy
    years = state.scenario.value.run.years
    limit = state.step_limit()
    with solara.Column(gap="4px") as main:
        Anchor("pz-run-controls")
        with solara.Row(gap="8px", style={"flex-wrap": "wrap"}):
            solara.Button(f"Run {years} years", icon_name="mdi-play", color="primary",
                          on_click=lambda: state.run(), disabled=busy, classes=["pz-run"])
            solara.Button("Step 1 year", icon_name="mdi-step-forward", outlined=True, on_click=lambda: state.step(),
                          disabled=busy or bool(limit), classes=["pz-stepbtn"])
            solara.Button("Cancel", icon_name="mdi-stop", outlined=True, color="error", on_click=state.cancel,
                          disabled=not busy, classes=["pz-cancel"])
        if limit:
            Txt(limit, classes=["pz-help"], testid="step-limit")
    return main


@solara.component
def ChangedLevers(state: DashboardState):
    """The levers changed from the scenario as loaded, next to Run (the lever panel below is long):
    each says from what to what, and a click puts it back."""
    scenario, base = state.scenario.value, state.base.value
    changed = levers.changed(scenario, base)
    with solara.Div(classes=["pz-changed", "pz-col"], attributes={"data-testid": "changed-levers"}) as main:
        if not changed:
            solara.Text(f"No lever changed from {state.source.value or 'the scenario as loaded'}.",
                        classes=["pz-help"])
            return main
        with solara.Row(gap="6px", style={"align-items": "center", "justify-content": "space-between"}):
            solara.Text(f"{len(changed)} lever(s) changed from {state.source.value or 'the scenario as loaded'}",
                        classes=["pz-lever-label"])
            solara.Button("Reset all", icon_name="mdi-restore", text=True, small=True, on_click=state.reset_all,
                          classes=["pz-reset-all"])
        with solara.Row(gap="4px", style={"flex-wrap": "wrap"}):
            for p in changed[:12]:
                s = levers.spec(p)
                solara.Button(f"{s.label}: {s.format(levers.get_value(base, p))} → "
                              f"{s.format(levers.get_value(scenario, p))}", icon_name="mdi-close", small=True,
                              text=True, classes=["pz-changed-chip"], on_click=lambda p=p: state.reset_lever(p),
                              attributes={"title": f"put {s.label} back to {s.format(levers.get_value(base, p))}",
                                          "aria-label": f"{s.label} changed to {s.format(levers.get_value(scenario, p))}; "
                                                        "reset it"})
            if len(changed) > 12:
                solara.Text(f"and {len(changed) - 12} more (Policy levers: Only changed)", classes=["pz-help"])
    return main


@solara.component
def RunCard(state: DashboardState):
    scenario = state.scenario.value
    errors = state.lever_errors.value
    run_group = levers.group_specs(include_run=True)[-1]
    run_specs = {s.name: s for s in run_group.levers}
    with Card("Run", step="2", subtitle=run_group.question) as main:
        for name in ("years", "seeds"):
            s = run_specs[name]
            LeverControl(state, s, levers.get_value(scenario, s.path), levers.get_value(state.base.value, s.path),
                         errors.get(s.path))
        with solara.Details("More run settings (root seed, first year)"):
            for name in ("seed", "start_year"):
                s = run_specs[name]
                LeverControl(state, s, levers.get_value(scenario, s.path),
                             levers.get_value(state.base.value, s.path), errors.get(s.path))
        ChangedLevers(state)
        RunButtons(state)
        RunError(state, ("run", "step"))
        ResultLine(state)
    return main


@solara.component
def WorkshopCard(state: DashboardState):
    """Play the central office and the board: decisions for the next year stepped (all seeds)."""
    result = state.result.value
    decided = state.decisions.value
    busy = state.status.value.busy
    nxt = workshop.next_year(result)
    with Card("Workshop decisions", classes=["pz-workshop"],
              subtitle=f"Play the central office and the board: what you choose here applies to year {nxt} "
                       "when you press Step 1 year (every seed), then resets. Run to the end follows the "
                       "scenario's rules for the years nobody decided.") as main:
        with solara.Details("On the table next year"):
            rows = "".join(f"<tr><th>{esc(topic)}</th><td>{esc(text)}</td></tr>"
                           for topic, text in workshop.agenda(result))
            solara.HTML(tag="div", unsafe_innerHTML=f'<table class="pz-table pz-agenda">{rows}</table>')
        for point in workshop.DECISION_POINTS:
            with solara.Column(gap="2px", classes=["pz-decision", f"pz-decision-{point.name}"]):
                solara.Text(point.question, classes=["pz-lever-label"])
                rv.Select(items=[{"title": label, "value": value} for value, label in point.options],
                          v_model=getattr(decided, point.name), density="compact", variant="outlined",
                          hide_details=True, disabled=busy, class_="pz-select",
                          on_v_model=lambda v, n=point.name: state.set_decision(n, v))
        by_school = workshop.decidable_by_school(result)
        if by_school:
            SchoolDecisions(state, by_school)
        elif result is not None and not result.complete:
            solara.Text("With one seed (Run: Seeds = 1) the room can also decide school by school.",
                        classes=["pz-help"])
        if not decided.by_rule:
            Txt(f"For year {nxt}: {decided.describe(workshop.school_names(result))}.",
                classes=["pz-help", "pz-decided"], testid="decided-next")
        taken = workshop.decided_so_far(result)
        if taken:
            with solara.Details(f"Decided so far ({len(taken)} year(s))"):
                for line in taken:
                    solara.Text(line, classes=["pz-help"])
        from portfolio_sim.dashboard.room_pages import RoomLauncher   # the workshop room (room_pages.py)
        RoomLauncher(state.scenario.value).key("room-launcher")   # keeps its state across re-renders
    return main


SCHOOL_POINT_TITLES = {"intervention": "Schools that reach the accountability trigger if below the bar again",
                       "renewal": "Contracts and MOUs ending"}


@solara.component
def SchoolDecisionSelect(state: DashboardState, school_id: int, point: str, label: str):
    current = state.decisions.value.school_choice(point, school_id)
    with solara.Column(gap="2px", classes=["pz-school-decision", f"pz-school-{point}-{school_id}"]) as main:
        solara.Text(label, classes=["pz-help"])
        rv.Select(items=[{"title": text, "value": value} for value, text in SCHOOL_CHOICES[point].items()],
                  v_model=current, density="compact", variant="outlined", hide_details=True,
                  disabled=state.status.value.busy, class_="pz-select",
                  on_v_model=lambda v: state.set_school_decision(school_id, point, v))
    return main


@solara.component
def SchoolDecisions(state: DashboardState, by_school: dict[str, pd.DataFrame]):
    """One select per school at a decision point next year (`workshop.decidable_by_school`)."""
    with solara.Column(gap="6px", classes=["pz-school-decisions"]) as main:
        for point, rows in by_school.items():
            if rows.empty:
                continue
            solara.Text(f"{SCHOOL_POINT_TITLES[point]}: school by school", classes=["pz-lever-label"])
            for _, row in rows.iterrows():
                SchoolDecisionSelect(state, int(row["school_id"]), point, workshop.school_label(row))
    return main


# ------------------------------------------------------------------------------------------------
# Results: overview and charts
# ------------------------------------------------------------------------------------------------

@solara.component
def ChartCard(figure: FigureRef, title: str, note: str = "", on_click=None, caption: str = ""):
    """A chart with its note and HTML / PNG downloads; `caption` (scenario, seeds, years, version) goes
    under the title of both downloads, with the date."""
    png_request, set_png_request = solara.use_state(0)
    name = exports.safe_name(title)
    with solara.Column(classes=["pz-card", "pz-chart"], gap="4px") as main:
        PlotlyChart(figure, on_click=on_click, filename=name, png_request=png_request, caption=caption)
        with solara.Row(style={"align-items": "center", "justify-content": "space-between"}, gap="8px"):
            solara.Text(note, classes=["pz-help"], style={"flex": "1 1 auto"})
            with solara.Row(gap="4px", style={"align-items": "center", "flex": "0 0 auto"}):
                with solara.FileDownload(lambda: exports.figure_html(figure.fig, title, caption), filename=f"{name}.html",
                                         mime_type="text/html"):
                    solara.Button("HTML", icon_name="mdi-download", text=True, small=True, classes=["pz-dl"])
                solara.Button("PNG", icon_name="mdi-image-outline", text=True, small=True, classes=["pz-dl"],
                              on_click=lambda: set_png_request(png_request + 1))
    return main


def _compare_caption(store) -> str:
    st = store.settings
    names = " vs ".join(e.label for e in store.ready())
    return (f"Compared: {names} · same {st.seeds} seed(s), root seed {st.seed} · {st.years} years · "
            f"portfolio_sim {exports.model_version()}")


def _kpi_html(rows: list[dict]) -> str:
    tiles = []
    for r in rows:
        kind = r["kind"]
        value = figures.fmt_value(r["median"], kind)
        band_kind = "whole" if kind == "count" else kind      # counts of schools and students: whole numbers
        band = (f'8 in 10 futures: {figures.fmt_value(r["p10"], band_kind)} to {figures.fmt_value(r["p90"], band_kind)}'
                if r["n_seeds"] > 1 else "one future (one seed)")
        if r["cumulative"]:
            change = f'total {r["first_year"]}-{r["last_year"]}'
            cls = ""
        else:
            change = f'{figures.fmt_value(r["change"], kind, signed=True)} since {r["first_year"]}'
            cls = "" if r["good"] is None else (" pz-good" if r["good"] else " pz-bad")
        tiles.append(f'<div class="pz-kpi"><div class="pz-kpi-label">{esc(r["label"])}</div>'
                     f'<div class="pz-kpi-value">{esc(value)}</div>'
                     f'<div class="pz-kpi-band">{esc(band)}</div>'
                     f'<div class="pz-kpi-change{cls}">{esc(change)}</div></div>')
    return f'<div class="pz-kpis">{"".join(tiles)}</div>'


@solara.component
def Overview(state: DashboardState, result: RunSnapshot):
    from portfolio_sim.cli import key_levers

    rows = solara.use_memo(lambda: figures.key_numbers(result), [result.id])
    keys = ("achievement", "politics", "enrollment",
            "autonomy" if result.scenario.has_autonomy_policy else "below_bar")
    figs = solara.use_memo(lambda: [ref(figures.build_chart(k, result)) for k in keys], [result.id])
    changed = levers.changed(result.scenario, state.base.value)
    base = state.base_result(result)
    summary = solara.use_memo(lambda: figures.plain_summary(result, base, [levers.spec(p).label for p in changed],
                                                            state.source.value),
                              [result.id, base.id if base is not None else 0, tuple(changed)])
    with solara.Column(gap="14px") as main:
        with solara.Column(classes=["pz-card"], gap="6px"):
            H2(result.scenario.name)
            if result.scenario.description:
                solara.Text(result.scenario.description.splitlines()[0], classes=["pz-help"])
            rv.Html(tag="p", class_="pz-summary", children=[summary], attributes={"data-testid": "plain-summary"})
            solara.Text(key_levers(result.scenario), classes=["pz-levers-line"])
            if changed:
                chips = "".join(
                    f'<span class="pz-chip">{esc(levers.spec(p).label)}: '
                    f'{esc(levers.spec(p).format(levers.get_value(state.base.value, p)))} &rarr; '
                    f'{esc(levers.spec(p).format(levers.get_value(result.scenario, p)))}</span>' for p in changed)
                solara.HTML(tag="div", unsafe_innerHTML=f'<span class="pz-help">Changed from {esc(state.source.value)}: '
                                                        f'</span>{chips}')
            solara.Text(f"Numbers: the last year's median across {len(result.seeds)} seed(s), with the 10th-90th "
                        "percentile across seeds; charts: median line and shaded 10th-90th percentile band. Every seed "
                        "draws its own district of this description (neighbourhoods, school sites) and one possible "
                        "future of it.", classes=["pz-help"])
        solara.HTML(tag="div", unsafe_innerHTML=_kpi_html(rows), attributes={"data-testid": "kpis"})
        with solara.Div(classes=["pz-grid2"]):
            for key, fig in zip(keys, figs, strict=True):
                spec = figures.chart(key)
                ChartCard(fig, spec.title, spec.note, caption=exports.caption(result))
    return main


@solara.component
def Charts(state: DashboardState, result: RunSnapshot):
    section = state.chart_section.value
    specs = [c for c in figures.CHARTS if section == "All" or c.section == section]
    figs = solara.use_memo(lambda: {c.key: ref(c.build(result)) for c in specs}, [result.id, section])
    with solara.Column(gap="12px") as main:
        with solara.Row(gap="6px", style={"flex-wrap": "wrap"}):
            for s in ("All", *figures.SECTIONS):
                solara.Button(s, on_click=lambda s=s: state.chart_section.set(s), text=s != section,
                              color="primary" if s == section else None, classes=["pz-chip-btn"])
        with solara.Div(classes=["pz-grid2"]):
            for c in specs:
                note = c.note
                if c.section == "Autonomy" and not result.scenario.has_autonomy_policy:
                    note = ("No school can become autonomous in this scenario (Eligibility: none, or no "
                            "conversions or new schools), so these lines stay at 0. ") + note
                gone = figures.absent_labels(c.key, result)
                if gone:
                    note = (f"None in this run: {', '.join(gone)} (greyed in the legend; click one to draw it). "
                            + note)
                ChartCard(figs[c.key], c.title, note, caption=exports.caption(result))
    return main


# ------------------------------------------------------------------------------------------------
# District map
# ------------------------------------------------------------------------------------------------

@solara.component
def DistrictMap(state: DashboardState, result: RunSnapshot):
    seeds = list(result.seeds)
    seed_i = min(state.map_seed.value, len(seeds) - 1)
    seed = seeds[seed_i]
    year = result.year if state.map_year.value < 0 else min(state.map_year.value, result.year)
    color = state.map_color.value
    selected = state.selected_school.value
    frame = figures.map_frame(result, seed, year)
    all_schools = (result.schools[result.schools["seed"] == seed].sort_values("year")
                   .drop_duplicates("school_id", keep="last").sort_values("name"))
    options = {f"{r.name} ({figures.SECTOR_LABELS.get(r.sector, r.sector)})": int(r.school_id)
               for r in all_schools.itertuples()}
    if selected is not None and selected not in options.values():   # e.g. fewer schools after a rerun
        selected = None
    fig = solara.use_memo(lambda: ref(figures.map_figure(result, seed, year, color, selected)),
                          [result.id, seed, year, color, selected])

    def on_click(point: dict) -> None:
        custom = point.get("customdata")
        if custom:
            try:
                state.selected_school.value = int(float(custom[0]))
            except (TypeError, ValueError):
                pass

    with solara.Column(gap="12px") as main:
        # fixed-width controls: choosing a school or a year never moves them (nor the map below)
        with solara.Div(classes=["pz-card", "pz-map-controls"], attributes={"data-testid": "map-controls"}):
            with solara.Column(gap="0px", classes=["pz-map-year"]):
                solara.Text(f"Year: {result.start_year + year}" + (" (start)" if year == 0 else ""),
                            classes=["pz-lever-label"])
                solara.SliderInt("", value=year, min=0, max=max(result.year, 1), on_value=state.map_year.set,
                                 disabled=result.year == 0, thumb_label=False)
            solara.ToggleButtonsSingle(value=color, values=["type", "rating"], on_value=state.map_color.set,
                                       classes=["pz-map-color"])
            rv.Select(label="Seed", items=[{"title": f"seed {i + 1}", "value": i} for i in range(len(seeds))],
                      v_model=seed_i, on_v_model=state.map_seed.set, density="compact", variant="outlined",
                      hide_details=True, class_="pz-map-seed", disabled=len(seeds) < 2)
            SchoolSearch(state, options)
        with solara.Row(gap="12px", style={"align-items": "flex-start", "flex-wrap": "wrap"}):
            with solara.Column(classes=["pz-card", "pz-map"], style={"flex": "3 1 560px", "min-width": "0"}, gap="4px"):
                PlotlyChart(fig, on_click=on_click)
                n_open = int(frame["open"].sum()) if not frame.empty else 0
                solara.Text(f"{n_open} district and charter schools open; neighbourhood shading = share of "
                            "low-income households. Click a school for its history.", classes=["pz-help"])
            with solara.Column(classes=["pz-card"], style={"flex": "2 1 380px", "min-width": "0"}, gap="8px"):
                if selected is None:
                    H2("School history")
                    solara.Text("Click a school on the map, or find it by name above, to see its ratings, enrollment, "
                                "autonomy and every event (conversion, restart, closure...) over the years.",
                                classes=["pz-help"])
                else:
                    SchoolPanel(state, result, seed, selected, year)
    return main


@solara.component
def SchoolSearch(state: DashboardState, options: dict[str, int]):
    """'Find a school': type part of a name, pick from the matches (at most 8). The box only searches:
    what you type never joins the selected school's name, and the box keeps its size."""
    text, set_text = solara.use_state("")
    picks, set_picks = solara.use_state(0)       # a pick empties the box (a new box: no stale typed text)
    q = text.strip().lower()
    matches = [(k, v_) for k, v_ in options.items() if q and q in k.lower()][:8]
    with solara.Column(gap="2px", classes=["pz-school-search"]) as main:
        solara.InputText("Find a school", value=text, on_value=set_text, continuous_update=True,
                         classes=["pz-input", "pz-school-find"]).key(f"school-find-{picks}")
        if q:
            with solara.Div(classes=["pz-school-matches", "pz-col"], attributes={"data-testid": "school-matches"}):
                if not matches:
                    solara.Text(f"No school's name contains '{text.strip()}'.", classes=["pz-help"])
                for k, v_ in matches:
                    solara.Button(k, text=True, small=True, classes=["pz-school-match"],
                                  on_click=lambda v_=v_: (state.selected_school.set(v_), set_text(""),
                                                          set_picks(picks + 1)))
    return main


@solara.component
def SchoolPanel(state: DashboardState, result: RunSnapshot, seed: int, school_id: int, year: int):
    facts = figures.school_facts(result, seed, school_id, year)
    fig = solara.use_memo(lambda: ref(figures.school_history_figure(result, seed, school_id)),
                          [result.id, seed, school_id])
    ev = figures.school_events(result, seed, school_id)
    with solara.Div(classes=["pz-school-panel"], attributes={"data-testid": "school-panel"}) as main:
        with solara.Row(style={"align-items": "center", "justify-content": "space-between"}):
            names = result.schools.loc[result.schools["school_id"] == school_id, "name"]
            H2(str(names.iloc[-1]) if len(names) else f"School {school_id}")
            solara.Button(icon_name="mdi-close", icon=True, text=True,
                          on_click=lambda: state.selected_school.set(None),
                          attributes={"aria-label": "Close the school's history", "title": "Close"})
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v_)}</td></tr>" for k, v_ in facts)
        solara.HTML(tag="div", unsafe_innerHTML=f'<table class="pz-table pz-facts">{rows}</table>')
        for point, due in workshop.decidable_by_school(result).items():   # the workshop decides this school
            if (due["school_id"] == school_id).any():
                SchoolDecisionSelect(state, school_id, point,
                                     f"Workshop, year {workshop.next_year(result)}: "
                                     f"{SCHOOL_POINT_TITLES[point].lower()}: what for this school?")
        PlotlyChart(fig)
        if not ev.empty:
            table = pd.DataFrame({"Year": (ev["year"] + result.start_year).astype(int),
                                  "Event": ev["event"].str.replace("_", " "), "Why": ev["cause"]})
            solara.HTML(tag="div", unsafe_innerHTML=html_table(table))
        else:
            solara.Text("No events for this school in this seed.", classes=["pz-help"])
    return main


# ------------------------------------------------------------------------------------------------
# Event log
# ------------------------------------------------------------------------------------------------

@solara.component
def EventLog(state: DashboardState, result: RunSnapshot):
    types_all = figures.event_types(result)
    types = [t for t in state.event_types.value if t in types_all]
    yrs = state.event_years.value or (0, result.year)
    yrs = (max(0, yrs[0]), min(result.year, yrs[1]))
    seed_no = state.event_seed.value
    seed = result.all_seeds[seed_no - 1] if 0 < seed_no <= len(result.all_seeds) else None
    table = figures.event_table(result, types or None, yrs, seed, state.event_text.value)
    counts = result.events["event"].value_counts() if not result.events.empty else pd.Series(dtype=int)
    with solara.Column(gap="12px") as main:
        with solara.Column(classes=["pz-card"], gap="8px"):
            solara.Text("Why a school closed, when a reversal hit: every event of the run, filtered by type and year.",
                        classes=["pz-help"])
            with solara.Row(gap="14px", style={"flex-wrap": "wrap", "align-items": "center"}):
                rv.Select(label="Event types (all when empty)", multiple=True, chips=True, closable_chips=True,
                         items=[{"title": f"{t.replace('_', ' ')} ({counts.get(t, 0)})", "value": t} for t in types_all],
                         v_model=types, on_v_model=lambda val: state.event_types.set(list(val or [])),
                         density="compact", variant="outlined", hide_details=True, style_="min-width: 320px; flex: 2 1 320px",
                         class_="pz-event-types")
                with solara.Column(gap="0px", style={"min-width": "240px", "flex": "1 1 240px"}):
                    solara.Text(f"Years {result.start_year + yrs[0]}-{result.start_year + yrs[1]}",
                                classes=["pz-lever-label"])
                    solara.SliderRangeInt("", value=yrs, min=0, max=max(result.year, 1),
                                          on_value=lambda val: state.event_years.set(tuple(val)), thumb_label=False)
                rv.Select(label="Seed", items=[{"title": "all seeds", "value": 0}] +
                         [{"title": f"seed {i + 1}", "value": i + 1} for i in range(len(result.all_seeds))],
                         v_model=seed_no, on_v_model=state.event_seed.set, density="compact", variant="outlined",
                         hide_details=True, style_="max-width: 150px")
                solara.InputText("Search (school, operator, cause)", value=state.event_text.value,
                                 on_value=state.event_text.set, continuous_update=True, style={"min-width": "220px"},
                                 classes=["pz-event-text"])
            with solara.Row(style={"align-items": "center", "justify-content": "space-between"}):
                Txt(f"{len(table):,} event(s) shown of {len(result.events):,}", classes=["pz-lever-label"],
                    testid="event-count")
                solara.FileDownload(lambda: exports.events_csv(result, table, headed=True),
                                    filename=f"{exports.safe_name(result.scenario.name)}_events_filtered.csv",
                                    label="Download these events (CSV)", mime_type="text/csv")
        with solara.Column(classes=["pz-card"], gap="4px"):
            if table.empty:
                solara.Text("No events match these filters.", classes=["pz-help"])
            else:
                solara.DataFrame(table, items_per_page=15)
        counts_by_year = figures.event_counts(result, types or None)
        if not counts_by_year.empty:
            with solara.Details("Events by type and year (all seeds)"):
                t = counts_by_year.reset_index().rename(columns={"index": "event"})
                t.columns = [str(c) for c in t.columns]
                solara.HTML(tag="div", unsafe_innerHTML=html_table(t, numeric=set(t.columns[1:])),
                            style="overflow-x: auto")
    return main


# ------------------------------------------------------------------------------------------------
# Compare scenarios
# ------------------------------------------------------------------------------------------------

@solara.component
def CompareView(state: DashboardState):
    store = state.compare.value
    busy = state.status.value.busy
    label, set_label = solara.use_state("")
    preset_pick, set_preset_pick = solara.use_state(None)
    metrics = state.compare_metrics.value
    ready = store.ready()
    pending = store.pending()
    st = store.settings
    ready_ids = tuple(e.result.id for e in ready)
    key = (ready_ids, st, store.reference, tuple(e.label for e in store.entries))
    figs = solara.use_memo(lambda: [ref(figures.comparison_figure(store, m)) for m in metrics] if ready else [],
                           [key, tuple(metrics)])
    diff_fig = solara.use_memo(lambda: ref(figures.difference_figure(store, state.diff_metric.value))
                               if len(ready) >= 2 else None, [key, state.diff_metric.value])
    table = solara.use_memo(lambda: figures.comparison_table(store) if ready else None, [key])

    with solara.Column(gap="12px") as main:
        with solara.Column(classes=["pz-card"], gap="8px"):
            H2("Compare scenarios on the same seeds")
            solara.Text("Every scenario here is run with the same years and the same replicate seeds: the same "
                        "district and the same random draws wherever the designs agree, so the differences you see "
                        "come from the levers, not from luck.", classes=["pz-help"])
            with solara.Row(gap="8px", style={"flex-wrap": "wrap", "align-items": "center"}):
                solara.InputText("Label for the current levers", value=label, on_value=set_label,
                                 continuous_update=True, style={"max-width": "280px"})
                solara.Button("Add current levers", icon_name="mdi-plus", outlined=True,
                              on_click=lambda: (state.compare_add_current(label), set_label("")),
                              classes=["pz-add-current"])
                rv.Select(label="or a preset", items=[{"title": n.replace("_", " "), "value": n} for n, _ in state.presets],
                         v_model=preset_pick, on_v_model=set_preset_pick, density="compact", variant="outlined",
                         hide_details=True, style_="max-width: 260px")
                solara.Button("Add preset", icon_name="mdi-plus", outlined=True, disabled=not preset_pick,
                              on_click=lambda: state.compare_add_preset(preset_pick))
            with solara.Row(gap="8px", style={"align-items": "center", "flex-wrap": "wrap"}):
                solara.Button("Example: MOU-based district-run vs partner-run under contract, same board flip",
                              icon_name="mdi-lightbulb-on-outline", text=True, color="primary",
                              on_click=state.compare_quick_example, classes=["pz-example"])
        if store.entries:
            with solara.Column(classes=["pz-card"], gap="6px"):
                for e in store.entries:
                    current = store.is_current(e)
                    with solara.Row(gap="8px", style={"align-items": "center"}, classes=["pz-entry"]):
                        solara.HTML(tag="span", unsafe_innerHTML="", classes=["pz-dot"],
                                    style=f"background:{e.color}")
                        solara.InputText("", value=e.label, on_value=lambda t, k=e.key: state.compare_rename(k, t),
                                         continuous_update=False, style={"max-width": "300px"})
                        solara.Text(e.source, classes=["pz-help"], style={"flex": "1"})
                        solara.Text("ready" if current else "to run", classes=["pz-badge" if current else "pz-badge-todo"])
                        solara.Button(icon_name="mdi-star" if (store.reference_entry() and
                                                               store.reference_entry().key == e.key)
                                      else "mdi-star-outline", icon=True, text=True,
                                      on_click=lambda k=e.key: state.compare_reference(k),
                                      attributes={"title": "use as the reference for differences"})
                        solara.Button(icon_name="mdi-delete-outline", icon=True, text=True,
                                      on_click=lambda k=e.key: state.compare_remove(k),
                                      attributes={"aria-label": f"remove {e.label}", "title": "remove"})
                with solara.Row(gap="16px", style={"align-items": "center", "flex-wrap": "wrap"}):
                    with solara.Column(gap="0px", style={"width": "200px"}):
                        solara.Text(f"Years: {st.years}", classes=["pz-lever-label"])
                        solara.SliderInt("", value=st.years, min=1, max=60, thumb_label=False,
                                         on_value=lambda y: state.compare_settings(years=int(y)))
                    with solara.Column(gap="0px", style={"width": "200px"}):
                        solara.Text(f"Seeds: {st.seeds}", classes=["pz-lever-label"])
                        solara.SliderInt("", value=st.seeds, min=1, max=min(MAX_SEEDS, 30), thumb_label=False,
                                         on_value=lambda n: state.compare_settings(seeds=int(n)))
                    solara.Switch(color="primary", label="Same forced board flip for all", value=st.override_flip,
                                  on_value=lambda b: state.compare_settings(override_flip=bool(b)))
                    if st.override_flip:
                        with solara.Column(gap="0px", style={"width": "200px"}):
                            solara.Text(f"Board flips in year {st.flip_year}" if st.flip_year else "No flip",
                                        classes=["pz-lever-label"])
                            solara.SliderInt("", value=st.flip_year, min=0, max=st.years, thumb_label=False,
                                             on_value=lambda y: state.compare_settings(flip_year=int(y)))
                with solara.Row(gap="8px", style={"align-items": "center"}):
                    solara.Button(f"Run comparison ({len(pending)} to run)" if pending else "Comparison up to date",
                                  icon_name="mdi-play", color="primary", disabled=busy or not pending,
                                  on_click=state.run_comparison, classes=["pz-run-compare"])
                    solara.Button("Cancel", icon_name="mdi-stop", outlined=True, color="error",
                                  disabled=not busy, on_click=state.cancel)
                    solara.Button("Clear", icon_name="mdi-close", text=True, on_click=state.compare_clear)
                RunError(state, ("compare",))
        if ready:
            with solara.Column(classes=["pz-card"], gap="6px"):
                clear = figures.clear_differences(store) if len(ready) >= 2 else []
                ref_entry = store.reference_entry()
                if len(ready) >= 2:
                    solara.Text("Differences clear of seed noise" if clear else
                                "No difference is clear of seed noise", classes=["pz-h2"])
                    items = "".join(f"<li>{esc(c)}</li>" for c in clear)
                    solara.HTML(tag="div", attributes={"data-testid": "clear-differences"}, unsafe_innerHTML=(
                        f"<ul class='pz-clear'>{items}</ul>" if clear else
                        f"<p class='pz-help'>On these {st.seeds} seeds every key number of the other designs "
                        f"differs from {esc(ref_entry.label if ref_entry else 'the reference')} by less than seed "
                        "noise: add seeds, or treat the designs as alike on these numbers.</p>"))
                solara.Text(f"Key numbers in the last year: median [10th to 90th percentile] across {st.seeds} "
                            "seeds. Δ = median difference from the reference ★ on the same seeds; ✔ clear of seed "
                            "noise = the 95% interval of the per-seed differences excludes 0. Clear differences "
                            "first.", classes=["pz-help"])
                solara.HTML(tag="div", unsafe_innerHTML=html_table(table), style="overflow-x: auto",
                            attributes={"data-testid": "compare-table"})
                with solara.Row(gap="8px"):
                    solara.FileDownload(lambda: exports.comparison_zip(store), filename="comparison.zip",
                                        label="Download comparison (CSV + TOML, zip)", mime_type="application/zip")
            if len(ready) >= 2:
                from portfolio_sim.dashboard.robust_view import RobustnessCard  # imports this module
                RobustnessCard(state)
            with solara.Column(classes=["pz-card"], gap="6px"):
                rv.Select(label="Charts", multiple=True, chips=True, closable_chips=True,
                         items=[{"title": m.title, "value": m.metric} for m in figures.COMPARE_METRICS],
                         v_model=metrics, on_v_model=lambda val: state.compare_metrics.set(list(val or [])),
                         density="compact", variant="outlined", hide_details=True)
            with solara.Div(classes=["pz-grid2"], attributes={"data-testid": "compare-charts"}):
                for m, f in zip(metrics, figs, strict=False):
                    ChartCard(f, figures.compare_metric(m).title, caption=_compare_caption(store))
            if diff_fig is not None:
                with solara.Column(classes=["pz-card"], gap="4px"):
                    rv.Select(label="Difference chart", items=[{"title": m.title, "value": m.metric}
                                                              for m in figures.COMPARE_METRICS],
                             v_model=state.diff_metric.value, on_v_model=state.diff_metric.set, density="compact",
                             variant="outlined", hide_details=True, style_="max-width: 360px")
                    PlotlyChart(diff_fig)
                    solara.Text("Each line: a scenario minus the reference on the same seed; the band is the 10th-90th "
                                "percentile of those paired differences. A band that stays clear of zero is a "
                                "difference the design makes in most futures.", classes=["pz-help"])
        elif not store.entries:
            with solara.Column(classes=["pz-card"]):
                solara.Text("Nothing to compare yet: add the current levers, a preset, or try the example.",
                            classes=["pz-help"])
    return main


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------

@solara.component
def ExportView(state: DashboardState, result: RunSnapshot):
    name = exports.safe_name(result.scenario.name)
    items = [
        ("All results (zip)", f"{name}_results.zip", lambda: exports.results_zip(result), "application/zip",
         "yearly.csv, summary.csv, schools.csv, events.csv, scenario.toml and report.html: the files "
         "`portfolio-sim run` writes."),
        ("yearly.csv", f"{name}_yearly.csv", lambda: exports.yearly_csv(result, headed=True), "text/csv",
         "One row per seed and year: every metric (docs/METRICS.md)."),
        ("summary.csv", f"{name}_summary.csv", lambda: exports.summary_csv(result, headed=True), "text/csv",
         "Median, 10th and 90th percentile of every metric and year across seeds."),
        ("schools.csv", f"{name}_schools.csv", lambda: exports.schools_csv(result, headed=True), "text/csv",
         "The per-school yearly panel (every seed)."),
        ("events.csv", f"{name}_events.csv", lambda: exports.events_csv(result, headed=True), "text/csv",
         "The event log: year, event, school, operator, cause."),
        ("run_info.json", f"{name}_run_info.json", lambda: exports.run_info_json(result), "application/json",
         "What these results are of: scenario, seeds, years, model version, date (also in the zip)."),
        ("report.html", f"{name}_report.html", lambda: exports.report_html(result), "text/html",
         "The CLI's self-contained report: every chart with bands, the levers, the events; opens offline."),
        ("scenario.toml (of these results)", f"{name}.toml", lambda: result.scenario.to_toml(), "application/toml",
         "The fully resolved scenario of these results: `portfolio-sim run FILE` repeats them exactly (same seeds)."),
    ]
    if result.decisions:
        items.append(("decisions.toml (workshop decisions)", f"{name}_decisions.toml",
                      lambda: exports.decisions_file(result), "application/toml",
                      "The decisions taken in this run, by year: `portfolio-sim run SCENARIO.toml --decisions "
                      "FILE` repeats the run with them (without them the scenario follows its rules)."))
    with solara.Column(gap="12px") as main:
        with solara.Column(classes=["pz-card"], gap="10px"):
            H2(f"Export: {result.label} ({result.progress_note})")
            if not result.complete:
                Message("warning", "This run is not finished: the files hold the years and seeds done so far.")
            for title, filename, data, mime, note in items:
                with solara.Row(gap="12px", style={"align-items": "center"}, classes=["pz-export-row"]):
                    solara.FileDownload(data, filename=filename, label=title, mime_type=mime)
                    solara.Text(note, classes=["pz-help"])
            solara.Text("Each CSV starts with a few lines beginning with # that say what it is of (scenario, "
                        "seeds, years, model version, date): spreadsheets show them on top; in pandas use "
                        "read_csv(file, comment='#'). The zip holds the CLI's plain files and run_info.json. "
                        "Charts: every chart has an HTML button (a file with plotly.js inside: it opens offline) "
                        "and a PNG button (drawn by your browser, with the legend and the same context under "
                        "the title).", classes=["pz-help"])
    return main


# ------------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------------

@solara.component
def HeaderStatus(state: DashboardState):
    status = state.status.value
    if status.busy:
        chip, cls = {"step": "Stepping", "compare": "Comparing"}.get(status.kind, "Running"), "pz-pill--run"
    elif state.results_of_other_scenario or state.result.value is None:
        chip, cls = "Not run yet", "pz-pill--stale"
    elif state.results_stale:
        chip, cls = "Levers changed: results out of date", "pz-pill--stale"
    elif state.result.value is not None and not state.result.value.complete:
        r = state.result.value
        chip, cls = f"Year {r.year} of {r.years}" + ("" if r.year < r.years else " (some seeds)"), "pz-pill--run"
    elif state.result.value is not None:
        chip, cls = "Results up to date", "pz-pill--ok"
    else:
        chip, cls = "No results yet", "pz-pill--stale"
    with solara.Row(gap="10px", style={"align-items": "center"}) as main:
        Txt(state.scenario.value.name, classes=["pz-pill"], testid="scenario-name")
        Txt(chip, classes=["pz-pill", cls], testid="run-state")
    return main


@solara.component
def Header(state: DashboardState):
    with solara.Column(classes=["pz-header"], gap="4px") as main:
        with solara.Row(gap="0px"):
            rv.Html(tag="a", class_="pz-skip", attributes={"href": "#pz-run-controls"}, children=["Skip to Run"])
            rv.Html(tag="a", class_="pz-skip", attributes={"href": "#pz-results"}, children=["Skip to the results"])
        with solara.Row(style={"align-items": "center", "justify-content": "space-between", "flex-wrap": "wrap"},
                        gap="8px"):
            with solara.Column(gap="0px"):
                rv.Html(tag="h1", class_="pz-title", children=["Portfolio district simulator"])
                solara.Text("Autonomous district schools: try a policy design on a simulated district before "
                            "adopting it", classes=["pz-subtitle"])
            HeaderStatus(state)
        RunProgress(state)
    return main


@solara.component
def TabBar(state: DashboardState):
    tab = state.tab.value
    with solara.Row(classes=["pz-tabs"], gap="2px") as main:
        for t in TABS:
            solara.Button(TAB_LABELS[t], icon_name=TAB_ICONS[t], text=True, on_click=lambda t=t: state.tab.set(t),
                          classes=["pz-tab", *(["pz-tab--active"] if t == tab else [])])
    return main


@solara.component
def Results(state: DashboardState):
    result = state.result.value
    tab = state.tab.value
    notice = state.notice.value
    with solara.Column(gap="10px", classes=["pz-main"]) as main:
        Anchor("pz-results")
        TabBar(state)
        if notice is not None:
            with solara.Row(style={"align-items": "flex-start"}):
                with solara.Column(style={"flex": "1"}):
                    Message(notice[0], notice[1], testid="notice")
                solara.Button(icon_name="mdi-close", icon=True, text=True, on_click=lambda: state.notice.set(None),
                              attributes={"aria-label": "Dismiss this message", "title": "Dismiss"})
        if tab == "compare":
            CompareView(state)
            return main
        busy = state.status.value.busy
        if result is not None and state.results_of_other_scenario:
            result = None                 # never another scenario's numbers under this one's name
        if result is None:
            if busy:
                with solara.Div(classes=["pz-card"], attributes={"data-testid": "not-run"}):
                    solara.Text(f"Running {state.scenario.value.name}: the first results appear after the first "
                                "seed (progress at the top).", classes=["pz-help"])
            else:
                NotRunYet(state)
            return main
        if not busy and not state.results_stale and not result.complete:
            Message("warning", f"Partial results: {result.progress_note} (the run was cancelled or is being "
                               "stepped). Press Run to finish it.", testid="results-label")
        if busy or state.results_stale:
            why = ("Updating: these are the previous results, shown until the new run's first seed is in."
                   if busy else "Out of date: these results are for the levers before your change. "
                                "Press Run to update them.")
            Message("warning", why, testid="results-label")
        classes = ["pz-results", *(["pz-results--stale"] if (busy or state.results_stale) else [])]
        with solara.Column(gap="10px", classes=classes):
            ResultsTab(state, result, tab)
    return main


@solara.component
def NotRunYet(state: DashboardState):
    """A scenario with no results yet: what a run takes, one click to run it or a quick look."""
    s = state.scenario.value
    years, seeds = state.quick_look()
    quick = s.model_copy(deep=True)
    quick.run.years, quick.run.seeds = years, seeds
    with solara.Div(classes=["pz-card", "pz-col"], attributes={"data-testid": "not-run"}) as main:
        H2(f"{s.name}: not run yet")
        solara.Text(f"About {_duration(state.estimate())} for {s.run.years} years × {s.run.seeds} seeds of "
                    f"{s.district.students:,} students.", classes=["pz-help"], )
        with solara.Row(gap="8px", style={"flex-wrap": "wrap"}):
            solara.Button(f"Run {s.run.years} years × {s.run.seeds} seeds", icon_name="mdi-play", color="primary",
                          on_click=lambda: state.run(), classes=["pz-run-now"])
            if (years, seeds) != (s.run.years, s.run.seeds):
                solara.Button(f"Quick look: {years} years × {seeds} seed(s), about "
                              f"{_duration(state.estimate(quick))}", icon_name="mdi-flash", outlined=True,
                              on_click=state.run_quick_look, classes=["pz-quick-look"])
    return main


@solara.component
def ResultsTab(state: DashboardState, result: RunSnapshot, tab: str):
    with solara.Column(gap="10px") as main:
        if tab == "overview":
            Overview(state, result)
        elif tab == "charts":
            Charts(state, result)
        elif tab == "map":
            DistrictMap(state, result)
        elif tab == "events":
            EventLog(state, result)
        elif tab == "export":
            ExportView(state, result)
    return main


def apply_theme() -> None:
    """The dashboard's colours (Solara's theme is per session)."""
    try:
        light = solara.lab.theme.themes.light
        light.primary = "#1b4f80"
        light.secondary = "#5b6b7a"
        light.accent = "#f59e0b"
        light.error = "#b42318"
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


# Every live session's state (weakly held: for tests and diagnostics; never shown on a page).
SESSIONS: weakref.WeakSet = weakref.WeakSet()


@solara.component
def Dashboard(state: DashboardState):
    """The whole page for one session's state."""
    with solara.Column(gap="0px", classes=["pz-app"]) as main:
        solara.Title("Portfolio district simulator")
        solara.Style(CSS)
        PageFixes.element()
        # an empty, hidden chart: the browser starts loading plotly.js while the first run computes
        solara.Div(children=[PlotlyView.element(figure="", height=0)], style="display: none")
        Header(state)
        with solara.Row(classes=["pz-body"], gap="16px"):
            with solara.Column(classes=["pz-side"], gap="14px"):
                ScenarioCard(state)
                RunCard(state)
                WorkshopCard(state)
                LeverPanel(state)
            Results(state)
    return main


@solara.component
def Page():
    """Solara's entry point. One state per browser page: two people (or two tabs) never share levers,
    runs or comparisons. The baseline starts running as soon as the page opens."""
    def make_state() -> DashboardState:
        st = DashboardState(autorun=False)
        SESSIONS.add(st)
        return st

    state = solara.use_memo(make_state, [])
    apply_theme()

    def on_mount():
        state.run()
        return state.shutdown

    solara.use_effect(on_mount, [])
    return Dashboard(state)
