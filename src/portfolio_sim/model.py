"""PortfolioModel: one district, one scenario, one seed, stepped a school year at a time.

The year (see docs/ODD.md, "Process overview and scheduling"): the mechanisms each module of
`portfolio_sim.mechanisms` declares (`MECHANISM`), in their declared order (`mechanisms.year()`):

1. politics        support, budget shocks, elections, reversals            (mechanisms/politics.py)
2. authorizing     launches, operators, applications, new schools          (mechanisms/authorizing.py)
3. enrollment      ageing, entry, choice, assignment, exits                (mechanisms/enrollment.py)
4. schooling       effective autonomy, talent, value-added, growth         (autonomy, talent, achievement)
5. accountability  ratings, warnings, interventions, renewals              (mechanisms/accountability.py)
6. finance         budgets from enrollment, viability closures             (mechanisms/finance.py)
7. data collection model-level metrics, the school panel, the event log    (metrics.py)

Status changes of schools (open, convert, close, restart, replace operator, revert) and the event log
belong to `portfolio_sim.lifecycle`; every piece of state and its owner is declared in `portfolio_sim.state`.

Randomness: each mechanism draws from its own stream spawned from the run's seed (its declared
`stream_index`), so two scenarios run
with the same seed (and the same district levers) share the same district and, where their mechanisms
agree, the same draws
(common random numbers): differences between them come from the levers, not from luck.
"""

from __future__ import annotations

import copy
from typing import Any

import mesa
import numpy as np
import pandas as pd
from scipy.special import ndtri

from portfolio_sim import lifecycle, mechanisms
from portfolio_sim.agents import Board, CentralOffice, Family, Operator, School
from portfolio_sim.decisions import RULES
from portfolio_sim.district import GRADES, DistrictCache, band_of_grade, build_district, entry_grades
from portfolio_sim.geography import Geography
from portfolio_sim.mechanisms import accountability, achievement, autonomy, enrollment, finance
from portfolio_sim.metrics import (METRIC_COLUMNS, collect, district_enrollment, new_year_stats, politics_signals,
                                   school_panel)
from portfolio_sim.scenario import Scenario
from portfolio_sim.state import (CHARTER, OUTSIDE, TRADITIONAL, Operators, Students, empty_schools)


def rng_streams(seed: int) -> dict[str, np.random.Generator]:
    """One random stream per set-up step and per mechanism (`mechanisms.stream_indexes`): child `i` of
    the run's SeedSequence, as `SeedSequence(seed).spawn(n)[i]` would give."""
    return {name: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
            for name, i in mechanisms.stream_indexes().items()}


