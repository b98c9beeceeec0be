"""Authorizing: which schools become autonomous, who runs them, new schools, and the operator market.

Seed 000 lesson 5: "Authorize district-run autonomous schools like charter schools: rigorous
authorization has been essential". Seed 003 Table 1 (eligibility: all, turnaround/low-performing,
new or high-performing schools), "Engage school operators" (CMOs, nonprofits, quarterback/incubator
organizations such as The Mind Trust), "Provide sufficient planning time" (12-18 months), and the
governance categories (partner-led and partner-run schools are run by an operator).

* While the board supports autonomy, the district takes applications each year to convert up to
  `eligibility.conversions_per_year` eligible traditional schools and to open up to
  `eligibility.new_schools_per_year` new autonomous schools where families lack good options, until
  `eligibility.target_share` of schools are autonomous.
* Applicants are a school's own leadership team (district-run) or an operator with spare capacity
  (partner-led/-run). The district sees applicant quality through noise that shrinks with
  `accountability.approval_rigor`, and a rigorous authorizer also sets a higher bar: fewer approvals,
  stronger schools.
* Approved schools launch after `implementation.planning_months` (rounded up to whole school years).
* Operators grow when their schools do well, shrink when they fail (judged only on schools they have
  run for `accountability.min_years_rated` years, as new schools are), and leave the district after two
  hostile years (then their schools return to the district at the end of the contract). An incubator
  (`talent.incubator`) launches a new operator every few years.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim import lifecycle
from portfolio_sim.decisions import WORKSHOP
from portfolio_sim.mechanisms import Action, Mechanism, autonomy, talent
from portfolio_sim.state import CATEGORY_SECTOR, CHARTER, DISTRICT_RUN, TRADITIONAL

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients: `model.scenario.assumptions.authorizing` (declared in portfolio_sim/assumptions.py).


def launch_delay(model: PortfolioModel) -> int:
    return math.ceil(model.scenario.implementation.planning_months / 12)


def step(model: PortfolioModel) -> None:
    launch_due(model)
    update_operators(model)
    if model.board.stance == "pro" and model.scenario.has_autonomy_policy:
        convert(model)
        open_new_schools(model)
        launch_due(model)   # zero planning time launches the same year


# -- operators -------------------------------------------------------------------------------------

def running(model: PortfolioModel) -> np.ndarray:
    """Schools each operator runs now or has approved and pending."""
    ops, sc = model.operators, model.schools
    counts = np.bincount(sc.operator[(sc.operator >= 0) & sc.is_open], minlength=len(ops))
    for item in model.pending:
        if item["operator"] >= 0:
            counts[item["operator"]] += 1
    return counts[: len(ops)]


def pick_operator(model: PortfolioModel, exclude: int = -1) -> int:
    """An active operator with spare capacity: the one whose pitch looks best (quality seen with noise)."""
    ops, rng = model.operators, model.streams["authorizing"]
    if len(ops) == 0:
        return -1
    spare = ops.active & (running(model) < ops.capacity)
    if exclude >= 0:
        spare[exclude] = False
    if not spare.any():
        return -1
    a = model.scenario.assumptions.authorizing
    pitch = ops.quality + a.pitch_noise * rng.standard_normal(len(ops)) + a.pitch_appetite * ops.appetite
    return int(np.flatnonzero(spare)[np.argmax(pitch[spare])])


def update_operators(model: PortfolioModel) -> None:
    ops, sc, rng, scn = model.operators, model.schools, model.streams["authorizing"], model.scenario
    if not scn.has_autonomy_policy:
        return      # operators only work where the district has an autonomy initiative
    a = scn.assumptions.authorizing
    hostile = model.board.stance == "skeptical" or model.board.support < a.hostile_support
    counts = running(model)
    # An operator answers for schools it has run as long as a new school runs before it is rated:
    # a turnaround's first ratings still carry the school it took over (and the implementation dip).
    judged = sc.is_open & ~np.isnan(sc.rating_pct) & (model.year - sc.status_year >= scn.accountability.min_years_rated)
    for o in np.flatnonzero(ops.active):
        mine = judged & (sc.operator == o)
        if mine.any():
            pct = float(np.nanmean(sc.rating_pct[mine]))
            if pct >= a.operator_growth_percentile and counts[o] >= ops.capacity[o] and rng.random() < ops.appetite[o]:
                ops.capacity[o] += 1
                model.log("operator_growth", None, f"schools rated at the {pct:.0f}th percentile", operator=int(o))
            elif pct < a.operator_shrink_percentile:
                ops.capacity[o] = max(int(counts[o]) - 1, 0)
        ops.hostile_years[o] = ops.hostile_years[o] + 1 if hostile else 0
        # Contracts and state law bind both sides: an operator whose schools are protected stays.
        stay = a.stay_appetite_weight * ops.appetite[o] + \
            (1.0 - a.stay_appetite_weight) * getattr(a, f"commitment_{scn.governance.legal_basis}")
        if ops.hostile_years[o] >= a.hostile_years_to_exit and rng.random() > stay:
            ops.active[o] = False
            model.log("operator_exit", None, "two years of hostile political climate", operator=int(o))
    if scn.talent.incubator and model.board.stance == "pro" and model.year % a.incubator_every == 0:
        d = scn.district
        q = d.operator_quality_mean + a.incubator_pipeline_gain * scn.talent.leader_pipeline + \
            d.operator_quality_sd * rng.standard_normal()
        o = ops.append(q, capacity=a.incubated_capacity, appetite=a.incubated_appetite, year=model.year,
                       name=f"Incubated operator {len(ops) + 1}")
        model.log("operator_entry", None, "launched by the incubator", operator=o)


# -- applications and approval --------------------------------------------------------------------

def approve(model: PortfolioModel, applicant_z: float) -> bool:
    """Rigor sharpens what the authorizer sees and raises the bar (unless the players decided this year's
    applications themselves: `model.decisions.applications`)."""
    if model.decisions.applications != "rule":
        return model.decisions.applications == "approve"
    rigor, rng = model.scenario.accountability.approval_rigor, model.streams["authorizing"]
    a = model.scenario.assumptions.authorizing
    signal = applicant_z + (a.approval_noise_at_zero - rigor) * rng.standard_normal()
    return bool(signal > a.approval_bar_slope * (rigor - a.approval_bar_pivot))


def _decided(model: PortfolioModel) -> str:
    return f" ({WORKSHOP})" if model.decisions.applications != "rule" else ""


def applicant_z(model: PortfolioModel, operator: int, leader_quality: float) -> float:
    d = model.scenario.district
    if operator >= 0:
        return float((model.operators.quality[operator] - d.operator_quality_mean) / max(d.operator_quality_sd, 0.01))
    return float(leader_quality)


def eligible_schools(model: PortfolioModel) -> np.ndarray:
    sc, el = model.schools, model.scenario.eligibility
    pending = {item["school"] for item in model.pending if item["school"] >= 0}
    ok = sc.is_open & (sc.sector == TRADITIONAL)
    ok[list(pending)] = False
    pct = np.nan_to_num(sc.rating_pct, nan=50.0)
    if el.schools == "turnaround":
        ok &= ~np.isnan(sc.rating_pct) & (pct < el.turnaround_percentile)
        order = np.argsort(pct, kind="stable")
    elif el.schools == "high_performers":
        ok &= ~np.isnan(sc.rating_pct) & (pct >= el.high_performer_percentile)
        order = np.argsort(-pct, kind="stable")
    elif el.schools == "all":
        order = model.streams["authorizing"].permutation(len(sc))
    else:   # new_only, none
        return np.zeros(0, dtype=int)
    return order[ok[order]]


def room_left(model: PortfolioModel) -> int:
    sc = model.schools
    district = int((sc.is_open & (sc.sector != CHARTER)).sum())
    autonomous = int((sc.is_open & sc.autonomous).sum()) + len(model.pending)
    return max(0, int(math.floor(model.scenario.eligibility.target_share * district)) - autonomous)


def convert(model: PortfolioModel) -> None:
    el, gov, sc = model.scenario.eligibility, model.scenario.governance, model.schools
    quota = min(el.conversions_per_year, room_left(model))
    approved = 0
    for s in eligible_schools(model):
        if approved >= quota:
            break
        operator = pick_operator(model) if gov.category != "district_run" else -1
        if gov.category != "district_run" and operator < 0:
            break   # no operator has room: the partner market limits growth
        if approve(model, applicant_z(model, operator, sc.leader_quality[s])):
            approved += 1
            model.pending.append({"kind": "conversion", "school": int(s), "operator": operator,
                                  "launch": model.year + launch_delay(model)})
            model.log("application_approved", int(s), "conversion approved" + _decided(model), operator=operator)
        else:
            model.log("application_denied", int(s), "plan did not meet the authorizer's bar" + _decided(model),
                      operator=operator)


def open_new_schools(model: PortfolioModel) -> None:
    el, gov = model.scenario.eligibility, model.scenario.governance
    if el.new_schools_per_year == 0 or el.schools == "none":
        return
    rng = model.streams["authorizing"]
    quota = min(el.new_schools_per_year, room_left(model))
    if quota <= 0:
        return
    approved = 0
    unhappy = students_wanting_better(model)   # (students and schools do not change in this loop)
    for _ in range(2 * quota):          # up to two applications per seat on offer
        if approved >= quota:
            return
        site = new_school_site(model, rng, unhappy)
        if site is None:
            return
        band, xy = site
        operator = pick_operator(model) if gov.category != "district_run" else -1
        if gov.category != "district_run" and operator < 0:
            return
        leader = float(rng.standard_normal())
        if approve(model, applicant_z(model, operator, leader)):
            approved += 1
            model.pending.append({"kind": "new", "school": -1, "operator": operator, "band": band,
                                  "xy": xy, "leader": leader, "launch": model.year + launch_delay(model)})
            model.log("application_approved", None, "new school approved" + _decided(model), operator=operator)
        else:
            model.log("application_denied", None, "new-school plan did not meet the bar" + _decided(model),
                      operator=operator)


def students_wanting_better(model: PortfolioModel) -> np.ndarray:
    """Students in a weak school (rated below the 35th percentile), or who left the district."""
    st, sc = model.students, model.schools
    weak = np.nan_to_num(sc.rating_pct, nan=50.0) < model.scenario.assumptions.authorizing.weak_school_percentile  # per school, then looked up per student
    return np.flatnonzero((st.grade >= 0) & ((st.school < 0) | weak[np.maximum(st.school, 0)]))


def new_school_site(model: PortfolioModel, rng: np.random.Generator, unhappy: np.ndarray | None = None
                    ) -> tuple[int, np.ndarray] | None:
    """Where demand for better seats is: near a student in a weak school, or who left the district
    (`unhappy`: `students_wanting_better(model)`, computed here if not given)."""
    st = model.students
    if unhappy is None:
        unhappy = students_wanting_better(model)
    if len(unhappy) == 0:
        return None
    pick = unhappy[rng.integers(len(unhappy))]
    band = int(model.band_of_grade[st.grade[pick]])
    xy = np.clip(model.hh_xy[st.household[pick]] + model.scenario.assumptions.authorizing.site_jitter * rng.standard_normal(2), 0.0, 1.0)
    return band, xy


# -- launch ------------------------------------------------------------------------------------------

def launch_due(model: PortfolioModel) -> None:
    due = [p for p in model.pending if p["launch"] <= model.year]
    model.pending = [p for p in model.pending if p["launch"] > model.year]
    for item in due:
        if item["kind"] == "new":
            s = lifecycle.open_school(model, item["band"], item["xy"], item["leader"])
        else:
            s = item["school"]
            if not model.schools.is_open[s]:
                continue
        make_autonomous(model, s, item["operator"])


def make_autonomous(model: PortfolioModel, s: int, operator: int) -> None:
    sc, scn = model.schools, model.scenario
    category = scn.governance.category
    if operator >= 0 and not model.operators.active[operator]:
        operator = pick_operator(model)
    sector = CATEGORY_SECTOR[category] if (operator >= 0 or category == "district_run") else DISTRICT_RUN
    lifecycle.convert(model, s, sector, operator)
    if operator >= 0:
        q = model.operators.quality[operator]
        sc.base_quality[s] += scn.assumptions.authorizing.operator_takeover * (q - sc.base_quality[s])
        talent.new_leaders(model, np.array([s]))     # partners select their own leaders
    elif not sc.leader_trained[s] and model.pipeline_available > 0:
        talent.new_leaders(model, np.array([s]))
    autonomy.grant(model, np.array([s]))
    if scn.implementation.startup_funding > 0:
        sc.startup_left[s] = scn.assumptions.authorizing.startup_years
        sc.resources[s] += scn.implementation.startup_funding    # the first year's start-up money
    kind = "opening" if sc.opened_year[s] == model.year and model.year > 0 else "conversion"
    model.log(kind, s, f"became {category.replace('_', '-')} autonomous", operator=operator)


ACTIONS = (Action("authorizing.pick_operator", writes=(), streams=("authorizing",)),)

MECHANISM = Mechanism(
    name="authorizing", order=2, step=step, phase="authorizing", stream="authorizing", stream_index=4,
    reads=("scenario.eligibility", "scenario.governance", "scenario.accountability", "scenario.implementation",
           "scenario.district", "scenario.talent", "model.board", "model.decisions", "schools.rating_pct",
           "schools.leader_trained", "students.grade", "students.school", "students.household"),
    writes=("model.pending", "operators.rows", "operators.name", "operators.capacity", "operators.active",
            "operators.hostile_years", "schools.base_quality", "schools.resources", "schools.startup_left"),
    calls=("lifecycle.log", "lifecycle.open_school", "lifecycle.convert", "authorizing.pick_operator",
           "talent.new_leaders", "autonomy.grant"), assumptions="authorizing",
)
