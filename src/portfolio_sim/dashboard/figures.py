"""Dashboard figures and tables, built on :mod:`portfolio_sim.report`'s figure builders.

- :data:`CHARTS`: every outcome chart of the Charts tab (bands across seeds), by section
- :func:`comparison_figure` / :func:`difference_figure`: several scenarios on the same axes
- :func:`map_figure`: the district map (schools by location, sized by enrollment, coloured by type or
  rating, one year and seed); :func:`school_history_figure`: one school over the years
- :func:`key_numbers`, :func:`event_table`, :func:`school_facts`: tables for the page

Every function is pure (snapshot in, figure or frame out), so the page can memoize them and the tests
can call them without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from portfolio_sim.dashboard.compare import (ComparisonStore, final_by_seed, paired_difference, paired_differences,
                                             summary_for)
from portfolio_sim.dashboard.palette import CIVIDIS, DASHES, OKABE_ITO, SYMBOLS
from portfolio_sim.dashboard.simulation import RunSnapshot
from portfolio_sim.district import BAND_NAMES
from portfolio_sim import outputs
from portfolio_sim.outputs import PALETTE
from portfolio_sim.report import band_figure, chart_figure, label
from portfolio_sim.scenario import Scenario

FONT = "Inter, Roboto, 'Segoe UI', system-ui, sans-serif"

SECTOR_LABELS = {"traditional": "Traditional", "district_run": "District-run autonomous",
                 "partner_led": "Partner-led", "partner_run": "Partner-run", "charter": "Charter"}
# Okabe-Ito (colour-blind safe, see palette.py); the map also tells sectors apart by marker outline
SECTOR_COLORS = {"traditional": "#6b6b6b", "district_run": OKABE_ITO[0], "partner_led": OKABE_ITO[1],
                 "partner_run": OKABE_ITO[3], "charter": OKABE_ITO[2]}
RATING_SCALE = CIVIDIS   # dark blue = low rating, yellow = high; monotone in lightness
BAND_SYMBOLS = {"elementary": "circle", "k8": "circle", "middle": "diamond", "high": "square"}


def _hex(color: Any) -> str:
    """'#rrggbb' of a '#rrggbb' or 'rgba(r,g,b,a)' colour ('' otherwise)."""
    if not isinstance(color, str):
        return ""
    c = color.strip().lower()
    if c.startswith("#") and len(c) == 7:
        return c
    if c.startswith("rgb"):
        try:
            r, g, b = (int(float(v)) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3])
        except ValueError:
            return ""
        return f"#{r:02x}{g:02x}{b:02x}"
    return ""


_SAFE = {old.lower(): OKABE_ITO[i % len(OKABE_ITO)] for i, old in enumerate(PALETTE)}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def accessible(fig: go.Figure) -> go.Figure:
    """Colour-blind-safe look for figures built by report.py: its palette mapped onto Okabe-Ito, every
    legend line with its own dash and marker, light bands drawn under every line (bands never hide a
    line)."""
    fills, lines = [], []
    i = 0
    for tr in fig.data:
        line = getattr(tr, "line", None)
        old = _hex(line.color) if line is not None else ""
        if old in _SAFE:
            line.color = _SAFE[old]
        marker = getattr(tr, "marker", None)
        if marker is not None and isinstance(marker.color, str) and _hex(marker.color) in _SAFE:
            marker.color = _SAFE[_hex(marker.color)]
        fill = getattr(tr, "fillcolor", None)
        if fill and _hex(fill) in _SAFE:
            tr.fillcolor = _rgba(_SAFE[_hex(fill)], 0.12)
        if getattr(tr, "fill", None) in ("tonexty", "toself", "tozeroy") or (
                line is not None and line.width == 0 and tr.showlegend is False):
            fills.append(tr)
            continue
        if tr.type == "scatter" and tr.showlegend is not False and tr.mode and "lines" in tr.mode:
            if not line.dash or line.dash == "solid":
                line.dash = DASHES[i % len(DASHES)]
            tr.mode = "lines+markers"
            tr.marker.symbol = SYMBOLS[i % len(SYMBOLS)]
            tr.marker.size = 6
            i += 1
        lines.append(tr)
    fig.data = tuple(fills + lines)
    return fig


def polish(fig: go.Figure, height: int | None = None, title: str | None = None) -> go.Figure:
    """The dashboard's look: one font, compact margins, a short title that fits (the card's note says
    the rest), the legend below the plot, colour-blind-safe lines."""
    accessible(fig)
    fig.update_layout(font={"family": FONT, "size": 12, "color": "#243447"},
                      title={"font": {"size": 15}, "x": 0.01, "xanchor": "left"},
                      legend={"orientation": "h", "y": -0.18, "x": 0, "xanchor": "left", "yanchor": "top"},
                      margin={"l": 60, "r": 30, "t": 48, "b": 40}, paper_bgcolor="white")
    if title is not None:
        fig.update_layout(title_text=title)
    if height:
        fig.update_layout(height=height)
    return fig


_WHITE: dict | None = None


def _template() -> dict:
    """plotly_white as a plain dict (computed once)."""
    global _WHITE
    if _WHITE is None:
        import plotly.io as pio
        _WHITE = pio.templates["plotly_white"].to_plotly_json()
    return _WHITE


def fast_figure(data: list[dict], layout: dict, height: int) -> go.Figure:
    """A figure from plain dicts, without plotly.py's per-property validation (50x faster; the
    dashboard's own figures are rebuilt on every snapshot). Same look as `polish`."""
    base = {"template": _template(), "height": height, "paper_bgcolor": "white",
            "font": {"family": FONT, "size": 12, "color": "#243447"},
            "margin": {"l": 60, "r": 30, "t": 56, "b": 40}}
    title = layout.pop("title", None)
    if title is not None:
        base["title"] = {"text": title if isinstance(title, str) else title.get("text", ""), "font": {"size": 15},
                         "x": 0.01, "xanchor": "left"}
    return go.Figure(data=data, layout={**base, **layout}, _validate=False)


