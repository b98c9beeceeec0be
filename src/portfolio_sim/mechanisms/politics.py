"""Politics: public opinion, a board of seats, budget shocks, reversals and restorations.

Seed 003, district-school relationship: "Interest in giving schools autonomy within a district tends
to ebb and flow. When it ebbs, schools that are not operated by independent organizations with legally
enforceable contracts have little leverage to maintain their status." MOUs and district policy "are more
susceptible to interpretations influenced by changes in district leadership"; "as LAUSD has faced
budget challenges, the district has limited Pilot Schools' autonomy to select and hire teaching staff."
Rates: docs/EVIDENCE.md E-POL-1..11. Every coefficient: `scenario.assumptions.politics`.

* **Opinion.** Support is a share of opinion, kept on the log-odds scale so it moves both ways and stays
  off its bounds. Each year it reverts part of the way toward a political *climate* that itself drifts
  (a mean-reverting random walk around the starting level), and named events push it: autonomous
  schools' *relative* results as published (below), closures (felt most by the families they displace;
  community engagement softens the backlash), district enrollment loss, budget shocks, union opposition
  (in proportion to the autonomous share; less where elect-to-work or a separate agreement was
  negotiated), community engagement, families' satisfaction with their schools, councils, and noise.
* **Results against a comparison.** What the public credits is a difference in differences: each
  converted school's rating change since conversion minus the change, over the same years, of the
  traditional schools closest to it when it converted on its rating and its principal (what the
  authorizer selected on: both regress to the mean alike, and their principals revert alike), and new
  schools' rating against the traditional mean. It is published `results_lag`
  years late with noise (`metrics.politics_signals` computes it; this module publishes it). An
  initiative with no effect earns no credit; a real effect earns it slowly.
* **A board of seats** (`politics.board_seats`), two classes with staggered terms, one class up at each
  election every `election_cycle` years. Incumbents run again with `incumbent_runs`; a seat goes to a
  pro-autonomy candidate when the log-odds of support plus a district-wide swing, the seat's own noise,
  the incumbent's edge and union-backed candidates' edge is positive. `scheduled_flip_year` installs a
  hostile board in every seat (to compare designs through one flip).
* **The majority decides.** A hostile majority rolls back autonomy once per term when it has a reason
  (budget pressure, union mobilisation, or support below `reversal_threshold`), domain by domain
  (budget pressure: staffing and budget; unions: staffing and academics; low support: the next two
  domains not yet rolled back), by `rollback_intensity` x its margin x (1 - protection). Only autonomy
  resting on district policy or an MOU can be rolled back: a contract cannot be broken before its term
  and a board cannot override state law; either may lose its schools only by non-renewal at the end of
  a term (`board.declined`, executed by accountability's renewal review). A protective majority
  restores rolled-back autonomy and the autonomy office.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.decisions import WORKSHOP
from portfolio_sim.scenario import DOMAINS
from portfolio_sim.state import PARTNER_LED, PARTNER_RUN

from portfolio_sim.mechanisms import Mechanism

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

# Coefficients: `model.scenario.assumptions.politics` (declared in portfolio_sim/assumptions.py).

# Domains a reversal reaches for first, by its cause (seed 003 / EVIDENCE.md E-POL-7: staffing first
# under budget pressure; unions contest staffing and programme most).
_BUDGET, _UNION, _SUPPORT = "budget pressure", "union mobilisation", "low support"
TARGETS: dict[str, tuple[str, ...]] = {
    _BUDGET: ("staffing", "budget"),
    _UNION: ("staffing", "academic"),
    _SUPPORT: ("staffing", "academic", "budget", "operations"),
}
ROLLED_BACK = 0.5      # a domain whose rollback passes this counts as taken (the next reversal moves on)
OWED = 0.02            # rollback left below this is negligible: nothing to restore
LOGIT_GUARD = 1e-4     # keeps log-odds finite
SHARE_TO_LOGIT = 4.0   # slope of the log-odds at 0.5: a noise SD given as a share of opinion, in log-odds


def _logit(p: float) -> float:
    p = min(max(p, LOGIT_GUARD), 1.0 - LOGIT_GUARD)
    return float(np.log(p / (1.0 - p)))


def _expit(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def breakable(model: PortfolioModel) -> bool:
    """Can a board roll autonomy back mid-term? Only where it rests on district policy or an MOU."""
    return model.scenario.governance.legal_basis in ("district_policy", "mou")


def protection(model: PortfolioModel) -> np.ndarray:
    """0-1 protection of each school's policy/MOU autonomy against a reversal."""
    sc, scn = model.schools, model.scenario
    a = scn.assumptions.politics
    if not breakable(model):
        return np.ones(len(sc))
    p = np.full(len(sc), getattr(a, f"protection_{scn.governance.legal_basis}"))
    for sector, extra in ((PARTNER_LED, a.protection_partner_led), (PARTNER_RUN, a.protection_partner_run)):
        p[sc.sector == sector] += extra
    p += a.protection_councils * scn.implementation.governance_councils
    p += a.protection_office * model.office_active * scn.central_office.office_strength
    return np.clip(p, 0.0, a.protection_max)


