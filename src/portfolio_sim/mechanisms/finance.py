"""Finance: per-pupil funding follows students; small schools become unviable.

Seed 003, "Ensure sufficient funding": autonomous schools "optimally operate on district per-pupil
funding"; start-up funding supports planning and the first year(s); budget autonomy lets schools
reallocate "savings". Seed 003 "Operations" and seed 000 lesson 4: services mandatory, a la carte
(fee-for-service, opt out), or public enterprises competing with outside providers.

Per school: revenue = per-pupil funding x enrollment (+ start-up funding); costs = a fixed cost of
keeping the building open + services (a share of funding; schools that opt out buy outside at a
discount; public enterprises become cheaper). What is left per pupil is the school's per-pupil
resources for instruction; budget autonomy stretches it. A school enrolled below
`district.min_viable_share` of capacity for `viability_years` (2) in a row closes (consolidation), once
past its grace period (`accountability.enrollment_grace_years`, default 2: a new school can first
close for low enrollment at the end of its fourth year).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim import lifecycle
from portfolio_sim.state import BUDGET, CHARTER, OPERATIONS

from portfolio_sim.mechanisms import Mechanism

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients: `model.scenario.assumptions.finance` (declared in portfolio_sim/assumptions.py).


def per_pupil_funding(model: PortfolioModel) -> float:
    return model.scenario.district.per_pupil_funding * model.funding_factor


def fund_schools(model: PortfolioModel) -> None:
    sc, d, co = model.schools, model.scenario.district, model.scenario.central_office
    a = model.scenario.assumptions.finance
    f = per_pupil_funding(model)
    n = np.maximum(sc.enrollment, 1).astype(float)
    # A la carte / enterprise: autonomous schools with operations autonomy may opt out of services.
    if co.services == "mandatory":
        sc.opted_out[:] = False
    else:
        sc.opted_out = sc.autonomous & (sc.effective[:, OPERATIONS] >= a.opt_out_operations)
    price = co.service_cost_share * (1.0 - a.enterprise_discount * (co.services == "public_enterprise"))
    service = np.where(sc.opted_out, co.service_cost_share * (1.0 - a.outside_service_discount), price)
    # Budgets are set at the end of a year for the next: a school in its first start-up year gets its
    # second year's start-up money now (the first year's came at launch, `authorizing.make_autonomous`).
    sc.startup_left = np.maximum(sc.startup_left - 1, 0)
    startup = np.where(sc.startup_left > 0, model.scenario.implementation.startup_funding, 0.0)
    left = f * (1.0 - service) + startup - d.fixed_cost_per_school / n
    left *= 1.0 + a.budget_stretch * sc.effective[:, BUDGET]
    sc.resources = np.where(sc.sector != CHARTER, np.maximum(left, 0.0), f * (1.0 - co.service_cost_share))


def step(model: PortfolioModel) -> None:
    """After accountability: next year's budgets from this year's enrollment, then viability."""
    a = model.scenario.assumptions.finance
    model.funding_factor += a.shock_recovery * (1.0 - model.funding_factor)
    fund_schools(model)
    sc = model.schools
    # New schools and schools in a new status (conversion, restart) get time to build enrollment: a
    # grace period (`accountability.enrollment_grace_years`, a lever), then `viability_years` under the line.
    grace = model.scenario.accountability.enrollment_grace_years
    settled = (model.year - sc.opened_year >= grace) & (model.year - sc.status_year >= grace)
    district = sc.is_open & (sc.sector != CHARTER) & settled
    small = district & (sc.enrollment < model.scenario.district.min_viable_share * sc.capacity)
    sc.low_enroll_years = np.where(small, sc.low_enroll_years + 1, 0).astype(np.int32)
    for s in np.flatnonzero(sc.low_enroll_years >= a.viability_years):
        lifecycle.close_school(model, int(s), "closure", f"under-enrolled: {sc.enrollment[s]} of {sc.capacity[s]} seats "
                           f"for {a.viability_years} years")


MECHANISM = Mechanism(
    name="finance", order=6, step=step, phase="finance",
    reads=("scenario.district", "scenario.central_office", "scenario.implementation", "scenario.accountability",
           "schools.enrollment",
           "schools.capacity", "schools.sector", "schools.effective", "schools.opened_year", "schools.status_year"),
    writes=("model.funding_factor", "schools.resources", "schools.startup_left", "schools.opted_out",
            "schools.low_enroll_years"),
    calls=("lifecycle.close_school",), assumptions="finance",
)
