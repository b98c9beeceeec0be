"""The scenario schema: every policy lever, its default, bounds and plain-language description.

This module is the single source of truth for the CLI, the dashboard, sweeps and the docs
(`docs/SCENARIO.md` is generated from it by `portfolio-sim schema --markdown`). Groups follow
DOMAIN.md; each group carries the *Critical Design Question* of seed 003 ("Critical Design
Questions" table) that its levers answer, so a policymaker recognises it.

Scenario files are TOML. A file may say ``extends = "baseline.toml"`` (a path relative to the file,
or a preset name) and override any field. Unknown keys are errors. Nothing user-supplied is eval'd:
TOML is parsed by :mod:`tomllib`, and ``--set PATH=VALUE`` values are parsed as TOML literals.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from portfolio_sim.assumptions import Assumptions
from portfolio_sim.errors import ScenarioError
from portfolio_sim.inputs import load_toml_file, parse_toml, shown

DOMAINS = ("staffing", "academic", "budget", "operations")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def lever(default: Any, description: str, ge: float | None = None, le: float | None = None,
          unit: str = "") -> Any:
    """A scenario field: a default, bounds and a one-line description a policymaker can read."""
    extra = {"unit": unit} if unit else None
    return Field(default, ge=ge, le=le, description=description, json_schema_extra=extra)


class District(_Group):
    """Size, geography and starting conditions of the (synthetic or loaded) district."""

    question: ClassVar[str] = "What district are we in? (size, neighbourhoods, starting school quality)"

    students: int = lever(20_000, "Resident school-age students (K-12) at the start (from the CSVs when schools_csv is set).",
                          100, 2_000_000,
                          "students")
    schools: int = lever(40, "District schools at the start, charters excluded (from the CSV when schools_csv is set).",
                         3, 5_000, "schools")
    band_structure: Literal["k5-68-912", "k8-912"] = lever(
        "k5-68-912", "Grade bands schools serve: elementary/middle/high, or K-8 and high schools.")
    neighbourhoods: int = lever(36, "Neighbourhoods on the district map (rounded to a square grid).",
                                1, 2_500)
    low_income_share: float = lever(0.55, "Share of students from low-income households.", 0.0, 1.0)
    income_segregation: float = lever(
        0.5, "How strongly neighbourhoods are segregated by income (0 mixed, 1 fully sorted).", 0.0, 1.0)
    initial_quality_sd: float = lever(
        0.10, "Spread of school effectiveness at the start (SD of value-added, achievement SD/year).",
        0.0, 0.5, "SD/yr")
    quality_income_correlation: float = lever(
        -0.3, "Correlation of starting school quality with neighbourhood income (negative: poorer areas "
        "have weaker schools).", -1.0, 1.0)
    capacity_slack: float = lever(0.15, "Spare seats above starting enrollment, as a share.", 0.0, 2.0)
    students_per_household: float = lever(1.6, "Mean students per household (siblings share a home).",
                                          1.0, 4.0)
    cohort_change: float = lever(
        0.0, "Yearly change in the entering kindergarten cohort (negative: enrollment decline, seed 001).",
        -0.15, 0.15, "share/yr")
    per_pupil_funding: float = lever(11_000.0, "Per-pupil funding that follows the student.", 1_000.0,
                                     50_000.0, "$")
    fixed_cost_per_school: float = lever(
        700_000.0, "Fixed yearly cost of keeping a school open (leadership, building).", 0.0, 1e7, "$")
    min_viable_share: float = lever(
        0.35, "A school enrolled below this share of its capacity for two years closes or consolidates.",
        0.0, 1.0)
    charter_schools: int = lever(0, "Charter schools outside district control at the start.", 0, 2_000,
                                 "schools")
    charter_quality: float = lever(0.0, "Mean effectiveness of charter schools (SD/yr).", -0.5, 0.5, "SD/yr")
    operators: int = lever(3, "Operators (CMOs, nonprofit partners) able to run schools.", 0, 200)
    operator_capacity: int = lever(
        4, "Schools each operator can run at the start; grows when its schools do well.", 1, 500, "schools")
    operator_quality_mean: float = lever(0.03, "Mean quality of operators' school models (SD/yr).",
                                         -0.5, 0.5, "SD/yr")
    operator_quality_sd: float = lever(0.06, "Spread of operator quality (SD/yr).", 0.0, 0.5, "SD/yr")
    schools_csv: str | None = lever(
        None, "Optional CSV of real schools (see docs/DISTRICT_CSV.md); replaces the synthetic schools.")
    neighbourhoods_csv: str | None = lever(
        None, "Optional CSV of neighbourhood populations by income group (with schools_csv).")


class Autonomy(_Group):
    """Which decisions move to schools, and how much (seed 003, Table 2)."""

    question: ClassVar[str] = "What autonomies are schools authorized to exercise? (seed 003, Critical Design Questions)"

    staffing: float = lever(0.0, "Staffing autonomy granted: hire, roles, evaluation, PD (0-1).", 0.0, 1.0)
    academic: float = lever(0.0, "Academic/program autonomy: curriculum, assessment, schedule, calendar.",
                            0.0, 1.0)
    budget: float = lever(0.0, "Budget autonomy: per-pupil discretion, compensation, services bought.",
                          0.0, 1.0)
    operations: float = lever(0.0, "Operations autonomy: opt in/out of district services, facilities.",
                              0.0, 1.0)
    waivers: Literal["a_la_carte", "prescribed"] = lever(
        "a_la_carte", "A la carte: each school picks the waivers that fit its goals (Denver, Fulton); "
        "prescribed: one set for all (LA Pilot).")
    max_effect: float = lever(
        0.10, "Yearly value-added gain of a school using full, aligned autonomy at full capacity, before "
        "the budget multiplier (below the capacity break-even the same autonomy loses value-added; sized so "
        "that conversions land in EVIDENCE.md E-AUT-1/5/2's ranges).",
        0.0, 0.5, "SD/yr")
    budget_multiplier: float = lever(
        0.5, "How much budget autonomy multiplies the value of the other domains (reallocated savings); "
        "it multiplies gains only, not the loss of a school below the capacity break-even.",
        0.0, 2.0)
    dip_depth: float = lever(
        0.08, "First-year implementation dip with no planning, no start-up money and little capacity "
        "(EVIDENCE.md E-TIME-2: about -0.03 SD in a typical first year).", 0.0, 0.5, "SD/yr")
    maturation_years: float = lever(
        3.0, "Years for autonomy's benefit to reach its steady state (a linear ramp from the launch year; "
        "EVIDENCE.md E-TIME-1: about 3).", 0.5, 10.0, "years")


class Governance(_Group):
    """Who governs autonomous schools and what protects their autonomy (seed 003, "Categories")."""

    question: ClassVar[str] = ("Does an organization independent of the district make decisions? What legal mechanism "
                "documents the relationship? (seed 003)")

    category: Literal["district_run", "partner_led", "partner_run"] = lever(
        "district_run", "District-run (waivers, district oversees), partner-led (operator manages, district "
        "employs staff), or partner-run (full governance shift, revocable only for cause).")
    legal_basis: Literal["state_law", "contract", "district_policy", "mou"] = lever(
        "district_policy", "What protects autonomy, strongest to weakest: state law, contract, district "
        "policy, MOU.")
    collective_bargaining: Literal["district_cba", "elect_to_work", "separate_agreement"] = lever(
        "district_cba", "Labour terms for district-employed staff: the district CBA, school elect-to-work "
        "agreements (LA Pilot), or a separate agreement (Springfield).")
    operator_employs_staff: bool = lever(
        False, "Partner-run only: the operator employs staff, so the district CBA does not apply.")
    cba_staffing_cap: float = lever(
        0.3, "Most staffing autonomy usable under the full district CBA.", 0.0, 1.0)


class Eligibility(_Group):
    """Which schools may become autonomous, and how fast (seed 003, Table 1)."""

    question: ClassVar[str] = "What is the purpose of the initiative: turnaround, innovation, expansion? (seed 003)"

    schools: Literal["none", "turnaround", "all", "new_only", "high_performers"] = lever(
        "none", "Schools eligible for autonomy: none (traditional district), low performers (turnaround), "
        "all, only new schools, or high performers.")
    turnaround_percentile: float = lever(
        25.0, "Turnaround eligibility: rated below this percentile.", 1.0, 100.0, "percentile")
    high_performer_percentile: float = lever(
        70.0, "High-performer eligibility: rated at or above this percentile.", 0.0, 99.0, "percentile")
    conversions_per_year: int = lever(
        0, "Most existing schools converted to autonomous status per year.", 0, 500, "schools/yr")
    new_schools_per_year: int = lever(
        0, "Most new autonomous schools opened per year where seats are short or weak.", 0, 200,
        "schools/yr")
    target_share: float = lever(
        1.0, "Stop converting once this share of district schools is autonomous.", 0.0, 1.0)


class CentralOffice(_Group):
    """The district's own machinery: autonomy office, buy-in, services (seed 000 lessons 2-4)."""

    question: ClassVar[str] = ("What internal district structures would most effectively support autonomous schools? "
                "(seed 003)")

    autonomy_office: bool = lever(
        False, "A dedicated office that supports autonomous schools and buffers district pushback.")
    office_strength: float = lever(0.7, "How well the autonomy office buffers and supports (0-1).", 0.0, 1.0)
    buy_in: float = lever(
        0.5, "Central-office staff belief in the theory of action; low buy-in means interference.", 0.0, 1.0)
    services: Literal["mandatory", "a_la_carte", "public_enterprise"] = lever(
        "mandatory", "District services: mandatory for all, a la carte fee-for-service, or public "
        "enterprises competing with outside providers.")
    service_cost_share: float = lever(
        0.15, "Share of per-pupil funding spent on district services.", 0.0, 0.5)


