"""The comparison's robustness check: is a design better than the reference across plausible worlds?

The comparison runs designs on the same lottery seeds, so its bands are seed noise only. This check
asks the question the declared assumptions raise (docs/UNCERTAINTY.md): in how many *plausible worlds*
(each a Latin-hypercube draw of every assumption from its declared range) does the design beat the
reference? It is `uncertainty.robustness.robustness_detail` (the CLI's `portfolio-sim robustness`) with
its runs sent to the dashboard's worker pool: the same worlds, seeds and numbers as the CLI, progress
after every run, Cancel between years.

Nothing here imports Solara's page code: the session's `RobustnessOffer` holds the settings and the last
check, and the page (`robust_view.RobustnessCard`) draws them.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from dataclasses import dataclass

import pandas as pd
import solara

from portfolio_sim import outputs
from portfolio_sim.assumptions import BY_PATH
from portfolio_sim.dashboard.compare import CompareEntry, ComparisonStore
from portfolio_sim.dashboard.simulation import (ESTIMATE_SECONDS_PER_STUDENT_YEAR, Cancelled, JobHandle,
                                                SimulationLimit, WorkerPool, check_limits, estimate_seconds,
                                                worker_pool)
from portfolio_sim.kernel import Run, RunResult
from portfolio_sim.scenario import Scenario
from portfolio_sim.uncertainty.robustness import DIRECTION, Robustness, robustness_detail
from portfolio_sim.uncertainty.worlds import Task

WORLD_CHOICES = (10, 20, 50)
DEFAULT_WORLDS = 20
SEEDS_PER_WORLD = 2          # two seeds per world: enough to tell a world's difference from seed noise
# A shared server's cap on one check (students x years x runs); the CLI (`portfolio-sim robustness`) has none.
MAX_CHECK_STUDENT_YEARS = int(os.environ.get("PORTFOLIO_SIM_DASHBOARD_CHECK_STUDENT_YEARS", 250_000_000) or 0)

_tokens = itertools.count(1_000_001)      # apart from simulation's run tokens (same pool, same cancel ring)


# ------------------------------------------------------------------------------------------------
# Runs, in the worker pool or in process
# ------------------------------------------------------------------------------------------------

def run_world(task: Task, token: int = 0) -> pd.DataFrame | None:
    """One run of the check (a design in one world on one seed), in a worker process: its yearly
    metrics, or None if the check was cancelled (looked at between years). The district comes from the
    worker's cache when the other design (or another world) already built it for this seed."""
    from portfolio_sim.dashboard.simulation import _is_cancelled
    from portfolio_sim.uncertainty.worlds import _DISTRICTS

    scenario = task.build()
    years = scenario.run.years if task.years is None else task.years
    with Run(scenario, task.seed, districts=_DISTRICTS) as run:
        while run.year < years:
            if _is_cancelled(token):
                return None
            run.advance()
        return run.result().yearly


def _result(task: Task, yearly: pd.DataFrame) -> tuple[int, RunResult]:
    return task.world, RunResult(None, task.seed, yearly, pd.DataFrame(), pd.DataFrame())  # type: ignore[arg-type]


def pool_runner(pool: WorkerPool, handle: JobHandle, label: str):
    """A `robustness_detail` runner: every task to the pool, results in task order, progress after each
    run, Cancel drops waiting runs and stops running ones after their current year."""
    def run(tasks: list[Task]) -> list[tuple[int, RunResult]]:
        token = next(_tokens)
        years = tasks[0].years or 1
        futures = [pool.submit(token, run_world, t, token) for t in tasks]
        results: list[pd.DataFrame | None] = [None] * len(tasks)
        pending = set(range(len(tasks)))
        last_queue = -1
        try:
            while pending:
                if handle.stopped():
                    raise Cancelled
                ahead = pool.ahead_of(token)
                if ahead != last_queue:
                    handle.queued(ahead)
                    last_queue = ahead
                for i in [i for i in pending if futures[i].done()]:
                    out = futures[i].result()
                    if out is None:
                        raise Cancelled
                    results[i] = out
                    pending.discard(i)
                    done = len(tasks) - len(pending)
                    handle.progress(done * years, len(tasks) * years, f"{label}: {done} of {len(tasks)} runs")
                if pending:
                    time.sleep(0.05)
        finally:
            pool.cancel(token)
        return [_result(t, y) for t, y in zip(tasks, results, strict=True)]
    return run


