"""Politics: support for the autonomy agenda, board elections, budget shocks and reversals.

Seed 003, district-school relationship: "Interest in giving schools autonomy within a district tends
to ebb and flow. When it ebbs, schools that are not operated by independent organizations with legally
enforceable contracts have little leverage to maintain their status." MOUs and district policy "are more
susceptible to interpretations influenced by changes in district leadership"; "as LAUSD has faced
budget challenges, the district has limited Pilot Schools' autonomy to select and hire teaching staff."
Seed 003 "Include community leaders": engagement manages expectations; unions may perceive a loss of
authority. Seed 000 lesson 2: LA disbanded its support office (ISIC); seed 003 "School Governance
Committees": councils lack legal standing but give families a voice.

* Support moves each year with autonomous schools' results (their rating now against their rating when
  they became autonomous: the implementation dip costs support, maturation earns it), families'
  satisfaction with their schools (relative to the start), closures
  (softened by community engagement), district enrollment loss, union opposition in proportion to the
  autonomous share (halved where elect-to-work or a separate agreement was negotiated), budget shocks, councils, and noise, with a pull back to its starting level.
* Every `election_cycle` years the board is elected: a pro-autonomy board is likelier when support is
  high, and the sitting board has an incumbency edge. `scheduled_flip_year` forces a skeptical board (to compare designs through the same flip).
* A skeptical board with support below `reversal_threshold` (or under a budget shock, or a scheduled
  flip) reverses once per term: each autonomous school loses `rollback_intensity` x (1 - protection) of
  its autonomy, staffing and budget first. Protection comes from the legal basis (state law >
  contract > district policy > MOU), a governance shift, councils and the autonomy office. The board
  may disband the autonomy office; a later pro board restores it and, gradually, rolled-back autonomy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.decisions import WORKSHOP
from portfolio_sim.state import PARTNER_LED, PARTNER_RUN

from portfolio_sim.mechanisms import Mechanism

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients: `model.scenario.assumptions.politics` (declared in portfolio_sim/assumptions.py).


def protection(model: PortfolioModel) -> np.ndarray:
    """0-1 protection of each school's autonomy against a reversal."""
    sc, scn = model.schools, model.scenario
    a = scn.assumptions.politics
    p = np.full(len(sc), getattr(a, f"protection_{scn.governance.legal_basis}"))
    for sector, extra in ((PARTNER_LED, a.protection_partner_led), (PARTNER_RUN, a.protection_partner_run)):
        p[sc.sector == sector] += extra
    p += a.protection_councils * scn.implementation.governance_councils
    p += a.protection_office * model.office_active * scn.central_office.office_strength
    return np.clip(p, 0.0, a.protection_max)


def update_support(model: PortfolioModel, shock: bool) -> None:
    p, board, rng = model.scenario.politics, model.board, model.streams["politics"]
    a = model.scenario.assumptions.politics
    engagement = model.scenario.implementation.community_engagement
    last = model.last_metrics
    results = 0.0
    if last.get("autonomous_improvement") is not None:
        results = np.clip(last["autonomous_improvement"] / a.results_scale, -1.0, 1.0)
    closures = last.get("closures", 0) / max(last.get("schools_open", 1), 1)
    loss = max(0.0, -last.get("district_enrollment_change", 0.0))
    auto_share = last.get("autonomous_school_share", 0.0)
    # Elect-to-work and separate agreements were negotiated with the union: less opposition.
    union_deal = 1.0 if model.scenario.governance.collective_bargaining == "district_cba" else a.union_deal_factor
    satisfaction = last.get("family_satisfaction", 0.0) - model.initial_satisfaction
    change = (a.support_results * p.results_sensitivity * results
              - a.support_closures * p.closure_backlash * closures * (1.0 - a.engagement_softening * engagement)
              - a.support_enrollment_loss * p.enrollment_loss_sensitivity * loss
              - a.support_union * p.union_strength * auto_share * (1.0 - a.engagement_softening * engagement) * union_deal
              - a.support_shock * shock
              + a.support_satisfaction * np.clip(satisfaction, -1.0, 1.0)
              + a.support_councils * model.scenario.implementation.governance_councils * (auto_share > 0)
              + a.support_pull * (p.initial_support - board.support)
              + p.volatility * rng.standard_normal())
    board.support = float(np.clip(board.support + change, 0.0, 1.0))


