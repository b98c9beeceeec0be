"""Plausible worlds: Latin-hypercube draws of the declared assumptions, and ensembles over them.

Choices (docs/UNCERTAINTY.md):
- Every world is a draw; none is "the defaults" (a plain `run` without --worlds is that). Including the
  default point would over-weight it in the bands.
- Varied: every assumption with low < high, or those named by `vary` (group names such as `politics`
  or dotted paths such as `assumptions.politics.reversal_base`). Integer assumptions are rounded.
- Paired bounds (`NAME_low`/`NAME_high`) are sorted after drawing so that low <= high.
- The sample is SALib's Latin hypercube, seeded from the root seed (a SeedSequence keyed apart from the
  replicate seeds), so the same root seed gives the same worlds in any process.
- Every world runs the same K replicate seeds (`derive_seeds(root, K)`): within-world spread is seed
  noise, across-world spread is the assumptions.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_sim.assumptions import BY_PATH, DECLARED, GROUP_DOCS, Assumption
from portfolio_sim.district import DistrictCache
from portfolio_sim.errors import ScenarioError
from portfolio_sim.kernel import QUANTILES, RunResult, derive_seeds, single_run
from portfolio_sim.scenario import Scenario

WORLD_STREAM = 0x57_4F_52_4C_44  # "WORLD": keeps the world sample independent of the replicate seeds


def varied_assumptions(vary: Sequence[str] | None = None) -> list[Assumption]:
    """The assumptions a world draws: all with low < high, or the groups / dotted paths in `vary`."""
    if not vary:
        return [a for a in DECLARED if a.low < a.high]
    chosen: list[Assumption] = []
    for item in vary:
        key = item.strip()
        if key in GROUP_DOCS:
            chosen += [a for a in DECLARED if a.group == key and a.low < a.high]
        elif key in BY_PATH or f"assumptions.{key}" in BY_PATH:
            a = BY_PATH.get(key) or BY_PATH[f"assumptions.{key}"]
            if a.low < a.high:
                chosen.append(a)
        else:
            raise ScenarioError(f"--vary {item!r}: not an assumption group or path; allowed: a group "
                                f"({', '.join(GROUP_DOCS)}) or a path such as assumptions.politics.NAME "
                                "(see `portfolio-sim assumptions`)")
    seen: dict[str, Assumption] = {a.path: a for a in chosen}
    if not seen:
        raise ScenarioError(f"--vary {','.join(vary)}: names no assumption with a range (low < high)")
    return list(seen.values())


def world_seed(root: int) -> int:
    return int(np.random.SeedSequence([int(root), WORLD_STREAM]).generate_state(1, dtype=np.uint32)[0])


def sample_worlds(n: int, root: int, vary: Sequence[str] | None = None) -> pd.DataFrame:
    """`n` worlds as a frame: one row per world (index `world` 0..n-1), one column per varied path."""
    from SALib.sample import latin

    if n < 1:
        raise ScenarioError(f"--worlds {n}: must be at least 1")
    params = varied_assumptions(vary)
    problem = {"num_vars": len(params), "names": [a.path for a in params],
               "bounds": [[a.low, a.high] for a in params]}
    x = latin.sample(problem, n, seed=world_seed(root))
    frame = pd.DataFrame(x, columns=problem["names"])
    # Paired bounds (NAME_low, NAME_high) must stay ordered: sort each drawn pair.
    for path in list(frame.columns):
        if path.endswith("_low") and path[:-4] + "_high" in frame:
            hi = path[:-4] + "_high"
            lo_v, hi_v = frame[path].copy(), frame[hi].copy()
            frame[path], frame[hi] = np.minimum(lo_v, hi_v), np.maximum(lo_v, hi_v)
    for a in params:
        if a.integer:
            frame[a.path] = frame[a.path].round().astype(int)
    frame.index.name = "world"
    return frame


def apply_world(scenario: Scenario, world: pd.Series) -> Scenario:
    """A copy of `scenario` with the world's assumption values set (validated on assignment)."""
    s = scenario.model_copy(deep=True)
    for path, value in world.items():
        _, group, name = str(path).split(".")
        a = BY_PATH[str(path)]
        setattr(getattr(s.assumptions, group), name, int(value) if a.integer else float(value))
    return s


@dataclass
class Task:
    """One run of an ensemble. The scenario travels as plain data (its assumption groups are classes
    built at import time, which pickle cannot name) and is rebuilt, then given the world, where it runs."""

    world: int
    scenario: dict
    values: dict
    seed: int
    years: int | None

    def build(self) -> Scenario:
        return apply_world(Scenario.model_validate(self.scenario), pd.Series(self.values, dtype=object))


