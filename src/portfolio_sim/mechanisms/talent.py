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
* Excellent teachers are a fixed share of all teachers. Each year a share of them re-sort towards
  attractive schools (high rating, resources, and staffing autonomy to recruit). Allocation is
  zero-sum: one school's gain is another's loss.
* Differentiated staffing (with staffing autonomy) extends excellent teachers' reach to more students
  without adding teachers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.state import CHARTER, STAFFING

from portfolio_sim.mechanisms import Action, Mechanism

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
    sc, t, a = model.schools, model.scenario.talent, model.scenario.assumptions.talent
    district = sc.is_open & (sc.sector != CHARTER)
    if not district.any():
        return
    rz = np.nan_to_num(model.perceived_z, nan=0.0)
    res = sc.resources / max(model.reference_resources, 1.0) - 1.0
    attract = rz + a.attract_resources * res + a.attract_staffing * sc.effective[:, STAFFING]
    weight = np.where(district, np.exp(a.attraction * np.clip(attract, -3, 3)) * np.maximum(sc.enrollment, 1), 0.0)
    pool = t.excellent_teacher_share * np.maximum(sc.enrollment[district], 1).sum()
    target = np.zeros(len(sc))
    target[district] = pool * weight[district] / weight[district].sum() / np.maximum(sc.enrollment[district], 1)
    # No school can staff more than all its teachers as excellent: spread the excess to others.
    for _ in range(10):
        over = np.clip(target - 1.0, 0.0, None) * np.maximum(sc.enrollment, 1)
        if over.sum() < 1e-9:
            break
        target = np.minimum(target, 1.0)
        room = district & (target < 1.0)
        if not room.any():
            break
        target[room] += over.sum() * weight[room] / weight[room].sum() / np.maximum(sc.enrollment[room], 1)
    raw = (1 - a.teacher_mobility) * sc.teacher_share + a.teacher_mobility * target
    # Differentiated staffing extends reach; it needs staffing autonomy to redesign roles.
    sc.teacher_share = np.where(district, raw, sc.teacher_share)
    reach = 1.0 + a.reach_per_differentiation * t.differentiated_staffing * sc.effective[:, STAFFING]
    model.teacher_exposure = np.minimum(1.0, sc.teacher_share * reach)


ACTIONS = (Action("talent.new_leaders", writes=("schools.leader_quality", "schools.leader_trained",
                                                "model.pipeline_available"), streams=("talent",)),)

MECHANISM = Mechanism(
    name="talent", order=4.2, step=step, phase="schooling", stream="talent", stream_index=6,
    reads=("scenario.talent", "schools.is_open", "schools.sector", "schools.rollback", "schools.effective",
           "schools.resources", "schools.enrollment", "model.perceived_z", "model.reference_resources"),
    writes=("model.pipeline_available", "schools.teacher_share", "model.teacher_exposure"),
    calls=("talent.new_leaders",), assumptions="talent",
)
