"""Decisions a person takes in the model's place: the central office and the board, played in a workshop.

DOMAIN.md ("Who uses it"): in training workshops a facilitator walks a room through a scenario year by
year while participants play the central office or the board and make its decisions: close or spare a
failing school, renew a contract or not, approve applications for autonomy, protect autonomy or reverse
it. Seed 003 frames these as the district's own choices ("District-school relationship": contracts,
renewal terms, reversals when interest ebbs; authorizing like charters, seed 000 lesson 5).

Without decisions every rule of the scenario applies (`RULES`). A `Decisions` value names, for one year,
what the players decided at each decision point; "rule" leaves that point to the scenario's rule:

* `intervention` — schools that reached the accountability trigger this year (below the bar
  `accountability.consecutive_years` years in a row): "spare" gives them another year; "close",
  "restart" or "replace_operator" replace the scenario's `accountability.intervention`.
* `renewal` — autonomous schools whose contract or MOU term ends this year: "renew" or "not_renew"
  whatever their term average (a school whose operator has left is handled by the rule).
* `applications` — applications to convert or open autonomous schools this year: "approve" or "deny"
  every one, instead of the authorizer's judgement (applications are taken only under a pro board).
* `board` — "protect" keeps a hostile board majority from reversing autonomy (or declining renewals) this
  year; "reverse" rolls autonomy back this year (once a board term, as the rule) whatever the board's support.

The first two can also be taken school by school (`Decisions.schools`: spare this school, close that
one; renew this contract, not that one), which overrides the choice for all at that point.

What the players decided is logged with "workshop decision" in the event's cause (docs/METRICS.md).
Decisions are not scenario levers: they are taken during a run, so `single_run(..., decisions=...)` takes
them by year, and the same scenario, seed and decisions give the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

from portfolio_sim.errors import ScenarioError
from portfolio_sim.inputs import parse_toml, read_text, short, shown

WORKSHOP = "workshop decision"

Intervention = Literal["rule", "spare", "close", "restart", "replace_operator"]
Renewal = Literal["rule", "renew", "not_renew"]
Applications = Literal["rule", "approve", "deny"]
BoardAction = Literal["rule", "protect", "reverse"]


PER_SCHOOL = ("intervention", "renewal")     # decision points that can also be taken school by school


@dataclass(frozen=True)
class Decisions:
    """What the players decided for one year at each decision point ("rule": the scenario decides).

    `schools` holds per-school choices at the points of `PER_SCHOOL`, as (school id, point, choice);
    they take precedence over the point's choice for everyone (a workshop debating one school)."""

    intervention: Intervention = "rule"
    renewal: Renewal = "rule"
    applications: Applications = "rule"
    board: BoardAction = "rule"
    schools: tuple[tuple[int, str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in _TYPES:
            _check(name, getattr(self, name), name)
        seen = set()
        for item in self.schools:
            if len(item) != 3:
                raise ScenarioError(f"schools: {item!r} is not (school id, decision point, choice)")
            school, point, choice = item
            if not isinstance(school, int) or isinstance(school, bool) or school < 0:
                raise ScenarioError(f"schools: {school!r} is not a school id; allowed: a whole number from 0")
            if point not in PER_SCHOOL:
                raise ScenarioError(f"schools.{school}: {shown(point)} cannot be decided school by school; "
                                    f"allowed: {', '.join(PER_SCHOOL)}")
            _check(point, choice, f"schools.{school}.{point}")
            if (school, point) in seen:
                raise ScenarioError(f"schools.{school}.{point}: decided twice")
            seen.add((school, point))
        # one canonical order, so equal decisions compare equal
        object.__setattr__(self, "schools", tuple(sorted(self.schools)))

    @property
    def by_rule(self) -> bool:
        """True when every decision is left to the scenario's rules."""
        return all(getattr(self, n) == "rule" for n in _TYPES) and all(c == "rule" for _, _, c in self.schools)

    def school_choice(self, point: str, school: int) -> str:
        """The players' choice for `school` on its own at `point` ("rule": none, the choice for all applies)."""
        return next((c for s, p, c in self.schools if s == school and p == point), "rule")

    def choice(self, point: str, school: int | None = None) -> str:
        """The players' choice at `point` (for `school`, where they decided that school on its own)."""
        own = "rule" if school is None else self.school_choice(point, school)
        return own if own != "rule" else getattr(self, point)

    def with_school_choice(self, school: int, point: str, choice: str) -> Decisions:
        """These decisions with `school`'s own choice at `point` set ("rule": removed)."""
        others = tuple(x for x in self.schools if (x[0], x[1]) != (school, point))
        return replace(self, schools=others + (((int(school), point, choice),) if choice != "rule" else ()))

    def as_dict(self) -> dict[str, str]:
        """The four decisions for every school (per-school choices not included)."""
        return {name: getattr(self, name) for name in _TYPES}

    def describe(self, names: Mapping[int, str] | None = None) -> str:
        """Plain words for what differs from the rules ("" when nothing does); `names`: school names."""
        said = [CHOICES[name][value] for name, value in self.as_dict().items() if value != "rule"]
        said += [f"{(names or {}).get(s, f'school {s}')}: {SCHOOL_CHOICES[p][c]}" for s, p, c in self.schools
                 if c != "rule"]
        return "; ".join(said)


def _check(point: str, value: Any, where: str) -> None:
    allowed = get_args(_TYPES[point])
    if value not in allowed:
        raise ScenarioError(f"{where}: {shown(value)} is not a decision; allowed: " + ", ".join(allowed))


_TYPES = {"intervention": Intervention, "renewal": Renewal, "applications": Applications, "board": BoardAction}
RULES = Decisions()

# What each decision means, for the dashboard's controls and the event log.
CHOICES: dict[str, dict[str, str]] = {
    "intervention": {"rule": "the scenario's intervention",
                     "spare": "give failing schools another year", "close": "close failing schools",
                     "restart": "restart failing schools",
                     "replace_operator": "replace failing schools' operators"},
    "renewal": {"rule": "by the term average (the rule)", "renew": "renew every contract ending",
                "not_renew": "renew no contract ending"},
    "applications": {"rule": "the authorizer's judgement", "approve": "approve every application",
                     "deny": "deny every application"},
    "board": {"rule": "as the board's politics go",
              "protect": "board protects autonomy (no reversal)", "reverse": "board reverses autonomy"},
}
SCHOOL_CHOICES: dict[str, dict[str, str]] = {
    "intervention": {"rule": "as decided for all", "spare": "another year", "close": "close it",
                     "restart": "restart it", "replace_operator": "replace its operator"},
    "renewal": {"rule": "as decided for all", "renew": "renew its contract", "not_renew": "do not renew"},
}
QUESTIONS: dict[str, str] = {
    "intervention": "A school has been below the bar too long: what does the central office do?",
    "renewal": "Contracts and MOUs ending this year: renew them?",
    "applications": "Applications for autonomy this year: approve them?",
    "board": "The board: protect autonomy, or reverse it?",
}


def decisions_from(data: Any, where: str = "decisions") -> Decisions:
    """A `Decisions` from a mapping (e.g. a TOML table): the four points by name, and per-school choices
    as `schools = {"<school id>" = {intervention = "...", renewal = "..."}}`; unknown keys are errors."""
    if isinstance(data, Decisions):
        return data
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: expected a table of decisions, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TYPES) - {"schools"})
    if unknown:
        raise ScenarioError(f"{where}: unknown decision(s) {', '.join(short(k) for k in unknown[:5])}; allowed: "
                            f"{', '.join(_TYPES)}, schools")
    per_school: list[tuple[int, str, str]] = []
    table = data.get("schools", {})
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}.schools: expected [..schools.<school id>] tables")
    for key, choices in table.items():
        if not _whole_number(str(key)):
            raise ScenarioError(f"{where}.schools.{short(str(key))}: not a school id; allowed: a whole number from 0")
        if not isinstance(choices, dict):
            raise ScenarioError(f"{where}.schools.{key}: expected a table such as intervention = \"spare\"")
        for point, choice in choices.items():
            per_school.append((int(key), str(point), str(choice)))
    try:
        return Decisions(**{k: str(v) for k, v in data.items() if k != "schools"}, schools=tuple(per_school))
    except ScenarioError as exc:
        raise ScenarioError(f"{where}.{exc}") from None


