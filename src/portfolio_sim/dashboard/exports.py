"""Downloads and the scenario upload.

Downloads use the CLI's file formats, so a dashboard run and `portfolio-sim run` read the same way:
`yearly.csv`, `summary.csv`, `schools.csv`, `events.csv`, `scenario.toml` (which `portfolio-sim run`
accepts and which reproduces the run: same seeds, same numbers), `report.html` and, when workshop players
decided anything, `decisions.toml` (`portfolio-sim run scenario.toml --decisions decisions.toml`); all of
them in one zip. A chart downloads as a self-contained HTML file (plotly.js inline: opens offline); PNG comes from
the chart's own toolbar (plotly draws it in the browser, no server-side image library needed).

Every export says what it is of (:func:`provenance`): scenario, seeds, years, model version and the
date, as `run_info.json` in the zips, as `# ` lines heading a single CSV (read it with
`pandas.read_csv(f, comment="#")`; the zip's CSVs are exactly the CLI's), in a line of report.html and
under the title of a chart's HTML and PNG (:func:`caption`).

Uploads: at most :data:`portfolio_sim.inputs.MAX_UPLOAD_BYTES`, UTF-8 TOML (read by
:func:`portfolio_sim.inputs.read_upload`, where every input limit lives), validated by
:func:`portfolio_sim.scenario.loads_scenario` (`extends` may name a preset only). Every failure comes
back as a message for the page, never as an exception.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from portfolio_sim.dashboard.compare import ComparisonStore
from portfolio_sim.dashboard.simulation import RunSnapshot, SimulationLimit, check_limits
from portfolio_sim.decisions import decisions_toml
from portfolio_sim.errors import ScenarioError
from portfolio_sim.inputs import MAX_UPLOAD_BYTES, read_upload
from portfolio_sim.report import write_report
from portfolio_sim.scenario import Scenario, loads_scenario



def safe_name(text: str, default: str = "scenario") -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:80] or default


# -- what an export is of ------------------------------------------------------------------------

@cache
def model_version() -> str:
    try:
        from importlib.metadata import version
        return version("portfolio_sim")
    except Exception:  # noqa: BLE001 - not installed (PYTHONPATH=src)
        from portfolio_sim import __version__
        return __version__


def _today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def provenance(result: RunSnapshot) -> dict:
    """What a run's exports are of: scenario, seeds, years, model version, date (run_info.json)."""
    s = result.scenario
    return {"scenario": s.name, "description": (s.description or "").splitlines()[0] if s.description else "",
            "seeds": list(result.seeds), "root_seed": s.run.seed, "seeds_in_run": len(result.all_seeds),
            "years": result.years, "years_done": result.year, "first_year": s.run.start_year,
            "last_year": s.run.start_year + result.year, "complete": result.complete,
            "workshop_decisions_years": [y for y, _ in result.decisions],
            "model": "portfolio_sim", "model_version": model_version(), "exported": _today(),
            "exported_by": "portfolio_sim dashboard",
            "repeat_with": "portfolio-sim run scenario.toml" + (" --decisions decisions.toml" if result.decisions else "")}


def caption(result: RunSnapshot) -> str:
    """One line for a chart's image or HTML: scenario, seeds, years, version (the date is added on export)."""
    p = provenance(result)
    years = (f"{p['first_year']}-{p['last_year']}" + ("" if p["complete"] else f" (of {p['years']} years)"))
    return (f"Scenario {p['scenario']} · {len(p['seeds'])} seed(s), root seed {p['root_seed']} · {years} · "
            f"portfolio_sim {p['model_version']}")


def run_info_json(result: RunSnapshot) -> str:
    return json.dumps(provenance(result), indent=2) + "\n"


def _headed(csv: str, result: RunSnapshot, what: str) -> str:
    """A CSV with `# ` lines first saying what it is of (pandas: read_csv(f, comment="#"))."""
    p = provenance(result)
    head = [f"# {what}: portfolio_sim dashboard export",
            f"# scenario: {p['scenario']}",
            f"# seeds: {' '.join(str(s) for s in p['seeds'])} (root seed {p['root_seed']})",
            f"# years: {p['first_year']}-{p['last_year']}" + ("" if p["complete"] else f" of {p['years']} (partial)"),
            f"# model version: {p['model_version']}; exported {p['exported']}"]
    return "\n".join(head) + "\n" + csv


# -- results ---------------------------------------------------------------------------------------

def yearly_csv(result: RunSnapshot, headed: bool = False) -> str:
    out = result.yearly.to_csv(index=False)
    return _headed(out, result, "yearly metrics") if headed else out


def summary_csv(result: RunSnapshot, headed: bool = False) -> str:
    out = result.summary.to_csv(index=False)
    return _headed(out, result, "metric summary across seeds") if headed else out


def schools_csv(result: RunSnapshot, headed: bool = False) -> str:
    out = result.schools.to_csv(index=False)
    return _headed(out, result, "school panel") if headed else out


def events_csv(result: RunSnapshot, frame: pd.DataFrame | None = None, headed: bool = False) -> str:
    out = (frame if frame is not None else result.events).to_csv(index=False)
    return _headed(out, result, "event log" if frame is None else "event log (filtered)") if headed else out