# Generated districts a process keeps between tasks: runs on the same seed share their district (all the
# worlds of a seed, and both designs of a pair), and building it is then skipped (results identical,
# see district.DistrictCache). Per process, bounded; a pool's copy goes when the pool does.
DISTRICT_CACHE_BYTES = 64 * 2**20
_DISTRICTS = DistrictCache(DISTRICT_CACHE_BYTES)


def _run_task(task: Task, districts: DistrictCache | None = None) -> tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    r = single_run(task.build(), task.seed, years=task.years, districts=districts or _DISTRICTS)
    return task.world, r.yearly, r.schools, r.events  # frames only: the scenario does not pickle


def _result(task: Task, out: tuple[int, pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> tuple[int, RunResult]:
    return task.world, RunResult(task.build(), task.seed, out[1], out[2], out[3])


def ensemble_tasks(scenario: Scenario, worlds: pd.DataFrame, seeds: Sequence[int],
                   years: int | None = None) -> list[Task]:
    data = scenario.model_dump(mode="json")
    return [Task(int(w), data, {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}, int(s), years)
            for w, row in worlds.iterrows() for s in seeds]


def run_tasks(tasks: list[Task], workers: int = 1,
              on_done: Callable[[], None] | None = None) -> list[tuple[int, RunResult]]:
    """Run tasks serially (workers <= 1) or on a spawn process pool; results in task order either way."""
    if workers <= 1 or len(tasks) <= 1:
        out, districts = [], DistrictCache(DISTRICT_CACHE_BYTES)   # this call's own: nothing kept after it
        for t in tasks:
            out.append(_result(t, _run_task(t, districts)))
            if on_done:
                on_done()
        return out
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        out = []
        for t, r in zip(tasks, pool.map(_run_task, tasks, chunksize=max(1, len(tasks) // (4 * workers)))):
            out.append(_result(t, r))
            if on_done:
                on_done()
        return out


def run_ensemble(scenario: Scenario, n_worlds: int, n_seeds: int | None = None, root: int | None = None,
                 years: int | None = None, vary: Sequence[str] | None = None, workers: int = 1,
                 on_done: Callable[[], None] | None = None) -> tuple[pd.DataFrame, list[tuple[int, RunResult]]]:
    """(worlds frame, [(world, RunResult)]) for `n_worlds` draws x `n_seeds` seeds of one scenario."""
    root = scenario.run.seed if root is None else root
    worlds = sample_worlds(n_worlds, root, vary)
    seeds = derive_seeds(root, scenario.run.seeds if n_seeds is None else n_seeds)
    return worlds, run_tasks(ensemble_tasks(scenario, worlds, seeds, years), workers, on_done)


def ensemble_yearly(results: list[tuple[int, RunResult]]) -> pd.DataFrame:
    """All runs' yearly metrics with `world` and `seed` columns first."""
    frames = []
    for world, r in results:
        f = r.yearly.copy()
        f.insert(0, "seed", r.seed)
        f.insert(0, "world", world)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def summarize_ensemble(yearly: pd.DataFrame) -> pd.DataFrame:
    """Per metric and year: p10/median/p90 over all runs (worlds x seeds), the p10-p90 of the per-world
    medians across worlds (`worlds_p10`, `worlds_p90`), and the median within-world p10-p90 width
    (`seed_band_width`, seed noise alone)."""
    metrics = [c for c in yearly.columns if c not in ("world", "seed", "year", "calendar_year")]
    long = yearly.melt(id_vars=["world", "year", "seed"], value_vars=metrics, var_name="metric")
    g = long.groupby(["metric", "year"], sort=False)["value"]
    out = pd.DataFrame({name: g.quantile(q) for name, q in QUANTILES.items()})
    per_world = long.groupby(["metric", "year", "world"], sort=False)["value"]
    medians = per_world.median().groupby(level=["metric", "year"], sort=False)
    out["worlds_p10"] = medians.quantile(0.10)
    out["worlds_p90"] = medians.quantile(0.90)
    width = (per_world.quantile(0.90) - per_world.quantile(0.10)).groupby(level=["metric", "year"], sort=False)
    out["seed_band_width"] = width.median()
    out = out.reset_index()
    order = {m: i for i, m in enumerate(metrics)}
    return out.sort_values(["metric", "year"], key=lambda c: c.map(order) if c.name == "metric" else c,
                           ignore_index=True)
