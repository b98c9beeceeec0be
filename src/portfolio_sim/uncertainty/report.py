"""The ensemble part of `run --worlds`: a table that separates the two kinds of uncertainty, added to
report.html (the charts' bands there span every world x seed run)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from portfolio_sim import outputs

# The output registry's key metrics, and the autonomy actually used (what discovery examples ask about).
KEY = tuple(m.name for m in outputs.KEY_METRICS) + ("autonomy_effective",)


def flat_runs(yearly: pd.DataFrame) -> pd.DataFrame:
    """`yearly` with `seed` replaced by a run number unique over (world, seed), for per-run aggregations
    written for seed-only frames (the key-metric table, the report's event shares)."""
    run = pd.factorize(pd.MultiIndex.from_frame(yearly[["world", "seed"]]))[0]
    return yearly.drop(columns=["world"]).assign(seed=run)


def uncertainty_table(summary: pd.DataFrame) -> pd.DataFrame:
    last = summary[summary["year"] == summary["year"].max()]
    rows = last[last["metric"].isin(KEY)].copy()
    rows["across worlds (p10-p90 of world medians)"] = rows["worlds_p90"] - rows["worlds_p10"]
    rows["within a world (median seed p10-p90)"] = rows["seed_band_width"]
    rows["all runs p10-p90"] = rows["p90"] - rows["p10"]
    return rows[["metric", "median", "all runs p10-p90", "across worlds (p10-p90 of world medians)",
                 "within a world (median seed p10-p90)"]].round(4)


def add_ensemble_section(path: Path, summary: pd.DataFrame, n_worlds: int, n_seeds: int,
                         varied: int, root: int) -> None:
    table = uncertainty_table(summary).to_html(index=False, border=0)
    section = (f"<h2>Uncertainty: plausible worlds and seeds</h2><p class=note>{n_worlds} world(s) (Latin "
               f"hypercube over {varied} declared assumptions, from root seed {root}) &times; {n_seeds} seed(s) "
               "each. Bands in the charts below span every run. Widths in the final year: across worlds is "
               "what the assumptions do, within a world is lottery-seed noise alone (docs/UNCERTAINTY.md)."
               f"</p>{table}")
    doc = Path(path).read_text(encoding="utf-8")
    doc = doc.replace("<h2>Outcomes</h2>", section + "<h2>Outcomes</h2>", 1)
    doc = doc.replace("lines are the median across seeds", "runs are numbered over worlds x seeds; lines are "
                      "the median across runs", 1)
    Path(path).write_text(doc, encoding="utf-8")


__all__ = ["add_ensemble_section", "flat_runs", "uncertainty_table", "html"]
