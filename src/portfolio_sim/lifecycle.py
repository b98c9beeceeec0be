"""School life cycle: the only code that changes a school's status, and the event log.

A school's status is whether it is open, its sector (traditional, an autonomous category, charter), its
operator and the years its current status, autonomy and contract began. Mechanisms decide *that* a
school closes, restarts, converts or changes operator; the functions here do it, the same way
wherever the decision was taken, and record it as one typed `Event`.

    open_school            a new school row (authorizing: an approved new-school application launches)
    convert                a school becomes autonomous (authorizing: a launch)
    close_school           closure (accountability: intervention; finance: under-enrolment)
    restart_school         new principal and model (accountability: intervention)
    replace_operator       a new operator (accountability: intervention or non-renewal)
    revert_to_traditional  back to traditional district status (accountability: non-renewal)

Every event (these and the mechanisms' own, e.g. `election`, `warning`) goes through `log`; the yearly
counts the metrics report (closures, restarts, openings, conversions, renewals, non-renewals,
reversals, elections, budget shocks) are counted from the log (`year_counts`), not kept by hand.
The event kinds are documented in docs/METRICS.md ("Event log").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from portfolio_sim.mechanisms import Action
from portfolio_sim.state import CHARTER, TRADITIONAL

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the event log (events.csv, the sweep store's `events` table)."""

    year: int
    event: str          # the kind, e.g. "closure" (docs/METRICS.md, "Event log")
    school_id: int      # -1: a district-level event
    school: str         # the school's name ("" for district-level events)
    operator_id: int    # -1: none
    operator: str       # the operator's name ("" for none)
    cause: str          # why, in words


EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Event))
_as_row = attrgetter(*EVENT_COLUMNS)     # (dataclasses.astuple deep-copies every field: 100x slower)

# Yearly metric -> the event kind it counts (docs/METRICS.md).
EVENT_COUNTS: dict[str, str] = {
    "openings": "opening", "closures": "closure", "restarts": "restart", "conversions": "conversion",
    "renewals": "renewal", "non_renewals": "non_renewal", "reversals": "reversal",
    "restorations": "restoration",
    "budget_shock": "budget_shock", "election": "election",
}


def log(model: PortfolioModel, kind: str, school: int | None, cause: str, operator: int | None = None) -> None:
    """Record an event; `operator` defaults to the school's operator."""
    if operator is None and school is not None and school >= 0:
        operator = int(model.schools.operator[school])
    op = int(operator) if operator is not None and operator >= 0 else -1
    s = -1 if school is None else int(school)
    model.events.append(Event(model.year, kind, s, model.schools.name[s] if s >= 0 else "",
                              op, model.operators.name[op] if op >= 0 else "", cause))


def year_counts(model: PortfolioModel) -> dict[str, int]:
    """This year's count of each event kind in `EVENT_COUNTS` (the log is in year order)."""
    kinds: dict[str, int] = {}
    for e in reversed(model.events):
        if e.year != model.year:
            break
        kinds[e.event] = kinds.get(e.event, 0) + 1
    return {metric: kinds.get(kind, 0) for metric, kind in EVENT_COUNTS.items()}


def events_frame(events: list[Event]) -> pd.DataFrame:
    return pd.DataFrame(list(map(_as_row, events)), columns=list(EVENT_COLUMNS))


# -- status changes -----------------------------------------------------------------------------------

def close_school(model: PortfolioModel, s: int, kind: str, why: str) -> bool:
    """Close school `s`; its students choose again next year. Refuses to close the last school of
    a grade band (the district must serve every grade)."""
    sc = model.schools
    same_band = sc.is_open & (sc.band == sc.band[s]) & (sc.sector != CHARTER)
    if same_band.sum() <= 1:
        return False
    sc.is_open[s] = False
    st = model.students
    st.displaced[(st.school == s) & (st.grade >= 0)] = True
    model.pending = [p for p in model.pending if p["school"] != s]
    model.closed_this_year.append(s)
    model.geo_dirty = True
    log(model, kind, s, why)
    return True


def restart_school(model: PortfolioModel, s: int, why: str) -> None:
    """A fresh start: a new principal and a new school model; an autonomous school starts its
    implementation curve again."""
    from portfolio_sim.mechanisms import talent
    sc, rng = model.schools, model.streams["accountability"]
    talent.new_leaders(model, np.array([s]))
    a = model.scenario.assumptions.setup
    sd = max(model.scenario.district.initial_quality_sd, a.restart_min_sd)
    sc.base_quality[s] = a.restart_keep * sc.base_quality[s] + (1.0 - a.restart_keep) * sd * rng.standard_normal()
    sc.years_below[s] = 0
    sc.status_year[s] = model.year
    if sc.autonomous[s]:
        sc.autonomy_year[s] = model.year
    log(model, "restart", s, why)


