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
`drivers` names the assumptions a difference follows across worlds (rank correlation, corrected for
the number of assumptions tried); the dashboard's robustness check shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_sim.kernel import RunResult, derive_seeds
from portfolio_sim.scenario import Scenario
from portfolio_sim.uncertainty.worlds import Task, ensemble_tasks, ensemble_yearly, run_tasks, sample_worlds

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


def world_differences(design: pd.DataFrame, alternative: pd.DataFrame) -> pd.DataFrame:
    """Per world: the seed-mean paired difference (design - alternative) of each outcome."""
    if not design.index.equals(alternative.index):
        raise ValueError("the designs were not run on the same worlds and seeds")
    return (design - alternative).groupby(level="world").mean()


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


DRIVER_COLUMNS = ["metric", "assumption", "rho", "p_adjusted"]


def drivers(differences: pd.DataFrame, worlds: pd.DataFrame, alpha: float = 0.05, top: int = 3) -> pd.DataFrame:
    """Which assumptions the difference between the designs follows across worlds: per outcome, the
    assumptions whose Spearman rank correlation with the per-world difference is significant after a
    Bonferroni correction over every assumption varied (so that with 20 worlds and 100 assumptions a
    chance correlation is not reported), strongest first, at most `top`. Cheap (no extra runs); an empty
    answer means no single assumption stands out in this many worlds, not that none matters."""
    from scipy import stats

    rows = []
    varied = [c for c in worlds.columns if worlds[c].nunique() > 1]
    if len(worlds) < 5 or not varied:
        return pd.DataFrame(columns=DRIVER_COLUMNS)
    for metric in differences.columns:
        d = differences[metric].reindex(worlds.index).to_numpy(dtype=float)
        if np.nanstd(d) == 0:
            continue
        found = []
        for path in varied:
            rho, p = stats.spearmanr(worlds[path].to_numpy(dtype=float), d)
            if np.isfinite(p) and p * len(varied) < alpha:
                found.append({"metric": metric, "assumption": path, "rho": float(rho),
                              "p_adjusted": float(min(1.0, p * len(varied)))})
        rows += sorted(found, key=lambda r: -abs(r["rho"]))[:top]
    return pd.DataFrame(rows, columns=DRIVER_COLUMNS)


@dataclass
class Robustness:
    """What `robustness_detail` found: the robustness.csv table, the per-world differences, the worlds
    drawn and the assumptions the differences follow (`drivers`)."""

    table: pd.DataFrame
    differences: pd.DataFrame
    worlds: pd.DataFrame
    drivers: pd.DataFrame


Runner = Callable[[list[Task]], list[tuple[int, RunResult]]]


def paired_tasks(design: Scenario, alternative: Scenario, worlds: pd.DataFrame, seeds: Sequence[int],
                 years: int | None) -> list[Task]:
    """Design and alternative of each (world, seed) next to each other, so a pair lands in the same
    worker and the second run takes the first one's district from the worker's cache."""
    a = ensemble_tasks(design, worlds, seeds, years)
    b = ensemble_tasks(alternative, worlds, seeds, years)
    return [t for pair in zip(a, b, strict=True) for t in pair]


def robustness_detail(design: Scenario, alternative: Scenario, n_worlds: int, n_seeds: int, root: int,
                      years: int | None = None, vary: Sequence[str] | None = None, workers: int = 1,
                      run: Runner | None = None) -> Robustness:
    """Run both designs on the same worlds and seeds (one pool for all runs, or `run(tasks)`, which must
    return the tasks' results in task order) and compare them."""
    worlds = sample_worlds(n_worlds, root, vary)
    seeds = derive_seeds(root, n_seeds)
    years = design.run.years if years is None else years
    tasks = paired_tasks(design, alternative, worlds, seeds, years)
    done = run(tasks) if run is not None else run_tasks(tasks, workers)
    oa, ob = outcomes(ensemble_yearly(done[0::2])), outcomes(ensemble_yearly(done[1::2]))
    diffs = world_differences(oa, ob)
    return Robustness(compare_outcomes(oa, ob), diffs, worlds, drivers(diffs, worlds))


def robustness(design: Scenario, alternative: Scenario, n_worlds: int, n_seeds: int, root: int,
               years: int | None = None, vary: Sequence[str] | None = None, workers: int = 1,
               run: Runner | None = None) -> pd.DataFrame:
    """The robustness.csv table of `robustness_detail`."""
    return robustness_detail(design, alternative, n_worlds, n_seeds, root, years, vary, workers, run).table
