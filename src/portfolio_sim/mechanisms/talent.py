"""Talent: principals and a limited, shared supply of excellent teachers.

Seed 003, "Develop a talent strategy": "Schools will find it hard to hire enough excellent teachers
... include autonomies that allow schools to implement differentiated staffing plans that maximize the
talent and reach of an inevitably limited supply of excellent teachers and leaders." Seed 000 lesson 7:
invest in developing autonomous-school leaders; seed 004: traditional leader preparation does not
prepare principals to run autonomous schools.

* Principals leave at `talent.leader_turnover` a year. Autonomous schools fill vacancies first from the
  leader pipeline, which trains up to PIPELINE_PER_SCHOOL x `leader_pipeline` x (schools) leaders a
  year; pipeline leaders are stronger and trained to use autonomy. Other vacancies draw from the
  general pool.
* Excellent teachers are a fixed share of all teachers (`talent.excellent_teacher_share`). Each year
  `teacher_exit` of every school's teachers leave (EVIDENCE.md E-TAL-4); the excellent teachers not
  staying anywhere are the year's excellent applicants, and they fill vacancies at attractive schools
  first (high rating, resources, and staffing autonomy a school's plan uses to recruit), but no school's
  hires are more than `hire_share_cap` times as excellent as the pool. Allocation is zero-sum and
  bounded: a school's share moves only through its vacancies and stays within [0, cap].
* Differentiated staffing (with staffing autonomy) extends excellent teachers' reach to more students
  without adding teachers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.state import CHARTER, STAFFING

from portfolio_sim.mechanisms import Action, Mechanism
from portfolio_sim.mechanisms.autonomy import plan_relevance

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients: `model.scenario.assumptions.talent` (declared in portfolio_sim/assumptions.py).


def new_leaders(model: PortfolioModel, rows: np.ndarray, from_pipeline_first: bool = True) -> None:
    """Fill principal vacancies at `rows` (autonomous schools take pipeline leaders first)."""
    sc, rng = model.schools, model.streams["talent"]
    if len(rows) == 0:
        return
    quality = rng.standard_normal(len(rows))
    trained = np.zeros(len(rows), dtype=bool)
    if from_pipeline_first:
        eligible = np.flatnonzero(sc.autonomous[rows])
        take = eligible[: model.pipeline_available]
        quality[take] += model.scenario.assumptions.talent.pipeline_leader_boost
        trained[take] = True
        model.pipeline_available -= len(take)
    sc.leader_quality[rows] = quality
    sc.leader_trained[rows] = trained


def step(model: PortfolioModel) -> None:
    sc, rng, t = model.schools, model.streams["talent"], model.scenario.talent
    a = model.scenario.assumptions.talent
    district = sc.is_open & (sc.sector != CHARTER)
    n_district = int(district.sum())
    # Stochastic rounding: the expected number of trained leaders is exactly the pipeline's output.
    model.pipeline_available = int(np.floor(a.pipeline_per_school * t.leader_pipeline * n_district
                                            + rng.random()))
    # Turnover is higher right after autonomy was rolled back: leaders who came for it leave.
    p_leave = t.leader_turnover + a.rollback_turnover * (sc.rollback.max(1) > a.rollback_turnover_threshold)
    leaving = np.flatnonzero(district & (rng.random(len(sc)) < p_leave))
    # Autonomous schools first, so the limited pipeline goes to them.
    leaving = leaving[np.argsort(~sc.autonomous[leaving], kind="stable")]
    new_leaders(model, leaving)
    allocate_teachers(model)


def allocate_teachers(model: PortfolioModel) -> None:
    """Excellent teachers fill this year's vacancies: a limited supply, sorted towards attractive schools
    but bounded by turnover (only vacancies are filled) and by applicant pools (no school's hires are more
    than `hire_share_cap` times as excellent as the pool)."""
    sc, t, a = model.schools, model.scenario.talent, model.scenario.assumptions.talent
    district = sc.is_open & (sc.sector != CHARTER)
    if not district.any():
        return
    teachers = np.where(district, np.maximum(sc.enrollment, 1), 0).astype(float)   # teachers ~ students
    staying = (1.0 - a.teacher_exit) * sc.teacher_share * teachers
    vacancies = a.teacher_exit * teachers
    # The district's supply of excellent teachers is a fixed share of its posts: those not staying
    # (leavers re-sorting, new entrants) are this year's excellent applicants.
    pool = float(np.clip(t.excellent_teacher_share * teachers.sum() - staying.sum(), 0.0, vacancies.sum()))
    rz = np.nan_to_num(model.perceived_z, nan=0.0)
    res = sc.resources / max(model.reference_resources, 1.0) - 1.0
    recruits = sc.effective[:, STAFFING] * plan_relevance(model, sc.need[:, STAFFING])
    attract = rz + a.attract_resources * res + a.attract_staffing * recruits
    weight = np.where(district, np.exp(a.attraction * np.clip(attract, -3, 3)), 0.0)
    cap = min(1.0, a.hire_share_cap * pool / max(vacancies.sum(), 1e-9))
    # Excellent share of each school's hires: min(cap, lam * weight), lam set so that hires use the pool
    # (water-filling; the capped set only grows, so this ends within a few rounds).
    capped = np.zeros(len(sc), dtype=bool)
    lam = 0.0
    for _ in range(len(sc) + 1):
        free = district & ~capped
        denom = float((weight[free] * vacancies[free]).sum())
        lam = (pool - cap * vacancies[capped].sum()) / denom if denom > 0 else 0.0
        newly = free & (lam * weight >= cap)
        if not newly.any():
            break
        capped |= newly
    hired = np.where(capped, cap, np.minimum(cap, lam * weight))
    share = (staying + vacancies * hired) / np.maximum(teachers, 1.0)
    sc.teacher_share = np.where(district, share, sc.teacher_share)
    # Differentiated staffing extends reach; it needs staffing autonomy to redesign roles.
    reach = 1.0 + a.reach_per_differentiation * t.differentiated_staffing * sc.effective[:, STAFFING]
    model.teacher_exposure = np.minimum(1.0, sc.teacher_share * reach)


ACTIONS = (Action("talent.new_leaders", writes=("schools.leader_quality", "schools.leader_trained",
                                                "model.pipeline_available"), streams=("talent",)),)

MECHANISM = Mechanism(
    name="talent", order=4.2, step=step, phase="schooling", stream="talent", stream_index=6,
    reads=("scenario.talent", "schools.is_open", "schools.sector", "schools.rollback", "schools.effective",
           "schools.need", "schools.teacher_share",
           "schools.resources", "schools.enrollment", "model.perceived_z", "model.reference_resources"),
    writes=("model.pipeline_available", "schools.teacher_share", "model.teacher_exposure"),
    calls=("talent.new_leaders",), assumptions="talent",
)