def _vline(x: float, color: str, dash: str = "dot", width: float = 1, label: str = "") -> tuple[dict, dict | None]:
    shape = {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
             "line": {"color": color, "dash": dash, "width": width}}
    note = ({"x": x, "y": 1, "xref": "x", "yref": "paper", "text": label, "showarrow": False, "xanchor": "right",
             "yanchor": "top", "font": {"color": color, "size": 11}} if label else None)
    return shape, note


# ------------------------------------------------------------------------------------------------
# Outcome charts (bands across seeds)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChartSpec:
    key: str
    section: str
    title: str
    note: str
    build: Callable[[RunSnapshot], go.Figure]


def absent(summary: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The metrics that are zero in every year and seed of this run (no partner-run schools, no restarts)."""
    if summary.empty:
        return []
    out = []
    for m in metrics:
        rows = summary[summary["metric"] == m]
        if not rows.empty and float(rows[["p10", "median", "p90"]].abs().to_numpy().max()) == 0:
            out.append(m)
    return out


def present(summary: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The metrics this run has (not :func:`absent`); at least the first."""
    gone = set(absent(summary, metrics))
    return [m for m in metrics if m not in gone] or metrics[:1]


# Chart titles must fit a half-width card (the card's note says the rest).
SHORT_TITLES = {"schools": "School openings, closures and schools open",
                "exits": "Students leaving for outside options",
                "autonomy": "Autonomy granted vs effective",
                "autonomy_domains": "Autonomy by domain: granted vs effective"}
# Charts of categories: one that is absent from the run keeps its legend entry (same colour, dash and
# place in every scenario, greyed: "none in this run", a click draws it) but draws no flat line.
CATEGORIES = {"enrollment": (), "schools": ("schools_open",), "autonomy_domains": ()}   # (never greyed)
FROM_ZERO = {"enrollment", "schools"}   # counts start at 0: a drop of 6 schools of 60 is not a collapse
NONE_IN_RUN = " (none in this run)"


def grey_absent(fig: go.Figure, gone: list[str]) -> go.Figure:
    """Traces of the `gone` metrics (by legendgroup): the line legend-only, renamed, its band hidden."""
    for tr in fig.data:
        if getattr(tr, "legendgroup", None) in gone:
            if tr.showlegend is False:
                tr.visible = False
            else:
                tr.visible = "legendonly"
                if tr.name and not tr.name.endswith(NONE_IN_RUN):
                    tr.name = tr.name + NONE_IN_RUN
    return fig


def absent_labels(key: str, r: RunSnapshot) -> list[str]:
    """The categories of chart `key` this run does not have, as the legend names them."""
    if key not in CATEGORIES:
        return []
    c = next(c for c in outputs.CHARTS if c.key == key)
    return [label(m) for m in absent(r.summary, [m for m in c.metrics if m not in CATEGORIES[key]])]


def _build(c: outputs.Chart) -> Callable[[RunSnapshot], go.Figure]:
    def build(r: RunSnapshot) -> go.Figure:
        title = SHORT_TITLES.get(c.key, c.title if len(c.title) <= 48 else None)
        fig = polish(chart_figure(c, r.summary, r.yearly, r.scenario, start_year=r.start_year), title=title)
        if c.key in CATEGORIES:
            grey_absent(fig, absent(r.summary, [m for m in c.metrics if m not in CATEGORIES[c.key]]))
        if c.key in FROM_ZERO:
            fig.update_layout(yaxis_rangemode="tozero")
            if "yaxis2" in fig.layout:
                fig.layout.yaxis2.rangemode = "tozero"
        return fig
    return build


# The charts of report.html, in its order (declared once, in portfolio_sim.outputs.CHARTS).
CHARTS: tuple[ChartSpec, ...] = tuple(ChartSpec(c.key, c.section, c.title, c.note, _build(c))
                                      for c in outputs.CHARTS)
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(c.section for c in CHARTS))