class Accountability(_Group):
    """Authorizing like charters and a performance framework that closes or replaces failing schools."""

    question: ClassVar[str] = ("How are autonomous schools authorized, renewed and held accountable? (seed 000 lessons "
                "5-6)")

    approval_rigor: float = lever(
        0.5, "Rigor of approving applicants (0 approves all, 1 only strong plans and operators).", 0.0, 1.0)
    framework: Literal["growth", "status"] = lever(
        "growth", "Ratings on academic growth (value-added) or on status (mean achievement).")
    closure_percentile: float = lever(
        5.0, "Schools rated below this percentile are 'below the bar' (0 turns interventions off).",
        0.0, 50.0, "percentile")
    consecutive_years: int = lever(3, "Years below the bar in a row before intervention.", 1, 10, "years")
    intervention: Literal["close", "restart", "replace_operator"] = lever(
        "restart", "What happens to a school below the bar too long: close, restart with a new leader, or "
        "hand it to another operator.")
    applies_to: Literal["autonomous", "all"] = lever(
        "all", "Interventions apply to autonomous schools only, or to all district schools.")
    contract_term: int = lever(5, "Length of an autonomous school's contract or MOU.", 1, 15, "years")
    renewal_percentile: float = lever(
        20.0, "At renewal, schools rated below this percentile are not renewed.", 0.0, 100.0, "percentile")
    min_years_rated: int = lever(2, "Years a new school runs before it has a rating.", 0, 5, "years")
    enrollment_grace_years: int = lever(
        2, "Years a new school (or a school in a new status) runs before it can be counted under-enrolled; "
        "closure for low enrollment also needs finance's years below the line after that.", 0, 10, "years")
    rating_noise: float = lever(
        0.04, "Noise in a school's measured rating (SD/yr), before averaging over its students.", 0.0, 0.5,
        "SD/yr")


