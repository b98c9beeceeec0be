"""The ensemble part of `run --worlds`: a table that separates the two kinds of uncertainty, given to
report.html as a section (`report.ReportSection`; the charts' bands there span every world x seed run)."""

from __future__ import annotations

import pandas as pd

from portfolio_sim import outputs
from portfolio_sim.report import ReportSection, frame_table

# The output registry's key metrics, and the autonomy actually used (what discovery examples ask about).
KEY = tuple(m.name for m in outputs.KEY_METRICS) + ("autonomy_effective",)


def flat_runs(frame: pd.DataFrame, runs_of: pd.DataFrame | None = None) -> pd.DataFrame:
    """`frame` with `seed` replaced by a run number unique over (world, seed), for per-run aggregations
    written for seed-only frames (the key-metric table, the report's event shares). Runs are numbered in
    the order of `runs_of` (default: `frame` itself), so the event log gets the yearly table's numbers
    even when some runs logged no events."""
    pairs = (frame if runs_of is None else runs_of)[["world", "seed"]].drop_duplicates()
    number = pd.Series(range(len(pairs)), index=pd.MultiIndex.from_frame(pairs))
    run = number.reindex(pd.MultiIndex.from_frame(frame[["world", "seed"]])).to_numpy()
    return frame.drop(columns=["world"]).assign(seed=run)


def uncertainty_table(summary: pd.DataFrame) -> pd.DataFrame:
    last = summary[summary["year"] == summary["year"].max()]
    rows = last[last["metric"].isin(KEY)].copy()
    rows["across worlds (p10-p90 of world medians)"] = rows["worlds_p90"] - rows["worlds_p10"]
    rows["within a world (median seed p10-p90)"] = rows["seed_band_width"]
    rows["all runs p10-p90"] = rows["p90"] - rows["p10"]
    return rows[["metric", "median", "all runs p10-p90", "across worlds (p10-p90 of world medians)",
                 "within a world (median seed p10-p90)"]].round(4)


def ensemble_section(summary: pd.DataFrame, n_worlds: int, n_seeds: int, varied: int, root: int) -> ReportSection:
    """report.html's section on the two kinds of uncertainty (passed to `write_report(sections=...)`)."""
    table = uncertainty_table(summary)
    return ReportSection(
        "Uncertainty: plausible worlds and seeds", frame_table(table, numeric=table.columns[1:]),
        note=f"{n_worlds} world(s) (Latin hypercube over {varied} declared assumptions, from root seed {root}) x "
             f"{n_seeds} seed(s) each. Bands in the charts below span every run. Widths in the final year: across "
             "worlds is what the assumptions do, within a world is lottery-seed noise alone (docs/UNCERTAINTY.md).")


def ensemble_runs_line(n_worlds: int, n_seeds: int, root: int) -> str:
    """The report's line on what was run, for an ensemble (runs are numbered over worlds x seeds)."""
    return (f"{n_worlds * n_seeds} runs: {n_worlds} plausible world(s) x {n_seeds} seed(s), root seed {root} "
            "(runs numbered over worlds x seeds)")


__all__ = ["ensemble_runs_line", "ensemble_section", "flat_runs", "uncertainty_table"]