def chart(key: str) -> ChartSpec:
    for c in CHARTS:
        if c.key == key:
            return c
    raise KeyError(key)


def build_chart(key: str, result: RunSnapshot) -> go.Figure:
    return chart(key).build(result)


# ------------------------------------------------------------------------------------------------
# Key numbers
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyMetric:
    metric: str
    label: str
    kind: str          # a Metric.format: sd | pct | count | frac | money
    cumulative: bool = False
    better: str = ""   # "up" / "down": which way is good, for colouring changes


# The key numbers: the metrics the output registry marks `key` (the CLI's summary table shows the same).
def _unit(m: outputs.Metric) -> str:
    """The unit a key number needs to be read ('' where the label or the format says it)."""
    if m.format == "sd":
        return " (student SD)"
    if m.unit in ("0-1",):
        return " (0-1 scale)"
    return ""


KEY_METRICS: tuple[KeyMetric, ...] = tuple(
    KeyMetric(m.name, m.label + _unit(m) + (" (all years)" if m.cumulative else ""), m.format, m.cumulative,
              m.better)
    for m in outputs.KEY_METRICS)


def fmt_value(value: float | None, kind: str, signed: bool = False) -> str:
    """`outputs.format_value`, and kind "whole": counts of students or schools as whole numbers (a band
    of '28.6 to 44.2 schools' reads as nonsense)."""
    if kind == "whole":
        return outputs.format_value(None if value is None else float(round(value)), "count", signed)
    return outputs.format_value(value, kind, signed)


def ordinal(value: float) -> str:
    """53 -> '53rd', 11 -> '11th', 1 -> '1st'."""
    n = int(round(float(value)))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def key_numbers(result: RunSnapshot) -> list[dict[str, Any]]:
    """Per key metric: the first and last year's median (p10-p90 across seeds) and the change."""
    y = result.yearly
    rows = []
    if y.empty:
        return rows
    first, last = int(y["year"].min()), int(y["year"].max())
    for km in KEY_METRICS:
        if km.metric not in y:
            continue
        if km.cumulative:
            end = y.groupby("seed")[km.metric].sum().astype(float)
            start = pd.Series([0.0])
        else:
            end = y.loc[y["year"] == last, km.metric].astype(float)
            start = y.loc[y["year"] == first, km.metric].astype(float)
        q = end.quantile([0.1, 0.5, 0.9]).tolist()
        s = float(start.median())
        change = q[1] - s
        good = None
        shown = fmt_value(change, km.kind, signed=True).lstrip("+-")
        if km.better and shown.strip("0.,$ pts") != "":      # a change that shows as 0 is not coloured
            good = (change > 0) == (km.better == "up")
        rows.append({"metric": km.metric, "label": km.label, "kind": km.kind, "start": s, "median": q[1],
                     "p10": q[0], "p90": q[2], "change": change, "good": good, "cumulative": km.cumulative,
                     "n_seeds": int(end.size), "first_year": result.start_year + first,
                     "last_year": result.start_year + last})
    return rows


def comparison_rows(store: ComparisonStore) -> list[dict[str, Any]]:
    """Per key metric: each ready scenario's last-year values and, against the reference, the paired
    difference across seeds (`compare.PairedDifference`: clear of seed noise or not)."""
    ready = store.ready()
    ref = store.reference_entry()
    rows = []
    for km in KEY_METRICS:
        ref_vals = final_by_seed(ref.result, km.metric, km.cumulative) if ref else pd.Series(dtype=float)
        cells = {}
        for e in ready:
            v = final_by_seed(e.result, km.metric, km.cumulative)
            diff = (paired_difference(v, ref_vals) if ref is not None and e.key != ref.key and not v.empty
                    else None)
            cells[e.label] = (v, diff)
        rows.append({"metric": km, "cells": cells,
                     "clear": any(d is not None and d.clear for _, d in cells.values())})
    return rows


def comparison_table(store: ComparisonStore) -> pd.DataFrame:
    """Key metrics in the last year (or totals), one column per ready scenario: 'median [p10 to p90]',
    and for each scenario but the reference the median paired difference with its verdict (clear of
    seed noise: the 95% interval of the per-seed differences excludes 0). Clear differences first."""
    rows = []
    for r in sorted(comparison_rows(store), key=lambda r: not r["clear"]):
        km = r["metric"]
        row: dict[str, str] = {"metric": km.label + (" (total)" if km.cumulative and "all years" not in km.label else "")}
        for name, (v, diff) in r["cells"].items():
            if v.empty:
                row[name] = "n/a"
                continue
            p10, med, p90 = np.quantile(v.to_numpy(), [0.1, 0.5, 0.9])
            cell = fmt_value(med, km.kind)
            if v.size > 1:
                cell += f" [{fmt_value(p10, km.kind)} to {fmt_value(p90, km.kind)}]"
            if diff is not None:
                mark = "✔ " if diff.clear else ""
                cell += f"  (Δ {fmt_value(diff.median, km.kind, signed=True)}: {mark}{diff.verdict})"
            row[name] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def clear_differences(store: ComparisonStore) -> list[str]:
    """Plain sentences for the differences clear of seed noise, largest first within each scenario."""
    ref = store.reference_entry()
    out = []
    for r in comparison_rows(store):
        km = r["metric"]
        for name, (_, diff) in r["cells"].items():
            if diff is not None and diff.clear:
                word = "higher" if diff.median > 0 else "lower"
                out.append(f"{name}: {km.label.lower()} {fmt_value(abs(diff.median), km.kind)} {word} than "
                           f"{ref.label} (paired over {diff.n} seeds; 95% interval "
                           f"{fmt_value(diff.low, km.kind, signed=True)} to {fmt_value(diff.high, km.kind, signed=True)})")
    return out