def publish_results(model: PortfolioModel) -> float | None:
    """This year's published relative results (percentile points): last year's comparison, `results_lag`
    years late, with reporting noise; None while there is nothing to report."""
    board, a = model.board, model.scenario.assumptions.politics
    board.results_history.append(model.last_metrics.get("relative_results"))
    back = len(board.results_history) - 1 - a.results_lag
    value = board.results_history[back] if back >= 0 else None
    noise = model.streams["politics"].standard_normal()    # drawn every year: the stream stays aligned
    board.published_results = None if value is None else float(value + a.results_noise * noise)
    return board.published_results


def update_support(model: PortfolioModel, shock: bool) -> None:
    p, board, rng = model.scenario.politics, model.board, model.streams["politics"]
    a = model.scenario.assumptions.politics
    engagement = model.scenario.implementation.community_engagement
    last = model.last_metrics
    published = publish_results(model)
    results = 0.0 if published is None else float(np.clip(published / a.results_scale, -1.0, 1.0))
    # Closures are felt by the families whose school closed (the displaced) and, less, district-wide.
    felt = last.get("closures", 0) / max(last.get("schools_open", 1), 1) + \
        a.closure_local_weight * last.get("displaced_share", 0.0)
    loss = max(0.0, -last.get("district_enrollment_change", 0.0))
    auto_share = last.get("autonomous_school_share", 0.0)
    # Elect-to-work and separate agreements were negotiated with the union: less opposition.
    union_deal = 1.0 if model.scenario.governance.collective_bargaining == "district_cba" else a.union_deal_factor
    softened = 1.0 - a.engagement_softening * engagement
    satisfaction = last.get("family_satisfaction", 0.0) - model.initial_satisfaction
    events = (a.support_results * p.results_sensitivity * results
              - a.support_closures * p.closure_backlash * felt * softened
              - a.support_enrollment_loss * p.enrollment_loss_sensitivity * loss
              - a.support_union * p.union_strength * auto_share * softened * union_deal
              - a.support_shock * shock
              + a.support_satisfaction * np.clip(satisfaction, -1.0, 1.0)
              + (a.support_engagement * engagement
                 + a.support_councils * model.scenario.implementation.governance_councils) * (auto_share > 0))
    # The climate drifts around the starting level; opinion reverts toward the climate.
    home = _logit(p.initial_support)
    board.climate += a.climate_pull * (home - board.climate) + a.climate_drift * rng.standard_normal()
    x = _logit(board.support)
    x += a.opinion_pull * (board.climate - x) + events + SHARE_TO_LOGIT * p.volatility * rng.standard_normal()
    board.support = _expit(x)


