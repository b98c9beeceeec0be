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

A decision that changes what the rule would have done is logged with the cause "workshop decision".
Decisions are not scenario levers: they are taken during a run, so `single_run(..., decisions=...)` takes
them by year, and the same scenario, seed and decisions give the same results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
                raise ScenarioError(f"decisions.{f.name}: {value!r} is not a decision; allowed: "
                                    + ", ".join(allowed))

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
    return Decisions(**{k: str(v) for k, v in data.items()})