# ------------------------------------------------------------------------------------------------
# Comparisons on the same axes
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareMetric:
    metric: str
    title: str
    yaxis: str
    percent: bool = False


COMPARE_METRICS: tuple[CompareMetric, ...] = (
    CompareMetric("mean_achievement", "Mean achievement", "student SD"),
    CompareMetric("achievement_gap", "Income achievement gap", "student SD"),
    CompareMetric("political_support", "Political support", "support (0-1)"),
    CompareMetric("autonomy_effective", "Effective autonomy (autonomous schools)", "autonomy (0-1)"),
    CompareMetric("enrollment_autonomous", "Students in autonomous schools", "students"),
    CompareMetric("share_below_bar", "Students in schools below the bar", "share", percent=True),
    CompareMetric("cum_closures", "Closures, running total", "schools"),
    CompareMetric("cum_reversals", "Reversals, running total", "reversals"),
    CompareMetric("enrollment_outside", "Students outside the district", "students"),
    CompareMetric("segregation_index", "Segregation index", "dissimilarity (0-1)"),
    CompareMetric("first_choice_rate", "Choosers offered their first choice", "share", percent=True),
    CompareMetric("per_pupil_resources", "Per-pupil resources reaching schools", "$ per pupil"),
    CompareMetric("autonomous_schools", "Autonomous schools", "schools"),
    CompareMetric("cum_conversions", "Conversions, running total", "schools"),
)


def compare_metric(metric: str) -> CompareMetric:
    for m in COMPARE_METRICS:
        if m.metric == metric:
            return m
    return CompareMetric(metric, label(metric), "")


def _band_traces(d: pd.DataFrame, start_year: int, name: str, color: str, percent: bool, group: str,
                 i: int = 0) -> list[dict]:
    """A p10-p90 band and the median line (the i-th line's dash and marker), as plain trace dicts."""
    d = d.sort_values("year")
    x = [int(v) + start_year for v in d["year"]]
    yfmt = ".1%" if percent else ".3~r"
    return [
        {"type": "scatter", "x": x, "y": d["p90"].to_numpy(), "mode": "lines", "line": {"width": 0},
         "showlegend": False, "legendgroup": group, "hoverinfo": "skip"},
        {"type": "scatter", "x": x, "y": d["p10"].to_numpy(), "mode": "lines", "line": {"width": 0}, "fill": "tonexty",
         "fillcolor": _rgba(color, 0.12), "showlegend": False, "legendgroup": group, "hoverinfo": "skip"},
        {"type": "scatter", "x": x, "y": d["median"].to_numpy(), "mode": "lines+markers", "name": name,
         "legendgroup": group, "line": {"color": color, "width": 2.5, "dash": DASHES[i % len(DASHES)]},
         "marker": {"size": 6, "symbol": SYMBOLS[i % len(SYMBOLS)]},
         "customdata": d[["p10", "p90"]].to_numpy(),
         "hovertemplate": (f"{html.escape(name)}: median %{{y:{yfmt}}} "
                           f"(p10-p90 %{{customdata[0]:{yfmt}}} to %{{customdata[1]:{yfmt}}})<extra></extra>")},
    ]


def _flip(store: ComparisonStore, start_year: int) -> tuple[list[dict], list[dict]]:
    st = store.settings
    if st.override_flip and st.flip_year > 0:
        shape, note = _vline(start_year + st.flip_year, "#b42318", "dash", 1.5, "board flips ")
        return [shape], [note]
    return [], []


def _years_axis(store: ComparisonStore) -> dict:
    return {"title": {"text": "calendar year"}, **({"dtick": 1} if store.settings.years <= 20 else {})}