class Choice(_Group):
    """How students are assigned to schools, and what families know (seed 003 "Student enrollment")."""

    question: ClassVar[str] = "What are the rules for student enrollment and transfers? (seed 003)"

    policy: Literal["zones", "zone_plus_open", "unified"] = lever(
        "zones", "Attendance zones only; zone guarantee plus district-wide seats; or unified choice with a "
        "deferred-acceptance lottery.")
    max_choices: int = lever(8, "Most schools a family may rank.", 1, 20, "schools")
    sibling_priority: bool = lever(True, "Siblings of enrolled students get priority.")
    zone_priority: bool = lever(True, "Zone residents get priority at their zone school.")
    displaced_priority: bool = lever(
        False, "Students displaced by a closure get priority at every school they rank, after continuing "
        "students and before siblings (as closure plans that promise displaced students a better seat).")
    participation: float = lever(
        0.6, "Share of families who actively rank schools (others take the nearest).", 0.0, 1.0)
    information_quality: float = lever(
        0.5, "How accurately families see school quality (0 rumour, 1 exact last-year rating).", 0.0, 1.0)
    weight_quality: float = lever(1.0, "Weight families put on measured quality.", 0.0, 10.0)
    weight_distance: float = lever(1.0, "Weight families put on travel distance.", 0.0, 10.0)
    weight_autonomous: float = lever(0.0, "Extra appeal of autonomous schools to families.", -3.0, 3.0)
    consideration_set: int = lever(15, "Nearest schools a family considers (plus its zone school).", 2,
                                   200, "schools")
    outside_option_appeal: float = lever(
        0.0, "Appeal of leaving the district (private school, moving away); at 0 about one family in ten "
        "prefers it to its nearby school.", -5.0, 5.0)
    switch_rate: float = lever(
        0.04, "Share of dissatisfied families re-entering choice in a non-transition year.", 0.0, 0.5)
    unrated_school_view: Literal["operator_record", "prior"] = lever(
        "operator_record", "How families judge a school with no rating yet: by its operator's record where "
        "it has one (else the prior), or always by the prior (choice.unrated_school_z).")
    unrated_school_z: float = lever(
        0.0, "How families regard a school with no track record, as a rating z-score (0: like an average "
        "school; negative: wary of the unknown; positive: drawn to the new).", -2.0, 2.0, "rating z")


