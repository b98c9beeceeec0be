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
* Value: autonomy helps only where aligned with the school's goals and where the school has capacity
  (leader, training, planning, start-up money, operator support) to use it; budget autonomy multiplies
  the value of the others through reallocated "savings" (seed 003 "Budget", "Ensure sufficient funding").
* Time path: an implementation dip in the first year(s), deeper with little planning time and low
  capacity, then maturation: "median results were underwhelming for schools in the first few years ...
  over a longer term (such as, 3 years or more), increases ... become more pronounced" (seed 003, note 2).
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


def grant(model: PortfolioModel, rows: np.ndarray) -> None:
    """Set granted autonomy and alignment for schools becoming autonomous."""
    sc, a = model.schools, model.scenario.autonomy
    ceiling = np.array([a.staffing, a.academic, a.budget, a.operations])
    need = sc.need[rows]
    if a.waivers == "a_la_carte":
        requested = need >= model.scenario.assumptions.autonomy.need_to_request
        sc.granted[rows] = np.where(requested, ceiling, 0.0)
        sc.alignment[rows] = 1.0
    else:
        sc.granted[rows] = ceiling
        # Overlap of needs with the prescribed set (cosine similarity).
        denom = np.linalg.norm(need, axis=1) * max(np.linalg.norm(ceiling), 1e-9)
        sc.alignment[rows] = (need @ ceiling) / denom
    sc.rollback[rows] = 0.0


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


def capacity(model: PortfolioModel) -> np.ndarray:
    """0-1 capacity to use autonomy: leader, pipeline training, support office, start-up money, operator."""
    sc, scn = model.schools, model.scenario
    a = scn.assumptions.autonomy
    op_q = np.zeros(len(sc))
    run = sc.operator >= 0            # schools run by an operator (none when the district has no operators)
    if run.any():
        op_q[run] = model.operators.quality[sc.operator[run]]
    c = (a.capacity_base + a.capacity_leader * sc.leader_quality + a.capacity_trained * sc.leader_trained
         + a.capacity_office * model.office_active * scn.central_office.office_strength
         + a.capacity_startup * min(1.0, scn.implementation.startup_funding / a.startup_full_funding)
         * (sc.startup_left > 0)
         + a.capacity_operator * op_q
         + a.capacity_councils * scn.implementation.governance_councils)
    return np.clip(c, 0.0, 1.0)


def effect(model: PortfolioModel) -> np.ndarray:
    """Value-added from autonomy this year (SD/yr), with dip and maturation."""
    sc, a, imp = model.schools, model.scenario.autonomy, model.scenario.implementation
    k = model.scenario.assumptions.autonomy
    usefulness = (sc.need * sc.effective).sum(1) * sc.alignment
    multiplier = 1.0 + a.budget_multiplier * sc.effective[:, BUDGET]
    years = np.where(sc.autonomy_year >= 0, model.year - sc.autonomy_year, 0).astype(float)
    maturity = 1.0 - np.exp(-(years + 1.0) / a.maturation_years)
    readiness = min(1.0, imp.planning_months / k.full_readiness_months)
    dip = a.dip_depth * (1.0 - k.readiness_dip_reduction * readiness) \
        * (1.0 - k.capacity_dip_reduction * sc.capacity_score) * np.exp(-years / k.dip_decay_years)
    gain = a.max_effect * usefulness * multiplier * sc.capacity_score * maturity
    return np.where(sc.autonomous & (sc.autonomy_year >= 0), gain - dip, 0.0)


ACTIONS = (Action("autonomy.grant", writes=("schools.granted", "schools.alignment", "schools.rollback")),)

MECHANISM = Mechanism(
    name="autonomy", order=4.1, step=update_effective, phase="schooling",
    reads=("scenario.autonomy", "scenario.governance", "scenario.central_office", "scenario.implementation",
           "schools.granted", "schools.rollback", "schools.sector", "schools.leader_quality", "schools.leader_trained",
           "schools.startup_left", "schools.operator", "operators.quality", "model.office_active"),
    writes=("schools.effective", "schools.capacity_score"), assumptions="autonomy",
)