class PortfolioModel(mesa.Model):
    """A school district that may grow autonomous district schools.

    Args:
        scenario: the levers (defaults: the schema's defaults, a traditional district).
        seed: the run's seed (default: `scenario.run.seed`). Same scenario + seed = same results.
        districts: a `district.DistrictCache` to take the generated district from (same results, less
            set-up when runs share district levers and seed).
    """

    def __init__(self, scenario: Scenario | None = None, seed: int | None = None,
                 districts: DistrictCache | None = None):
        scenario = scenario if scenario is not None else Scenario()
        seed = int(scenario.run.seed if seed is None else seed)
        super().__init__(seed=seed)
        self.scenario = scenario
        self.seed = seed
        self.streams = rng_streams(seed)
        self.mechanisms = mechanisms.year()
        for column in (c for m in self.mechanisms for c in m.state):   # state a mechanism declares itself
            setattr(self, column.name, copy.deepcopy(column.fill))
        self.year = 0
        self.year_stats = new_year_stats()
        self.events: list[lifecycle.Event] = []
        self.panel: list[dict] = []
        self.closed_this_year: list[int] = []
        self.pending: list[dict[str, Any]] = []
        self.rating_history: list[np.ndarray] = []
        self.funding_factor = 1.0
        self.office_active = bool(scenario.central_office.autonomy_office)
        self.decisions = RULES            # this year's workshop decisions (portfolio_sim.decisions)
        self.pipeline_available = 0
        self.geo_dirty = False          # a school opened or closed: zones need recomputing
        self.last_metrics: dict[str, Any] = {}
        self._previous: dict[str, float] = {}

        data = (districts.build(scenario.district, seed, self.streams["district"], scenario.run.years)
                if districts is not None else build_district(scenario.district, self.streams["district"],
                                                             scenario.run.years))
        self.band_structure = data.band_structure
        self.n_bands = data.n_bands
        self.band_of_grade = band_of_grade(data.band_structure)
        self.entry_grade = entry_grades(data.band_structure)
        self.hh_xy = data.hh_xy
        self.hh_low_income = data.hh_low_income
        self.nb_xy, self.nb_low_income, self.hh_nb = data.nb_xy, data.nb_low_income, data.hh_nb
        self._init_students(data)
        self._init_schools(data)
        self._init_operators()
        self.geo = Geography(self.hh_xy, len(self.schools), self.n_bands, scenario.choice.consideration_set)
        self.geo.update(self.schools)
        self._init_agents()
        self._initial_state(data)
        self.datacollector = mesa.DataCollector(
            model_reporters={name: (lambda m, k=name: m.metrics[k]) for name in METRIC_COLUMNS})
        self._collect()
        self.initial_satisfaction = self.last_metrics["family_satisfaction"]

    # -- set-up ------------------------------------------------------------------------------------
    def _init_students(self, data) -> None:
        n = len(data.st_grade)
        self.students = Students(
            household=data.st_household, grade=data.st_grade.copy(), school=np.full(n, OUTSIDE, dtype=np.int32),
            low_income=np.zeros(n, dtype=bool), baseline=np.zeros(n, dtype=np.float32),
            achievement=np.zeros(n, dtype=np.float32), displaced=np.zeros(n, dtype=bool))
        active = np.flatnonzero(data.st_grade >= 0)
        achievement.new_students(self, active, self.streams["init"])
        self.kindergarten_cohort = int(round((data.st_grade >= 0).sum() / GRADES))
        self.entrants = np.zeros(0, dtype=np.int64)
        self.last_growth = np.zeros(n)
        # Slots are sorted by household, so a household's slots are one contiguous range.
        if np.any(np.diff(data.st_household) < 0):
            raise ValueError("student slots must be sorted by household")
        self._hh_start = np.searchsorted(data.st_household, np.arange(len(data.hh_nb) + 1))

    def household_slots(self, household: int) -> np.ndarray:
        return np.arange(self._hh_start[household], self._hh_start[household + 1])

    def household_bounds(self, households: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First slot and one past the last slot of each household in `households` (vectorised)."""
        return self._hh_start[households], self._hh_start[households + 1]

    def _init_schools(self, data) -> None:
        rng, scn = self.streams["init"], self.scenario
        n = len(data.sc_band)
        self.schools = empty_schools()
        self.schools.append(
            n, x=data.sc_xy[:, 0], y=data.sc_xy[:, 1], band=data.sc_band, capacity=data.sc_capacity,
            sector=np.where(data.sc_charter, CHARTER, TRADITIONAL), is_open=True, base_quality=data.sc_quality,
            leader_quality=rng.standard_normal(n), teacher_share=scn.talent.excellent_teacher_share,
            need=autonomy.draw_needs(rng, n), status_year=0)
        self.schools.name[:] = data.sc_name
        self.talent_pool_share = scn.talent.excellent_teacher_share
        self.teacher_exposure = self.schools.teacher_share.copy()
        self.reference_resources = scn.district.per_pupil_funding * (1 - scn.central_office.service_cost_share)
        self.schools.resources[:] = self.reference_resources

    def _init_operators(self) -> None:
        d, rng = self.scenario.district, self.streams["operators"]
        k = d.operators
        self.operators = Operators(
            quality=d.operator_quality_mean + d.operator_quality_sd * rng.standard_normal(k),
            capacity=np.full(k, d.operator_capacity, dtype=np.int32), appetite=rng.uniform(self.scenario.assumptions.setup.operator_appetite_low,
                                                                  self.scenario.assumptions.setup.operator_appetite_high, k),
            active=np.ones(k, dtype=bool), hostile_years=np.zeros(k, dtype=np.int32),
            founded_year=np.zeros(k, dtype=np.int32), name=[f"Operator {i + 1}" for i in range(k)])

    def _init_agents(self) -> None:
        self.school_agents = School.create_rows(self, len(self.schools))
        self.operator_agents = Operator.create_rows(self, len(self.operators))
        self.families = Family.create_rows(self, len(self.hh_xy))
        self.central_office = CentralOffice(self)
        self.board = Board(self, self.scenario.politics.initial_support, self.scenario.politics.board_seats)

    def _initial_state(self, data) -> None:
        """Year 0: last year's published ratings, everyone's current school, settled achievement."""
        sc, acc = self.schools, self.scenario.accountability
        rng = self.streams["init"]
        sc.value_added = achievement.school_value_added(self)
        # Last year's measured growth: value-added plus sampling noise of roughly a full school's students.
        noise = np.hypot(acc.rating_noise, self.scenario.assumptions.achievement.sigma / np.sqrt(np.maximum(sc.capacity, 1)))
        first = sc.value_added + noise * rng.standard_normal(len(sc))
        self._set_reference(first[sc.sector != CHARTER])
        sc.rating = first
        sc.rating_pct = accountability.to_percentile(self, first)
        self._apply_known_ratings(data)

        everyone = np.flatnonzero(self.students.grade >= 0)
        enrollment.assign(self, everyone, np.zeros(len(everyone), dtype=np.int8))
        self._settle_buildings()
        achievement.warm_start(self, rng)
        self.update_school_counts()
        if acc.framework == "status":
            status = sc.mean_achievement + acc.rating_noise * rng.standard_normal(len(sc))
            self._set_reference(status[(sc.sector != CHARTER) & (sc.enrollment > 0)])
            sc.rating = status
            sc.rating_pct = accountability.to_percentile(self, status)
            self._apply_known_ratings(data)
        self.rating_history.append(sc.rating_pct.copy())
        finance.fund_schools(self)
        district = sc.sector != CHARTER
        self.reference_resources = float(np.median(sc.resources[district])) if district.any() else 1.0
        self.year_stats["exits_outside"] = 0   # the starting allocation is not an exit

    def _settle_buildings(self) -> None:
        """Under open or unified choice, start with buildings the regime has had time to shape: the
        generator sizes them for attendance zones, so after the year-0 allocation each under-used district
        school is consolidated `setup.building_adjustment` of the way to its enrollment plus
        `district.capacity_slack` (at least one seat): the district has given up space nobody chose.
        Popular buildings do not grow, and no student loses a seat (capacity stays >= enrollment).
        Loaded (CSV) districts keep their real buildings; zones keep the generator's."""
        scn, sc = self.scenario, self.schools
        share = scn.assumptions.setup.building_adjustment
        if scn.choice.policy == "zones" or share == 0.0 or scn.district.schools_csv:
            return
        self.update_school_counts(enrollment_only=True)
        zoned = sc.capacity.copy()
        wanted = np.minimum(zoned, np.maximum(np.ceil(sc.enrollment * (1.0 + scn.district.capacity_slack)), 1))
        settled = np.ceil((1.0 - share) * zoned + share * wanted).astype(np.int32)
        sc.capacity = np.where(sc.sector != CHARTER, settled, zoned).astype(np.int32)

    def _apply_known_ratings(self, data) -> None:
        """Ratings given in a district CSV are what families saw last year."""
        sc = self.schools
        if data.sc_rating is not None:
            known = ~np.isnan(data.sc_rating)
            sc.rating_pct = np.where(known, np.clip(data.sc_rating, 0.5, 99.5), sc.rating_pct)
        self.refresh_perceived_quality()

    def _set_reference(self, ratings: np.ndarray) -> None:
        ratings = ratings[~np.isnan(ratings)]
        self.rating_reference = (float(ratings.mean()), float(max(ratings.std(), 1e-3)))

    # -- the year ------------------------------------------------------------------------------------
    def step(self) -> None:
        """One school year: every declared mechanism in the order of the year (`mechanisms.year()`:
        politics, authorizing, enrollment, schooling [autonomy, talent, achievement], accountability,
        finance), then data collection."""
        self.year += 1
        self.year_stats = new_year_stats()
        self.closed_this_year = []
        for mechanism in self.mechanisms:
            mechanism.step(self)
        self._collect()

    def update_school_counts(self, enrollment_only: bool = False) -> None:
        """Enrollment per school and, unless `enrollment_only`, low-income enrollment and mean
        achievement (in the yearly order nothing reads those two between enrollment and achievement)."""
        st, sc = self.students, self.schools
        # Students not enrolled count in an extra bin past the last school (dropped): bincount adds
        # in input order, so each school's sums are the same as over the enrolled students alone.
        s = np.where((st.grade >= 0) & (st.school >= 0), st.school, len(sc))
        n = np.bincount(s, minlength=len(sc) + 1)[:-1]
        sc.enrollment = n.astype(np.int32)
        if enrollment_only:
            return
        sc.low_income_enrolled = np.bincount(s, weights=st.low_income, minlength=len(sc) + 1)[:-1].astype(np.int32)
        total = np.bincount(s, weights=st.achievement, minlength=len(sc) + 1)[:-1]
        sc.mean_achievement = np.where(n > 0, total / np.maximum(n, 1), np.nan)

    def refresh_perceived_quality(self) -> None:
        """What families and operators can see: the published rating as a z-score. A school with no
        track record shows `choice.unrated_school_z` (the prior: 0 = as an average school), or, with
        `choice.unrated_school_view` = "operator_record", its operator's record where it has one."""
        sc, ch = self.schools, self.scenario.choice
        unrated = np.isnan(sc.rating_pct)
        z = ndtri(np.clip(np.where(unrated, 50.0, sc.rating_pct), 0.5, 99.5) / 100.0)
        z[unrated] = ch.unrated_school_z
        if ch.unrated_school_view == "operator_record":
            for s in np.flatnonzero(unrated & (sc.operator >= 0)):
                peers = ~unrated & sc.is_open & (sc.operator == sc.operator[s])
                if peers.any():
                    z[s] = z[peers].mean()
        self.perceived_z = z

    # -- the event log (portfolio_sim.lifecycle) ---------------------------------------------------
    def log(self, kind: str, school: int | None, cause: str, operator: int | None = None) -> None:
        """Record an event (`lifecycle.log`): the mechanisms' handle on the one event log."""
        lifecycle.log(self, kind, school, cause, operator)

    # -- outputs -------------------------------------------------------------------------------------
    def _collect(self) -> None:
        where = district_enrollment(self)
        self.metrics = collect(self, where)
        self.last_metrics = politics_signals(self, self.metrics, self._previous, where)
        self._previous = self.metrics
        self.datacollector.collect(self)
        self.panel.append(school_panel(self))

    def yearly_frame(self) -> pd.DataFrame:
        return self.datacollector.get_model_vars_dataframe().reset_index(drop=True)

    def schools_frame(self) -> pd.DataFrame:
        return pd.concat([pd.DataFrame(p) for p in self.panel], ignore_index=True)

    def events_frame(self) -> pd.DataFrame:
        return lifecycle.events_frame(self.events)

    def release(self) -> None:
        """Drop Mesa 3.3's class-level registry entry for this model (`Agent._ids`), which otherwise
        keeps every model ever created alive: a leak when many runs share a process."""
        mesa.Agent._ids.pop(self, None)