class Talent(_Group):
    """Leaders and teachers: a limited, shared supply (seed 003 "Develop a talent strategy")."""

    question: ClassVar[str] = "How will schools identify, develop and retain excellent leaders and teachers? (seed 003)"

    leader_pipeline: float = lever(
        0.2, "Investment in developing autonomous-school leaders (seed 000 lesson 7).", 0.0, 1.0)
    excellent_teacher_share: float = lever(
        0.2, "Share of the district's teachers who are excellent; shared by all schools.", 0.0, 1.0)
    differentiated_staffing: float = lever(
        0.0, "Differentiated staffing that extends excellent teachers' reach (0-1).", 0.0, 1.0)
    leader_turnover: float = lever(0.12, "Yearly chance a principal leaves.", 0.0, 0.6)
    incubator: bool = lever(
        False, "A quarterback/incubator organization that develops new operators (The Mind Trust).")


class Implementation(_Group):
    """Planning time, start-up money and community engagement (seed 003 "Design and implementation")."""

    question: ClassVar[str] = "What time, funding and community involvement will implementation have? (seed 003)"

    planning_months: int = lever(
        12, "Planning time from approval to launch (seed 003 recommends 12-18 months).", 0, 36, "months")
    startup_funding: float = lever(
        0.0, "Start-up funding per pupil in a new autonomous school's first two years.", 0.0, 5_000.0, "$")
    community_engagement: float = lever(
        0.3, "Depth of community engagement; softens political backlash from conversions and closures (0-1).",
        0.0, 1.0)
    governance_councils: bool = lever(
        False, "School governance councils (parents, staff) with trained, certified members.")


class Politics(_Group):
    """The board and the climate for autonomy (seed 003: "Interest ... tends to ebb and flow")."""

    question: ClassVar[str] = "How are autonomies established and protected when leadership changes? (seed 003)"

    initial_support: float = lever(0.6, "Political support for the autonomy agenda at the start (0-1).",
                                   0.0, 1.0)
    election_cycle: int = lever(2, "Years between board elections (each fills half the seats: terms are "
                                   "two cycles long, staggered).", 1, 10, "years")
    board_seats: int = lever(7, "Seats on the school board; the majority decides.", 3, 15, "seats")
    results_sensitivity: float = lever(1.0, "How much support follows autonomous schools' results.", 0.0,
                                       5.0)
    closure_backlash: float = lever(1.0, "How much closures erode support.", 0.0, 5.0)
    enrollment_loss_sensitivity: float = lever(1.0, "How much district enrollment loss erodes support.",
                                               0.0, 5.0)
    union_strength: float = lever(0.5, "Organized opposition to autonomy from labour (0-1).", 0.0, 1.0)
    budget_shock_probability: float = lever(0.1, "Yearly chance of a budget shock.", 0.0, 1.0)
    budget_shock_size: float = lever(0.05, "Cut to per-pupil funding in a shock.", 0.0, 0.5)
    reversal_threshold: float = lever(
        0.4, "Below this support a hostile board majority rolls back policy/MOU autonomy (it also acts under "
        "budget pressure or union mobilisation).", 0.0, 1.0)
    rollback_intensity: float = lever(0.6, "How much unprotected autonomy a reversal takes back (0-1).",
                                      0.0, 1.0)
    scheduled_flip_year: int = lever(
        0, "Force an election giving every seat to a hostile member in this year, e.g. to compare designs "
        "through one flip (0 = none).",
        0, 50, "year")
    volatility: float = lever(0.02, "Year-to-year noise in support (SD, as a share of opinion near 0.5).",
                              0.0, 0.5)


