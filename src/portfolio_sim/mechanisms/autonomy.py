"""Autonomy: what a school is granted, what it can actually use, and what that is worth over time.

Seed 003, "School-based autonomy" and Table 2: four domains (staffing, academic/program, budget,
operations), each granted at a degree 0-1 (`[autonomy]`).

* Granting ("Planning and Implementing School Autonomies"): *a la carte* schools request the domains
  their plan needs (need >= NEED_TO_REQUEST), so what they get is aligned with their goals; *prescribed*
  initiatives grant the same set to every school, so alignment is the overlap between a school's needs
  and the set.
* Effective autonomy: granted x (1 - rollback by reversals) x (1 - interference), where interference
  comes from low central-office buy-in (seed 000 lesson 3), is buffered by an autonomy office (seed 000
  lesson 2; seed 003 "dedicated district office") and by a governance shift (seed 003 "Categories").
  Collective bargaining caps staffing autonomy for district-employed staff unless elect-to-work or a
  separate agreement applies (seed 003 "Enabling Autonomy under Collective Bargaining Agreements").
  Mandatory district services cap operations autonomy (seed 003 "Operations").
* Value (EVIDENCE.md sections 1-3): autonomy helps where the school has the capacity to use it
  (leader, pipeline training, support office, readiness from planning time and start-up money, the
  operator's model, councils, and an unobserved school-level implementation fit) and where it covers
  what the school's plan needs; below `capacity_breakeven` the same autonomy loses value-added (weak
  capacity). Domains used with no plan for them (prescribed sets) and district support lost with
  operations autonomy cost value-added too, so a meaningful share of conversions end worse than they
  would have been (E-SPR-1, E-SPR-5). Budget autonomy multiplies the value of the others as far as the
  savings go to the plan (`alignment`; seed 003 "Budget"), and only where that value is a gain.
* Time path (an imposed shape, docs/ODD.md): a first-year implementation dip, smaller with planning
  time, start-up money and capacity, fading over `dip_decay_years`; and a linear ramp to the steady
  state over `autonomy.maturation_years` (3: "median results were underwhelming for schools in the first
  few years ... over a longer term (such as, 3 years or more), increases ... become more pronounced",
  seed 003 note 2; E-TIME-1), flat after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.state import BUDGET, DISTRICT_RUN, OPERATIONS, PARTNER_LED, PARTNER_RUN, STAFFING

from portfolio_sim.mechanisms import Action, Mechanism

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients: `model.scenario.assumptions.autonomy` (declared in portfolio_sim/assumptions.py).


def draw_needs(rng: np.random.Generator, n: int) -> np.ndarray:
    """What each school's improvement plan depends on, per domain (sums to 1)."""
    return rng.dirichlet(np.ones(4), size=n)


def plan_relevance(model: PortfolioModel, need: np.ndarray) -> np.ndarray:
    """0-1 per domain: how far a school's plan relies on it (1 at or above `need_to_request`, the share at
    which an a la carte school would ask for the domain)."""
    return np.minimum(1.0, need / model.scenario.assumptions.autonomy.need_to_request)


def grant(model: PortfolioModel, rows: np.ndarray) -> None:
    """Set granted autonomy and alignment for schools becoming autonomous."""
    sc, a = model.schools, model.scenario.autonomy
    ceiling = np.array([a.staffing, a.academic, a.budget, a.operations])
    need = sc.need[rows]
    if a.waivers == "a_la_carte":
        requested = need >= model.scenario.assumptions.autonomy.need_to_request
        sc.granted[rows] = np.where(requested, ceiling, 0.0)
    else:
        sc.granted[rows] = ceiling
    # Alignment: the share of the granted autonomy that the school's plan relies on (1 for a la carte,
    # where a school only gets what it asked for; less for a prescribed set that includes domains it
    # has no plan for).
    g = sc.granted[rows]
    sc.alignment[rows] = (plan_relevance(model, need) * g).sum(1) / np.maximum(g.sum(1), 1e-9)
    sc.rollback[rows] = 0.0
    # Schools given the same autonomy use it differently for reasons the district does not see (staff
    # culture, the leader's fit with the school): EVIDENCE.md E-SPR-2. Drawn from the caller's stream.
    sc.implementation_fit[rows] = model.streams["authorizing"].standard_normal(len(rows))


def interference(model: PortfolioModel) -> np.ndarray:
    sc, co, a = model.schools, model.scenario.central_office, model.scenario.assumptions.autonomy
    shield = np.zeros(len(sc))
    shields = ((DISTRICT_RUN, 0.0), (PARTNER_LED, a.shield_partner_led), (PARTNER_RUN, a.shield_partner_run))
    for sector, value in shields:
        shield[sc.sector == sector] = value
    office = model.office_active * co.office_strength
    base = a.max_interference * (1.0 - co.buy_in) * (1.0 - office)
    if model.scenario.autonomy.waivers == "a_la_carte" and not model.office_active:
        base *= a.a_la_carte_interference   # every school's waivers differ: more for a thin office to get wrong
    return np.clip(base * (1.0 - shield), 0.0, 1.0)


