"""Accountability: ratings, the bar, interventions, and contract renewals.

Seed 000 lesson 6: "a clear system of accountability to close and/or replace failing schools ... a
performance framework that requires schools to show academic growth". Seed 003, district-school
relationship: "Despite the transfer of authority ... the district remains accountable for the
school's performance"; partner-run contracts are "for a limited, often renewable term ... revocable
only for cause" (Indianapolis 5-7 years, Camden 10, LLN MOU every 3; seed 003 "Categories").

* Ratings: under a `growth` framework, a school's rating is its measured value-added (mean student
  growth plus measurement noise); under `status`, its students' mean achievement (which also reflects
  who enrolls). Ratings are converted to percentiles of a fixed reference distribution (the state's,
  taken as the district's starting distribution), so a district can improve against it.
* New schools have no rating for `min_years_rated` years (no track record).
* A school rated below `closure_percentile` for `consecutive_years` in a row gets the intervention
  (`close`, `restart` with a new leader and model, or `replace_operator`), for autonomous schools or
  all schools as `applies_to` says. A school one year from intervention is put on warning.
* Every `contract_term` years an autonomous school's contract or MOU is reviewed: below
  `renewal_percentile` (averaged over the term) it is not renewed: its operator is replaced when one
  is available and the initiative asks for it, otherwise it returns to traditional status. A term a
  hostile board majority declined to renew (politics: `board.declined`) ends the same way, without a
  new operator: the school returns to traditional status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr

from portfolio_sim import lifecycle
from portfolio_sim.decisions import WORKSHOP
from portfolio_sim.state import CHARTER, PARTNER_LED, PARTNER_RUN

from portfolio_sim.mechanisms import Mechanism

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

def measure(model: PortfolioModel) -> np.ndarray:
    """This year's measured rating of every open school (NaN for schools too new to rate)."""
    sc, acc = model.schools, model.scenario.accountability
    st = model.students
    rng = model.streams["accountability"]
    n = np.maximum(sc.enrollment, 1)
    if acc.framework == "growth":
        # Mean measured growth already carries the sampling noise of the school's students; the test
        # itself adds `rating_noise`. (Students not enrolled count in an extra bin past the last school:
        # bincount adds in input order, so each school's sum is the same as over its students alone.)
        school = np.where((st.grade >= 0) & (st.school >= 0), st.school, len(sc))
        growth = np.bincount(school, weights=model.last_growth, minlength=len(sc) + 1)[:-1] / n
        rating = growth + acc.rating_noise * rng.standard_normal(len(sc))
    else:
        # Status: proficiency-like mean achievement, measured with noise.
        rating = sc.mean_achievement + acc.rating_noise * rng.standard_normal(len(sc))
    too_new = (model.year - sc.opened_year < acc.min_years_rated) & (sc.opened_year > 0)
    return np.where(sc.is_open & ~too_new & (sc.enrollment > 0), rating, np.nan)


def to_percentile(model: PortfolioModel, rating: np.ndarray) -> np.ndarray:
    """Percentile of each rating in the reference (state) distribution, kept fixed for the run."""
    mu, sd = model.rating_reference
    return 100.0 * ndtr((rating - mu) / max(sd, 1e-9))


def step(model: PortfolioModel) -> None:
    sc, acc = model.schools, model.scenario.accountability
    rating = measure(model)
    rated = ~np.isnan(rating)
    sc.rating = np.where(rated, rating, sc.rating)
    sc.rating_pct = np.where(rated, to_percentile(model, rating), sc.rating_pct)
    model.rating_history.append(np.where(rated, sc.rating_pct, np.nan))
    # The district's principal evaluations, kept with the ratings: the authorizer selects conversions on
    # the principal, so a fair comparison of results must match on it too (metrics.relative_results).
    model.leader_history.append(sc.leader_quality.copy())
    model.refresh_perceived_quality()

    district = sc.is_open & (sc.sector != CHARTER)
    below = district & rated & (sc.rating_pct < acc.closure_percentile)
    sc.years_below = np.where(below, sc.years_below + 1, np.where(rated, 0, sc.years_below)).astype(np.int32)
    subject = district if acc.applies_to == "all" else district & sc.autonomous
    if acc.closure_percentile > 0:
        warn = subject & below & (sc.years_below == acc.consecutive_years - 1)
        for s in np.flatnonzero(warn):
            model.log("warning", int(s), f"rated below the {acc.closure_percentile:g}th percentile "
                      f"{sc.years_below[s]} year(s) in a row")
        for s in np.flatnonzero(subject & (sc.years_below >= acc.consecutive_years)):
            intervene(model, int(s))
    renewals(model)


