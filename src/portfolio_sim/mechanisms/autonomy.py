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

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

NEED_TO_REQUEST = 0.2                      # a la carte: request a domain the plan leans on this much
GOVERNANCE_SHIELD = {DISTRICT_RUN: 0.0, PARTNER_LED: 0.35, PARTNER_RUN: 0.75}
MAX_INTERFERENCE = 0.6                     # zero buy-in, no office, no shield: 60% of autonomy unusable
CBA_CAP = {"district_cba": None, "elect_to_work": 0.7, "separate_agreement": 0.85}
MANDATORY_SERVICES_OPERATIONS_CAP = 0.3
FULL_READINESS_MONTHS = 15.0               # middle of seed 003's recommended 12-18 months
DIP_DECAY_YEARS = 1.0


def draw_needs(rng: np.random.Generator, n: int) -> np.ndarray:
    """What each school's improvement plan depends on, per domain (sums to 1)."""
    return rng.dirichlet(np.ones(4), size=n)


def grant(model: PortfolioModel, rows: np.ndarray) -> None:
    """Set granted autonomy and alignment for schools becoming autonomous."""
    sc, a = model.schools, model.scenario.autonomy
    ceiling = np.array([a.staffing, a.academic, a.budget, a.operations])
    need = sc.need[rows]
    if a.waivers == "a_la_carte":
        requested = need >= NEED_TO_REQUEST
        sc.granted[rows] = np.where(requested, ceiling, 0.0)
        sc.alignment[rows] = 1.0
    else:
        sc.granted[rows] = ceiling
        # Overlap of needs with the prescribed set (cosine similarity).
        denom = np.linalg.norm(need, axis=1) * max(np.linalg.norm(ceiling), 1e-9)
        sc.alignment[rows] = (need @ ceiling) / denom
    sc.rollback[rows] = 0.0


def interference(model: PortfolioModel) -> np.ndarray:
    sc, co = model.schools, model.scenario.central_office
    shield = np.zeros(len(sc))
    for sector, value in GOVERNANCE_SHIELD.items():
        shield[sc.sector == sector] = value
    office = model.office_active * co.office_strength
    base = MAX_INTERFERENCE * (1.0 - co.buy_in) * (1.0 - office)
    if model.scenario.autonomy.waivers == "a_la_carte" and not model.office_active:
        base *= 1.2    # every school's waivers differ: more for a thin central office to get wrong
    return np.clip(base * (1.0 - shield), 0.0, 1.0)


def update_effective(model: PortfolioModel) -> None:
    sc, gov = model.schools, model.scenario.governance
    eff = sc.granted * (1.0 - sc.rollback) * (1.0 - interference(model))[:, None]
    district_employs = ~((sc.sector == PARTNER_RUN) & gov.operator_employs_staff)
    cap = CBA_CAP[gov.collective_bargaining]
    cap = gov.cba_staffing_cap if cap is None else max(cap, gov.cba_staffing_cap)
    eff[:, STAFFING] = np.where(district_employs, np.minimum(eff[:, STAFFING], cap), eff[:, STAFFING])
    if model.scenario.central_office.services == "mandatory":
        eff[:, OPERATIONS] = np.minimum(eff[:, OPERATIONS], MANDATORY_SERVICES_OPERATIONS_CAP)
    eff[~sc.autonomous] = 0.0
    sc.effective = eff
    sc.capacity_score = capacity(model)


def capacity(model: PortfolioModel) -> np.ndarray:
    """0-1 capacity to use autonomy: leader, pipeline training, support office, start-up money, operator."""
    sc, scn = model.schools, model.scenario
    quality = model.operators.quality
    op_q = np.zeros(len(sc))
    run = sc.operator >= 0            # schools run by an operator (none when the district has no operators)
    if run.any():
        op_q[run] = quality[sc.operator[run]]
    c = (0.45 + 0.12 * sc.leader_quality + 0.15 * sc.leader_trained
         + 0.10 * model.office_active * scn.central_office.office_strength
         + 0.10 * min(1.0, scn.implementation.startup_funding / 1500.0) * (sc.startup_left > 0)
         + 1.0 * op_q
         + 0.05 * scn.implementation.governance_councils)
    return np.clip(c, 0.0, 1.0)


def effect(model: PortfolioModel) -> np.ndarray:
    """Value-added from autonomy this year (SD/yr), with dip and maturation."""
    sc, a, imp = model.schools, model.scenario.autonomy, model.scenario.implementation
    usefulness = (sc.need * sc.effective).sum(1) * sc.alignment
    multiplier = 1.0 + a.budget_multiplier * sc.effective[:, BUDGET]
    years = np.where(sc.autonomy_year >= 0, model.year - sc.autonomy_year, 0).astype(float)
    maturity = 1.0 - np.exp(-(years + 1.0) / a.maturation_years)
    readiness = min(1.0, imp.planning_months / FULL_READINESS_MONTHS)
    dip = a.dip_depth * (1.0 - 0.7 * readiness) * (1.0 - 0.5 * sc.capacity_score) * np.exp(-years / DIP_DECAY_YEARS)
    gain = a.max_effect * usefulness * multiplier * sc.capacity_score * maturity
    return np.where(sc.autonomous & (sc.autonomy_year >= 0), gain - dip, 0.0)
