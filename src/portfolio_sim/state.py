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
    theirs with `is_open = False`, so indexes are stable for the whole run. What each column holds,
    its dtype, fill for new rows and its owner: `SCHOOL_COLUMNS`."""

    x: np.ndarray
    y: np.ndarray
    band: np.ndarray
    capacity: np.ndarray
    sector: np.ndarray
    is_open: np.ndarray
    opened_year: np.ndarray
    base_quality: np.ndarray
    leader_quality: np.ndarray
    leader_trained: np.ndarray
    teacher_share: np.ndarray
    operator: np.ndarray
    need: np.ndarray
    granted: np.ndarray
    rollback: np.ndarray
    effective: np.ndarray
    alignment: np.ndarray
    capacity_score: np.ndarray
    implementation_fit: np.ndarray
    autonomy_year: np.ndarray
    pre_autonomy_pct: np.ndarray
    contract_year: np.ndarray
    value_added: np.ndarray
    rating: np.ndarray
    rating_pct: np.ndarray
    years_below: np.ndarray
    low_enroll_years: np.ndarray
    enrollment: np.ndarray
    low_income_enrolled: np.ndarray
    mean_achievement: np.ndarray
    resources: np.ndarray
    startup_left: np.ndarray
    opted_out: np.ndarray
    status_year: np.ndarray
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
        """Add `n` school rows (each column's `fill`), then set the given columns. Returns the new rows."""
        start = len(self)
        for c in SCHOOL_COLUMNS:
            arr = getattr(self, c.name)
            setattr(self, c.name, np.concatenate([arr, np.full((n, *c.shape), c.fill, dtype=c.dtype)]))
        self.name.extend([""] * n)
        rows = np.arange(start, start + n)
        for key, val in values.items():
            getattr(self, key)[rows] = val
        return rows


@dataclass(frozen=True)
class Column:
    """One state column: a per-row array of `Students`, `Schools` or `Operators`, or a model attribute.

    `owner` is the module whose functions write it during a run (`setup`: written once, when the model is
    built; `lifecycle`: portfolio_sim.lifecycle; otherwise a mechanism's name). Where a second writer
    is genuinely needed, `also` names it and the reason is in `meaning`. The mechanism contracts
    (portfolio_sim.mechanisms, `Mechanism.writes`) must agree with this table; a test checks both the
    table and what each mechanism really changes.
    """

    name: str
    dtype: str
    fill: object
    meaning: str
    owner: str
    also: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()   # per-row shape past the first axis, e.g. (4,) for the autonomy domains


D4 = (N_DOMAINS,)
NAN = float("nan")

SCHOOL_COLUMNS: tuple[Column, ...] = (
    Column("x", "float64", 0.0, "location (unit square)", "lifecycle"),
    Column("y", "float64", 0.0, "location (unit square)", "lifecycle"),
    Column("band", "int8", 0, "grade band", "lifecycle"),
    Column("capacity", "int32", 0, "seats; enrollment adds seats where a student has no seat anywhere in the "
           "band (`place_administratively`)", "lifecycle", also=("enrollment",)),
    Column("sector", "int8", TRADITIONAL, "one of the sector codes above", "lifecycle"),
    Column("is_open", "bool", False, "open this year", "lifecycle"),
    Column("opened_year", "int32", 0, "year the school opened (0 = existed at start)", "lifecycle"),
    Column("base_quality", "float64", 0.0, "persistent effectiveness of the school's model (SD/yr); a new "
           "operator's model moves it at conversion (authorizing) as at replacement (lifecycle)", "lifecycle",
           also=("authorizing",)),
    Column("leader_quality", "float64", 0.0, "principal quality (standardized); `talent.new_leaders` fills "
           "vacancies wherever they arise", "talent"),
    Column("leader_trained", "bool", False, "came through the autonomous-leader pipeline", "talent"),
    Column("teacher_share", "float64", 0.0, "share of teachers who are excellent", "talent"),
    Column("operator", "int32", -1, "operator index, -1 none", "lifecycle"),
    Column("need", "float64", 0.0, "what the school's plan needs, per domain, sums to 1", "lifecycle", shape=D4),
    Column("granted", "float64", 0.0, "autonomy granted per domain; cleared when a school reverts", "autonomy",
           also=("lifecycle",), shape=D4),
    Column("rollback", "float64", 0.0, "share of the grant taken back by reversals (politics) and restored by "
           "a pro board; reset by a new grant (autonomy) or a reversion (lifecycle)", "politics",
           also=("autonomy", "lifecycle"), shape=D4),
    Column("effective", "float64", 0.0, "autonomy the school can actually use; cleared when it reverts",
           "autonomy", also=("lifecycle",), shape=D4),
    Column("alignment", "float64", 0.0, "fit of granted autonomies to the school's goals", "autonomy"),
    Column("capacity_score", "float64", 0.0, "0-1 capacity to use autonomy", "autonomy"),
    Column("implementation_fit", "float64", 0.0, "how well this school's staff and plan take to autonomy, "
           "drawn at the grant (standard normal; unobserved school-level heterogeneity)", "autonomy"),
    Column("autonomy_year", "int32", -1, "year autonomy began (-1 never)", "lifecycle"),
    Column("pre_autonomy_pct", "float64", NAN, "rating percentile when autonomy began (new schools: 50)",
           "lifecycle"),
    Column("contract_year", "int32", -1, "start of the current contract/MOU term (-1 none)", "lifecycle"),
    Column("value_added", "float64", 0.0, "true effectiveness this year (SD/yr)", "achievement"),
    Column("rating", "float64", NAN, "latest measured rating (NaN = not rated yet)", "accountability"),
    Column("rating_pct", "float64", NAN, "latest rating as a percentile of the reference distribution",
           "accountability"),
    Column("years_below", "int32", 0, "consecutive years below the bar (accountability); a new status "
           "starts again at 0 (lifecycle)", "accountability", also=("lifecycle",)),
    Column("low_enroll_years", "int32", 0, "consecutive years under the viability line", "finance"),
    Column("enrollment", "int32", 0, "students enrolled this year", "enrollment"),
    Column("low_income_enrolled", "int32", 0, "low-income students enrolled (counted after growth)",
           "achievement"),
    Column("mean_achievement", "float64", 0.0, "mean achievement of enrolled students (after growth)",
           "achievement"),
    Column("resources", "float64", 0.0, "per-pupil resources for instruction ($); a launch adds its first "
           "year's start-up money (authorizing)", "finance", also=("authorizing",)),
    Column("startup_left", "int32", 0, "years of start-up funding left (set at launch by authorizing)",
           "finance", also=("authorizing",)),
    Column("opted_out", "bool", False, "buys services outside the district", "finance"),
    Column("status_year", "int32", 0, "year the current status (sector/restart) began", "lifecycle"),
)

STUDENT_COLUMNS: tuple[Column, ...] = (
    Column("household", "int32", 0, "the household (Family) the slot belongs to", "setup"),
    Column("grade", "int8", INACTIVE, "0 (K) to 12; -1 = inactive slot", "enrollment"),
    Column("school", "int32", OUTSIDE, "school index, or OUTSIDE", "enrollment"),
    Column("low_income", "bool", False, "from the household (set on entry)", "achievement"),
    Column("baseline", "float32", 0.0, "long-run achievement level without school effects",
           "achievement"),
    Column("achievement", "float32", 0.0, "achievement in student-level SD units", "achievement"),
    Column("displaced", "bool", False, "their school closed (lifecycle): they choose again next year",
           "enrollment", also=("lifecycle",)),
)

OPERATOR_COLUMNS: tuple[Column, ...] = (
    Column("quality", "float64", 0.0, "effectiveness of the operator's school model (SD/yr)", "authorizing"),
    Column("capacity", "int32", 0, "schools it can run now", "authorizing"),
    Column("appetite", "float64", 0.0, "0-1 how eagerly it applies", "authorizing"),
    Column("active", "bool", True, "still working in the district", "authorizing"),
    Column("hostile_years", "int32", 0, "consecutive years of hostile climate", "authorizing"),
    Column("founded_year", "int32", 0, "year it entered", "authorizing"),
)

# Model-level state the yearly loop writes (attributes of PortfolioModel), with their owners.
MODEL_STATE: tuple[Column, ...] = (
    Column("year", "int", 0, "the school year just simulated (0: the starting state)", "model"),
    Column("events", "list[Event]", [], "the event log (portfolio_sim.lifecycle.Event)", "lifecycle",
           also=("politics", "authorizing", "accountability", "finance")),
    Column("pending", "list[dict]", [], "approved applications waiting to launch", "authorizing",
           also=("lifecycle",)),
    Column("closed_this_year", "list[int]", [], "schools closed this year (still in this year's panel)",
           "lifecycle"),
    Column("geo_dirty", "bool", False, "a school opened or closed: enrollment recomputes the zones",
           "lifecycle", also=("enrollment",)),
    Column("geo", "Geography", None, "zones and consideration sets", "enrollment"),
    Column("funding_factor", "float", 1.0, "per-pupil funding after budget shocks (politics cuts it, "
           "finance restores a share a year)", "politics", also=("finance",)),
    Column("office_active", "bool", None, "the autonomy office exists", "politics"),
    Column("board", "Board", None, "support, stance, term (the Board agent)", "politics"),
    Column("pipeline_available", "int", 0, "trained leaders left to place this year", "talent",
           also=("authorizing",)),
    Column("teacher_exposure", "float[S]", None, "excellent-teacher exposure per school (reach included)",
           "talent", also=("lifecycle",)),
    Column("perceived_z", "float[S]", None, "published rating as a z-score, what families see",
           "accountability", also=("lifecycle",)),
    Column("rating_history", "list[float[S]]", [], "each year's published percentiles", "accountability"),
    Column("leader_history", "list[float[S]]", [], "each year's principal evaluations (leader quality at "
           "rating time; what a fair comparison matches on)", "accountability"),
    Column("entrants", "int[]", None, "this year's new kindergartners (slots)", "enrollment"),
    Column("last_choice", "dict", None, "who chose actively this year and where they landed", "enrollment"),
    Column("last_growth", "float[N]", None, "each student's growth this year", "achievement"),
    Column("year_stats", "dict", None, "enrollment's yearly counters (choice and exits)", "enrollment"),
    Column("decisions", "Decisions", None, "this year's workshop decisions (set by `Run.advance`)", "run"),
    Column("metrics", "dict", None, "this year's yearly metrics", "collect"),
    Column("last_metrics", "dict", None, "what next year's politics reacts to", "collect"),
    Column("panel", "list[dict]", [], "the school panel, a year at a time", "collect"),
    Column("school_agents", "list[School]", [], "the Mesa School agents, one per school row", "lifecycle"),
)

# Who appends rows (and their names) to a table during a run: `<table>.rows`, `<table>.name` in contracts.
ROW_OWNERS = {"schools": "lifecycle", "operators": "authorizing"}


def empty_schools() -> Schools:
    return Schools(**{c.name: np.zeros((0, *c.shape), dtype=c.dtype) for c in SCHOOL_COLUMNS}, name=[])


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