def comparison_figure(store: ComparisonStore, metric: str, height: int = 380) -> go.Figure:
    """One metric, every ready scenario on the same axes: median line and p10-p90 band across seeds."""
    cm = compare_metric(metric)
    ready = store.ready()
    start = ready[0].result.start_year if ready else 0
    data: list[dict] = []
    for i, e in enumerate(ready):
        d = summary_for(e.result, metric)
        if not d.empty:
            data += _band_traces(d, e.result.start_year, e.label, e.color, cm.percent, group=e.label, i=i)
    data = [tr for tr in data if tr.get("fill") or tr["line"].get("width") == 0] + \
        [tr for tr in data if not (tr.get("fill") or tr["line"].get("width") == 0)]   # bands under lines
    shapes, notes = _flip(store, start)
    return fast_figure(data, {
        "title": cm.title, "xaxis": _years_axis(store),
        "yaxis": {"title": {"text": cm.yaxis}, **({"tickformat": ".0%"} if cm.percent else {})},
        "legend": {"orientation": "h", "y": -0.22}, "hovermode": "x unified", "shapes": shapes,
        "annotations": notes}, height)


def difference_figure(store: ComparisonStore, metric: str, height: int = 380) -> go.Figure:
    """Each scenario minus the reference scenario, paired by seed (median and p10-p90 across seeds)."""
    cm = compare_metric(metric)
    ref = store.reference_entry()
    start = ref.result.start_year if ref else 0
    colors = {e.label: e.color for e in store.entries}
    data: list[dict] = []
    for i, (name, d) in enumerate(paired_differences(store, metric).items(), 1):
        data += _band_traces(d, start, f"{name} minus {ref.label}", colors.get(name, OKABE_ITO[0]), cm.percent,
                             group=name, i=i)
    shapes, notes = _flip(store, start)
    shapes.append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
                   "line": {"color": "#555", "width": 1}})
    title = f"{cm.title}: difference from {ref.label if ref else 'the reference'} (same seeds)"
    return fast_figure(data, {
        "title": title, "xaxis": _years_axis(store),
        "yaxis": {"title": {"text": f"difference ({cm.yaxis})" if cm.yaxis else "difference"},
                  **({"tickformat": "+.0%"} if cm.percent else {})},
        "legend": {"orientation": "h", "y": -0.22}, "hovermode": "x unified", "shapes": shapes,
        "annotations": notes}, height)


# ------------------------------------------------------------------------------------------------
# The district map and one school's history
# ------------------------------------------------------------------------------------------------

def band_names(scenario: Scenario) -> list[str]:
    return BAND_NAMES[scenario.district.band_structure]


def map_frame(result: RunSnapshot, seed: int, year: int) -> pd.DataFrame:
    s = result.schools
    if s.empty:
        return s
    return s[(s["seed"] == seed) & (s["year"] == year)].copy()


def _neighbourhood_trace(nb: pd.DataFrame) -> dict | None:
    if nb is None or nb.empty:
        return None
    xs, ys = np.unique(nb["x"].round(6)), np.unique(nb["y"].round(6))
    scale = [[0, "#ffffff"], [1, "#c9d3df"]]
    if len(xs) * len(ys) == len(nb):
        z = (nb.assign(x=nb["x"].round(6), y=nb["y"].round(6))
             .pivot_table(index="y", columns="x", values="low_income_share").reindex(index=ys, columns=xs))
        return {"type": "heatmap", "x": xs, "y": ys, "z": z.to_numpy(), "colorscale": scale, "zmin": 0, "zmax": 1,
                "showscale": False, "name": "neighbourhoods", "opacity": 0.85, "hoverinfo": "skip"}
    return {"type": "scatter", "x": nb["x"].to_numpy(), "y": nb["y"].to_numpy(), "mode": "markers",
            "name": "neighbourhoods", "showlegend": False,
            "marker": {"symbol": "square", "size": 14, "color": nb["low_income_share"].to_numpy(), "colorscale": scale,
                       "cmin": 0, "cmax": 1},
            "hoverinfo": "skip"}


def _school_hover(df: pd.DataFrame, bands: list[str]) -> tuple[np.ndarray, str]:
    band = [bands[int(b)] if 0 <= int(b) < len(bands) else str(b) for b in df["band"]]
    sector = [SECTOR_LABELS.get(s, s) for s in df["sector"]]
    rating = ["not yet rated" if pd.isna(r) else f"{ordinal(r)} percentile" for r in df["rating_percentile"]]
    custom = np.column_stack([df["school_id"].to_numpy(), df["name"].to_numpy(), sector, band,
                              df["operator"].replace("", "-").to_numpy(), df["enrollment"].to_numpy(),
                              df["capacity"].to_numpy(), rating, df["autonomy_effective"].round(2).to_numpy(),
                              (100 * df["low_income_share"]).round(0).to_numpy()]).tolist()
    tmpl = ("<b>%{customdata[1]}</b><br>%{customdata[2]} · %{customdata[3]}<br>operator: %{customdata[4]}"
            "<br>enrollment %{customdata[5]} of %{customdata[6]} seats<br>rating: %{customdata[7]}"
            "<br>effective autonomy %{customdata[8]} · %{customdata[9]}% low-income"
            "<br><i>click for its history</i><extra></extra>")
    return custom, tmpl


