"""Measuring the model the way the studies in docs/EVIDENCE.md measure schools (used by tests/test_effects.py).

The counterfactual of a run is the same scenario and seed with no initiative (no conversions, no new
autonomous schools): the same district, the same starting schools, leaders and students. A converted
school's effect is its value-added in the run with the initiative minus the *same school's* value-added in
the paired run without it, by years since it converted (the design of EVIDENCE.md sections 1-3).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from portfolio_sim.kernel import RunResult, run_many
from portfolio_sim.scenario import Scenario


def without_initiative(scenario: Scenario) -> Scenario:
    """The same district and seed-able scenario with no autonomy initiative."""
    data = scenario.model_dump()
    data["eligibility"].update(conversions_per_year=0, new_schools_per_year=0)
    return Scenario.model_validate(data)


def paired_runs(scenario: Scenario, seeds: Iterable[int]) -> tuple[list[RunResult], list[RunResult]]:
    seeds = list(seeds)
    return run_many(scenario, seeds=seeds), run_many(without_initiative(scenario), seeds=seeds)


def conversion_effects(with_runs: list[RunResult], without_runs: list[RunResult]) -> pd.DataFrame:
    """One row per converted school, seed and year while it stays autonomous: `k` (0 = conversion year),
    `sector`, `effect` (value-added with minus without, SD/yr). Schools opened by the initiative have no
    counterfactual and are left out, as are years where the school is closed in either run."""
    rows = []
    for w, wo in zip(with_runs, without_runs, strict=True):
        a = w.schools[w.schools.open & (w.schools.school_id < len_start(w))]
        b = wo.schools[wo.schools.open].set_index(["school_id", "year"]).value_added
        auto = a[~a.sector.isin(["traditional", "charter"])]
        first = auto.groupby("school_id").year.min()
        auto = auto.assign(k=auto.year - auto.school_id.map(first))
        auto = auto[auto.year >= 1]
        key = pd.MultiIndex.from_arrays([auto.school_id, auto.year])
        cf = b.reindex(key).to_numpy()
        rows.append(pd.DataFrame({"seed": w.seed, "school_id": auto.school_id.to_numpy(), "k": auto.k.to_numpy(),
                                  "sector": auto.sector.to_numpy(),
                                  "effect": auto.value_added.to_numpy() - cf}).dropna())
    return pd.concat(rows, ignore_index=True)


def len_start(result: RunResult) -> int:
    """Schools that existed when the run started (later rows are schools the run opened)."""
    y0 = result.schools[result.schools.year == result.schools.year.min()]
    return int(y0.school_id.max()) + 1


def autonomous_minus_traditional(results: list[RunResult], year: int) -> float:
    """Mean value-added of autonomous district schools minus traditional ones in `year` (a cross-section,
    as in issue 11's figures)."""
    out = []
    for r in results:
        s = r.schools[(r.schools.year == year) & r.schools.open]
        auto = s[~s.sector.isin(["traditional", "charter"])].value_added
        trad = s[s.sector == "traditional"].value_added
        if len(auto) and len(trad):
            out.append(auto.mean() - trad.mean())
    return float(np.mean(out))


def mean_achievement(results: list[RunResult], years: slice = slice(1, None)) -> np.ndarray:
    """Per-seed mean of district achievement over `years` (paired across scenarios by seed order)."""
    return np.array([r.yearly["mean_achievement"].iloc[years].mean() for r in results])


def student_value_added(results: list[RunResult], years: slice = slice(1, None)) -> np.ndarray:
    """Per seed: the value-added the average district student received, averaged over `years` (the
    noise-free part of achievement growth; enrollment-weighted over open district schools)."""
    out = []
    for r in results:
        s = r.schools[r.schools.open & (r.schools.sector != "charter")]
        per_year = s.assign(w=s.value_added * s.enrollment).groupby("year")[["w", "enrollment"]].sum()
        out.append((per_year.w / per_year.enrollment).iloc[years].mean())
    return np.array(out)
