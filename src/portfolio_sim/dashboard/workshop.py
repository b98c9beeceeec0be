"""The workshop panel's content: what is on the table next year, and the decisions the players can take.

In a training workshop (DOMAIN.md "Who uses it") the facilitator steps the district a year at a time
and the room plays the central office or the board. Before each step the page shows the agenda (built
here from the latest snapshot, so it needs no model) and one control per decision point of
:mod:`portfolio_sim.decisions`; the choices apply to the next year stepped, in every seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_sim.dashboard.simulation import RunSnapshot
from portfolio_sim.decisions import CHOICES, QUESTIONS
from portfolio_sim.state import CATEGORY_SECTOR

AUTONOMOUS_SECTORS = tuple(CATEGORY_SECTOR)      # the sector names of the school panel's autonomous schools
RULE_WORDS = {"close": "close them", "restart": "restart them", "replace_operator": "replace their operators",
              "spare": "another year"}


@dataclass(frozen=True)
class DecisionPoint:
    name: str                                  # a field of Decisions
    question: str
    options: tuple[tuple[str, str], ...]       # (value, label), "rule" first


DECISION_POINTS: tuple[DecisionPoint, ...] = tuple(
    DecisionPoint(name, QUESTIONS[name], tuple(CHOICES[name].items())) for name in QUESTIONS)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else 0.0


def _per_seed(frame: pd.DataFrame, result: RunSnapshot) -> list[int]:
    """Rows of `frame` (with a `seed` column) in each shown seed."""
    return [int((frame["seed"] == seed).sum()) for seed in result.seeds]


def _count(values: list[int]) -> str:
    """'3' when every seed agrees, else 'median 3 (seeds: 1-5)'."""
    if not values:
        return "0"
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"median {_median(values):g} (seeds: {lo}-{hi})"


def agenda(result: RunSnapshot | None) -> list[tuple[str, str]]:
    """(topic, what the latest year says about it) for the year to be stepped next."""
    if result is None or result.yearly.empty:
        return [("Start", "Step 1 year to set up the district; the agenda follows from its first year.")]
    if result.complete:
        return [("Start", f"All {result.years} years are done: Step 1 year starts again from year 1 "
                          "(with the same seeds), so the room can take its decisions this time.")]
    s = result.scenario
    year = result.year
    nxt = year + 1
    items: list[tuple[str, str]] = [("Next", f"year {nxt} ({result.start_year + nxt}) of {result.years}")]

    last = result.yearly[result.yearly["year"] == year]
    pro = int((2 * last["board_pro"] > last["board_seats"]).sum())     # seeds with a pro-autonomy majority
    board = f"pro-autonomy in {pro} of {len(last)} seed(s)" if 0 < pro < len(last) else (
        "pro-autonomy" if pro else "skeptical")
    items.append(("Board", f"{board}; support {_median(list(last['political_support'])):.2f} (median)"))
    p = s.politics
    if p.scheduled_flip_year == nxt:
        items.append(("Politics", "a scheduled board flip: a hostile board takes every seat"))
    elif nxt % p.election_cycle == 0:
        items.append(("Politics", "an election year"))

    acc = s.accountability
    if acc.closure_percentile > 0:
        per_seed = _per_seed(at_risk_schools(result), result)
        items.append(("Accountability", f"{_count(per_seed)} school(s) below the {acc.closure_percentile:g}th "
                      f"percentile now reach the trigger if below again (the scenario's rule: "
                      f"{RULE_WORDS.get(acc.intervention, acc.intervention)})"))
    per_seed = _per_seed(contracts_ending(result), result)
    if max(per_seed, default=0) > 0:
        items.append(("Contracts", f"{_count(per_seed)} contract(s) or MOU(s) end and are reviewed "
                      f"(renewal bar: term average at the {acc.renewal_percentile:g}th percentile)"))
    el = s.eligibility
    if s.has_autonomy_policy:
        room = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in
                ((el.conversions_per_year, "conversion"), (el.new_schools_per_year, "new school")) if n > 0]
        if room:
            items.append(("Applications", f"up to {' and '.join(room)} a year, taken only under a pro board"))
    return items


def _latest_open(result: RunSnapshot) -> pd.DataFrame:
    sc = result.schools
    if sc.empty:
        return sc
    return sc[(sc["year"] == result.year) & sc["open"].astype(bool)]


def at_risk_schools(result: RunSnapshot) -> pd.DataFrame:
    """Schools (all shown seeds) below the bar now that reach the accountability trigger if they are
    below it again next year: subject to accountability and below it max(`consecutive_years` - 1, 1)
    years in a row or more. (With a one-year trigger any school may reach it; these are the likeliest.)"""
    acc = result.scenario.accountability
    sc = _latest_open(result)
    if sc.empty or acc.closure_percentile <= 0:
        return sc.iloc[0:0]
    subject = sc["sector"] != "charter"
    if acc.applies_to == "autonomous":
        subject &= sc["sector"].isin(AUTONOMOUS_SECTORS)
    return sc[subject & (sc["years_below_bar"] >= max(acc.consecutive_years - 1, 1))]


def contracts_ending(result: RunSnapshot) -> pd.DataFrame:
    """Autonomous schools (all shown seeds) whose contract or MOU term ends, and is reviewed, next year."""
    sc = _latest_open(result)
    if sc.empty or "contract_years" not in sc:
        return sc.iloc[0:0]
    term = result.scenario.accountability.contract_term
    return sc[(sc["contract_years"] >= 0) & (sc["contract_years"] + 1 >= term)]


def ordinal(value: float) -> str:
    """1 -> '1st', 22 -> '22nd', 13 -> '13th' (rounded to a whole number)."""
    n = int(round(float(value)))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def school_label(row: pd.Series) -> str:
    rating = "not rated" if pd.isna(row["rating_percentile"]) else f"{ordinal(row['rating_percentile'])} percentile"
    return f"{row['name']} ({rating})"


def next_year(result: RunSnapshot | None) -> int:
    """The year the next Step 1 year simulates (a finished run starts again from year 1)."""
    return 1 if result is None or result.complete else result.year + 1


def decidable_by_school(result: RunSnapshot | None) -> dict[str, pd.DataFrame]:
    """The schools the room can decide one by one next year, by decision point. Only with one seed:
    every seed draws its own district, so a school means something only in one."""
    if result is None or result.complete or len(result.all_seeds) != 1:
        return {}
    return {"intervention": at_risk_schools(result), "renewal": contracts_ending(result)}


def school_names(result: RunSnapshot | None) -> dict[int, str]:
    if result is None or result.schools.empty:
        return {}
    return dict(zip(result.schools["school_id"], result.schools["name"]))


def decided_so_far(result: RunSnapshot | None) -> list[str]:
    """Plain lines for the decisions already taken in this run (the snapshot keeps only real ones)."""
    if result is None:
        return []
    names = school_names(result)
    return [f"Year {year} ({result.start_year + year}): {d.describe(names)}" for year, d in result.decisions]