class Run(_Group):
    """How long and how many replicates."""

    question: ClassVar[str] = "How long, and how many replicates?"

    years: int = lever(10, "Simulated years.", 1, 60, "years")
    seeds: int = lever(1, "Replicates (independent seeds derived from the root seed).", 1, 10_000)
    seed: int = lever(1, "Root seed; the same scenario and seed give identical results.", 0, 2**32 - 1)
    start_year: int = lever(2025, "Calendar label of the first simulated year.", 1900, 2200)


class Scenario(BaseModel):
    """A full scenario: a name, a description, where its numbers come from, and every lever."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("unnamed", description="Short name of the scenario.")
    description: str = Field("", description="What the scenario represents.")
    sources: list[str] = Field(default_factory=list, description="Seed passages and public figures used.")
    district: District = Field(default_factory=District)
    autonomy: Autonomy = Field(default_factory=Autonomy)
    governance: Governance = Field(default_factory=Governance)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    central_office: CentralOffice = Field(default_factory=CentralOffice)
    accountability: Accountability = Field(default_factory=Accountability)
    choice: Choice = Field(default_factory=Choice)
    talent: Talent = Field(default_factory=Talent)
    implementation: Implementation = Field(default_factory=Implementation)
    politics: Politics = Field(default_factory=Politics)
    run: Run = Field(default_factory=Run)
    assumptions: Assumptions = Field(  # type: ignore[valid-type]
        default_factory=Assumptions,
        description="Declared coefficients of the mechanisms (docs/ASSUMPTIONS.md); defaults are the model's.")

    @field_validator("name", "description", "sources")
    @classmethod
    def _printable(cls, value: Any, info: Any) -> Any:
        """Names and texts reach terminals, reports and every dashboard screen: no control characters (a
        terminal escape would recolour or rewrite the screen); a description or source may break lines."""
        allowed = "" if info.field_name == "name" else "\n\t"
        for text in value if isinstance(value, list) else [value]:
            bad = next((c for c in text if unicodedata.category(c) == "Cc" and c not in allowed), None)
            if bad is not None:
                raise ValueError(f"contains the control character {bad!r} (printable text only"
                                 + (", with line breaks and tabs" if allowed else "") + ")")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.district.neighbourhoods_csv and not self.district.schools_csv:
            raise ValueError("district.neighbourhoods_csv needs district.schools_csv")
        setup = self.assumptions.setup
        if setup.operator_appetite_low > setup.operator_appetite_high:
            raise ValueError(f"assumptions.setup.operator_appetite_low ({setup.operator_appetite_low:g}) must not "
                             f"exceed assumptions.setup.operator_appetite_high ({setup.operator_appetite_high:g})")
        return self

    # -- convenience -----------------------------------------------------------------------------
    @property
    def has_autonomy_policy(self) -> bool:
        return self.eligibility.schools != "none" and (
            self.eligibility.conversions_per_year > 0 or self.eligibility.new_schools_per_year > 0)

    def granted_autonomy(self) -> dict[str, float]:
        return {d: getattr(self.autonomy, d) for d in DOMAINS}

    def to_toml(self) -> str:
        """The fully resolved scenario as TOML that `portfolio-sim run` accepts."""
        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


GROUPS: dict[str, type[_Group]] = {
    name: field.annotation for name, field in Scenario.model_fields.items()  # type: ignore[misc]
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Group)
}


# ------------------------------------------------------------------------------------------------
# Loading: TOML files with `extends`, overrides from the command line, clear errors.
# ------------------------------------------------------------------------------------------------

def presets_dir() -> Path:
    """Where the preset scenarios live: the repo's `scenarios/`, or the copy packaged in the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_presets", here.parent.parent / "scenarios"):
        if candidate.is_dir():
            return candidate
    raise ScenarioError("cannot find the preset scenarios directory")