def step(model: PortfolioModel) -> None:
    p, board, rng, sc = model.scenario.politics, model.board, model.streams["politics"], model.schools
    a = model.scenario.assumptions.politics
    shock = bool(rng.random() < p.budget_shock_probability)
    if shock:
        model.funding_factor *= 1.0 - p.budget_shock_size
        model.log("budget_shock", None, f"per-pupil funding cut {100 * p.budget_shock_size:.0f}%")
    update_support(model, shock)

    forced = p.scheduled_flip_year > 0 and model.year == p.scheduled_flip_year
    election = model.year % p.election_cycle == 0
    if election or forced:
        incumbent = a.incumbency if board.stance == "pro" else -a.incumbency
        p_pro = 1.0 / (1.0 + np.exp(-a.election_steepness * (board.support - 0.5) - incumbent))
        pro = bool(rng.random() < p_pro) and not forced
        cause = "scheduled board flip" if forced else f"support {board.support:.2f}"
        board.elect("pro" if pro else "skeptical", model.year)
        model.log("election", None, f"{board.stance} board elected ({cause})")

    something_to_reverse = bool((sc.is_open & sc.autonomous).any())
    decided = model.decisions.board
    by_rule = board.stance == "skeptical" and not board.reversed_this_term and something_to_reverse and \
        (board.support < p.reversal_threshold or shock or forced)
    if by_rule and decided == "protect":
        model.log("reversal_averted", None, f"the board protects autonomy ({WORKSHOP})")
    elif by_rule:
        reverse(model, "budget pressure" if shock else ("scheduled board flip" if forced else
                f"support {board.support:.2f} below {p.reversal_threshold:g}"))
    elif decided == "reverse" and something_to_reverse and not board.reversed_this_term:
        reverse(model, WORKSHOP)
    elif board.stance == "pro":
        sc.rollback *= 1.0 - a.restore_rate
        if model.scenario.central_office.autonomy_office and not model.office_active:
            model.office_active = True
            model.log("office_restored", None, "pro-autonomy board re-establishes the autonomy office")


def reverse(model: PortfolioModel, why: str) -> None:
    sc, p, rng = model.schools, model.scenario.politics, model.streams["politics"]
    board, a = model.board, model.scenario.assumptions.politics
    board.reversed_this_term = True
    model.log("reversal", None, why)
    hit = sc.is_open & sc.autonomous
    weight = np.array([a.rollback_staffing, a.rollback_academic, a.rollback_budget, a.rollback_operations])
    loss = p.rollback_intensity * (1.0 - protection(model))[:, None] * weight[None, :]
    sc.rollback = np.where(hit[:, None], np.clip(sc.rollback + loss * (1.0 - sc.rollback), 0.0, 1.0), sc.rollback)
    for s in np.flatnonzero(hit & (loss.max(1) > 0.2)):
        model.log("autonomy_rollback", int(s), f"{100 * loss[s, 0]:.0f}% of staffing autonomy taken back ({why})")
    if model.office_active and rng.random() < a.office_disband_chance:
        model.office_active = False
        model.log("office_disbanded", None, "skeptical board disbands the autonomy office")


MECHANISM = Mechanism(
    name="politics", order=1, step=step, phase="politics", stream="politics", stream_index=3,
    reads=("scenario.politics", "scenario.implementation", "scenario.governance", "scenario.central_office",
           "model.last_metrics", "model.initial_satisfaction", "model.decisions", "schools.sector", "schools.is_open"),
    writes=("model.board", "model.funding_factor", "model.office_active", "schools.rollback"),
    calls=("lifecycle.log",), assumptions="politics",
)
