"""One browser session's state and the actions on it.

The page creates one :class:`DashboardState` per browser session (per page, with `solara.use_memo`),
so two people never see each other's levers, runs or comparisons. Every piece the page shows is a
`solara.Reactive` attribute; actions (load a preset, move a lever, run, step, take workshop decisions,
cancel, compare, upload)
are plain methods, usable and testable without a browser. Runs go through a
:class:`~portfolio_sim.dashboard.simulation.RunController` (a worker thread), which publishes
snapshots back into the reactive values.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import Any

import solara

from portfolio_sim.dashboard import levers
from portfolio_sim.dashboard.compare import ComparisonStore
from portfolio_sim.dashboard.exports import UploadResult, parse_upload
from portfolio_sim.dashboard.robust import RobustnessOffer
from portfolio_sim.dashboard.simulation import (ESTIMATE_SECONDS_PER_STUDENT_YEAR, MAX_SEEDS, JobHandle,
                                                RunController, RunStatus, Simulation, SimulationLimit,
                                                check_limits, estimate_seconds, max_step_seeds, run_in_workers,
                                                worker_pool)
from portfolio_sim.decisions import RULES
from portfolio_sim.errors import ScenarioError
from portfolio_sim.scenario import Scenario, list_presets, load_scenario

DEFAULT_PRESET = "baseline"
# Presets say 1 seed (the CLI default); bands need several. PORTFOLIO_SIM_DASHBOARD_SEEDS changes it.
DEFAULT_SEEDS = max(2, int(os.environ.get("PORTFOLIO_SIM_DASHBOARD_SEEDS", "5") or 5))
AUTO_RUN_STUDENT_YEARS = 6_000_000   # run automatically after loading when students x seeds x years is below

TABS = ("overview", "charts", "map", "events", "compare", "export")


def _with_default_seeds(s: Scenario) -> Scenario:
    s = s.model_copy(deep=True)
    if s.run.seeds < 2:
        s.run.seeds = DEFAULT_SEEDS
    return s


def _size(s: Scenario) -> int:
    return s.district.students * s.run.seeds * s.run.years


class DashboardState:
    """Everything one session sees and does."""

    def __init__(self, preset: str | None = DEFAULT_PRESET, autorun: bool = True):
        self.presets: list[tuple[str, str]] = list_presets()
        self.preset = solara.reactive(None)          # preset name, or None after an upload
        self.source = solara.reactive("")            # "preset baseline" / "uploaded my.toml"
        self.base = solara.reactive(Scenario())      # what the levers started from (for "changed")
        self.scenario = solara.reactive(Scenario())  # the levers as they are now
        self.lever_errors = solara.reactive({})      # path -> message
        self.status = solara.reactive(RunStatus())   # changes when a job starts, ends or fails
        self.live_status = RunStatus()               # every progress report (not reactive)
        self._progress_sinks: set = set()
        self.result = solara.reactive(None)          # RunSnapshot of the current simulation
        self.compare = solara.reactive(ComparisonStore())
        self.upload = solara.reactive(None)          # UploadResult of the last upload
        self.notice = solara.reactive(None)          # (kind, text) shown above the results
        self.decisions = solara.reactive(RULES)      # the workshop players' decisions for the next step
        self.tab = solara.reactive("overview")
        self.chart_section = solara.reactive("All")
        self.map_year = solara.reactive(-1)          # -1: the latest year
        self.map_seed = solara.reactive(0)           # index into result.seeds
        self.map_color = solara.reactive("type")
        self.selected_school = solara.reactive(None)
        self.event_types = solara.reactive([])
        self.event_years = solara.reactive(None)     # (first, last) simulated year, None: all
        self.event_seed = solara.reactive(0)         # 0: all seeds, else seed number (1-based)
        self.event_text = solara.reactive("")
        self.compare_metrics = solara.reactive(["mean_achievement", "achievement_gap", "political_support",
                                                "autonomy_effective", "enrollment_autonomous", "cum_closures"])
        self.diff_metric = solara.reactive("mean_achievement")
        self.robustness = RobustnessOffer(self)     # the comparison's check across plausible worlds
        self._sim: Simulation | None = None
        # Which loaded scenario (preset / upload) the results belong to: results of another scenario are
        # never shown under this one's name (the page says "not run yet" instead).
        self._loaded = 0
        self._result_loaded = 0
        self.seconds_per_student_year = ESTIMATE_SECONDS_PER_STUDENT_YEAR   # calibrated by every finished run
        self._compare_lock = threading.Lock()
        self.controller = RunController(on_status=self._on_status, on_result=self._on_result)
        if preset:
            self.load_preset(preset, autorun=autorun)

    # -- results coming back from the worker ----------------------------------------------------------
    def _on_status(self, status: RunStatus) -> None:
        """Job transitions (start, done, cancelled, error) re-render the page; progress in between only
        goes to the progress sinks (the progress bars), which is cheap."""
        previous = self.status.value
        self.live_status = status
        if (status.state, status.kind, status.error) != (previous.state, previous.kind, previous.error):
            self.status.value = status
        for sink in list(self._progress_sinks):
            try:
                sink(status)
            except Exception:  # noqa: BLE001 - a closed widget must not stop the run
                self._progress_sinks.discard(sink)

    def add_progress_sink(self, sink) -> Any:
        """Call `sink(RunStatus)` on every progress report; returns a function that removes it."""
        self._progress_sinks.add(sink)
        return lambda: self._progress_sinks.discard(sink)
    def _on_result(self, value: Any) -> None:
        kind = value[0]
        if kind == "main":
            if len(value) > 2:
                self._result_loaded = value[2]
            self.result.value = value[1]
        elif kind == "compare":
            _, key, snap = value
            with self._compare_lock:
                self.compare.value = self.compare.value.with_result(key, snap)
        elif kind == "robustness":
            self.robustness.result.value = value[1]

    # -- scenario --------------------------------------------------------------------------------------
    def _set_scenario(self, scenario: Scenario, source: str, preset: str | None, autorun: bool) -> None:
        self._loaded += 1
        self.base.value = scenario.model_copy(deep=True)
        self.scenario.value = scenario
        self.source.value = source
        self.preset.value = preset
        self.lever_errors.value = {}
        self.selected_school.value = None
        self.map_year.value = -1
        if autorun and _size(scenario) <= AUTO_RUN_STUDENT_YEARS:
            self.run(replace_running=True)

    def load_preset(self, name: str, autorun: bool = True) -> bool:
        try:
            s = _with_default_seeds(load_scenario(name))
            check_limits(s)
        except (ScenarioError, SimulationLimit) as exc:
            self.notice.value = ("error", str(exc))
            return False
        self.notice.value = None
        self.upload.value = None
        self._set_scenario(s, f"preset {name}", name, autorun)
        return True

    def apply_upload(self, name: str, data: bytes | None, size: int | None = None, autorun: bool = True
                     ) -> UploadResult:
        res = parse_upload(name, data, size)
        if res.ok and res.scenario is not None:
            scenario = _with_default_seeds(res.scenario)
            if scenario.run.seeds != res.scenario.run.seeds:
                res = UploadResult(True, f"{res.message} It says {res.scenario.run.seeds} seed; the dashboard runs "
                                         f"{scenario.run.seeds} to show the spread (change Seeds to go back).",
                                   scenario)
            self.upload.value = res
            self.notice.value = None
            self._set_scenario(scenario, f"uploaded {name}", None, autorun)
        else:
            self.upload.value = res
        return res

    @property
    def preset_description(self) -> str:
        return dict(self.presets).get(self.preset.value or "", "")

    def set_lever(self, path: str, value: Any) -> bool:
        """Change one lever (validated by the schema). False, with the reason in lever_errors, if not."""
        errors = dict(self.lever_errors.value)
        try:
            if path == "run.seeds" and levers.coerce(levers.spec(path), value) > MAX_SEEDS:
                raise levers.LeverError(f"Seeds: the dashboard runs at most {MAX_SEEDS}; use `portfolio-sim run` "
                                        "for more.")
            new = levers.set_value(self.scenario.value, path, value)
        except levers.LeverError as exc:
            errors[path] = str(exc)
            self.lever_errors.value = errors
            return False
        errors.pop(path, None)
        self.lever_errors.value = errors
        if new != self.scenario.value:
            self.scenario.value = new
        return True

    def reset_lever(self, path: str) -> None:
        self.set_lever(path, levers.get_value(self.base.value, path))

    def reset_all(self) -> None:
        s = self.base.value.model_copy(deep=True)
        s.run = self.scenario.value.run.model_copy()
        self.scenario.value = s
        self.lever_errors.value = {}

    def changed(self) -> list[str]:
        return levers.changed(self.scenario.value, self.base.value)

    def set_name(self, name: str) -> None:
        name = name.strip()[:80]
        if name:
            s = self.scenario.value.model_copy(deep=True)
            s.name = name
            self.scenario.value = s

    @property
    def results_of_other_scenario(self) -> bool:
        """The results shown come from a scenario loaded before the current one (another preset or upload)."""
        return self.result.value is not None and self._result_loaded != self._loaded

    def estimate(self, scenario: Scenario | None = None) -> float:
        """Seconds a run of `scenario` (default: the current levers) takes, from the last run's pace."""
        s = scenario or self.scenario.value
        return estimate_seconds(s, self.seconds_per_student_year)

    def quick_look(self) -> tuple[int, int]:
        """(years, seeds) of a smaller run that shows the shape in a few seconds."""
        s = self.scenario.value
        seeds = max(1, min(s.run.seeds, 2, max_step_seeds(s)))
        return min(s.run.years, 5), seeds

    def run_quick_look(self) -> bool:
        years, seeds = self.quick_look()
        self.set_lever("run.years", years)
        self.set_lever("run.seeds", seeds)
        return self.run()

    def step_limit(self) -> str:
        """Why Step cannot run with the current levers ('' if it can)."""
        s = self.scenario.value
        if s.run.seeds > max_step_seeds(s):
            return (f"Step keeps every seed's district in memory: with {s.district.students:,} students it can "
                    f"hold at most {max_step_seeds(s)} seed(s) (you have {s.run.seeds}). Set Seeds to "
                    f"{max_step_seeds(s)} to step, or Run to the end.")
        return ""

    @property
    def results_stale(self) -> bool:
        r = self.result.value
        return r is not None and r.scenario.to_toml() != self.scenario.value.to_toml()

    # -- running ---------------------------------------------------------------------------------------
    def _error(self, text: str) -> None:
        self._on_status(RunStatus(state="error", error=text))

    def run(self, replace_running: bool = False) -> bool:
        """Run the current levers to the last year (continuing a stepped or cancelled run)."""
        if self.controller.busy and not replace_running:
            return False
        if self.lever_errors.value:
            self._error("Fix the lever values marked in red first.")
            return False
        try:
            check_limits(self.scenario.value)
        except SimulationLimit as exc:
            self._error(str(exc))
            return False
        scenario = self.scenario.value
        loaded = self._loaded

        def job(h: JobHandle) -> str:
            sim = self._simulation_for(scenario)
            if sim.done:
                h.publish(("main", sim.snapshot(), loaded), force=True)
                return f"Already complete: {len(sim.seeds)} seed(s) x {sim.years} years."
            # Partial results while it runs (a short run shows its result once, at the end): after a
            # seed, or after a year of a slow seed.
            pool = worker_pool()
            if pool is not None:      # in worker processes: the server's process stays free for the pages
                finished = run_in_workers(
                    sim, pool, should_stop=h.stopped, on_progress=h.progress, on_queue=h.queued,
                    on_seed_done=lambda: h.publish(lambda: ("main", sim.snapshot(), loaded), interval=1.5))
            else:
                finished = sim.run(
                    should_stop=h.stopped, on_progress=h.progress,
                    on_seed_done=lambda: h.publish(lambda: ("main", sim.snapshot(), loaded), interval=1.5),
                    on_year=lambda: h.publish(lambda: ("main", sim.snapshot(), loaded), interval=2.5))
            h.publish(lambda: ("main", sim.snapshot(), loaded), force=True)
            if not finished:
                return "Cancelled."
            self._calibrate(sim)
            return f"Finished {len(sim.seeds)} seed(s) x {sim.years} years in {sim.elapsed:.1f} s of simulation."

        return self.controller.start("run", job, message="Starting the run...", replace_running=replace_running)

    def _calibrate(self, sim: Simulation) -> None:
        from portfolio_sim.dashboard.simulation import ESTIMATE_SETUP_SECONDS_PER_STUDENT
        students = sim.scenario.district.students * len(sim.seeds)
        per_year = (sim.elapsed - students * ESTIMATE_SETUP_SECONDS_PER_STUDENT) / (students * sim.years or 1)
        if sim.elapsed > 0.5 and per_year > 0:
            self.seconds_per_student_year = per_year

    def _simulation_for(self, scenario: Scenario) -> Simulation:
        if self._sim is not None and self._sim.key == scenario.to_toml():
            return self._sim
        if self._sim is not None:
            self._sim.discard()
        self._sim = Simulation(scenario)
        return self._sim

    def step(self) -> bool:
        """Advance every seed one year (starting a new simulation if the levers changed)."""
        if self.controller.busy:
            return False
        if self.lever_errors.value:
            self._error("Fix the lever values marked in red first.")
            return False
        scenario = self.scenario.value
        try:
            check_limits(scenario)
            sim = self._sim if (self._sim is not None and self._sim.key == scenario.to_toml()) else None
            if sim is not None and sim.done:      # finished: stepping starts again from the first year
                sim.discard()
                self._sim = sim = None
            probe = sim or Simulation(scenario)
            ok, why = probe.can_step()
            if not ok:
                self._error(why)
                return False
        except SimulationLimit as exc:
            self._error(str(exc))
            return False

        decided = self.decisions.value
        loaded = self._loaded

        def job(h: JobHandle) -> str:
            s = self._simulation_for(scenario)
            done = s.step_year(should_stop=h.stopped, on_progress=h.progress, decisions=decided)
            h.publish(("main", s.snapshot(), loaded), force=True)
            if not done:
                return "Cancelled."
            self.decisions.value = RULES      # each year the room decides afresh
            took = f" in {s.last_step_seconds:.2f} s" if s.last_step_seconds is not None else ""
            said = f" Decided: {decided.describe()}." if not decided.by_rule else ""
            return f"Stepped to year {s.year} of {s.years}{took}.{said}"

        return self.controller.start("step", job, message="Stepping one year...")

    def set_decision(self, name: str, value: str) -> None:
        """One of the workshop players' decisions for the next year stepped (`portfolio_sim.decisions`)."""
        self.decisions.value = replace(self.decisions.value, **{name: value})

    def set_school_decision(self, school: int, point: str, value: str) -> None:
        """The players' choice for one school at `point` ("rule": as decided for all) next year."""
        self.decisions.value = self.decisions.value.with_school_choice(school, point, value)

    def cancel(self) -> bool:
        return self.controller.cancel()

    def shutdown(self) -> None:
        """The page went away: stop the worker and free the models."""
        self.controller.cancel()
        self.controller.join(timeout=5)
        if self._sim is not None:
            self._sim.discard()
            self._sim = None

    # -- comparison --------------------------------------------------------------------------------------
    def _update_compare(self, fn) -> bool:
        with self._compare_lock:
            try:
                self.compare.value = fn(self.compare.value)
            except ValueError as exc:
                self.notice.value = ("warning", str(exc))
                return False
        self.notice.value = None
        return True

    def _init_compare_settings(self, store: ComparisonStore, s: Scenario) -> ComparisonStore:
        if store.entries:
            return store
        return store.with_settings(years=s.run.years, seeds=s.run.seeds, seed=s.run.seed)

    def compare_add_current(self, label: str = "") -> bool:
        s = self.scenario.value
        changed = bool(self.changed())
        default = s.name + (" (edited)" if changed else "")
        result = self.result.value if (self.result.value is not None and not self.results_stale) else None
        src = ("current levers" + (f", from {self.source.value}" if self.source.value else ""))
        return self._update_compare(
            lambda st: self._init_compare_settings(st, s).add(label or default, s, src, result=result))

    def compare_add_preset(self, name: str) -> bool:
        try:
            s = _with_default_seeds(load_scenario(name))
        except ScenarioError as exc:
            self.notice.value = ("error", str(exc))
            return False
        return self._update_compare(lambda st: self._init_compare_settings(st, s).add(name, s, f"preset {name}"))

    def compare_quick_example(self) -> bool:
        """'MOU-based district-run' vs 'partner-run under contract' in the current district, through the
        same forced board flip, on the same seeds."""
        base = self.scenario.value.model_copy(deep=True)
        note = ""
        if not base.has_autonomy_policy:
            base.eligibility.schools = "turnaround"
            base.eligibility.conversions_per_year = max(2, base.district.schools // 15)
            base.eligibility.turnaround_percentile = max(base.eligibility.turnaround_percentile, 30.0)
            for d in ("staffing", "academic", "budget", "operations"):
                setattr(base.autonomy, d, 0.8)
            base.central_office.autonomy_office = True
            note = " (with a turnaround conversion policy added: the current levers have none)"
        mou = base.model_copy(deep=True)
        mou.name = "MOU-based district-run"
        mou.governance.category, mou.governance.legal_basis = "district_run", "mou"
        mou.governance.collective_bargaining, mou.governance.operator_employs_staff = "elect_to_work", False
        contract = base.model_copy(deep=True)
        contract.name = "partner-run under contract"
        contract.governance.category, contract.governance.legal_basis = "partner_run", "contract"
        contract.governance.operator_employs_staff = True
        years = max(base.run.years, 8)
        flip = min(5, years - 3)

        def build(st: ComparisonStore) -> ComparisonStore:
            st = st.clear().with_settings(years=years, seeds=max(base.run.seeds, DEFAULT_SEEDS), seed=base.run.seed,
                                          override_flip=True, flip_year=flip)
            src = f"current district{note}"
            return st.add(mou.name, mou, src).add(contract.name, contract, src)

        ok = self._update_compare(build)
        if ok:
            self.notice.value = ("info", f"Comparison set up: both designs in this district, board flips in year "
                                         f"{flip}, same seeds. Press 'Run comparison'.")
        return ok

    def compare_remove(self, key: int) -> None:
        self._update_compare(lambda st: st.remove(key))

    def compare_rename(self, key: int, label: str) -> None:
        self._update_compare(lambda st: st.rename(key, label))

    def compare_clear(self) -> None:
        self._update_compare(lambda st: st.clear())

    def compare_settings(self, **changes: Any) -> None:
        self._update_compare(lambda st: st.with_settings(**changes))

    def compare_reference(self, key: int | None) -> None:
        self._update_compare(lambda st: st.with_reference(key))

    def run_comparison(self) -> bool:
        store = self.compare.value
        pending = store.pending()
        if not pending:
            self.notice.value = ("info", "Every scenario in the comparison is up to date." if store.entries
                                 else "Add two or more scenarios first.")
            return False
        if self.controller.busy:
            return False
        try:
            jobs = [(e.key, e.label, store.run_scenario(e)) for e in pending]
            for _, _, s in jobs:
                check_limits(s)
        except SimulationLimit as exc:
            self._error(str(exc))
            return False
        total = sum(s.run.seeds * s.run.years for _, _, s in jobs)

        def job(h: JobHandle) -> str:
            offset = 0
            for i, (key, label, scenario) in enumerate(jobs, 1):
                sim = Simulation(scenario, label=label)

                def progress(done: int, _total: int, msg: str, offset=offset, i=i, label=label) -> None:
                    h.progress(offset + done, total, f"{label} ({i} of {len(jobs)}): {msg}")

                pool = worker_pool()
                finished = (run_in_workers(sim, pool, should_stop=h.stopped, on_progress=progress, on_queue=h.queued)
                            if pool is not None else sim.run(should_stop=h.stopped, on_progress=progress))
                if not finished:
                    sim.discard()
                    return "Cancelled."
                h.publish(("compare", key, sim.snapshot()), force=True)
                offset += scenario.run.seeds * scenario.run.years
            return f"Compared {len(jobs)} scenario(s) on the same {jobs[0][2].run.seeds} seeds."

        return self.controller.start("compare", job, message="Starting the comparison...")
