"""Scenario discovery: where does an outcome fail? PRIM (EMA workbench) + SALib delta sensitivity.

Input: a sweep in the SQL store (read through the public `portfolio_sim.sweep.Results` API) whose
factors are assumptions and/or levers. Each completed run is one case: its factor values are x, and
"fails" is the outcome in the chosen year below (or above) a threshold. PRIM peels boxes of x that hold
a high share of failing cases; we report the box on the peeling trajectory with the highest density
among those that still cover at least `min_coverage` of the failures (a documented choice: the analyst
trades coverage for density, and this picks one point of that trade-off; the whole trajectory is in
the figure). Global sensitivity: SALib's delta (moment-independent, works on any sample, not only a
Saltelli design) of the outcome itself over the same runs; categorical factors enter as integer codes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_sim.errors import ScenarioError


@dataclass
class Discovery:
    outcome: str
    rule: str
    cases: int
    failing: int
    limits: pd.DataFrame  # factor, kind, low, high (or levels) of the restricted dimensions
    coverage: float
    density: float
    trajectory: pd.DataFrame
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)


def cases_from_store(db: str, outcome: str, year: int | None = None,
                     experiment: str | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """(x: one row per completed run, one column per factor; y: the outcome in `year`, default last)."""
    from portfolio_sim.sweep import Results

    with Results(db, experiment) as res:
        exp_years = int(res.info(experiment)["years"])
        factors = res.factors(experiment)
        y_year = exp_years if year is None else year
        if not 0 <= y_year <= exp_years:
            raise ScenarioError(f"--year {year}: the experiment ran years 0 to {exp_years}; allowed: 0-{exp_years}")
        frame = res.yearly(experiment=experiment, metrics=[outcome], years=y_year)
    if frame.empty:
        raise ScenarioError(f"{db}: no completed runs to analyse")
    return frame[factors].reset_index(drop=True), frame[outcome].astype(float).reset_index(drop=True)


def _numeric(x: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list]]:
    out, levels = x.copy(), {}
    for c in x.columns:
        if not pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]):
            cats = sorted(x[c].astype(str).unique())
            levels[c] = cats
            out[c] = x[c].astype(str).map({v: i for i, v in enumerate(cats)}).astype(float)
        else:
            out[c] = x[c].astype(float)
    return out, levels


def prim_boxes(x: pd.DataFrame, fails: np.ndarray, min_coverage: float = 0.5, threshold: float = 0.8):
    """Run EMA workbench PRIM; return (limits frame, coverage, density, trajectory)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ema_workbench.analysis import prim
        xx = x.copy()
        for c in xx.columns:
            if not pd.api.types.is_numeric_dtype(xx[c]):
                xx[c] = xx[c].astype(str).astype("category")
        p = prim.Prim(xx, fails.astype(bool), threshold=threshold)
        box = p.find_box()
    traj = box.peeling_trajectory.copy()
    ok = traj[traj["coverage"] >= min_coverage]
    i = int(ok["density"].idxmax()) if not ok.empty else int(traj.index[0])
    box.select(i)
    lims = box.box_lims[i]
    rows = []
    for c in x.columns:
        full, cut = box.box_lims[0][c], lims[c]
        if pd.api.types.is_numeric_dtype(x[c]):
            if not (np.isclose(cut.iloc[0], full.iloc[0]) and np.isclose(cut.iloc[1], full.iloc[1])):
                rows.append({"factor": c, "low": float(cut.iloc[0]), "high": float(cut.iloc[1]),
                             "full_low": float(full.iloc[0]), "full_high": float(full.iloc[1])})
        else:
            kept, alls = set(cut.iloc[0]), set(full.iloc[0])
            if kept != alls:
                rows.append({"factor": c, "low": ", ".join(sorted(map(str, kept))), "high": "",
                             "full_low": ", ".join(sorted(map(str, alls))), "full_high": ""})
    limits = pd.DataFrame(rows, columns=["factor", "low", "high", "full_low", "full_high"])
    return limits, float(traj.loc[i, "coverage"]), float(traj.loc[i, "density"]), traj