def resolve_scenario_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A path to a scenario file, or a preset name such as `baseline` or `denver_innovation`."""
    raw = str(name_or_path)
    candidates = []
    p = Path(raw)
    if relative_to is not None and not p.is_absolute():
        candidates.append(relative_to / p)
    candidates.append(p)
    stem = raw[:-5] if raw.endswith(".toml") else raw
    if stem and "\x00" not in stem:
        candidates.append(presets_dir() / f"{Path(stem).name}.toml")
    for c in candidates:
        try:
            regular, special = c.is_file(), c.exists() and not c.is_dir()
        except (OSError, ValueError):   # a name too long for the file system, a NUL byte
            continue
        if regular:
            return c
        if special:
            raise ScenarioError(f"{shown_path(c)}: not a regular file (a device, pipe or socket); "
                                "allowed: a scenario file (TOML) or a preset name")
    names = ", ".join(sorted(x.stem for x in presets_dir().glob("*.toml")))
    raise ScenarioError(f"{shown_path(raw)}: no such scenario file or preset. Presets: {names}")


def shown_path(path: str | Path) -> str:
    """A user-given path for a message: cut when very long (a 300-character name would fill the screen)."""
    text = str(path)
    return text if len(text) <= 200 else text[:120] + f"...({len(text):,} characters)"


MAX_EXTENDS = 32              # files in one `extends` chain (the presets use at most 2)
PATH_LEVERS = (("district", "schools_csv"), ("district", "neighbourhoods_csv"))   # relative to their file


def _read_toml(path: Path) -> dict[str, Any]:
    return load_toml_file(path, "scenario file")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _note_origins(data: dict[str, Any], label: str, origins: dict[tuple[str, ...], str],
                  prefix: tuple[str, ...] = ()) -> None:
    """Record which file (or --set) set each field, at any depth (assumptions.politics.incumbency is
    three deep), so an error names the place to fix: a value belongs to the last place that set it, a
    table to the first (a child's `[assumptions.politics]` does not take over its parent's values)."""
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            origins[path] = origins.get(path, label)
            _note_origins(value, label, origins, path)
        else:
            origins[path] = label


def _origin(origins: dict[tuple[str, ...], str], loc: tuple[Any, ...]) -> str | None:
    """The place that set the value at `loc`, or the nearest table holding it."""
    key = tuple(str(p) for p in loc)
    for n in range(len(key), 0, -1):
        if key[:n] in origins:
            return origins[key[:n]]
    return None


def load_raw(path: Path, _seen: tuple[Path, ...] = (),
             origins: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """Read a scenario file and everything it extends, merged (no validation yet). Relative CSV paths
    are resolved against the folder of the file that gives them. `origins`, when given, is filled with
    (group, field) -> the file that set it."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ScenarioError(f"{path}: `extends` forms a cycle: {chain}")
    if len(_seen) >= MAX_EXTENDS:
        raise ScenarioError(f"{_seen[0]}: the `extends` chain is longer than {MAX_EXTENDS} files "
                            f"(reached {path}); allowed: at most {MAX_EXTENDS}")
    data = _read_toml(path)
    group = data.get("district")
    if isinstance(group, dict):
        for _, name in PATH_LEVERS:
            value = group.get(name)
            if isinstance(value, str) and value and "\x00" not in value and not Path(value).is_absolute():
                group[name] = str((path.parent / value).resolve())
    parent = data.pop("extends", None)
    if parent is None:
        if origins is not None:
            _note_origins(data, str(path), origins)
        return data
    if not isinstance(parent, str):
        raise ScenarioError(f"{path}: extends: must be a file name or preset name, got {shown(parent)}")
    try:
        parent_path = resolve_scenario_path(parent, relative_to=path.parent)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: extends = {shown(parent)}: {exc}") from None
    merged = _deep_merge(load_raw(parent_path, (*_seen, path), origins), data)
    if origins is not None:
        _note_origins(data, str(path), origins)
    return merged


def _text_field(keys: list[str]) -> bool:
    """True for a text field (name, description, a CSV path): a --set value there is taken as written."""
    model: Any = Scenario
    for k in keys[:-1]:
        field = model.model_fields.get(k)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return False
        model = field.annotation
    field = model.model_fields.get(keys[-1])
    return field is not None and field.annotation in (str, str | None)


class Override(str):
    """A PATH=VALUE override that came from a flag such as `--seeds 3` (`label`): messages name the flag
    the user typed, not a --set they did not."""

    label: str

    def __new__(cls, text: str, label: str) -> Override:
        obj = super().__new__(cls, text)
        obj.label = label
        return obj