def _school_trace(df: pd.DataFrame, bands: list[str], name: str, marker: dict, showlegend: bool = True) -> dict:
    custom, tmpl = _school_hover(df, bands)
    return {"type": "scatter", "x": df["x"].to_numpy(), "y": df["y"].to_numpy(), "mode": "markers", "name": name,
            "customdata": custom, "hovertemplate": tmpl, "marker": marker, "showlegend": showlegend}


def map_figure(result: RunSnapshot, seed: int, year: int, color_by: str = "type",
               selected: int | None = None, height: int = 620) -> go.Figure:
    """Schools placed by location, sized by enrollment, coloured by type or by rating percentile, over
    neighbourhoods shaded by their low-income share. Closed schools (this year) are grey crosses."""
    df = map_frame(result, seed, year)
    data: list[dict] = []
    nbs = result.neighbourhoods
    nb = _neighbourhood_trace(nbs[nbs["seed"] == seed] if "seed" in nbs else nbs)   # each seed's own district
    if nb is not None:
        data.append(nb)
    bands = band_names(result.scenario)
    if not df.empty:
        cap = max(float(result.schools["enrollment"].max()), 1.0)
        df["size"] = 7 + 26 * np.sqrt(df["enrollment"].clip(lower=0) / cap)
        df["symbol"] = [BAND_SYMBOLS.get(bands[int(b)] if int(b) < len(bands) else "", "circle") for b in df["band"]]
        open_ = df[df["open"].astype(bool)]
        closed = df[~df["open"].astype(bool)]
        if color_by == "rating":
            rated = open_[open_["rating_percentile"].notna()]
            unrated = open_[open_["rating_percentile"].isna()]
            if not rated.empty:
                data.append(_school_trace(rated, bands, "rated schools", {
                    "size": rated["size"].to_numpy(), "symbol": rated["symbol"].tolist(),
                    "color": rated["rating_percentile"].to_numpy(), "colorscale": RATING_SCALE, "cmin": 0, "cmax": 100,
                    "line": {"width": 1, "color": "#333"},
                    "colorbar": {"title": {"text": "rating<br>percentile"}, "thickness": 14, "len": 0.6}},
                    showlegend=False))
            if not unrated.empty:
                data.append(_school_trace(unrated, bands, "not yet rated", {
                    "size": unrated["size"].to_numpy(), "symbol": unrated["symbol"].tolist(), "color": "#cccccc",
                    "line": {"width": 1, "color": "#333"}}))
        else:
            for sector, color in SECTOR_COLORS.items():
                part = open_[open_["sector"] == sector]
                if not part.empty:
                    data.append(_school_trace(part, bands, SECTOR_LABELS[sector], {
                        "size": part["size"].to_numpy(), "symbol": part["symbol"].tolist(), "color": color,
                        "opacity": 0.9, "line": {"width": 1, "color": "white"}}))
        if not closed.empty:
            data.append(_school_trace(closed, bands, "closed this year",
                                      {"size": 12, "symbol": "x", "color": "#444"}))
        if selected is not None and (df["school_id"] == selected).any():
            row = df[df["school_id"] == selected].iloc[0]
            data.append({"type": "scatter", "x": [row["x"]], "y": [row["y"]], "mode": "markers", "name": "selected",
                         "hoverinfo": "skip", "showlegend": False, "marker": {"size": float(row["size"]) + 12, "symbol": "circle-open",
                                                         "color": "#111", "line": {"width": 3}}})
    return fast_figure(data, {
        "title": (f"{result.start_year + year}: schools by location (size = enrollment; ● elementary/K-8, "
                  "◆ middle, ■ high)"),
        "xaxis": {"range": [-0.02, 1.02], "visible": False, "constrain": "domain"},
        "yaxis": {"range": [-0.02, 1.02], "visible": False, "scaleanchor": "x", "scaleratio": 1},
        "legend": {"orientation": "h", "y": -0.02, "itemsizing": "constant"}, "plot_bgcolor": "white",
        "showlegend": True, "hovermode": "closest", "clickmode": "event", "dragmode": "pan"}, height)


def school_history(result: RunSnapshot, seed: int, school_id: int) -> pd.DataFrame:
    s = result.schools
    return s[(s["seed"] == seed) & (s["school_id"] == school_id)].sort_values("year")


def school_events(result: RunSnapshot, seed: int, school_id: int) -> pd.DataFrame:
    e = result.events
    if e.empty:
        return e
    return e[(e["seed"] == seed) & (e["school_id"] == school_id)].sort_values("year")


