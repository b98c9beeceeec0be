"""Schooling: school effectiveness this year, and students' achievement growth.

Achievement is in student-level standard-deviation units. Each year

    a' = rho * a + (1 - rho) * b + v_school + e,   e ~ N(0, sigma)

where `b` is the student's long-run level without school effects (lower for low-income students,
which gives the starting achievement gap) and `v_school` is the school's value-added. School effects
persist but fade (`rho` < 1), as in value-added research, so sustained differences in school quality
accumulate into achievement and gap differences over several years.

A school's value-added `v` sums: its model's base quality (the operator's model for partner schools),
its principal and its share of excellent teachers in absolute terms (`talent`; a district with more
excellent teachers gains everywhere, EVIDENCE.md E-TAL-1), the autonomy effect with implementation
dip and maturation (`autonomy`: seed 003 note 2), per-pupil resources (`finance`) and service quality
(`central_office.services`, seed 000 lesson 4). Charter schools' value-added is their base quality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.mechanisms import Action, Mechanism, autonomy
from portfolio_sim.state import CHARTER

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients (rho, sigma, ...): `model.scenario.assumptions.achievement` (portfolio_sim/assumptions.py).


def new_students(model: PortfolioModel, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Entering students: income group from the household, long-run level, starting achievement."""
    st, a = model.students, model.scenario.assumptions.achievement
    st.low_income[rows] = model.hh_low_income[st.household[rows]]
    st.baseline[rows] = np.where(st.low_income[rows], -a.baseline_gap / 2, a.baseline_gap / 2) + \
        a.baseline_sd * rng.standard_normal(len(rows))
    st.achievement[rows] = st.baseline[rows] + a.sigma * rng.standard_normal(len(rows))


def warm_start(model: PortfolioModel, rng: np.random.Generator) -> None:
    """Starting achievement as if students had long attended their current school (no start-up drift)."""
    st, sc, a = model.students, model.schools, model.scenario.assumptions.achievement
    on = (st.grade >= 0) & (st.school >= 0)
    stationary_sd = a.sigma / np.sqrt(1.0 - a.rho * a.rho)
    st.achievement[on] = st.baseline[on] + sc.value_added[st.school[on]] / (1.0 - a.rho) + \
        stationary_sd * rng.standard_normal(int(on.sum()))


def school_value_added(model: PortfolioModel) -> np.ndarray:
    sc = model.schools
    scn = model.scenario
    a = scn.assumptions.achievement
    district = sc.sector != CHARTER
    v = sc.base_quality.copy()
    v += np.where(district, a.leader_effect * sc.leader_quality, 0.0)
    v += np.where(district, a.teacher_effect * (model.teacher_exposure - a.teacher_reference_share), 0.0)
    v += np.where(district, autonomy.effect(model), 0.0)
    ref = max(model.reference_resources, 1.0)
    v += np.where(district, a.resource_effect * np.clip(sc.resources / ref - 1.0, -1.0, 1.0), 0.0)
    if scn.central_office.services == "public_enterprise":
        v += np.where(district & ~sc.opted_out, a.enterprise_service_gain, 0.0)
    return v


def step(model: PortfolioModel) -> None:
    """Value-added for every school, then one year of growth for every student."""
    st, sc, a = model.students, model.schools, model.scenario.assumptions.achievement
    sc.value_added = school_value_added(model)
    rng = model.streams["achievement"]
    noise = a.sigma * rng.standard_normal(len(st)).astype(np.float32)
    on = st.grade >= 0
    # Value-added of each student's school; 0 outside the district (private/other, ~average) and for
    # inactive slots: a lookup in value_added with a 0 appended for them.
    v = np.append(sc.value_added, 0.0)[np.where(on & (st.school >= 0), st.school, len(sc))]
    if a.displacement_cost != 0.0 and len(model.closure_movers):   # a closure's one-year disruption (E-CLO-2)
        v[model.closure_movers] += a.displacement_cost
    persist, level = a.rho * st.achievement, (1.0 - a.rho) * st.baseline
    new = persist + level + v + noise
    model.last_growth = np.where(on, new - persist - level, 0.0)
    np.copyto(st.achievement, new, where=on, casting="same_kind")
    model.update_school_counts()     # enrollment, low-income enrollment and mean achievement after growth


# Entering students (called by enrollment with its stream, and when the model is built).
ACTIONS = (Action("achievement.new_students", writes=("students.low_income", "students.baseline",
                                                     "students.achievement")),)

MECHANISM = Mechanism(
    name="achievement", order=4.3, step=step, phase="schooling", stream="achievement", stream_index=7,
    reads=("scenario.central_office", "scenario.autonomy", "scenario.implementation", "model.office_active", "schools.base_quality", "schools.leader_quality", "schools.sector",
           "schools.resources", "schools.opted_out", "schools.need", "schools.effective", "schools.alignment",
           "schools.capacity_score", "schools.autonomy_year", "model.teacher_exposure", "students.grade",
           "students.school", "students.baseline", "students.low_income", "model.closure_movers"),
    # (update_school_counts also recounts schools.enrollment, to the same numbers: no student moves
    # between enrollment and here)
    writes=("schools.value_added", "students.achievement", "model.last_growth",
            "schools.low_income_enrolled", "schools.mean_achievement"), assumptions="achievement",
)