def elect(model: PortfolioModel, forced: bool) -> None:
    """One election: the class of seats whose term ends (every seat on a forced flip)."""
    p, board, rng = model.scenario.politics, model.board, model.streams["politics"]
    a = model.scenario.assumptions.politics
    n = len(board.seats)
    if forced:
        # A hostile board takes office (every seat: the same flip for every design compared through it).
        board.seats[:] = False
        board.elect(model.year)
        model.log("election", None, f"scheduled board flip: {board.pro_seats} of {n} seats pro-autonomy; "
                  f"support {board.support:.2f}")
        return
    up = np.flatnonzero(board.seat_class == board.elections_held % 2)
    swing = a.election_swing * rng.standard_normal()
    runs = rng.random(n) < a.incumbent_runs
    noise = rng.standard_normal(n)
    base = _logit(board.support) + swing - a.union_candidate_edge * p.union_strength
    won, reelected = 0, 0
    for s in up:
        edge = (a.incumbency if board.seats[s] else -a.incumbency) if runs[s] else 0.0
        pro = bool(base + edge + a.seat_noise * noise[s] > 0.0)
        reelected += bool(runs[s]) and pro == bool(board.seats[s])
        board.seats[s] = pro
        won += pro
    board.elect(model.year)
    model.log("election", None, f"{len(up)} seats up, {won} won by pro-autonomy candidates "
              f"({reelected} of {int(runs[up].sum())} incumbents running re-elected); board "
              f"{board.pro_seats} of {n} pro-autonomy; support {board.support:.2f}")


def step(model: PortfolioModel) -> None:
    p, board, rng, sc = model.scenario.politics, model.board, model.streams["politics"], model.schools
    a = model.scenario.assumptions.politics
    shock = bool(rng.random() < p.budget_shock_probability)
    if shock:
        model.funding_factor *= 1.0 - p.budget_shock_size
        model.log("budget_shock", None, f"per-pupil funding cut {100 * p.budget_shock_size:.0f}%")
    update_support(model, shock)

    forced = p.scheduled_flip_year > 0 and model.year == p.scheduled_flip_year
    if forced or model.year % p.election_cycle == 0:
        elect(model, forced)

    engagement = model.scenario.implementation.community_engagement
    mobilised = bool(rng.random() < a.union_mobilisation * p.union_strength * (1.0 - a.engagement_softening * engagement))
    board.declined = set()
    autonomous = sc.is_open & sc.autonomous
    decided = model.decisions.board
    if board.stance == "skeptical" and autonomous.any():
        cause = _BUDGET if shock else (_UNION if mobilised else
                                       (_SUPPORT if board.support < p.reversal_threshold or forced else None))
        if decided == "protect":        # the players keep the hostile majority from acting at all this year
            if cause is not None:
                model.log("reversal_averted", None, f"the board protects autonomy ({WORKSHOP})")
            return
        decline_renewals(model, cause)
        if cause is not None and not board.reversed_this_term and breakable(model):
            reverse(model, cause, "scheduled board flip" if forced else _cause_words(model, cause))
            return
    if decided == "reverse" and autonomous.any() and not board.reversed_this_term:
        reverse(model, _SUPPORT, WORKSHOP)
    elif board.stance == "pro":
        restore(model)


def _cause_words(model: PortfolioModel, cause: str) -> str:
    board, p = model.board, model.scenario.politics
    seats = f"hostile majority ({len(board.seats) - board.pro_seats} of {len(board.seats)} seats)"
    if cause == _SUPPORT:
        return f"{seats}; support {board.support:.2f} below {p.reversal_threshold:g}"
    return f"{seats}; {cause}"


def decline_renewals(model: PortfolioModel, cause: str | None) -> None:
    """A hostile majority may decline to renew terms ending this year (contract, MOU or state-law
    arrangement alike: the end of a term is where a board has a say). Accountability executes it."""
    sc, acc, board = model.schools, model.scenario.accountability, model.board
    a, rng = model.scenario.assumptions.politics, model.streams["politics"]
    due = np.flatnonzero(sc.is_open & sc.autonomous & (sc.contract_year >= 0) &
                         (model.year - sc.contract_year >= acc.contract_term))
    chance = getattr(a, f"nonrenewal_{model.scenario.governance.legal_basis}") * (1.0 + (cause is not None))
    draws = rng.random(len(due))
    board.declined = {int(s) for s, u in zip(due, draws) if u < min(chance, 1.0)}