def school_history_figure(result: RunSnapshot, seed: int, school_id: int, height: int = 420) -> go.Figure:
    """One school over the years: rating percentile and effective autonomy (top), enrollment and seats
    (bottom), with its events (conversion, restart, closure, ...) marked."""
    h = school_history(result, seed, school_id)
    if h.empty:
        return fast_figure([], {}, height)
    x = (h["year"] + result.start_year).tolist()
    data = [
        {"type": "scatter", "x": x, "y": h["rating_percentile"].to_numpy(), "name": "rating percentile",
         "mode": "lines+markers", "line": {"color": OKABE_ITO[0], "width": 2.5}, "yaxis": "y"},
        {"type": "scatter", "x": x, "y": h["autonomy_effective"].to_numpy(), "name": "effective autonomy",
         "mode": "lines+markers", "line": {"color": OKABE_ITO[2], "dash": "dot"}, "marker": {"symbol": "diamond"}, "yaxis": "y2"},
        {"type": "bar", "x": x, "y": h["enrollment"].to_numpy(), "name": "enrollment", "marker": {"color": "#9ecae1"},
         "yaxis": "y3"},
        {"type": "scatter", "x": x, "y": h["capacity"].to_numpy(), "name": "seats", "mode": "lines",
         "line": {"color": "#555", "dash": "dash"}, "yaxis": "y3"},
    ]
    shapes, notes = [], []
    bar = result.scenario.accountability.closure_percentile
    if bar > 0:
        shapes.append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": bar, "y1": bar,
                       "line": {"color": "#d62728", "dash": "dash", "width": 1}})
        notes.append({"xref": "paper", "yref": "y", "x": 1, "y": bar, "text": "below the bar", "showarrow": False,
                      "xanchor": "right", "yanchor": "bottom", "font": {"size": 10, "color": "#d62728"}})
    for _, e in school_events(result, seed, school_id).iterrows():
        if e["event"] in ("warning", "renewal"):
            continue
        cx = int(e["year"]) + result.start_year
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": cx, "x1": cx, "y0": 0, "y1": 1,
                       "line": {"color": "#888", "width": 1, "dash": "dot"}})
        notes.append({"x": cx, "y": 1.0, "xref": "x", "yref": "paper", "text": e["event"].replace("_", " "),
                      "showarrow": False, "textangle": -90, "xanchor": "left", "yanchor": "top",
                      "font": {"size": 10, "color": "#555"}})
    name = str(h["name"].iloc[-1])
    return fast_figure(data, {
        "title": f"{name}: history",
        "xaxis": {"anchor": "y3", **({"dtick": 1} if len(x) <= 20 else {})},
        "yaxis": {"domain": [0.46, 1.0], "range": [0, 100], "title": {"text": "rating percentile"}},
        "yaxis2": {"overlaying": "y", "side": "right", "range": [0, 1.05], "showgrid": False,
                   "tickvals": [0, 0.5, 1], "title": {"text": "autonomy"}},
        "yaxis3": {"domain": [0.0, 0.36], "title": {"text": "students"}},
        "legend": {"orientation": "h", "y": -0.15}, "hovermode": "x unified", "bargap": 0.3,
        "shapes": shapes, "annotations": notes}, height)


def school_facts(result: RunSnapshot, seed: int, school_id: int, year: int | None = None) -> list[tuple[str, str]]:
    h = school_history(result, seed, school_id)
    if h.empty:
        return []
    row = h[h["year"] == year].iloc[0] if year is not None and (h["year"] == year).any() else h.iloc[-1]
    bands = band_names(result.scenario)
    b = int(row["band"])
    first = h.iloc[0]
    rating = "not yet rated" if pd.isna(row["rating_percentile"]) else f"{ordinal(row['rating_percentile'])} percentile"
    return [
        ("Year", str(int(row["year"]) + result.start_year)),
        ("Status", ("open" if bool(row["open"]) else "closed this year")),
        ("Type", SECTOR_LABELS.get(row["sector"], row["sector"])),
        ("Grades", bands[b] if b < len(bands) else str(b)),
        ("Operator", row["operator"] or "-"),
        ("Enrollment", f"{int(row['enrollment']):,} of {int(row['capacity']):,} seats"),
        ("Low-income students", f"{row['low_income_share']:.0%}"),
        ("Rating", rating),
        ("Years below the bar", str(int(row["years_below_bar"]))),
        ("Value added", f"{row['value_added']:+.3f} SD/yr"),
        ("Autonomy granted / effective", f"{row['autonomy_granted']:.2f} / {row['autonomy_effective']:.2f}"),
        ("Per-pupil resources", f"${row['per_pupil_resources']:,.0f}"),
        ("In the data", f"{int(first['year']) + result.start_year}-{int(h.iloc[-1]['year']) + result.start_year}"),
    ]


# ------------------------------------------------------------------------------------------------
# The event log
# ------------------------------------------------------------------------------------------------

def event_types(result: RunSnapshot | None) -> list[str]:
    if result is None or result.events.empty:
        return []
    counts = result.events["event"].value_counts()
    return list(counts.index)


