"""The run kernel: `(scenario, seed) -> RunResult`, and the verbs built on it.

`single_run` is a pure function of its arguments: the CLI, the dashboard and sweeps all call it, and
the same scenario and seed give identical results in any process. Replicate seeds derive from one
root seed with numpy's SeedSequence, so `run_many(s, n=5, root=1)` always runs the same five seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_sim.decisions import RULES, Decisions, check_schools_exist
from portfolio_sim.district import DistrictCache
from portfolio_sim.model import PortfolioModel
from portfolio_sim.scenario import Scenario

QUANTILES = {"p10": 0.10, "median": 0.50, "p90": 0.90}


@dataclass
class RunResult:
    """Everything one run produced: yearly metrics, the per-school panel and the event log."""

    scenario: Scenario
    seed: int
    yearly: pd.DataFrame
    schools: pd.DataFrame
    events: pd.DataFrame


def derive_seeds(root: int, n: int) -> list[int]:
    """`n` independent replicate seeds from one root seed (SeedSequence spawning)."""
    return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in np.random.SeedSequence(root).spawn(n)]


class Run:
    """One run, stepped a year at a time: the one stepping loop the kernel, the dashboard and sweeps share.

        run = Run(scenario, seed)
        run.advance()                  # one year by the rules
        run.advance(decisions)         # one year with the workshop players' decisions
        result = run.result()          # yearly metrics, school panel, event log so far
        run.release()                  # (or use `with Run(...) as run:`)
    """

    def __init__(self, scenario: Scenario, seed: int, model: PortfolioModel | None = None,
                 districts: DistrictCache | None = None):
        self.scenario, self.seed = scenario, int(seed)
        self.model = PortfolioModel(scenario, self.seed, districts) if model is None else model

    @classmethod
    def of(cls, model: PortfolioModel) -> Run:
        """The Run that steps an existing model (e.g. one a dashboard session holds)."""
        return cls(model.scenario, model.seed, model)

    @property
    def year(self) -> int:
        return self.model.year

    @property
    def finished(self) -> bool:
        return self.model.year >= self.scenario.run.years

    def advance(self, decisions: Decisions = RULES) -> int:
        """Simulate the next year with `decisions` (the scenario's rules by default); the new year.
        Decisions for schools the district does not have (yet) are refused before anything changes."""
        if decisions.schools:
            check_schools_exist(decisions, self.model.year + 1, len(self.model.schools))
        self.model.decisions = decisions
        self.model.step()
        return self.model.year

    def result(self) -> RunResult:
        m = self.model
        return RunResult(self.scenario, self.seed, m.yearly_frame(), m.schools_frame(), m.events_frame())

    def release(self) -> None:
        self.model.release()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def single_run(scenario: Scenario, seed: int, years: int | None = None,
               on_year: Callable[[int], None] | None = None,
               decisions: Mapping[int, Decisions] | None = None,
               districts: DistrictCache | None = None) -> RunResult:
    """Run one scenario with one seed for `years` (default `scenario.run.years`). `decisions`: what
    workshop players decided, by year (years not listed follow the scenario's rules). `districts`: a
    cache of generated districts shared by runs on the same district levers and seed (same results)."""
    with Run(scenario, seed, districts=districts) as run:
        for year in range(1, 1 + (scenario.run.years if years is None else years)):
            run.advance((decisions or {}).get(year, RULES))
            if on_year is not None:
                on_year(run.year)
        return run.result()


def run_many(scenario: Scenario, n: int | None = None, root: int | None = None, seeds: Iterable[int] | None = None,
             on_year: Callable[[int], None] | None = None,
             decisions: Mapping[int, Decisions] | None = None) -> list[RunResult]:
    """Replicates of one scenario: explicit `seeds`, or `n` seeds derived from `root`
    (defaults: `scenario.run.seeds` and `scenario.run.seed`); `decisions` as for `single_run`."""
    if seeds is None:
        seeds = derive_seeds(scenario.run.seed if root is None else root, scenario.run.seeds if n is None else n)
    return [single_run(scenario, s, on_year=on_year, decisions=decisions) for s in seeds]


def compare(scenarios: dict[str, Scenario], n: int = 5, root: int = 1) -> dict[str, list[RunResult]]:
    """Several scenarios on the same replicate seeds (common random numbers)."""
    seeds = derive_seeds(root, n)
    return {name: run_many(s, seeds=seeds) for name, s in scenarios.items()}


def stack_seeds(frames: Iterable[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """Several seeds' frames as one, with a leading `seed` column (empty frames keep the columns)."""
    out = []
    for seed, frame in frames:
        f = frame.copy()
        f.insert(0, "seed", seed)
        out.append(f)
    nonempty = [f for f in out if not f.empty]
    if nonempty:
        return pd.concat(nonempty, ignore_index=True)
    return out[0] if out else pd.DataFrame()


def yearly_table(results: list[RunResult]) -> pd.DataFrame:
    """All replicates' yearly metrics, one row per seed and year."""
    return stack_seeds((r.seed, r.yearly) for r in results)


def summarize(yearly: pd.DataFrame) -> pd.DataFrame:
    """Median, 10th and 90th percentile of every metric per year across seeds (long format)."""
    metrics = [c for c in yearly.columns if c not in ("seed", "year", "calendar_year")]
    long = yearly.melt(id_vars=["year", "seed"], value_vars=metrics, var_name="metric")
    g = long.groupby(["metric", "year"], sort=False)["value"]
    out = pd.DataFrame({name: g.quantile(q) for name, q in QUANTILES.items()}).reset_index()
    order = {m: i for i, m in enumerate(metrics)}
    return out.sort_values(["metric", "year"], key=lambda c: c.map(order) if c.name == "metric" else c,
                           ignore_index=True)