def replace_operator(model: PortfolioModel, s: int, why: str, event: str = "operator_replaced") -> bool:
    """Hand school `s` to another operator with room (False if none has)."""
    from portfolio_sim.mechanisms import authorizing, talent
    sc = model.schools
    new = authorizing.pick_operator(model, exclude=int(sc.operator[s]))
    if new < 0:
        return False
    old = int(sc.operator[s])
    sc.operator[s] = new
    q = model.operators.quality[new]
    sc.base_quality[s] += model.scenario.assumptions.authorizing.operator_takeover * (q - sc.base_quality[s])
    talent.new_leaders(model, np.array([s]))
    sc.autonomy_year[s] = sc.contract_year[s] = sc.status_year[s] = model.year
    sc.years_below[s] = 0
    old_name = model.operators.name[old] if old >= 0 else "none"
    log(model, event, s, f"{why}; {old_name} replaced by {model.operators.name[new]}", operator=new)
    return True


def revert_to_traditional(model: PortfolioModel, s: int, kind: str, why: str) -> None:
    sc = model.schools
    log(model, kind, s, why + "; school returns to traditional district status")
    sc.sector[s] = TRADITIONAL
    sc.operator[s] = -1
    sc.granted[s] = 0.0
    sc.rollback[s] = 0.0
    sc.effective[s] = 0.0
    sc.autonomy_year[s] = sc.contract_year[s] = -1
    sc.status_year[s] = model.year


def open_school(model: PortfolioModel, band: int, xy: np.ndarray, leader_quality: float) -> int:
    """A new (traditional) school row near `xy`; `convert` makes it autonomous at launch."""
    from portfolio_sim.agents import School
    from portfolio_sim.mechanisms import autonomy
    sc, rng = model.schools, model.streams["authorizing"]
    same = sc.is_open & (sc.band == band) & (sc.sector != CHARTER)
    a = model.scenario.assumptions.setup
    cap = int(np.median(sc.capacity[same])) if same.any() else a.new_school_default_seats
    s = int(sc.append(1, x=xy[0], y=xy[1], band=band, capacity=max(a.new_school_min_seats, int(a.new_school_capacity * cap)),
                      sector=TRADITIONAL,
                      is_open=True, opened_year=model.year, base_quality=0.0,
                      leader_quality=leader_quality, teacher_share=model.talent_pool_share,
                      need=autonomy.draw_needs(rng, 1)[0], resources=model.reference_resources,
                      status_year=model.year)[0])
    sc.name[s] = f"New school {s + 1}"
    model.perceived_z = np.append(model.perceived_z, 0.0)
    model.teacher_exposure = np.append(model.teacher_exposure, model.talent_pool_share)
    model.school_agents.append(School(model, s))
    model.geo_dirty = True
    return s


def convert(model: PortfolioModel, s: int, sector: int, operator: int) -> None:
    """School `s` becomes autonomous in `sector`, run by `operator` (-1: district-run): its status,
    autonomy and contract start this year. (Grants, leaders and start-up money: the caller's.)"""
    sc = model.schools
    sc.sector[s] = sector
    sc.operator[s] = operator
    sc.autonomy_year[s] = model.year
    sc.pre_autonomy_pct[s] = 50.0 if np.isnan(sc.rating_pct[s]) else sc.rating_pct[s]
    sc.contract_year[s] = model.year
    sc.status_year[s] = model.year
    sc.years_below[s] = 0


def renew(model: PortfolioModel, s: int, record: str) -> None:
    """School `s`'s contract/MOU is renewed: a new term starts this year."""
    model.schools.contract_year[s] = model.year
    log(model, "renewal", s, record)


# What each function here may change (`portfolio_sim.mechanisms.Action`); `schools.rows`: it appends rows.
ACTIONS = (
    Action("lifecycle.log", writes=("model.events",)),
    Action("lifecycle.close_school", writes=("schools.is_open", "students.displaced", "model.pending",
                                             "model.closed_this_year", "model.geo_dirty"),
           calls=("lifecycle.log",)),
    Action("lifecycle.restart_school", writes=("schools.base_quality", "schools.years_below",
                                               "schools.status_year", "schools.autonomy_year"),
           streams=("accountability",), calls=("talent.new_leaders", "lifecycle.log")),
    Action("lifecycle.replace_operator", writes=("schools.operator", "schools.base_quality", "schools.autonomy_year",
                                                 "schools.contract_year", "schools.status_year", "schools.years_below"),
           calls=("authorizing.pick_operator", "talent.new_leaders", "lifecycle.log")),
    Action("lifecycle.revert_to_traditional", writes=("schools.sector", "schools.operator", "schools.granted",
                                                      "schools.rollback", "schools.effective", "schools.autonomy_year",
                                                      "schools.contract_year", "schools.status_year"),
           calls=("lifecycle.log",)),
    Action("lifecycle.open_school", writes=("schools.rows", "schools.name", "model.perceived_z",
                                            "model.teacher_exposure", "model.school_agents", "model.geo_dirty"),
           streams=("authorizing",)),
    Action("lifecycle.convert", writes=("schools.sector", "schools.operator", "schools.autonomy_year",
                                        "schools.pre_autonomy_pct", "schools.contract_year", "schools.status_year",
                                        "schools.years_below")),
    Action("lifecycle.renew", writes=("schools.contract_year",), calls=("lifecycle.log",)),
)