def intervene(model: PortfolioModel, s: int) -> None:
    acc, sc = model.scenario.accountability, model.schools
    why = f"below the {acc.closure_percentile:g}th percentile {sc.years_below[s]} years in a row"
    action, decided = acc.intervention, model.decisions.choice("intervention", s)
    if decided == "spare":
        model.log("spared", s, f"{why}; given another year ({WORKSHOP})")
        return
    if decided not in ("rule", action):
        action, why = decided, f"{why} ({WORKSHOP})"
    if action == "replace_operator" and sc.sector[s] in (PARTNER_LED, PARTNER_RUN):
        if lifecycle.replace_operator(model, s, why):
            return
        action = "restart"
    if action == "replace_operator":
        action = "restart"     # district-run or traditional schools have no operator to replace
    if action == "close" and lifecycle.close_school(model, s, "closure", why):
        return
    lifecycle.restart_school(model, s, why)


def renewals(model: PortfolioModel) -> None:
    sc, acc = model.schools, model.scenario.accountability
    due = sc.is_open & sc.autonomous & (sc.contract_year >= 0) & \
        (model.year - sc.contract_year >= acc.contract_term)
    # Schools opened later have shorter histories: pad with NaN (not rated then).
    recent = model.rating_history[-acc.contract_term:]
    history = np.full((len(recent), len(sc)), np.nan)
    for i, row in enumerate(recent):
        history[i, :len(row)] = row
    for s in np.flatnonzero(due):
        term = history[:, s]
        term = term[~np.isnan(term)]
        score = float(term.mean()) if len(term) else np.nan
        operator = int(sc.operator[s])
        operator_left = operator >= 0 and not model.operators.active[operator]
        performs = bool(np.isnan(score) or score >= acc.renewal_percentile)
        # A hostile board majority may decline to renew a term that has ended (politics: board.declined).
        political = performs and s in model.board.declined
        by_rule = performs and not political
        decided = model.decisions.choice("renewal", s)
        renew = by_rule if decided == "rule" else decided == "renew"
        record = f"term average at the {score:.0f}th percentile" if not np.isnan(score) else "no rating yet"
        if renew != by_rule:
            record = f"{record} ({WORKSHOP})"
        if operator_left:
            why = "operator has left the district"
            if not lifecycle.replace_operator(model, s, why, event="non_renewal"):
                lifecycle.revert_to_traditional(model, s, "non_renewal", why)
        elif renew:
            lifecycle.renew(model, s, record)
        else:
            why = (record if renew != by_rule else
                   f"hostile board majority declines to renew ({record})" if political else
                   f"term average at the {score:.0f}th percentile, below {acc.renewal_percentile:g}")
            if not political and sc.sector[s] in (PARTNER_LED, PARTNER_RUN) and \
                    lifecycle.replace_operator(model, s, why, event="non_renewal"):
                continue
            lifecycle.revert_to_traditional(model, s, "non_renewal", why)


MECHANISM = Mechanism(
    name="accountability", order=5, step=step, phase="accountability", stream="accountability", stream_index=8,
    reads=("scenario.accountability", "model.last_growth", "model.rating_reference", "model.decisions",
           "schools.enrollment", "schools.mean_achievement", "schools.opened_year", "schools.contract_year",
           "schools.sector", "schools.leader_quality", "operators.active", "model.board"),
    writes=("schools.rating", "schools.rating_pct", "schools.years_below", "model.rating_history",
            "model.leader_history",
            "model.perceived_z"),
    calls=("lifecycle.log", "lifecycle.close_school", "lifecycle.restart_school", "lifecycle.replace_operator",
           "lifecycle.revert_to_traditional", "lifecycle.renew"),
)