def _set_label(text: str) -> str:
    return text.label if isinstance(text, Override) else f"--set {shown(text)}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`accountability.closure_percentile=10` -> (["accountability", "closure_percentile"], 10).

    The value is read as a TOML literal (numbers, booleans, quoted strings, arrays); a bare word that is
    not valid TOML is taken as a string, so `choice.policy=unified` works without quotes. A text field
    (name, description, a CSV path) takes the value as written unless it is quoted. One line only: a
    newline would silently hide what follows it.
    """
    where = _set_label(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ScenarioError(f"{where}: not valid UTF-8 text (check the terminal's encoding)") from None
    if "\n" in text or "\r" in text or "\x00" in text:
        raise ScenarioError(f"{where}: a value must be one line; give each field its own --set")
    if "=" not in text:
        raise ScenarioError(f"{where}: expected PATH=VALUE, e.g. accountability.closure_percentile=10")
    path, _, raw = text.partition("=")
    keys = [k.strip() for k in path.strip().split(".")]
    if not any(keys):
        raise ScenarioError(f"{where}: empty field path")
    if not all(keys):
        raise ScenarioError(f"{where}: {shown(path)} is not a field path; use group.field, "
                            "e.g. accountability.closure_percentile")
    raw = raw.strip()
    if _text_field(keys) and not raw.startswith(('"', "'")):
        return keys, raw
    try:
        value = parse_toml(f"v = {raw}", where)["v"]
    except ScenarioError as exc:
        if "nested too deeply" in str(exc):
            raise
        value = raw
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    origins: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    data = dict(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            child = dict(child) if isinstance(child, dict) else {}
            node[k] = child
            node = child
        node[keys[-1]] = value
        if origins is not None:
            label = _set_label(text)
            path = tuple(keys)
            for known in [k for k in origins if k[:len(path)] == path]:   # the --set replaced them
                del origins[known]
            for n in range(1, len(path)):
                origins[path[:n]] = origins.get(path[:n], label)
            origins[path] = label
            if isinstance(value, dict):
                _note_origins(value, label, origins, path)
            if len(keys) == 2 and keys[0] == "district" and keys[1] in dict(PATH_LEVERS).values() \
                    and isinstance(value, str) and value and "\x00" not in value:
                node[keys[-1]] = str(Path(value).resolve())     # relative to where the command runs
    return data


def _allowed(loc: tuple[Any, ...]) -> str:
    """What is allowed at a field path, from the schema itself (bounds, choices, known fields)."""
    model: type[BaseModel] = Scenario
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return ""
        model = field.annotation
    last = str(loc[-1]) if loc else ""
    field = model.model_fields.get(last)
    if field is None:
        known = ", ".join(model.model_fields)
        return f"known fields here: {known}"
    return describe_bounds(field)


def field_bounds(field: Any) -> tuple[float | None, float | None]:
    """A schema field's (ge, le) bounds; None where it has none."""
    lo = hi = None
    for meta in field.metadata:
        if getattr(meta, "ge", None) is not None:
            lo = meta.ge
        if getattr(meta, "le", None) is not None:
            hi = meta.le
    return lo, hi


def describe_bounds(field: Any) -> str:
    """'allowed: a number from 0.0 to 1.0' / 'an integer from 1 to 20' / "one of 'a', 'b'"."""
    lo, hi = field_bounds(field)
    ann = field.annotation
    choices = getattr(ann, "__args__", None) or ()
    if getattr(ann, "__origin__", None) is Literal:
        return "allowed: one of " + ", ".join(repr(c) for c in choices)
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(ann, "")
    if type(None) in choices:
        kind = "a file path, or leave it out"
    if lo is not None and hi is not None:
        return f"allowed: {kind} from {lo} to {hi}"
    if lo is not None:
        return f"allowed: {kind} >= {lo}"
    return f"allowed: {kind}" if kind else ""


def _error_line(err: dict[str, Any], allowed: Any, unknown: str = "unknown field") -> str:
    """One problem: the field, what is wrong, the value (shortened) and what is allowed."""
    loc = tuple(err.get("loc", ()))
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = err.get("type")
    msg = err.get("msg", "invalid")
    value = err.get("input")
    if kind == "extra_forbidden":
        msg = unknown
    elif kind == "missing":
        msg = "required"
    elif isinstance(value, float) and value != value:
        msg = "not a number"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    got = "" if isinstance(value, dict) or kind == "missing" or not loc else f"; got {shown(value)}"
    hint = allowed(loc) if loc else ""
    return f"  {path}: {msg}{got}" + (f"; {hint}" if hint else "")


def format_errors(exc: ValidationError, heading: str, allowed: Any, unknown: str = "unknown field") -> str:
    """A validation error as lines naming each field, the value given and what is allowed
    (`allowed(loc)`: the allowed-values text for a location). Scenarios, sweep specs and batch
    parameters all report errors this way."""
    return "\n".join([heading] + [_error_line(err, allowed, unknown) for err in exc.errors()])


