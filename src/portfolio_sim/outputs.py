"""The output vocabulary, declared once: every yearly metric (`Metric`), the charts of the report and
the dashboard (`Chart`), the palette and the number formats.

`METRICS` is the DataCollector's column list, in order (`metrics.METRIC_COLUMNS`); the sweep store
types its columns from `Metric.dtype`; charts label their lines with `Metric.legend`; the CLI's
summary table and the dashboard's key numbers show the metrics marked `key`, formatted by
`format_value`. A new metric: add a `Metric` here with `compute=` (a function of the model; the
built-in metrics are computed together in `metrics.collect`), and document it in docs/METRICS.md (a test
checks the registry, a run and the docs agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from portfolio_sim.scenario import DOMAINS

# One palette for every chart (report.html, the dashboard, sweep plots).
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]



def rgba(hex_color: str, alpha: float) -> str:
    """'#1f77b4', 0.2 -> 'rgba(31,119,180,0.2)' (the bands' fill)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


Format = Literal["sd", "pct", "count", "frac", "money", "flag", "year"]


@dataclass(frozen=True)
class Metric:
    """One model-level yearly metric (a column of yearly.csv; docs/METRICS.md says how it is computed)."""

    name: str
    dtype: Literal["int", "float"]
    label: str                     # in tables and key numbers
    unit: str                      # as docs/METRICS.md gives it
    format: Format = "frac"
    key: bool = False              # one of the key numbers (CLI summary table, dashboard)
    legend: str | None = None      # in a chart, where shorter than `label`
    cumulative: bool = False       # key numbers show the total over the years, not the last year's value
    better: Literal["up", "down", ""] = ""   # which way is good, for colouring changes
    compute: Callable[[Any], float] | None = None   # model -> value; None: metrics.collect computes it

    @property
    def chart_label(self) -> str:
        return self.legend or self.label


def _m(name, dtype, label, unit, fmt="frac", **kw) -> Metric:
    return Metric(name, dtype, label, unit, fmt, **kw)


METRICS: tuple[Metric, ...] = (
    _m("year", "int", "Year", "year", "year"),
    _m("calendar_year", "int", "Calendar year", "calendar year", "year"),
    _m("students", "int", "Students in district schools", "students", "count"),
    _m("residents", "int", "Resident students", "students", "count"),
    _m("mean_achievement", "float", "Mean achievement", "student-level SD", "sd", key=True,
       legend="Mean achievement (SD)", better="up"),
    _m("mean_growth", "float", "Mean school value-added", "SD/yr", "sd"),
    _m("achievement_gap", "float", "Achievement gap (income)", "student-level SD", "sd", key=True,
       legend="Income achievement gap (SD)", better="down"),
    _m("share_below_bar", "float", "Students in schools below the bar", "share 0-1", "pct", key=True,
       better="down"),
    _m("enrollment_traditional", "int", "Students in traditional schools", "students", "count", legend="Traditional"),
    _m("enrollment_autonomous", "int", "Students in autonomous schools", "students", "count", key=True,
       legend="Autonomous (all)"),
    _m("enrollment_district_run", "int", "Students in district-run schools", "students", "count",
       legend="District-run autonomous"),
    _m("enrollment_partner_led", "int", "Students in partner-led schools", "students", "count", legend="Partner-led"),
    _m("enrollment_partner_run", "int", "Students in partner-run schools", "students", "count", legend="Partner-run"),
    _m("enrollment_charter", "int", "Students in charter schools", "students", "count", legend="Charter"),
    _m("enrollment_outside", "int", "Students outside the district", "students", "count", key=True,
       legend="Outside the district", better="down"),
    _m("exits_outside", "int", "Students leaving for outside options", "students/yr", "count"),
    _m("schools_open", "int", "District schools open", "schools", "count"),
    _m("autonomous_schools", "int", "Autonomous schools", "schools", "count", key=True),
    _m("openings", "int", "Openings", "schools/yr", "count"),
    _m("closures", "int", "Closures", "schools/yr", "count", key=True, cumulative=True),
    _m("restarts", "int", "Restarts", "schools/yr", "count"),
    _m("conversions", "int", "Conversions", "schools/yr", "count"),
    _m("renewals", "int", "Renewals", "schools/yr", "count"),
    _m("non_renewals", "int", "Non-renewals", "schools/yr", "count"),
    _m("operators_active", "int", "Operators running schools", "operators", "count"),
    _m("autonomy_granted", "float", "Autonomy granted (mean of domains)", "0-1", legend="Granted (mean of domains)"),
    _m("autonomy_effective", "float", "Autonomy effective (mean of domains)", "0-1",
       legend="Effective (mean of domains)"),
    *[_m(f"granted_{d}", "float", f"{d.capitalize()} autonomy granted", "0-1", legend=f"{d} granted")
      for d in DOMAINS],
    *[_m(f"effective_{d}", "float", f"{d.capitalize()} autonomy effective", "0-1", legend=f"{d} effective")
      for d in DOMAINS],
    _m("political_support", "float", "Political support", "0-1", key=True, better="up"),
    _m("board_pro", "int", "Pro-autonomy board seats", "seats", "count", legend="pro-autonomy seats"),
    _m("board_seats", "int", "Board seats", "seats", "count"),
    _m("published_results", "float", "Published relative results of autonomous schools", "percentile points",
       "count", legend="relative results (pct points)"),
    _m("election", "int", "Board election", "0/1", "flag"),
    _m("reversals", "int", "Reversals", "0/1", "count", key=True, cumulative=True, better="down"),
    _m("restorations", "int", "Restorations", "0/1", "count", cumulative=True, better="up"),
    _m("budget_shock", "int", "Budget shock", "0/1", "flag"),
    _m("autonomy_office", "int", "Autonomy office active", "0/1", "flag"),
    _m("first_choice_rate", "float", "Choosers getting their first choice", "share 0-1", "pct"),
    _m("unassigned", "float", "Applicants left unassigned", "share 0-1", "pct"),
    _m("displaced", "int", "Students displaced by closures", "students", "count"),
    _m("displaced_to_better", "float", "Displaced students placed in a better school", "share 0-1", "pct"),
    _m("segregation_index", "float", "Segregation index", "0-1", key=True,
       legend="Segregation (dissimilarity index)", better="down"),
    _m("per_pupil_resources", "float", "Per-pupil resources at school", "$ per pupil", "money",
       legend="Per-pupil resources at school ($)"),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
COMPUTED: tuple[Metric, ...] = tuple(m for m in METRICS if m.compute is not None)
KEY_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.key)
INT_METRICS: frozenset[str] = frozenset(m.name for m in METRICS if m.dtype == "int" and m.name != "year")


def metric(name: str) -> Metric:
    return BY_NAME[name]


def chart_label(name: str) -> str:
    """A metric's name in a chart legend (anything not in the registry: its name in words)."""
    m = BY_NAME.get(name)
    return m.chart_label if m is not None else name.replace("_", " ")


def format_value(value: float | None, fmt: str, signed: bool = False) -> str:
    """A metric value as the key numbers show it (`fmt`: a `Metric.format`); `signed` for changes."""
    if value is None or value != value:
        return "n/a"
    sign = "+" if signed and value > 0 else ""
    if fmt == "pct":
        return f"{sign}{value:.1%}" if not signed else f"{sign}{100 * value:.1f} pts"
    if fmt in ("count", "flag"):
        return f"{sign}{value:,.1f}" if abs(value - round(value)) > 1e-9 and abs(value) < 100 else f"{sign}{value:,.0f}"
    if fmt == "sd":
        return f"{value:+.3f}"
    if fmt == "money":
        return f"{sign}${value:,.0f}"
    if fmt == "year":
        return f"{value:.0f}"
    return f"{sign}{value:.2f}"


# -- charts ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    """One outcome chart (bands across seeds), as both report.html and the dashboard's Charts tab draw it.

    `kind` "band": `report.band_figure` over `metrics` with `options`; "autonomy_domains" and "politics":
    the special figures of the same names in portfolio_sim.report."""

    key: str
    section: str
    title: str
    note: str
    metrics: tuple[str, ...] = ()
    kind: str = "band"
    options: dict[str, Any] = field(default_factory=dict)


CHARTS: tuple[Chart, ...] = (
    Chart("achievement", "Achievement", "Achievement and the income gap",
          "Mean student achievement and the gap between other and low-income students, in student SDs.",
          ("mean_achievement", "achievement_gap"), options={"yaxis_title": "student SD"}),
    Chart("below_bar", "Achievement", "Students in schools rated below the bar",
          "Share of district students in schools rated below the accountability bar.",
          ("share_below_bar",), options={"percent": True, "yaxis_title": "share of district students"}),
    Chart("enrollment", "Enrollment", "Enrollment by sector and governance",
          "Where resident students are enrolled: traditional, each autonomous category, charter, outside.",
          ("enrollment_traditional", "enrollment_district_run", "enrollment_partner_led", "enrollment_partner_run",
           "enrollment_charter", "enrollment_outside"), options={"yaxis_title": "students", "height": 440}),
    Chart("exits", "Enrollment", "Students leaving for outside options (per year)",
          "Students who left the district's schools (private schools, moving away) each year.",
          ("exits_outside",), options={"yaxis_title": "students/year"}),
    Chart("schools", "Schools", "Openings, closures, restarts, conversions (per year) and schools open",
          "Per year; schools open on the right axis.",
          ("openings", "closures", "restarts", "conversions", "schools_open"),
          options={"yaxis_title": "schools/year", "secondary": ["schools_open"], "secondary_title": "schools open",
                   "colors": {"schools_open": "#333333"}, "height": 420}),
    Chart("autonomy", "Autonomy", "Autonomy granted vs effective (mean over open autonomous schools)",
          "Mean over open autonomous schools: what the policy grants and what schools can actually use.",
          ("autonomy_granted", "autonomy_effective"), options={"yaxis_title": "autonomy (0-1)"}),
    Chart("autonomy_domains", "Autonomy", "Autonomy by domain",
          "Granted (dashed) vs effective (solid) in staffing, academics, budget and operations.",
          tuple(f"{k}_{d}" for d in DOMAINS for k in ("granted", "effective")), kind="autonomy_domains"),
    Chart("politics", "Politics", "Support, board seats, elections, reversals",
          "Public support for autonomy (band) and the board's pro-autonomy share of seats (black step; a "
          "majority above 0.5); dotted lines are elections, red crosses reversals, green circles restorations "
          "(sized by the share of seeds).",
          ("political_support", "board_pro", "board_seats", "election", "reversals", "restorations"), kind="politics"),
    Chart("choice", "Choice", "School choice outcomes",
          "Share of choosers offered their first choice, and applicants left unassigned.",
          ("first_choice_rate", "unassigned"), options={"percent": True, "yaxis_title": "share"}),
    Chart("segregation", "Equity", "Income segregation across schools",
          "Dissimilarity index of low-income vs other students across district schools.",
          ("segregation_index",), options={"yaxis_title": "dissimilarity (0-1)"}),
    Chart("resources", "Equity", "Per-pupil resources reaching schools",
          "Mean per-pupil resources at students' schools after district services.",
          ("per_pupil_resources",), options={"yaxis_title": "$ per pupil"}),
)
