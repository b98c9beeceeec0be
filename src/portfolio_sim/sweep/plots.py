"""Plotly helpers for sweeps. They take the tidy frames of :class:`portfolio_sim.sweep.analysis.Results`
(one row per run x year, factors as columns) and return ``plotly.graph_objects.Figure`` objects.

    from portfolio_sim.sweep import Results
    from portfolio_sim.sweep import plots

    res = Results("results/closure_governance_choice.db")
    df = res.yearly()
    plots.outcome_vs_factor(df, "accountability.closure_percentile", "mean_achievement",
                            color="governance.category").show()
    plots.heatmap(df, "accountability.closure_percentile", "choice.policy", "achievement_gap").show()
    plots.metric_over_time(df, "political_support", color="governance.category").show()
    plots.sensitivity_plot(res.sensitivity("mean_achievement")).show()      # sampled designs
    plots.write_html([fig1, fig2], "sweep.html")                             # one offline page
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from portfolio_sim.outputs import PALETTE
from portfolio_sim.outputs import rgba as _rgba


def _at_year(df: pd.DataFrame, year: int | None) -> tuple[pd.DataFrame, int]:
    if "year" not in df:
        return df, -1
    y = int(df["year"].max()) if year is None else int(year)
    out = df[df["year"] == y]
    if out.empty:
        raise ValueError(f"no rows for year {y}; years present: {sorted(df['year'].unique().tolist())}")
    return out, y


def _check(df: pd.DataFrame, *cols: str | None) -> None:
    missing = [c for c in cols if c is not None and c not in df.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the frame; columns: {list(df.columns)}")


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _bands(df: pd.DataFrame, keys: list[str], metric: str, band: tuple[float, float]) -> pd.DataFrame:
    g = df.groupby(keys, sort=True, dropna=False)[metric]
    return pd.DataFrame({"median": g.median(), "lo": g.quantile(band[0]), "hi": g.quantile(band[1]),
                         "n": g.count()}).reset_index()


def outcome_vs_factor(df: pd.DataFrame, factor: str, metric: str, year: int | None = None,
                      color: str | None = None, band: tuple[float, float] = (0.1, 0.9),
                      title: str | None = None) -> go.Figure:
    """`metric` in `year` (default: the last) against `factor`: the median across replicates (and across
    any other factors not split by `color`) with a band from the `band` quantiles (default p10-p90). A
    number factor gets a line with a shaded band; a choice factor gets points with range bars."""
    _check(df, factor, metric, color)
    data, y = _at_year(df, year)
    keys = [color, factor] if color else [factor]
    stats = _bands(data, keys, metric, band)
    numeric = _is_numeric(data[factor])
    groups = list(stats.groupby(color, sort=True)) if color else [(None, stats)]
    fig = go.Figure()
    for i, (name, s) in enumerate(groups):
        c = PALETTE[i % len(PALETTE)]
        label = str(name) if color else metric
        s = s.sort_values(factor) if numeric else s
        x = s[factor] if numeric else s[factor].astype(str)
        hover = [f"n={n}" for n in s["n"]]
        if numeric:
            fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(s["hi"]) + list(s["lo"])[::-1],
                                     fill="toself", fillcolor=_rgba(c, 0.18), line={"width": 0}, hoverinfo="skip",
                                     showlegend=False, legendgroup=label))
            fig.add_trace(go.Scatter(x=x, y=s["median"], mode="lines+markers", name=label, line={"color": c},
                                     legendgroup=label, text=hover))
        else:
            fig.add_trace(go.Scatter(x=x, y=s["median"], mode="markers", name=label, marker={"color": c, "size": 9},
                                     error_y={"type": "data", "symmetric": False,
                                              "array": (s["hi"] - s["median"]).to_numpy(),
                                              "arrayminus": (s["median"] - s["lo"]).to_numpy()},
                                     text=hover))
    when = f" (year {y})" if y >= 0 else ""
    fig.update_layout(title=title or f"{metric}{when} by {factor}: median, p{band[0]*100:g}-p{band[1]*100:g}",
                      xaxis_title=factor, yaxis_title=metric, legend_title=color or "", template="plotly_white")
    if not numeric and color:
        fig.update_layout(scattermode="group")
    return fig


def metric_over_time(df: pd.DataFrame, metric: str, color: str | None = None,
                     band: tuple[float, float] = (0.1, 0.9), title: str | None = None) -> go.Figure:
    """`metric` by year: the median across runs with a p10-p90 band, one line per value of `color`."""
    _check(df, metric, "year", color)
    keys = [color, "year"] if color else ["year"]
    stats = _bands(df, keys, metric, band)
    groups = list(stats.groupby(color, sort=True)) if color else [(None, stats)]
    fig = go.Figure()
    for i, (name, s) in enumerate(groups):
        c = PALETTE[i % len(PALETTE)]
        label = str(name) if color else metric
        s = s.sort_values("year")
        fig.add_trace(go.Scatter(x=list(s["year"]) + list(s["year"])[::-1], y=list(s["hi"]) + list(s["lo"])[::-1],
                                 fill="toself", fillcolor=_rgba(c, 0.15), line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=label))
        fig.add_trace(go.Scatter(x=s["year"], y=s["median"], mode="lines", name=label, line={"color": c},
                                 legendgroup=label))
    fig.update_layout(title=title or f"{metric} by year: median, p{band[0]*100:g}-p{band[1]*100:g}",
                      xaxis_title="year", yaxis_title=metric, legend_title=color or "", template="plotly_white")
    return fig


def heatmap(df: pd.DataFrame, x: str, y: str, metric: str, year: int | None = None, stat: str = "mean",
            title: str | None = None, colorscale: str = "Viridis") -> go.Figure:
    """`stat` ("mean" or "median") of `metric` in `year` (default: the last) over two factors, pooling
    replicates and any other factors. Each cell shows its value and run count on hover."""
    _check(df, x, y, metric)
    if stat not in ("mean", "median"):
        raise ValueError(f"stat {stat!r}: allowed: 'mean' or 'median'")
    data, yr = _at_year(df, year)
    table = data.pivot_table(index=y, columns=x, values=metric, aggfunc=stat, sort=True)
    counts = data.pivot_table(index=y, columns=x, values=metric, aggfunc="count", sort=True)
    counts = counts.reindex(index=table.index, columns=table.columns)
    z = table.to_numpy(dtype=float)
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.3g}")(np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in table.columns], y=[str(i) for i in table.index], colorscale=colorscale,
        text=text, texttemplate="%{text}", customdata=counts.to_numpy(),
        hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{stat} {metric}=%{{z:.4g}}<br>runs=%{{customdata}}<extra></extra>",
        colorbar={"title": metric}))
    when = f" (year {yr})" if yr >= 0 else ""
    fig.update_layout(title=title or f"{stat} {metric}{when}", xaxis_title=x, yaxis_title=y, template="plotly_white")
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def sensitivity_plot(indices: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Sensitivity indices from :meth:`Results.sensitivity`: bars of S1 and ST with confidence intervals
    (Sobol, RBD-FAST), or the Morris mu* vs sigma plane."""
    method = indices.attrs.get("method", "")
    metric = indices.attrs.get("metric", "")
    names = [str(i) for i in indices.index]
    fig = go.Figure()
    if "mu_star" in indices:
        fig.add_trace(go.Scatter(x=indices["mu_star"], y=indices["sigma"], mode="markers+text", text=names,
                                 textposition="top center",
                                 error_x={"type": "data", "array": indices["mu_star_conf"].to_numpy()}))
        fig.update_layout(xaxis_title="mu* (mean |elementary effect|)", yaxis_title="sigma (interactions, "
                          "non-linearity)")
    else:
        order = indices.sort_values("ST" if "ST" in indices else "S1", ascending=False)
        names = [str(i) for i in order.index]
        for col, c in (("S1", PALETTE[0]), ("ST", PALETTE[1])):
            if col in order:
                fig.add_trace(go.Bar(x=names, y=order[col], name=col, marker_color=c,
                                     error_y={"type": "data", "array": order[f"{col}_conf"].to_numpy()}))
        fig.update_layout(barmode="group", yaxis_title="index", xaxis_title="factor")
    fig.update_layout(title=title or f"Sensitivity of {metric} ({method})", template="plotly_white")
    return fig


def write_html(figures: Sequence[go.Figure], path: str | Path, title: str = "Sweep results") -> Path:
    """Write figures to one self-contained HTML page (plotly.js embedded once; works offline)."""
    path = Path(path)
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_html.escape(title)}</title></head><body>"
            + "".join(f"<div>{p}</div>" for p in parts) + "</body></html>")
    path.write_text(html, encoding="utf-8")
    return path
