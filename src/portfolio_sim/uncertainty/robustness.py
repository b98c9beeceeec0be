"""Robustness of a design against an alternative over plausible worlds (common random numbers).

Both designs run on the same worlds (assumption draws) and the same replicate seeds, so every
difference is paired: run (world w, seed s) of the design against run (w, s) of the alternative.
Per key outcome (its final-year level, or its total over the run for counts such as closures):

- `share_better` / `share_worse`: share of worlds whose seed-mean paired difference favours the design /
  the alternative, in the outcome's declared direction (`DIRECTION`); ties count as neither;
- `median_diff`, `p10_diff`, `p90_diff`: design minus alternative across worlds (metric units);
- `seed_se`: the median over worlds of the standard error of the paired difference across seeds;
- `clear_of_seed_noise`: |median_diff| > 2 x seed_se (needs at least 2 seeds; with 1 it is unknown).

A design compared with itself is better in no world and every difference is exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from portfolio_sim.kernel import derive_seeds
from portfolio_sim.scenario import Scenario
from portfolio_sim.uncertainty.worlds import ensemble_tasks, ensemble_yearly, run_tasks, sample_worlds

# metric -> (label, "level" | "cumulative", +1 higher is better / -1 lower is better): the output
# registry's key metrics with its declared direction (`Metric.better`); where the registry declares none
# (it colours no change for them), the direction a district leader pursuing the design would call better.
_UNDECLARED = {"enrollment_autonomous": +1, "autonomous_schools": +1, "schools_open": +1, "closures": -1}


def _direction() -> dict[str, tuple[str, str, int]]:
    from portfolio_sim import outputs

    out = {}
    for m in outputs.KEY_METRICS:
        sign = {"up": +1, "down": -1}.get(m.better) or _UNDECLARED.get(m.name)
        if sign is None:
            raise ValueError(f"key metric {m.name}: no direction declared (outputs.Metric.better)")
        out[m.name] = (m.label + (" (cumulative)" if m.cumulative else ""),
                       "cumulative" if m.cumulative else "level", sign)
    return out


DIRECTION: dict[str, tuple[str, str, int]] = _direction()
COLUMNS = ["metric", "label", "higher_is_better", "worlds", "seeds", "share_better", "share_worse",
           "median_diff", "p10_diff", "p90_diff", "seed_se", "clear_of_seed_noise"]


def outcomes(yearly: pd.DataFrame) -> pd.DataFrame:
    """One row per (world, seed): each key outcome at the last year (level) or summed over years."""
    last = int(yearly["year"].max())
    keys = ["world", "seed"]
    levels = [m for m, (_, kind, _) in DIRECTION.items() if kind == "level" and m in yearly]
    totals = [m for m, (_, kind, _) in DIRECTION.items() if kind == "cumulative" and m in yearly]
    out = yearly[yearly["year"] == last].set_index(keys)[levels].astype(float)
    out = out.join(yearly.groupby(keys)[totals].sum().astype(float))
    return out[[m for m in DIRECTION if m in out]].sort_index()


def compare_outcomes(design: pd.DataFrame, alternative: pd.DataFrame) -> pd.DataFrame:
    """robustness.csv rows from two `outcomes` frames over the same (world, seed) index."""
    if not design.index.equals(alternative.index):
        raise ValueError("the designs were not run on the same worlds and seeds")
    diff = design - alternative  # paired, exact zero for identical runs
    n_worlds = diff.index.get_level_values("world").nunique()
    n_seeds = diff.index.get_level_values("seed").nunique()
    by_world = diff.groupby(level="world")
    mean = by_world.mean()
    se = by_world.std(ddof=1) / np.sqrt(n_seeds) if n_seeds > 1 else None
    rows = []
    for metric in diff.columns:
        label, _, sign = DIRECTION[metric]
        d = mean[metric]
        signed = d * sign
        seed_se = float(se[metric].median()) if se is not None else float("nan")
        med = float(d.median())
        clear = bool(abs(med) > 2 * seed_se) if se is not None else None
        rows.append({"metric": metric, "label": label, "higher_is_better": sign > 0, "worlds": n_worlds,
                     "seeds": n_seeds, "share_better": float((signed > 0).mean()),
                     "share_worse": float((signed < 0).mean()), "median_diff": med,
                     "p10_diff": float(d.quantile(0.1)), "p90_diff": float(d.quantile(0.9)), "seed_se": seed_se,
                     "clear_of_seed_noise": clear})
    return pd.DataFrame(rows, columns=COLUMNS)


def robustness(design: Scenario, alternative: Scenario, n_worlds: int, n_seeds: int, root: int,
               years: int | None = None, vary: Sequence[str] | None = None, workers: int = 1) -> pd.DataFrame:
    """Run both designs on the same worlds and seeds (one pool for all runs) and compare them."""
    worlds = sample_worlds(n_worlds, root, vary)
    seeds = derive_seeds(root, n_seeds)
    years = design.run.years if years is None else years
    a = ensemble_tasks(design, worlds, seeds, years)
    b = ensemble_tasks(alternative, worlds, seeds, years)
    done = run_tasks(a + b, workers)
    ya, yb = ensemble_yearly(done[:len(a)]), ensemble_yearly(done[len(a):])
    return compare_outcomes(outcomes(ya), outcomes(yb))