def update_effective(model: PortfolioModel) -> None:
    sc, gov, a = model.schools, model.scenario.governance, model.scenario.assumptions.autonomy
    eff = sc.granted * (1.0 - sc.rollback) * (1.0 - interference(model))[:, None]
    district_employs = ~((sc.sector == PARTNER_RUN) & gov.operator_employs_staff)
    cap = {"district_cba": None, "elect_to_work": a.cba_cap_elect_to_work,
           "separate_agreement": a.cba_cap_separate_agreement}[gov.collective_bargaining]
    cap = gov.cba_staffing_cap if cap is None else max(cap, gov.cba_staffing_cap)
    eff[:, STAFFING] = np.where(district_employs, np.minimum(eff[:, STAFFING], cap), eff[:, STAFFING])
    if model.scenario.central_office.services == "mandatory":
        eff[:, OPERATIONS] = np.minimum(eff[:, OPERATIONS], a.mandatory_services_operations_cap)
    eff[~sc.autonomous] = 0.0
    sc.effective = eff
    sc.capacity_score = capacity(model)


def readiness(model: PortfolioModel) -> tuple[float, float]:
    """(planning, funding) readiness 0-1 of schools launched under this scenario: planning months against
    `full_readiness_months`, start-up money per pupil against `startup_full_funding`."""
    imp, k = model.scenario.implementation, model.scenario.assumptions.autonomy
    return (min(1.0, imp.planning_months / k.full_readiness_months),
            min(1.0, imp.startup_funding / k.startup_full_funding))


def capacity(model: PortfolioModel) -> np.ndarray:
    """0-1 capacity to use autonomy: leader, pipeline training, support office, readiness built by planning
    time and start-up money (lasting: E-TIME-4), the operator's model, councils, and the school's own
    implementation fit."""
    sc, scn = model.schools, model.scenario
    a = scn.assumptions.autonomy
    op_q = np.zeros(len(sc))
    run = sc.operator >= 0            # schools run by an operator (none when the district has no operators)
    if run.any():
        op_q[run] = model.operators.quality[sc.operator[run]]
    planned, funded = readiness(model)
    c = (a.capacity_base + a.capacity_leader * sc.leader_quality + a.capacity_trained * sc.leader_trained
         + a.capacity_office * model.office_active * scn.central_office.office_strength
         + a.capacity_planning * planned + a.capacity_startup * funded
         + a.capacity_operator * op_q
         + a.capacity_councils * scn.implementation.governance_councils
         + a.capacity_fit_sd * sc.implementation_fit)
    return np.clip(c, 0.0, 1.0)


def effect(model: PortfolioModel) -> np.ndarray:
    """Value-added from autonomy this year (SD/yr): a steady state that can be negative, reached by a
    linear ramp over `maturation_years` (an imposed shape, docs/ODD.md), minus a first-year dip."""
    sc, a = model.schools, model.scenario.autonomy
    k = model.scenario.assumptions.autonomy
    c = sc.capacity_score
    # Aligned use: the part of the plan the usable autonomy covers. Budget autonomy multiplies a gain only
    # as far as the savings go to the plan (alignment); savings reallocated by a school below the capacity
    # break-even buy more of a plan it cannot carry out, which wastes them but costs no extra value-added,
    # so a loss is not multiplied (seed 003 "Budget": it helps a school "maximize other autonomies").
    fit = (sc.need * sc.effective).sum(1)
    multiplier = 1.0 + a.budget_multiplier * sc.effective[:, BUDGET] * sc.alignment
    used = a.max_effect * fit * (c - k.capacity_breakeven) / (1.0 - k.capacity_breakeven)
    gain = np.where(used > 0.0, used * multiplier, used)
    # Harm beyond weak capacity (gain < 0 below the break-even): domains used with no plan for them, and
    # district support lost with operations autonomy where no autonomy office replaces it.
    unplanned = ((1.0 - plan_relevance(model, sc.need)) * sc.effective).mean(1)
    office = model.office_active * model.scenario.central_office.office_strength
    harm = k.misaligned_cost * unplanned + k.support_loss * sc.effective[:, OPERATIONS] * (1.0 - office)
    years = np.where(sc.autonomy_year >= 0, model.year - sc.autonomy_year, 0).astype(float)
    maturity = np.minimum(1.0, years / a.maturation_years)
    planned, funded = readiness(model)
    dip = a.dip_depth * (1.0 - k.readiness_dip_reduction * planned) * (1.0 - k.funding_dip_reduction * funded) \
        * (1.0 - k.capacity_dip_reduction * c) * np.exp(-years / k.dip_decay_years)
    return np.where(sc.autonomous & (sc.autonomy_year >= 0), maturity * (gain - harm) - dip, 0.0)


ACTIONS = (Action("autonomy.grant", writes=("schools.granted", "schools.alignment", "schools.rollback",
                                            "schools.implementation_fit"), streams=("authorizing",)),)

MECHANISM = Mechanism(
    name="autonomy", order=4.1, step=update_effective, phase="schooling",
    reads=("scenario.autonomy", "scenario.governance", "scenario.central_office", "scenario.implementation",
           "schools.granted", "schools.rollback", "schools.sector", "schools.leader_quality", "schools.leader_trained",
           "schools.operator", "operators.quality", "model.office_active", "schools.implementation_fit"),
    writes=("schools.effective", "schools.capacity_score"), assumptions="autonomy",
)
