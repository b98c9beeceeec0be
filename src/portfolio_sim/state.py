"""Model state as numpy arrays: one row per student slot, household or school.

Agents (`portfolio_sim.agents`) are thin views onto these rows, so every mechanism can work on whole
arrays at once: a Chicago-size district (~360,000 students, ~640 schools) runs without a per-student
Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from portfolio_sim.scenario import DOMAINS

# School sectors. Autonomous = DISTRICT_RUN, PARTNER_LED or PARTNER_RUN (seed 003, "Categories").
TRADITIONAL, DISTRICT_RUN, PARTNER_LED, PARTNER_RUN, CHARTER = 0, 1, 2, 3, 4
SECTOR_NAMES = ("traditional", "district_run", "partner_led", "partner_run", "charter")
CATEGORY_SECTOR = {"district_run": DISTRICT_RUN, "partner_led": PARTNER_LED, "partner_run": PARTNER_RUN}
N_DOMAINS = len(DOMAINS)
STAFFING, ACADEMIC, BUDGET, OPERATIONS = range(N_DOMAINS)

OUTSIDE = -1      # a student enrolled outside the district (private school, moved away)
INACTIVE = -1     # grade of an unused student slot


@dataclass
class Students:
    """Per-student-slot arrays. Slots are recycled: a graduate's slot may hold a new kindergartner."""

    household: np.ndarray     # int32, the household (Family) the slot belongs to
    grade: np.ndarray         # int8, 0 (K) to 12; -1 = inactive slot
    school: np.ndarray        # int32, school index, or OUTSIDE
    low_income: np.ndarray    # bool, from the household
    baseline: np.ndarray      # float32, the student's long-run achievement level without school effects
    achievement: np.ndarray   # float32, achievement in student-level SD units
    displaced: np.ndarray     # bool, their school closed: they choose again next year

    @property
    def active(self) -> np.ndarray:
        return self.grade >= 0

    def __len__(self) -> int:
        return len(self.grade)


@dataclass
class Schools:
    """Per-school arrays (district schools and charters). New schools append rows; closed schools keep
    theirs with `open = False`, so indexes are stable for the whole run."""

    x: np.ndarray
    y: np.ndarray
    band: np.ndarray                 # int8 grade band
    capacity: np.ndarray             # int32 seats
    sector: np.ndarray               # int8, one of the sector codes above
    is_open: np.ndarray              # bool
    opened_year: np.ndarray          # int32, year the school opened (0 = existed at start)
    base_quality: np.ndarray         # float64 persistent effectiveness of the school's model (SD/yr)
    leader_quality: np.ndarray       # float64 principal quality (standardized)
    leader_trained: np.ndarray       # bool, came through the autonomous-leader pipeline
    teacher_share: np.ndarray        # float64 share of teachers who are excellent
    operator: np.ndarray             # int32 operator index, -1 none
    need: np.ndarray                 # float64 (S, 4): what the school's plan needs, per domain, sums to 1
    granted: np.ndarray              # float64 (S, 4) autonomy granted per domain
    rollback: np.ndarray             # float64 (S, 4) share of the grant taken back by reversals
    effective: np.ndarray            # float64 (S, 4) autonomy the school can actually use
    alignment: np.ndarray            # float64 fit of granted autonomies to the school's goals
    capacity_score: np.ndarray       # float64 0-1 capacity to use autonomy
    autonomy_year: np.ndarray        # int32 year autonomy began (-1 never)
    pre_autonomy_pct: np.ndarray     # float64 rating percentile when autonomy began (new schools: 50)
    contract_year: np.ndarray        # int32 start of the current contract/MOU term (-1 none)
    value_added: np.ndarray          # float64 true effectiveness this year (SD/yr)
    rating: np.ndarray               # float64 latest measured rating (NaN = not rated yet)
    rating_pct: np.ndarray           # float64 latest rating as a percentile of the reference distribution
    years_below: np.ndarray          # int32 consecutive years below the bar
    low_enroll_years: np.ndarray     # int32 consecutive years under the viability line
    enrollment: np.ndarray           # int32
    low_income_enrolled: np.ndarray  # int32
    mean_achievement: np.ndarray     # float64 mean achievement of enrolled students
    resources: np.ndarray            # float64 per-pupil resources for instruction ($)
    startup_left: np.ndarray         # int32 years of start-up funding left
    opted_out: np.ndarray            # bool, buys services outside the district
    status_year: np.ndarray          # int32 year the current status (sector/restart) began
    name: list[str]

    def __len__(self) -> int:
        return len(self.band)

    @property
    def autonomous(self) -> np.ndarray:
        return (self.sector >= DISTRICT_RUN) & (self.sector <= PARTNER_RUN)

    @property
    def district(self) -> np.ndarray:
        """Open schools the district governs (everything but charters)."""
        return self.is_open & (self.sector != CHARTER)

    def append(self, n: int, **values: np.ndarray) -> np.ndarray:
        """Add `n` school rows (defaults: zeros/False/-1 as fits), then set the given columns.

        Returns the new row indexes.
        """
        start = len(self)
        for f in fields(self):
            if f.name == "name":
                continue
            arr = getattr(self, f.name)
            fill = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
            if f.name in ("operator", "autonomy_year", "contract_year"):
                fill[:] = -1
            if f.name in ("rating", "rating_pct", "pre_autonomy_pct"):
                fill[:] = np.nan
            setattr(self, f.name, np.concatenate([arr, fill]))
        self.name.extend([""] * n)
        rows = np.arange(start, start + n)
        for key, val in values.items():
            getattr(self, key)[rows] = val
        return rows


def empty_schools() -> Schools:
    ints = ("band", "sector")
    kw = {}
    for f in fields(Schools):
        if f.name == "name":
            kw[f.name] = []
        elif f.name in ints:
            kw[f.name] = np.zeros(0, dtype=np.int8)
        elif f.name in ("is_open", "leader_trained", "opted_out"):
            kw[f.name] = np.zeros(0, dtype=bool)
        elif f.name in ("need", "granted", "rollback", "effective"):
            kw[f.name] = np.zeros((0, N_DOMAINS))
        elif f.name in ("capacity", "opened_year", "operator", "autonomy_year", "contract_year", "years_below",
                        "low_enroll_years", "enrollment", "low_income_enrolled", "startup_left", "status_year"):
            kw[f.name] = np.zeros(0, dtype=np.int32)
        else:
            kw[f.name] = np.zeros(0, dtype=np.float64)
    return Schools(**kw)


@dataclass
class Operators:
    """Per-operator arrays: CMOs, nonprofit partners (seed 003, "Engage school operators")."""

    quality: np.ndarray       # float64 effectiveness of the operator's school model (SD/yr)
    capacity: np.ndarray      # int32 schools it can run now
    appetite: np.ndarray      # float64 0-1 how eagerly it applies
    active: np.ndarray        # bool, still working in the district
    hostile_years: np.ndarray  # int32 consecutive years of hostile climate
    founded_year: np.ndarray  # int32
    name: list[str]

    def __len__(self) -> int:
        return len(self.quality)

    def append(self, quality: float, capacity: int, appetite: float, year: int, name: str) -> int:
        self.quality = np.append(self.quality, quality)
        self.capacity = np.append(self.capacity, np.int32(capacity))
        self.appetite = np.append(self.appetite, appetite)
        self.active = np.append(self.active, True)
        self.hostile_years = np.append(self.hostile_years, np.int32(0))
        self.founded_year = np.append(self.founded_year, np.int32(year))
        self.name.append(name)
        return len(self) - 1