def local_runner(handle: JobHandle, label: str):
    """The same, in this process (a server started with PORTFOLIO_SIM_DASHBOARD_WORKERS=0)."""
    from portfolio_sim.district import DistrictCache

    def run(tasks: list[Task]) -> list[tuple[int, RunResult]]:
        districts, out = DistrictCache(), []
        for i, t in enumerate(tasks, 1):
            with Run(t.build(), t.seed, districts=districts) as r:
                while r.year < (t.years or r.scenario.run.years):
                    if handle.stopped():
                        raise Cancelled
                    r.advance()
                out.append(_result(t, r.result().yearly))
            handle.progress(i * (t.years or 1), len(tasks) * (t.years or 1), f"{label}: {i} of {len(tasks)} runs")
        return out
    return run


# ------------------------------------------------------------------------------------------------
# What a check is and says
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RobustnessCheck:
    """A finished check: design vs reference over `worlds` plausible worlds x `seeds` seeds."""

    key: str                  # what was checked (check_key): the page shows a check only while it is current
    design: str
    reference: str
    worlds: int
    seeds: int
    years: int
    root: int
    varied: int               # assumptions drawn per world
    detail: Robustness
    seconds: float
    workers: int

    @property
    def runs(self) -> int:
        return 2 * self.worlds * self.seeds


def check_key(design: Scenario, reference: Scenario, worlds: int, seeds: int) -> str:
    return "\n".join([design.to_toml(), "----", reference.to_toml(), f"{worlds} worlds x {seeds} seeds"])


_UNITS = {"student-level SD": " SD", "students": " students", "schools": " schools", "schools/yr": " schools"}


def _fmt(metric: str, value: float) -> str:
    """A difference in the metric's own units, signed ('+0.021 SD', '-3 schools', '+1.2 pts'); one that
    rounds to zero is '0', not '-0.000'."""
    m = outputs.BY_NAME[metric]
    text = outputs.format_value(value, m.format, signed=True)
    if re.fullmatch(r"[+-]?[0.]+( pts)?", text):
        text = "0" + (" pts" if text.endswith("pts") else "")
    return text + _UNITS.get(m.unit, "")


def _share(x: float) -> str:
    return f"{round(100 * x):.0f}%"


def sentences(check: RobustnessCheck) -> list[dict[str, str]]:
    """One plain-language finding per key outcome: {metric, label, text, tone} (tone: better / worse /
    mixed / same), in the registry's order."""
    drivers = check.detail.drivers
    out = []
    for r in check.detail.table.itertuples():
        label = outputs.BY_NAME[r.metric].label + (" (all years)" if DIRECTION[r.metric][1] == "cumulative" else "")
        if r.share_better == 0 and r.share_worse == 0 and r.p10_diff == 0 and r.p90_diff == 0:
            out.append({"metric": r.metric, "label": label, "tone": "same",
                        "text": f"{label}: the same in every plausible world."})
            continue
        lead = (f"better in {_share(r.share_better)} of plausible worlds"
                + (f", worse in {_share(r.share_worse)}" if r.share_worse else ""))
        spread = (f"the difference was {_fmt(r.metric, r.p10_diff)} to {_fmt(r.metric, r.p90_diff)} in 8 of 10 "
                  f"worlds (typically {_fmt(r.metric, r.median_diff)})")
        noise = {True: "clear of seed noise", False: "within seed noise",
                 None: "one seed per world: seed noise unknown"}[r.clear_of_seed_noise]
        text = f"{label}: {lead}; {spread}; {noise}."
        own = drivers[drivers["metric"] == r.metric] if not drivers.empty else drivers
        if not own.empty:
            sign = DIRECTION[r.metric][2]
            parts = []
            for d in own.itertuples():
                a = BY_PATH[d.assumption]
                gains = "more" if d.rho * sign > 0 else "less"
                parts.append(f"{a.meaning.rstrip('. ')} ({a.group}.{a.name}; the higher it is, the {gains} the "
                             "design gains)")
            text += " Depends most on: " + "; ".join(parts) + "."
        tone = ("better" if r.share_better >= 0.75 else "worse" if r.share_worse >= 0.75 else "mixed")
        out.append({"metric": r.metric, "label": label, "tone": tone, "text": text})
    return out


def headline(check: RobustnessCheck) -> str:
    return (f"{check.design} against {check.reference}: {check.worlds} plausible worlds x {check.seeds} seeds "
            f"each, {check.years} years ({check.runs} runs on {check.workers} worker(s) in "
            f"{check.seconds:.0f} s). Each world draws all {check.varied} declared assumptions from their "
            "plausible ranges; both designs see the same worlds and seeds.")


# ------------------------------------------------------------------------------------------------
# One session's offer
# ------------------------------------------------------------------------------------------------