# -- a run's decisions as a file: `portfolio-sim run SCENARIO --decisions FILE` ---------------------------

def decisions_toml(by_year: Mapping[int, Decisions]) -> str:
    """The decisions of a run as TOML, one `[year.N]` table per year someone decided, per-school choices
    in `[year.N.schools.S]` (the dashboard's export; `portfolio-sim run ... --decisions FILE` replays them)."""
    lines = ["# Workshop decisions (portfolio_sim.decisions), by simulated year; other years follow the rules.",
             "# Replay: portfolio-sim run scenario.toml --decisions decisions.toml", ""]
    for year in sorted(by_year):
        d = by_year[year]
        if d.by_rule:
            continue
        lines.append(f"[year.{int(year)}]")
        lines += [f'{name} = "{value}"' for name, value in d.as_dict().items() if value != "rule"]
        lines.append("")
        schools: dict[int, list[str]] = {}
        for school, point, choice in d.schools:
            if choice != "rule":
                schools.setdefault(school, []).append(f'{point} = "{choice}"')
        for school, said in schools.items():
            lines += [f"[year.{int(year)}.schools.{school}]", *said, ""]
    return "\n".join(lines)


def loads_decisions(text: str, source: str = "decisions", years: int | None = None) -> dict[int, Decisions]:
    """Decisions by year from TOML text (see `decisions_toml`); every problem is a ScenarioError that
    names the place and what is allowed."""
    data = parse_toml(text, source)
    extra = sorted(set(data) - {"year"})
    if extra:
        raise ScenarioError(f"{source}: unknown table(s) {', '.join(short(k) for k in extra[:5])}; allowed: [year.N] tables, "
                            "N a simulated year")
    table = data.get("year", {})
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: 'year' must hold [year.N] tables")
    out: dict[int, Decisions] = {}
    for key, value in table.items():
        if not _whole_number(key) or int(key) < 1 or (years is not None and int(key) > years):
            allowed = f"1 to {years}" if years is not None else "a whole number from 1"
            raise ScenarioError(f"{source}: [year.{short(key)}] is not a simulated year; allowed: {allowed}")
        if int(key) in out:     # [year.1] and [year.01]: one would silently replace the other
            raise ScenarioError(f"{source}: [year.{key}] is year {int(key)} again; allowed: each year once")
        out[int(key)] = decisions_from(value, where=f"{source}: year.{key}")
    return out


def load_decisions(path: str | Path, years: int | None = None) -> dict[int, Decisions]:
    """Decisions by year from a file (a regular file of at most 1 MB, see portfolio_sim.inputs)."""
    return loads_decisions(read_text(path, "decisions file"), str(path), years)


def _whole_number(text: str) -> bool:
    """ASCII digits only, and not absurdly long: `str.isdigit` also accepts '²' and other digits."""
    return 0 < len(text) <= 9 and text.isascii() and text.isdigit()


def per_school(by_year: Mapping[int, Decisions]) -> list[tuple[int, int]]:
    """(year, school id) of every per-school decision."""
    return [(year, s) for year, d in sorted(by_year.items()) for s, _, c in d.schools if c != "rule"]


def check_schools_exist(decisions: Decisions, year: int, n_schools: int) -> None:
    """Refuse a decision about a school the run does not have (yet): a typo would otherwise do nothing."""
    missing = sorted({s for s, _, c in decisions.schools if c != "rule" and s >= n_schools})
    if missing:
        raise ScenarioError(f"decisions: year.{year}.schools.{missing[0]}: no such school in year {year} of "
                            f"this run; allowed: a school id from 0 to {n_schools - 1} (schools.csv of a run "
                            "lists them)")
