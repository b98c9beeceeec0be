"""A self-contained HTML report of one scenario's replicate runs.

`write_report` writes a single HTML file with plotly.js embedded inline (it works offline, no CDN).
Each chart shows, per metric, the median across seeds as a line and the 10th-90th percentile across
seeds as a shaded band. The figure builders (`band_figure`, `political_figure`, ...) are plain
functions over the long-format summary from :func:`portfolio_sim.kernel.summarize`, so the dashboard
can reuse them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from portfolio_sim.assumptions import DECLARED
from portfolio_sim.decisions import Decisions
from portfolio_sim.outputs import CHARTS, PALETTE, Chart, chart_label, rgba
from portfolio_sim.scenario import DOMAINS, GROUPS, Scenario

def label(metric: str) -> str:
    return chart_label(metric)


_rgba = rgba


def _x(years: pd.Series, start_year: int | None) -> list[int]:
    return [int(y) + (start_year or 0) for y in years]


def add_band(fig: go.Figure, summary: pd.DataFrame, metric: str, *, start_year: int | None = None,
             color: str = PALETTE[0], name: str | None = None, dash: str | None = None,
             band: bool = True, percent: bool = False, secondary: bool = False,
             row: int | None = None, col: int | None = None) -> None:
    """Add one metric to `fig`: a p10-p90 band (unless `band=False`) and the median line."""
    d = summary[summary["metric"] == metric].sort_values("year")
    if d.empty:
        return
    x = _x(d["year"], start_year)
    name = name or label(metric)
    yfmt = ".1%" if percent else ".3~r"
    extra: dict[str, Any] = {}
    if secondary:
        extra["yaxis"] = "y2"
    pos = {"row": row, "col": col} if row is not None else {}
    if band:
        fig.add_trace(go.Scatter(x=x, y=d["p90"], mode="lines", line={"width": 0}, showlegend=False,
                                 legendgroup=metric, hoverinfo="skip", **extra), **pos)
        fig.add_trace(go.Scatter(x=x, y=d["p10"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_rgba(color, 0.18), showlegend=False, legendgroup=metric,
                                 hoverinfo="skip", **extra), **pos)
    fig.add_trace(go.Scatter(
        x=x, y=d["median"], mode="lines+markers", name=name, legendgroup=metric,
        line={"color": color, "width": 2, **({"dash": dash} if dash else {})}, marker={"size": 4},
        customdata=d[["p10", "p90"]].to_numpy(),
        hovertemplate=(f"{html.escape(name)}<br>%{{x}}: median %{{y:{yfmt}}}"
                       f"<br>p10-p90: %{{customdata[0]:{yfmt}}} - %{{customdata[1]:{yfmt}}}<extra></extra>"),
        **extra), **pos)


def band_figure(summary: pd.DataFrame, metrics: Sequence[str], title: str, *,
                start_year: int | None = None, yaxis_title: str = "", percent: bool = False,
                secondary: Iterable[str] = (), secondary_title: str = "",
                colors: Mapping[str, str] | None = None, dashes: Mapping[str, str] | None = None,
                names: Mapping[str, str] | None = None, band: bool | Iterable[str] = True,
                height: int = 380) -> go.Figure:
    """Median line and p10-p90 band across seeds for each metric in `metrics`.

    `summary` is long format (metric, year, p10, median, p90) as from `kernel.summarize`. With
    `start_year` the x-axis is the calendar year; metrics in `secondary` go on a right-hand axis.
    `band` is True/False for all metrics, or the metrics that get a band.
    """
    secondary = set(secondary)
    banded = set(metrics) if band is True else set() if band is False else set(band)
    fig = go.Figure()
    for i, m in enumerate(metrics):
        color = (colors or {}).get(m, PALETTE[i % len(PALETTE)])
        add_band(fig, summary, m, start_year=start_year, color=color, name=(names or {}).get(m),
                 dash=(dashes or {}).get(m), band=m in banded, percent=percent, secondary=m in secondary)
    layout: dict[str, Any] = {
        "title": {"text": title},
        "xaxis": {"title": {"text": "calendar year" if start_year is not None else "year"},
                  **({"dtick": 1} if _n_years(summary) <= 20 else {})},
        "yaxis": {"title": {"text": yaxis_title}, **({"tickformat": ".0%"} if percent else {})},
        "height": height, "margin": {"l": 60, "r": 30, "t": 60, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "x unified" if len(metrics) > 1 else "closest",
        "template": "plotly_white",
    }
    if secondary:
        layout["yaxis2"] = {"title": {"text": secondary_title}, "overlaying": "y", "side": "right",
                            "showgrid": False}
    fig.update_layout(**layout)
    return fig


def _n_years(summary: pd.DataFrame) -> int:
    return int(summary["year"].nunique()) if "year" in summary else 0


def event_years(yearly: pd.DataFrame, column: str, min_share: float = 0.0) -> dict[int, float]:
    """Calendar year -> share of seeds with `column` > 0 that year (years with a share > min_share)."""
    if column not in yearly or yearly.empty:
        return {}
    xcol = "calendar_year" if "calendar_year" in yearly else "year"
    share = (yearly[column] > 0).groupby(yearly[xcol]).mean()
    return {int(y): float(s) for y, s in share.items() if s > min_share}


def political_figure(summary: pd.DataFrame, yearly: pd.DataFrame, scenario: Scenario | None = None,
                     title: str = "Support, board seats, elections, reversals") -> go.Figure:
    """Political support (median, p10-p90), the board's pro-autonomy seats (share, median over seeds; a
    majority above 0.5), election years (dotted lines, with the share of seeds holding an election),
    reversal years (red crosses) and restoration years (green circles), sized by the share of seeds."""
    start = scenario.run.start_year if scenario is not None else _start_year_of(yearly)
    fig = band_figure(summary, ["political_support"], title, start_year=start, yaxis_title="support (0-1)",
                      colors={"political_support": PALETTE[3]})
    elections = event_years(yearly, "election")
    for y in elections:
        fig.add_vline(x=y, line={"color": "#888", "dash": "dot", "width": 1})
    if elections:
        fig.add_trace(go.Scatter(
            x=list(elections), y=[1.02] * len(elections), mode="markers", name="election",
            marker={"symbol": "triangle-down", "color": "#666", "size": 9},
            customdata=[round(100 * s) for s in elections.values()],
            hovertemplate="election in %{x}: %{customdata}% of seeds<extra></extra>"))
    reversals = event_years(yearly, "reversals")
    if reversals:
        med = summary[summary["metric"] == "political_support"].set_index("year")["median"]
        xs = list(reversals)
        ys = [float(med.get(x - start, float("nan"))) for x in xs]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name="reversal (rollback of autonomy)",
            marker={"symbol": "x", "color": "#d62728", "line": {"width": 1},
                    "size": [8 + 12 * s for s in reversals.values()]},
            customdata=[round(100 * s) for s in reversals.values()],
            hovertemplate="reversal in %{x}: %{customdata}% of seeds<extra></extra>"))
        for x in xs:
            fig.add_vline(x=x, line={"color": "rgba(214,39,40,0.35)", "width": 1})
    restorations = event_years(yearly, "restorations")
    if restorations:
        med = summary[summary["metric"] == "political_support"].set_index("year")["median"]
        fig.add_trace(go.Scatter(
            x=list(restorations), y=[float(med.get(x - start, float("nan"))) for x in restorations],
            mode="markers", name="restoration of rolled-back autonomy",
            marker={"symbol": "circle-open", "color": PALETTE[2], "line": {"width": 2},
                    "size": [8 + 12 * s for s in restorations.values()]},
            customdata=[round(100 * s) for s in restorations.values()],
            hovertemplate="restoration in %{x}: %{customdata}% of seeds<extra></extra>"))
    if {"board_pro", "board_seats"} <= set(yearly.columns) and not yearly.empty:
        # The board: share of seats held by pro-autonomy members (median over seeds); above 0.5 a majority.
        xcol = "calendar_year" if "calendar_year" in yearly else "year"
        seats = (yearly["board_pro"] / yearly["board_seats"].clip(lower=1)).groupby(yearly[xcol]).median()
        n = int(yearly["board_seats"].iloc[0])
        fig.add_trace(go.Scatter(
            x=list(seats.index), y=list(seats.values), mode="lines", name=f"pro-autonomy seats (of {n})",
            line={"color": "#333333", "shape": "hv", "width": 2},
            customdata=[round(v * n, 1) for v in seats.values],
            hovertemplate="%{x}: %{customdata} of " + str(n) + " seats pro-autonomy (median)<extra></extra>"))
        fig.add_hline(y=0.5, line={"color": "#333333", "dash": "dot", "width": 1},
                      annotation_text="board majority", annotation_position="top left")
    if scenario is not None:
        fig.add_hline(y=scenario.politics.reversal_threshold, line={"color": "#d62728", "dash": "dash",
                                                                    "width": 1},
                      annotation_text="support below which a hostile majority rolls back",
                      annotation_position="bottom right")
    fig.update_yaxes(range=[0, 1.06])
    fig.update_layout(hovermode="closest")
    return fig


def _start_year_of(yearly: pd.DataFrame) -> int:
    if {"calendar_year", "year"} <= set(yearly.columns) and not yearly.empty:
        return int(yearly["calendar_year"].iloc[0] - yearly["year"].iloc[0])
    return 0


def autonomy_domain_figure(summary: pd.DataFrame, start_year: int | None = None) -> go.Figure:
    """Granted (dashed, no band) vs effective (solid, with band) autonomy for each domain."""
    metrics, colors, dashes = [], {}, {}
    for i, d in enumerate(DOMAINS):
        colors[f"granted_{d}"] = colors[f"effective_{d}"] = PALETTE[i]
        dashes[f"granted_{d}"] = "dash"
        metrics += [f"granted_{d}", f"effective_{d}"]
    return band_figure(summary, metrics, "Autonomy by domain: granted (dashed) vs effective (solid), mean over "
                       "open autonomous schools", start_year=start_year, yaxis_title="autonomy (0-1)",
                       colors=colors, dashes=dashes, band=[m for m in metrics if m.startswith("effective_")],
                       height=440)


def chart_figure(chart: Chart, summary: pd.DataFrame, yearly: pd.DataFrame, scenario: Scenario | None,
                 start_year: int | None = None) -> go.Figure:
    """One chart of `outputs.CHARTS` (report.html and the dashboard draw the same list)."""
    s = start_year if start_year is not None else (scenario.run.start_year if scenario is not None else None)
    if chart.kind == "autonomy_domains":
        return autonomy_domain_figure(summary, start_year=s)
    if chart.kind == "politics":
        return political_figure(summary, yearly, scenario)
    return band_figure(summary, list(chart.metrics), chart.title, start_year=s, **chart.options)


def report_figures(summary: pd.DataFrame, yearly: pd.DataFrame, scenario: Scenario) -> list[go.Figure]:
    """Every chart of the report, in order."""
    return [chart_figure(c, summary, yearly, scenario) for c in CHARTS]


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.changed td { font-weight: 600; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
.fig { margin: 1.2em 0; border-top: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) >= 1000 else f"{value:.6g}"
    return str(value)


def levers_table(scenario: Scenario) -> str:
    """HTML table of every lever's resolved value; values that differ from the default are bold."""
    rows = []
    for group_name, group_cls in GROUPS.items():
        group = getattr(scenario, group_name)
        for field_name, field in group_cls.model_fields.items():
            value = getattr(group, field_name)
            changed = value != field.default
            unit = (field.json_schema_extra or {}).get("unit", "") if isinstance(field.json_schema_extra,
                                                                                  dict) else ""
            rows.append(
                f'<tr{" class=changed" if changed else ""}><td>{html.escape(group_name)}.'
                f"{html.escape(field_name)}</td><td>{html.escape(_fmt(value))}</td>"
                f"<td>{html.escape(str(unit))}</td><td>{html.escape(field.description or '')}</td></tr>")
    # Declared assumptions (docs/ASSUMPTIONS.md): only those the scenario changed from their defaults.
    for a in DECLARED:
        value = getattr(getattr(scenario.assumptions, a.group), a.name)
        if value != a.default:
            rows.append(f"<tr class=changed><td>{html.escape(a.path)}</td><td>{html.escape(_fmt(value))}</td>"
                        f"<td>{html.escape(a.unit)}</td><td>{html.escape(a.meaning)} (assumption; default "
                        f"{html.escape(_fmt(a.default))})</td></tr>")
    return ("<table><thead><tr><th>lever</th><th>value</th><th>unit</th><th>meaning</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def event_counts(events: pd.DataFrame, n_seeds: int) -> pd.DataFrame:
    """Per event type: total over all seeds, mean per seed, and seeds with at least one."""
    if events is None or events.empty or "event" not in events:
        return pd.DataFrame(columns=["event", "total", "per_seed", "seeds_with_any"])
    g = events.groupby("event")
    out = pd.DataFrame({"total": g.size()})
    out["per_seed"] = out["total"] / max(n_seeds, 1)
    out["seeds_with_any"] = g["seed"].nunique() if "seed" in events else 1
    return out.sort_values("total", ascending=False).reset_index()


def _frame_html(df: pd.DataFrame, numeric: Iterable[str] = ()) -> str:
    numeric = set(numeric)
    head = "".join(f'<th{" class=num" if c in numeric else ""}>{html.escape(str(c))}</th>' for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = "".join(
            f'<td{" class=num" if c in numeric else ""}>{html.escape(_fmt(v))}</td>'
            for c, v in zip(df.columns, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _events_section(events: pd.DataFrame, n_seeds: int, start_year: int) -> str:
    counts = event_counts(events, n_seeds)
    if counts.empty:
        return "<h2>Events</h2><p class=note>No events were logged.</p>"
    counts["per_seed"] = counts["per_seed"].round(2)
    counts = counts.rename(columns={"per_seed": "per seed", "seeds_with_any": "seeds with any"})
    parts = ["<h2>Events</h2>",
             f"<p class=note>Counts over all {n_seeds} seed(s).</p>",
             _frame_html(counts, numeric=["total", "per seed", "seeds with any"])]
    by_year = (events.assign(calendar_year=events["year"].astype(int) + start_year)
               .pivot_table(index="event", columns="calendar_year", values="year", aggfunc="size",
                            fill_value=0))
    by_year = by_year.reset_index()
    by_year.columns = [str(c) for c in by_year.columns]
    parts.append("<details><summary>Events by type and year (all seeds)</summary>"
                 + _frame_html(by_year, numeric=by_year.columns[1:]) + "</details>")
    return "".join(parts)


def _decisions_section(decisions: Mapping[int, Decisions] | None, start_year: int) -> str:
    """What workshop players decided, by year (nothing when every year followed the rules)."""
    taken = [(y, d) for y, d in sorted((decisions or {}).items()) if not d.by_rule]
    if not taken:
        return ""
    table = pd.DataFrame({"year": [start_year + y for y, _ in taken], "simulated year": [y for y, _ in taken],
                          "decided": [d.describe() for _, d in taken]})
    return ("<h2>Workshop decisions</h2><p class=note>Taken in the model's place in these years (every other "
            "year followed the scenario's rules); the events they decided say \"workshop decision\".</p>"
            + _frame_html(table, numeric=["year", "simulated year"]))


@dataclass(frozen=True)
class ReportSection:
    """A section a caller adds to report.html (e.g. the uncertainty table of `run --worlds`): a heading,
    an optional note (plain text, escaped here) and a body of HTML the caller built and escaped, placed
    before the outcome charts in the order given."""

    title: str
    body_html: str
    note: str = ""

    def html(self) -> str:
        note = f"<p class=note>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h2>{html.escape(self.title)}</h2>{note}{self.body_html}"


def frame_table(df: pd.DataFrame, numeric: Iterable[str] = ()) -> str:
    """A data frame as the report's HTML table (values escaped; `numeric` columns right-aligned)."""
    return _frame_html(df, numeric)


def write_report(path: str | Path, yearly: pd.DataFrame, summary: pd.DataFrame, events: pd.DataFrame,
                 scenario: Scenario, decisions: Mapping[int, Decisions] | None = None,
                 sections: Sequence[ReportSection] = (), runs_line: str | None = None) -> None:
    """Write the self-contained HTML report (plotly.js inline, works offline); `decisions`: the workshop
    decisions of the run, by year, if any; `sections`: extra sections before the outcome charts;
    `runs_line`: what the runs were, in place of the seeds line (plain text, e.g. worlds x seeds)."""
    seeds = sorted(int(s) for s in yearly["seed"].unique()) if "seed" in yearly else []
    years = int(yearly["year"].max()) if not yearly.empty else 0
    start = scenario.run.start_year
    figures = report_figures(summary, yearly, scenario)
    config = {"displaylogo": False, "responsive": True}
    fig_html = []
    for i, fig in enumerate(figures):
        fig_html.append('<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                                          config=config) + "</div>")
    seed_text = ", ".join(str(s) for s in seeds[:12]) + (f", ... ({len(seeds)} in all)" if len(seeds) > 12
                                                         else "")
    sources = "".join(f"<li>{html.escape(s)}</li>" for s in scenario.sources)
    runs = (html.escape(runs_line) if runs_line is not None else
            f"{len(seeds)} seed(s) (root seed {scenario.run.seed}: {html.escape(seed_text)})")
    across = "runs" if runs_line is not None else "seeds"
    extra = "".join(s.html() for s in sections)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>portfolio-sim: {html.escape(scenario.name)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(scenario.name)}</h1>
<p>{html.escape(scenario.description)}</p>
<p class="meta">{runs} &middot;
{years} simulated year(s), {start}&ndash;{start + years} &middot; lines are the median across {across}, shaded
bands the 10th&ndash;90th percentile.</p>
{f"<details><summary>Sources</summary><ul>{sources}</ul></details>" if sources else ""}
<details><summary>Resolved scenario levers, and assumptions changed from their defaults (bold: changed)</summary>
{levers_table(scenario)}
</details>
{_decisions_section(decisions, start)}
{_events_section(events, len(seeds), start)}
{extra}
<h2>Outcomes</h2>
{''.join(fig_html)}
<p class="note">Generated by portfolio-sim. Year {start} is the starting state before any policy year.</p>
</body></html>
"""
    Path(path).write_text(doc, encoding="utf-8")
