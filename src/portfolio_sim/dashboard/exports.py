"""Downloads and the scenario upload.

Downloads use the CLI's file formats, so a dashboard run and `portfolio-sim run` read the same way:
`yearly.csv`, `summary.csv`, `schools.csv`, `events.csv`, `scenario.toml` (which `portfolio-sim run`
accepts and which reproduces the run: same seeds, same numbers), `report.html` and, when workshop players
decided anything, `decisions.toml` (`portfolio-sim run scenario.toml --decisions decisions.toml`); all of
them in one zip. A chart downloads as a self-contained HTML file (plotly.js inline: opens offline); PNG comes from
the chart's own toolbar (plotly draws it in the browser, no server-side image library needed).

Uploads: at most :data:`portfolio_sim.inputs.MAX_UPLOAD_BYTES`, UTF-8 TOML (read by
:func:`portfolio_sim.inputs.read_upload`, where every input limit lives), validated by
:func:`portfolio_sim.scenario.loads_scenario` (`extends` may name a preset only). Every failure comes
back as a message for the page, never as an exception.
"""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from dataclasses import dataclass
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


# -- results ---------------------------------------------------------------------------------------

def yearly_csv(result: RunSnapshot) -> str:
    return result.yearly.to_csv(index=False)


def summary_csv(result: RunSnapshot) -> str:
    return result.summary.to_csv(index=False)


def schools_csv(result: RunSnapshot) -> str:
    return result.schools.to_csv(index=False)


def events_csv(result: RunSnapshot, frame: pd.DataFrame | None = None) -> str:
    return (frame if frame is not None else result.events).to_csv(index=False)


def report_html(result: RunSnapshot) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        write_report(path, result.yearly, result.summary, result.events, result.scenario, dict(result.decisions))
        return path.read_text(encoding="utf-8")


def results_zip(result: RunSnapshot) -> bytes:
    """The files `portfolio-sim run` writes, for this run."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("yearly.csv", yearly_csv(result))
        z.writestr("summary.csv", summary_csv(result))
        z.writestr("schools.csv", schools_csv(result))
        z.writestr("events.csv", events_csv(result))
        z.writestr("scenario.toml", result.scenario.to_toml())
        z.writestr("report.html", report_html(result))
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
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("comparison_yearly.csv", store.combined_yearly().to_csv(index=False))
        z.writestr("comparison_summary.csv", store.combined_summary().to_csv(index=False))
        for e in store.entries:
            z.writestr(f"{safe_name(e.label)}.toml", store.run_scenario(e).to_toml())
    return buf.getvalue()


def figure_html(fig: go.Figure, title: str = "") -> str:
    """A chart as one self-contained HTML file (plotly.js inline, no CDN: opens offline)."""
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