def delta_sensitivity(x: pd.DataFrame, y: pd.Series, seed: int = 1) -> pd.DataFrame:
    """SALib delta and first-order S1 of `y` over the sample `x` (any design); sorted by delta."""
    from SALib.analyze import delta

    xn, _ = _numeric(x)
    keep = [c for c in xn.columns if xn[c].nunique() > 1]
    if not keep or y.nunique() < 2:
        return pd.DataFrame(columns=["factor", "delta", "delta_conf", "S1", "S1_conf"])
    problem = {"num_vars": len(keep), "names": keep,
               "bounds": [[float(xn[c].min()), float(xn[c].max())] for c in keep]}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):  # SALib 1.6 prints bin notices
        warnings.simplefilter("ignore")
        r = delta.analyze(problem, xn[keep].to_numpy(), y.to_numpy(dtype=float), num_resamples=20, seed=seed)
    key = "delta" if "delta" in r else "delta_raw"  # SALib < 1.6 / 1.6 (which adds balanced variants)
    out = pd.DataFrame({"factor": keep, "delta": r[key], "delta_conf": r[f"{key}_conf"], "S1": r["S1"],
                        "S1_conf": r["S1_conf"]})
    return out.sort_values("delta", ascending=False, ignore_index=True)


def discover(x: pd.DataFrame, y: pd.Series, outcome: str, below: float | None = None,
             above: float | None = None, min_coverage: float = 0.5) -> Discovery:
    if (below is None) == (above is None):
        raise ScenarioError("give exactly one of --below VALUE or --above VALUE")
    fails = (y < below).to_numpy() if below is not None else (y > above).to_numpy()
    rule = f"{outcome} < {below:g}" if below is not None else f"{outcome} > {above:g}"
    if fails.sum() == 0 or fails.all():
        raise ScenarioError(f"{rule}: holds in {int(fails.sum())} of {len(fails)} runs; PRIM needs some runs "
                            "on each side; allowed: a threshold between "
                            f"{y.min():g} and {y.max():g}")
    limits, cov, dens, traj = prim_boxes(x, fails, min_coverage)
    return Discovery(outcome, rule, len(fails), int(fails.sum()), limits, cov, dens, traj,
                     delta_sensitivity(x, y))


def write_figures(d: Discovery, out: Path) -> list[Path]:
    """Plotly HTML: PRIM's coverage-density trade-off, and the delta sensitivity bars."""
    import plotly.graph_objects as go

    t = d.trajectory
    f1 = go.Figure(go.Scatter(x=t["coverage"], y=t["density"], mode="markers+lines",
                              marker={"color": t["res_dim"], "colorscale": "Viridis", "showscale": True,
                                      "colorbar": {"title": "restricted dims"}},
                              hovertemplate="coverage %{x:.2f}<br>density %{y:.2f}<extra></extra>"))
    f1.add_trace(go.Scatter(x=[d.coverage], y=[d.density], mode="markers", marker={"size": 14, "symbol": "star",
                                                                                    "color": "#d62728"},
                            name="reported box"))
    f1.update_layout(title=f"PRIM peeling trajectory: {d.rule}", xaxis_title="coverage", yaxis_title="density",
                     showlegend=False)
    s = d.sensitivity
    f2 = go.Figure(go.Bar(x=s["delta"], y=s["factor"], orientation="h",
                          error_x={"type": "data", "array": s["delta_conf"]}))
    f2.update_layout(title=f"Global sensitivity of {d.outcome} (SALib delta)", xaxis_title="delta",
                     yaxis={"autorange": "reversed"}, height=300 + 20 * len(s))
    paths = [out / "prim_tradeoff.html", out / "sensitivity.html"]
    from portfolio_sim.outdir import atomic_write
    for fig, path in zip((f1, f2), paths):
        atomic_write(path, (lambda g: lambda p: g.write_html(p, include_plotlyjs=True, full_html=True))(fig))
    return paths