def format_validation_error(exc: ValidationError, source: str,
                            origins: dict[tuple[str, ...], str] | None = None) -> str:
    """One line per problem (as `format_errors`). With `origins` ((group, field) -> file or --set),
    problems are listed under the place that set them."""
    by_origin: dict[str, list[str]] = {}
    for err in exc.errors():
        origin = source
        if origins:
            origin = _origin(origins, tuple(err.get("loc", ()))) or source
        by_origin.setdefault(origin, []).append(_error_line(err, _allowed))
    lines: list[str] = []
    for origin, items in by_origin.items():
        lines.append(f"{origin}: invalid value" if origin.startswith("--") else f"{origin}: invalid scenario")
        lines += items
    return "\n".join(lines)


def validate_scenario(data: dict[str, Any]) -> Scenario:
    """A Scenario from user data with strict types: no "5" for 5, no true for 1, no "no" for false."""
    return Scenario.model_validate(data, strict=True)


def build_scenario(data: dict[str, Any], source: str = "scenario",
                   origins: dict[tuple[str, ...], str] | None = None) -> Scenario:
    try:
        return validate_scenario(data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, source, origins)) from None
    except RecursionError:
        raise ScenarioError(f"{source}: nested too deeply") from None


def load_scenario(name_or_path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Load, merge (`extends`), override and validate a scenario. Raises ScenarioError on bad input.
    CSV paths in a scenario file are relative to that file; in --set, to the current folder."""
    path = resolve_scenario_path(name_or_path)
    origins: dict[tuple[str, ...], str] = {}
    data = apply_overrides(load_raw(path, origins=origins), overrides or [], origins)
    return build_scenario(data, source=str(path), origins=origins)


def loads_scenario(text: str, source: str = "uploaded scenario") -> Scenario:
    """Validate a scenario from TOML text (e.g. an upload). `extends` may name a preset only."""
    data = parse_toml(text, source)
    parent = data.pop("extends", None)
    origins: dict[tuple[str, ...], str] = {}
    if parent is not None:
        if not isinstance(parent, str) or "/" in parent or "\\" in parent:
            raise ScenarioError(f"{source}: extends: must name a preset, got {shown(parent)}")
        own = data
        data = _deep_merge(load_raw(resolve_scenario_path(parent), origins=origins), own)
        _note_origins(own, source, origins)
    return build_scenario(data, source=source, origins=origins or None)


def list_presets() -> list[tuple[str, str]]:
    """(preset name, one-line description) for every preset scenario."""
    out = []
    for path in sorted(presets_dir().glob("*.toml")):
        try:
            data = load_raw(path)
        except ScenarioError:
            continue
        desc = str(data.get("description", "")).strip().splitlines()
        out.append((path.stem, desc[0] if desc else ""))
    return out


def schema_markdown() -> str:
    """The lever reference (docs/SCENARIO.md), generated from the schema."""
    out = ["# Scenario reference", "",
           "Generated from `src/portfolio_sim/scenario.py` by `portfolio-sim schema --markdown`; do not edit.",
           "Every field has a default and bounds; unknown keys are errors. Override any field on the command",
           "line with `--set group.field=value`.", ""]
    for group_name, group in GROUPS.items():
        out += [f"## `[{group_name}]`", "", (group.__doc__ or "").strip(), "",
                f"*Design question:* {group.question}", "",
                "| field | default | allowed | unit | description |", "|---|---|---|---|---|"]
        for name, field in group.model_fields.items():
            extra = field.json_schema_extra or {}
            unit = extra.get("unit", "") if isinstance(extra, dict) else ""
            allowed = describe_bounds(field).removeprefix("allowed: ")
            out.append(f"| `{name}` | `{field.default!r}` | {allowed} | {unit} | {field.description} |")
        out.append("")
    out += ["## `[assumptions.*]`", "",
            "The coefficients of the mechanisms (how the district responds, as opposed to what it decides) are",
            "declared assumptions, listed in [ASSUMPTIONS.md](ASSUMPTIONS.md) (`portfolio-sim assumptions`). A",
            "scenario may set them in `[assumptions.GROUP]` tables, or `--set assumptions.GROUP.NAME=VALUE`.", ""]
    return "\n".join(out)


def dump_toml(data: dict[str, Any]) -> str:
    return tomli_w.dumps(data)