_META_LINE = re.compile(r"(<p class=\"meta\">)")


def report_html(result: RunSnapshot) -> str:
    """The CLI's report, with a line saying it came from the dashboard: model version and date."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        write_report(path, result.yearly, result.summary, result.events, result.scenario, dict(result.decisions))
        text = path.read_text(encoding="utf-8")
    p = provenance(result)
    line = (f'<p class="meta" data-provenance="1">Exported from the portfolio_sim dashboard: model version '
            f'{p["model_version"]}, {p["exported"]}' + ("" if p["complete"] else
                                                         f"; partial run, {result.progress_note}") + ".</p>\n")
    if _META_LINE.search(text):
        return _META_LINE.sub(lambda m: line + m.group(1), text, count=1)
    return text.replace("</body>", line + "</body>", 1)


def results_zip(result: RunSnapshot) -> bytes:
    """The files `portfolio-sim run` writes, for this run, and run_info.json (what they are of)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("yearly.csv", yearly_csv(result))
        z.writestr("summary.csv", summary_csv(result))
        z.writestr("schools.csv", schools_csv(result))
        z.writestr("events.csv", events_csv(result))
        z.writestr("scenario.toml", result.scenario.to_toml())
        z.writestr("report.html", report_html(result))
        z.writestr("run_info.json", run_info_json(result))
        if result.decisions:
            z.writestr("decisions.toml", decisions_file(result))
    return buf.getvalue()


def decisions_file(result: RunSnapshot) -> str:
    """The workshop decisions of this run: `portfolio-sim run scenario.toml --decisions FILE` replays it."""
    return decisions_toml(dict(result.decisions))


def comparison_csv(store: ComparisonStore) -> str:
    """Every compared scenario's yearly metrics (one row per scenario, seed and year)."""
    return store.combined_yearly().to_csv(index=False)


def comparison_zip(store: ComparisonStore) -> bytes:
    buf = io.BytesIO()
    st = store.settings
    info = {"compared": [{"label": e.label, "source": e.source, "scenario": store.run_scenario(e).name,
                          "file": f"{safe_name(e.label)}.toml",
                          "seeds": list(e.result.seeds) if e.result is not None else [],
                          "ready": store.is_current(e)} for e in store.entries],
            "reference": store.reference_entry().label if store.reference_entry() else None,
            "years": st.years, "seeds": st.seeds, "root_seed": st.seed,
            "forced_board_flip_year": st.flip_year if st.override_flip else None,
            "model": "portfolio_sim", "model_version": model_version(), "exported": _today(),
            "exported_by": "portfolio_sim dashboard"}
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("comparison_yearly.csv", store.combined_yearly().to_csv(index=False))
        z.writestr("comparison_summary.csv", store.combined_summary().to_csv(index=False))
        z.writestr("run_info.json", json.dumps(info, indent=2) + "\n")
        for e in store.entries:
            z.writestr(f"{safe_name(e.label)}.toml", store.run_scenario(e).to_toml())
    return buf.getvalue()


def figure_html(fig: go.Figure, title: str = "", caption: str = "") -> str:
    """A chart as one self-contained HTML file (plotly.js inline, no CDN: opens offline), with
    `caption` (scenario, seeds, years, version) and the date under its title."""
    if caption:
        fig = go.Figure(fig)
        text = fig.layout.title.text or title
        line = f"{caption} · exported {_today()}"
        fig.update_layout(title_text=f"{text}<br><sup>{html.escape(line)}</sup>" if text else html.escape(line),
                          margin_t=max(int(fig.layout.margin.t or 0), 80))
    return fig.to_html(full_html=True, include_plotlyjs=True,
                       config={"displaylogo": False, "responsive": True},
                       default_width="100%", default_height=f"{fig.layout.height or 450}px",
                       div_id=safe_name(title or "chart"))


def scenario_toml(scenario: Scenario) -> str:
    """The fully resolved scenario; `portfolio-sim run FILE` accepts it and repeats the run."""
    return scenario.to_toml()


# -- upload ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UploadResult:
    ok: bool
    message: str
    scenario: Scenario | None = None


def parse_upload(name: str, data: bytes | None, size: int | None = None) -> UploadResult:
    """Validate an uploaded scenario file. Never raises: errors come back as the message."""
    name = (name or "upload").strip()[:120] or "upload"
    try:
        try:
            # size, emptiness and encoding: the limits of every user file, in portfolio_sim.inputs
            text = read_upload(name, data, size, what="scenario file")
        except ScenarioError as exc:
            return UploadResult(False, f"{exc} (scenario files are short UTF-8 TOML files).")
        try:
            scenario = loads_scenario(text, source=name)
        except ScenarioError as exc:
            return UploadResult(False, str(exc))
        try:
            check_limits(scenario)
        except SimulationLimit as exc:
            return UploadResult(False, f"{name}: {exc}")
        return UploadResult(True, f"Loaded {name}: scenario '{scenario.name}'.", scenario)
    except Exception as exc:  # noqa: BLE001 - the page shows a message, never a traceback
        return UploadResult(False, f"{name}: could not read the scenario ({type(exc).__name__}).")
