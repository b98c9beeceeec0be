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
* `board` — "protect" keeps a skeptical board from reversing autonomy this year; "reverse" rolls
  autonomy back this year (once a board term, as the rule) whatever the board's support.

What the players decided is logged with "workshop decision" in the event's cause (docs/METRICS.md).
Decisions are not scenario levers: they are taken during a run, so `single_run(..., decisions=...)` takes
them by year, and the same scenario, seed and decisions give the same results.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from portfolio_sim.errors import ScenarioError

WORKSHOP = "workshop decision"

Intervention = Literal["rule", "spare", "close", "restart", "replace_operator"]
Renewal = Literal["rule", "renew", "not_renew"]
Applications = Literal["rule", "approve", "deny"]
BoardAction = Literal["rule", "protect", "reverse"]


@dataclass(frozen=True)
class Decisions:
    """What the players decided for one year at each decision point ("rule": the scenario decides)."""

    intervention: Intervention = "rule"
    renewal: Renewal = "rule"
    applications: Applications = "rule"
    board: BoardAction = "rule"

    def __post_init__(self) -> None:
        for f in fields(self):
            allowed = get_args(_TYPES[f.name])
            value = getattr(self, f.name)
            if value not in allowed:
                raise ScenarioError(f"{f.name}: {value!r} is not a decision; allowed: " + ", ".join(allowed))

    @property
    def by_rule(self) -> bool:
        """True when every decision is left to the scenario's rules."""
        return self == RULES

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        """Plain words for what differs from the rules ("" when nothing does)."""
        said = [f"{CHOICES[name][value]}" for name, value in self.as_dict().items() if value != "rule"]
        return "; ".join(said)


_TYPES = {"intervention": Intervention, "renewal": Renewal, "applications": Applications, "board": BoardAction}
RULES = Decisions()

# What each decision means, for the dashboard's controls and the event log.
CHOICES: dict[str, dict[str, str]] = {
    "intervention": {"rule": "schools at the accountability trigger: as the scenario's rule says",
                     "spare": "give failing schools another year", "close": "close failing schools",
                     "restart": "restart failing schools",
                     "replace_operator": "replace failing schools' operators"},
    "renewal": {"rule": "contracts ending: renew by the term average", "renew": "renew every contract ending",
                "not_renew": "renew no contract ending"},
    "applications": {"rule": "applications: the authorizer's judgement", "approve": "approve every application",
                     "deny": "deny every application"},
    "board": {"rule": "board: reverses autonomy as the scenario's politics say",
              "protect": "board protects autonomy (no reversal)", "reverse": "board reverses autonomy"},
}
QUESTIONS: dict[str, str] = {
    "intervention": "A school has been below the bar too long: what does the central office do?",
    "renewal": "Contracts and MOUs ending this year: renew them?",
    "applications": "Applications for autonomy this year: approve them?",
    "board": "The board: protect autonomy, or reverse it?",
}


def decisions_from(data: Any, where: str = "decisions") -> Decisions:
    """A `Decisions` from a mapping of strings (e.g. a form or a TOML table); unknown keys are errors."""
    if isinstance(data, Decisions):
        return data
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: expected a table of decisions, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise ScenarioError(f"{where}: unknown decision(s) {', '.join(unknown)}; allowed: {', '.join(_TYPES)}")
    try:
        return Decisions(**{k: str(v) for k, v in data.items()}) if data else RULES
    except ScenarioError as exc:
        raise ScenarioError(f"{where}.{exc}") from None


# -- a run's decisions as a file: `portfolio-sim run SCENARIO --decisions FILE` ---------------------------

def decisions_toml(by_year: Mapping[int, Decisions]) -> str:
    """The decisions of a run as TOML, one `[year.N]` table per year someone decided (the dashboard's
    export; `portfolio-sim run ... --decisions FILE` replays them)."""
    lines = ["# Workshop decisions (portfolio_sim.decisions), by simulated year; other years follow the rules.",
             "# Replay: portfolio-sim run scenario.toml --decisions decisions.toml", ""]
    for year in sorted(by_year):
        d = by_year[year]
        if d.by_rule:
            continue
        lines.append(f"[year.{int(year)}]")
        lines += [f'{name} = "{value}"' for name, value in d.as_dict().items() if value != "rule"]
        lines.append("")
    return "\n".join(lines)


def loads_decisions(text: str, source: str = "decisions", years: int | None = None) -> dict[int, Decisions]:
    """Decisions by year from TOML text (see `decisions_toml`); every problem is a ScenarioError that
    names the place and what is allowed."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"year"})
    if extra:
        raise ScenarioError(f"{source}: unknown table(s) {', '.join(extra)}; allowed: [year.N] tables, "
                            "N a simulated year")
    table = data.get("year", {})
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: 'year' must hold [year.N] tables")
    out: dict[int, Decisions] = {}
    for key, value in table.items():
        if not key.isdigit() or int(key) < 1 or (years is not None and int(key) > years):
            allowed = f"1 to {years}" if years is not None else "a whole number from 1"
            raise ScenarioError(f"{source}: [year.{key}] is not a simulated year; allowed: {allowed}")
        out[int(key)] = decisions_from(value, where=f"{source}: year.{key}")
    return out


def load_decisions(path: str | Path, years: int | None = None) -> dict[int, Decisions]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such decisions file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read the decisions file: {exc}") from None
    return loads_decisions(text, str(p), years)