def event_table(result: RunSnapshot, types: list[str] | None = None, years: tuple[int, int] | None = None,
                seed: int | None = None, text: str = "") -> pd.DataFrame:
    """The event log for the page: calendar year, seed number, event, school, operator and why."""
    e = result.events
    cols = ["Year", "Seed", "Event", "School", "Operator", "Why"]
    if e.empty:
        return pd.DataFrame(columns=cols)
    if types:
        e = e[e["event"].isin(types)]
    if years is not None:
        e = e[(e["year"] >= years[0]) & (e["year"] <= years[1])]
    if seed is not None:
        e = e[e["seed"] == seed]
    if text.strip():
        t = text.strip().lower()
        mask = (e["school"].str.lower().str.contains(t, regex=False) | e["operator"].str.lower().str.contains(t, regex=False)
                | e["cause"].str.lower().str.contains(t, regex=False) | e["event"].str.contains(t, regex=False))
        e = e[mask]
    seed_no = {s: i + 1 for i, s in enumerate(result.all_seeds)}
    out = pd.DataFrame({
        "Year": (e["year"] + result.start_year).astype(int),
        "Seed": e["seed"].map(seed_no).astype("Int64"),
        "Event": e["event"].str.replace("_", " "),
        "School": e["school"].replace("", "-"),
        "Operator": e["operator"].replace("", "-"),
        "Why": e["cause"],
    })
    return out.sort_values(["Year", "Seed"], kind="stable").reset_index(drop=True)


def event_counts(result: RunSnapshot, types: list[str] | None = None) -> pd.DataFrame:
    """Events per type and calendar year (all seeds, or the filtered types)."""
    e = result.events
    if e.empty:
        return pd.DataFrame()
    if types:
        e = e[e["event"].isin(types)]
    t = e.assign(cy=e["year"] + result.start_year).pivot_table(index="event", columns="cy", values="seed",
                                                              aggfunc="size", fill_value=0)
    t.index = [i.replace("_", " ") for i in t.index]
    return t


# ------------------------------------------------------------------------------------------------
# The run in plain words
# ------------------------------------------------------------------------------------------------

def _listing(items: list[str], most: int = 3) -> str:
    if len(items) > most:
        items = [*items[:most], f"{len(items) - most} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def comparable(result: RunSnapshot, base: RunSnapshot | None) -> bool:
    """`base` can be paired with `result`: both complete, on the same seeds and years."""
    return (base is not None and base is not result and result.complete and base.complete
            and base.seeds == result.seeds and base.years == result.years)


def plain_summary(result: RunSnapshot, base: RunSnapshot | None = None, changed: list[str] | None = None,
                  source: str = "") -> str:
    """One paragraph a board member can read: against the levers as loaded (`base`, the same seeds and
    years), which key numbers moved clear of seed noise and which way; without a comparable `base`,
    what happened over the run."""
    changed = changed or []
    rows = key_numbers(result)
    if not rows:
        return "No years simulated yet."
    first, last = rows[0]["first_year"], rows[0]["last_year"]
    n = len(result.seeds)
    where = source or "the levers as loaded"
    if changed and comparable(result, base):
        assert base is not None
        clear, noise = [], []
        for km in KEY_METRICS:
            d = paired_difference(final_by_seed(result, km.metric, km.cumulative),
                                  final_by_seed(base, km.metric, km.cumulative))
            if d is None:
                continue
            name = km.label                       # with its unit: "Political support (0-1 scale)"
            if d.clear:
                kind = "whole" if km.kind == "count" else km.kind
                amount = fmt_value(abs(d.median) if d.median else abs(d.mean), kind)
                way = "higher" if (d.median or d.mean) > 0 else "lower"
                judge = ("" if not km.better else
                         " (better)" if (way == "higher") == (km.better == "up") else " (worse)")
                clear.append(f"{name} {amount} {way}{judge}")
            else:
                noise.append(name)
        text = (f"Against {where}, on the same {n} seed(s) and years {first}-{last}, your change "
                f"({_listing(changed)}) ")
        if clear:
            text += "makes a difference clear of seed noise: " + "; ".join(clear) + "."
            if noise:
                text += f" No clear difference in {_listing(noise, 4)}."
        else:
            text += ("moves none of the key numbers by more than seed noise: on these numbers the two designs "
                     "look alike (more seeds could tell them apart).")
        return text
    parts, still = [], []
    for r in rows:
        name = r["label"]
        kind = "whole" if r["kind"] == "count" else r["kind"]
        if r["cumulative"]:
            shown = fmt_value(r["median"], kind)
            (parts if r["median"] else still).append(f"{name}: {shown} in all" if r["median"] else name)
        else:
            a, b = fmt_value(r["start"], kind), fmt_value(r["median"], kind)
            (parts if a != b else still).append(f"{name} went from {a} to {b}" if a != b else name)
    parts = parts[:5]
    spread = f"the middle of {n} possible futures" if n > 1 else "one possible future (one seed)"
    text = f"From {first} to {last} ({spread}): " + ("; ".join(parts) + "." if parts else "no key number moved.")
    if still:
        text += f" Unchanged or none: {_listing(still, 4)}."
    if changed:
        text += (f" You changed {_listing(changed)} from {where}; for a side-by-side reading, Run {where} "
                 "with the same years and seeds (Reset all, Run), or use Compare scenarios.")
    else:
        text += f" These are the levers of {where}: change a lever and Run to see what it changes against them."
    return text