def reverse(model: PortfolioModel, cause: str, why: str) -> None:
    sc, p, rng = model.schools, model.scenario.politics, model.streams["politics"]
    board, a = model.board, model.scenario.assumptions.politics
    board.reversed_this_term = True
    hit = sc.is_open & sc.autonomous
    # Domain by domain: the first two of the cause's targets not yet taken back.
    taken = sc.rollback[hit].mean(0) if hit.any() else np.zeros(len(DOMAINS))
    order = [d for d in TARGETS[cause] if taken[DOMAINS.index(d)] < ROLLED_BACK] or list(TARGETS[cause])
    domains = [DOMAINS.index(d) for d in order[:2]]
    margin = (len(board.seats) - 2 * board.pro_seats) / len(board.seats)      # 0-1: how hostile a majority
    strength = p.rollback_intensity * (a.rollback_base + (1.0 - a.rollback_base) * max(margin, 0.0))
    loss = np.zeros_like(sc.rollback)
    loss[:, domains] = strength * (1.0 - protection(model))[:, None]
    loss[~hit] = 0.0
    sc.rollback = np.clip(sc.rollback + loss * (1.0 - sc.rollback), 0.0, 1.0)
    what = f"{' and '.join(DOMAINS[d] for d in domains)} autonomy rolled back " \
        f"({100 * float(loss[hit][:, domains].mean()) if hit.any() else 0:.0f}% on average)"
    # (a workshop decision's cause stays the decision itself; the schools' rollback events say what)
    model.log("reversal", None, why if why == WORKSHOP else f"{why}: {what}")
    for s in np.flatnonzero(hit & (loss.max(1) > 0.2)):
        model.log("autonomy_rollback", int(s), f"{100 * loss[s].max():.0f}% of {DOMAINS[domains[0]]} autonomy "
                  f"taken back ({why})")
    if model.office_active and rng.random() < a.office_disband_chance:
        model.office_active = False
        model.log("office_disbanded", None, "hostile board majority disbands the autonomy office")


def restore(model: PortfolioModel) -> None:
    """A protective majority gives back a share of rolled-back autonomy (and the autonomy office)."""
    sc, board, a = model.schools, model.board, model.scenario.assumptions.politics
    owed = sc.is_open & sc.autonomous & (sc.rollback.max(1) > OWED)
    acts = model.streams["politics"].random() < a.restore_chance     # drawn every pro year: aligned stream
    if owed.any() and acts:
        before = float(sc.rollback[owed].mean())
        sc.rollback = np.where(owed[:, None], sc.rollback * (1.0 - a.restore_rate), sc.rollback)
        model.log("restoration", None, f"protective majority ({board.pro_seats} of {len(board.seats)} seats) "
                  f"restores {100 * a.restore_rate:.0f}% of rolled-back autonomy at {int(owed.sum())} school(s) "
                  f"(mean rollback {before:.2f})")
    if model.scenario.central_office.autonomy_office and not model.office_active:
        model.office_active = True
        model.log("office_restored", None, "protective board majority re-establishes the autonomy office")


MECHANISM = Mechanism(
    name="politics", order=1, step=step, phase="politics", stream="politics", stream_index=3,
    reads=("scenario.politics", "scenario.implementation", "scenario.governance", "scenario.central_office",
           "scenario.accountability", "model.last_metrics", "model.initial_satisfaction", "model.decisions",
           "schools.sector", "schools.is_open", "schools.contract_year"),
    writes=("model.board", "model.funding_factor", "model.office_active", "schools.rollback"),
    calls=("lifecycle.log",), assumptions="politics",
)