class RobustnessOffer:
    """The robustness check of one browser session (the page's `state.robustness`)."""

    def __init__(self, state) -> None:
        self.state = state
        self.result = solara.reactive(None)        # RobustnessCheck of the last finished check
        self.worlds = solara.reactive(DEFAULT_WORLDS)
        self.design = solara.reactive(None)        # entry key of the design checked (None: the first)

    # -- which two designs ------------------------------------------------------------------------------
    @staticmethod
    def reference(store: ComparisonStore) -> CompareEntry | None:
        """The entry differences are taken from (★), ready or not; default the first."""
        for e in store.entries:
            if e.key == store.reference:
                return e
        return store.entries[0] if store.entries else None

    def candidates(self, store: ComparisonStore) -> list[CompareEntry]:
        ref = self.reference(store)
        return [e for e in store.entries if ref is None or e.key != ref.key]

    def pair(self, store: ComparisonStore) -> tuple[CompareEntry, CompareEntry] | None:
        """(design, reference), or None with fewer than two entries."""
        ref, options = self.reference(store), self.candidates(store)
        if ref is None or not options:
            return None
        design = next((e for e in options if e.key == self.design.value), options[0])
        return design, ref

    def scenarios(self, store: ComparisonStore) -> tuple[Scenario, Scenario] | None:
        pair = self.pair(store)
        return None if pair is None else (store.run_scenario(pair[0]), store.run_scenario(pair[1]))

    def current_key(self) -> str | None:
        s = self.scenarios(self.state.compare.value)
        return None if s is None else check_key(s[0], s[1], self.worlds.value, SEEDS_PER_WORLD)

    def current(self) -> RobustnessCheck | None:
        """The last check, if it checked what the comparison holds now."""
        r = self.result.value
        return r if r is not None and r.key == self.current_key() else None

    # -- cost ---------------------------------------------------------------------------------------------
    def student_years(self) -> int:
        s = self.scenarios(self.state.compare.value)
        if s is None:
            return 0
        return sum(x.district.students for x in s) * s[0].run.years * self.worlds.value * SEEDS_PER_WORLD

    def estimate(self) -> float:
        """Seconds the check should take: every run at this session's pace, spread over the pool's workers."""
        s = self.scenarios(self.state.compare.value)
        if s is None:
            return 0.0
        pace = getattr(self.state, "seconds_per_student_year", ESTIMATE_SECONDS_PER_STUDENT_YEAR)
        total = 0.0
        for x in s:
            x = x.model_copy(deep=True)
            x.run.seeds = self.worlds.value * SEEDS_PER_WORLD
            total += estimate_seconds(x, pace)
        pool = worker_pool()
        return total / (pool.workers if pool is not None else 1)

    def why_not(self) -> str:
        """Why the check cannot run now ('' if it can)."""
        store = self.state.compare.value
        s = self.scenarios(store)
        if s is None:
            return "Add a design and a reference (★) to the comparison first."
        try:
            for x in s:
                check_limits(x)
        except SimulationLimit as exc:
            return str(exc)
        if MAX_CHECK_STUDENT_YEARS and self.student_years() > MAX_CHECK_STUDENT_YEARS:
            return (f"{self.worlds.value} worlds of this district are more than this dashboard runs in one check; "
                    "choose fewer worlds, or use `portfolio-sim robustness DESIGN --against REFERENCE` "
                    "(docs/UNCERTAINTY.md).")
        return ""

    # -- running ------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Run the check in the session's worker thread (its runs in the server's worker pool)."""
        state = self.state
        if state.controller.busy:
            return False
        why = self.why_not()
        if why:
            state._error(why)
            return False
        store = state.compare.value
        design_entry, ref_entry = self.pair(store)
        design, reference = store.run_scenario(design_entry), store.run_scenario(ref_entry)
        worlds, seeds = self.worlds.value, SEEDS_PER_WORLD
        key = check_key(design, reference, worlds, seeds)
        label = f"Robustness check, {design_entry.label} vs {ref_entry.label}"

        def job(h: JobHandle) -> str:
            t0 = time.perf_counter()
            pool = worker_pool()
            run = pool_runner(pool, h, label) if pool is not None else local_runner(h, label)
            detail = robustness_detail(design, reference, worlds, seeds, root=store.settings.seed,
                                       years=design.run.years, run=run)
            seconds = time.perf_counter() - t0
            check = RobustnessCheck(key, design_entry.label, ref_entry.label, worlds, seeds, design.run.years,
                                    store.settings.seed, detail.worlds.shape[1], detail, seconds,
                                    pool.workers if pool is not None else 1)
            h.publish(("robustness", check), force=True)
            return f"Checked across {worlds} plausible worlds in {seconds:.0f} s."

        return state.controller.start("compare", job, message=f"{label}: starting...")


__all__ = ["DEFAULT_WORLDS", "RobustnessCheck", "RobustnessOffer", "SEEDS_PER_WORLD", "WORLD_CHOICES",
           "check_key", "headline", "run_world", "sentences"]
