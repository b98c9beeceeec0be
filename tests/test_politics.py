"""Politics behaves like a school board (issue 10): results judged against a comparison, support that moves
both ways and stays off its bounds, a board of seats whose majority decides, levers that move reversals in
the direction seed 003 describes, and contracts that are never broken mid-term.

The lever comparisons run one small district-run initiative (3,000 students, 16 schools) for 20 years
under DEFAULT politics (no forced flip) on the same paired seeds, each run shared through a module
fixture (~40 s for the file on one core).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from conftest import layered, scenario
from portfolio_sim.kernel import single_run
from portfolio_sim.scenario import Scenario, list_presets, load_scenario

pytestmark = pytest.mark.slow

SEEDS = range(1, 11)
BED = {"district": {"students": 3000, "schools": 16, "operators": 4},
       "eligibility": {"schools": "turnaround", "conversions_per_year": 2, "turnaround_percentile": 40},
       "autonomy": {"staffing": 1.0, "academic": 1.0, "budget": 1.0, "operations": 1.0},
       "governance": {"category": "district_run", "legal_basis": "mou"},
       "run": {"years": 20}}

PARTNER = {"governance": {"category": "partner_run", "legal_basis": "contract"}}

# name -> what differs from the bed (everything else: the schema's default politics)
DESIGNS = {
    "mou": {},
    "state_law": {"governance": {"legal_basis": "state_law"}},
    "strong_union": {"politics": {"union_strength": 1.0}},
    "yearly_elections": {"politics": {"election_cycle": 1}},
    "engaged": {"implementation": {"community_engagement": 1.0}},
    "closing": {"accountability": {"closure_percentile": 10, "consecutive_years": 2, "intervention": "close"}},
    # A design with a real effect under issue 11's school effects (the district-run MOU default has ~none,
    # EVIDENCE.md E-AUT-1): partner-run schools under contract, and the same with autonomy's effect off.
    "partner": PARTNER,
    "partner_no_autonomy_effect": layered(PARTNER, {"autonomy": {"max_effect": 0.0, "dip_depth": 0.0}}),
}


@lru_cache(maxsize=None)
def design(name: str) -> tuple:
    s = scenario(BED, DESIGNS[name])
    return tuple(single_run(s, seed) for seed in SEEDS)


def political_losses(results) -> np.ndarray:
    """Per run: rollbacks plus terms a hostile board declined to renew (autonomy lost to politics)."""
    return np.array([int(r.yearly["reversals"].sum()) +
                     int(r.events["cause"].str.contains("hostile board majority declines").sum()) for r in results])


def reversals(results) -> np.ndarray:
    return np.array([int(r.yearly["reversals"].sum()) for r in results])


# -- results against a comparison ---------------------------------------------------------------------

def test_an_initiative_with_no_effect_earns_no_credit_for_results():
    """Converting low-rated schools with autonomy switched off: whatever their ratings do, they do it no
    faster than matched traditional schools, so support gains nothing through results. Two artefacts a
    naive comparison would publish: regression to the mean in the rating (the old signal, rating change
    since conversion, credited it) and the principal's reversion to average (the authorizer approves
    plans on the principal, turnover then pulls the school's leader back: matching on the rating alone
    blamed the initiative for it, -5.2 points). The comparison matches on both selection variables."""
    null = layered(BED, {"autonomy": {"max_effect": 0.0, "dip_depth": 0.0}, "run": {"years": 12}})
    deaf = layered(null, {"politics": {"results_sensitivity": 0.0}})
    published, gap = [], []
    for seed in SEEDS:
        r = single_run(Scenario.model_validate(null), seed)
        published += list(r.yearly["published_results"].dropna())
        gap.append(r.yearly["political_support"].mean() -
                   single_run(Scenario.model_validate(deaf), seed).yearly["political_support"].mean())
    assert abs(np.mean(published)) < 3.0, f"mean published relative results {np.mean(published):.1f} pct points"
    assert np.mean(gap) < 0.01, f"results raised support by {np.mean(gap):.3f} with no autonomy effect"


def published_by_year(results) -> np.ndarray:
    """Runs x years of published relative results (NaN: nothing published)."""
    return np.array([r.yearly.set_index("year")["published_results"].to_numpy() for r in results])


def test_a_real_effect_earns_credit_slowly():
    """Partner-run schools: operators' models and autonomy that works earn credit, and the part due to
    autonomy's effect (paired against the same seeds with `max_effect` 0) arrives slowly: nothing is
    published before converted schools have a rated autonomous year and the lag has passed, and the
    effect matures over years before the comparison shows it."""
    real, off = published_by_year(design("partner")), published_by_year(design("partner_no_autonomy_effect"))
    assert np.isnan(real[:, :4]).all(), "published before any conversion had a rated autonomous year + lag"
    assert np.nanmean(real) > 3.0, f"partner-run results {np.nanmean(real):.1f} pct points"
    gain = real - off                                  # years 0-20; conversions launch from year 2
    early, late = np.nanmean(gain[:, :9]), np.nanmean(gain[:, 12:])
    assert late > 4.0 and late > early + 4.0, f"autonomy's credit: {early:.1f} by year 8, {late:.1f} from year 12"


# -- support moves and stays off its bounds ----------------------------------------------------------

@pytest.mark.parametrize("preset", [name for name, _ in list_presets()])
def test_support_is_not_pinned_at_a_bound(preset):
    small = ["district.students=3000", "district.schools=16", "run.years=15"]
    s = load_scenario(preset, small)
    support = np.concatenate([single_run(s, seed).yearly["political_support"].to_numpy()[1:] for seed in (1, 2)])
    pinned = np.mean((support < 0.02) | (support > 0.98))
    assert pinned <= 0.05, f"{preset}: support within 0.02 of a bound in {pinned:.0%} of years"


def test_support_rises_and_falls_across_seeds():
    runs = design("mou")
    changes = np.concatenate([np.diff(r.yearly["political_support"].to_numpy()[1:]) for r in runs])
    assert (changes > 0.01).mean() > 0.25 and (changes < -0.01).mean() > 0.25
    assert 0.02 <= changes.std() <= 0.07            # EVIDENCE.md E-POL-11: ~0.03 [0.02, 0.06] a year
    lows = [r.yearly["political_support"].min() for r in runs]
    highs = [r.yearly["political_support"].max() for r in runs]
    assert min(lows) < 0.5 < max(highs) and max(highs) - min(lows) > 0.25


def test_board_of_seats_and_plausible_elections():
    import re
    won = ran = 0
    for r in design("mou"):
        y = r.yearly
        assert set(y["board_seats"]) == {7} and y["board_pro"].between(0, 7).all()
        for cause in r.events.loc[r.events["event"] == "election", "cause"]:
            m = re.search(r"\((\d+) of (\d+) incumbents running re-elected\)", cause)
            won, ran = won + int(m.group(1)), ran + int(m.group(2))
    assert 0.65 <= won / ran <= 0.85, f"incumbents won {won / ran:.2f} of their races (E-POL-1/2: 0.72-0.8)"
    hostile = [bool((r.yearly["board_pro"] < 4).any()) for r in design("mou")]
    assert 0.2 <= np.mean(hostile) <= 0.9, "a hostile majority in some runs, not all (E-POL-4)"


# -- levers under default politics (paired seeds, 20 years, no forced flip) ----------------------------

def test_mou_loses_more_autonomy_than_state_law():
    mou, law = political_losses(design("mou")), political_losses(design("state_law"))
    assert reversals(design("state_law")).sum() == 0      # a board cannot override state law
    assert mou.mean() > law.mean() + 0.5
    share = np.mean(reversals(design("mou")) > 0)
    assert 0.2 <= share <= 0.7, f"an MOU design partially rolled back in {share:.0%} of 20-year runs (E-POL: 30-50%)"


# Lever contrasts are paired over more seeds than the rest of the file: a 20-year run has 0-6 political
# losses, so 10 seeds cannot separate a lever's effect from which runs happen to flip (measured at 3cd38bd,
# 30 paired seeds, per run: unions +1.03 (SE 0.23), engagement -0.87 (0.28), yearly elections +1.57 (0.87),
# closures on +0.47 (0.45)). Runs of this bed cost ~0.15 s each.
LEVER_SEEDS = range(1, 31)


@lru_cache(maxsize=None)
def lever_design(name: str) -> np.ndarray:
    s = scenario(BED, DESIGNS[name])
    return political_losses([single_run(s, seed) for seed in LEVER_SEEDS])


def paired_difference(name: str) -> tuple[float, float]:
    """Mean and standard error of (design - MOU default) political losses over the paired seeds."""
    d = lever_design(name) - lever_design("mou")
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def test_levers_move_reversals_in_their_documented_direction():
    mean, se = paired_difference("strong_union")
    assert mean > 2 * se and mean > 0.5, (mean, se)           # unions mobilise: more reversals
    mean, se = paired_difference("engaged")
    assert mean < -2 * se and mean < -0.3, (mean, se)         # engagement manages expectations: fewer
    # More elections mean more chances to flip, and closures cost support: both in seed 003's direction but
    # weak against the run-to-run spread, so only their direction over the paired seeds is asserted.
    assert paired_difference("yearly_elections")[0] > 0.3
    assert paired_difference("closing")[0] > 0


def test_a_protective_majority_restores_what_was_rolled_back():
    runs = [r for r in design("strong_union") if r.yearly["reversals"].sum() > 0]
    assert sum(int(r.yearly["restorations"].sum()) for r in runs) > 0
    for r in runs:
        for cause in r.events.loc[r.events["event"].isin(["reversal", "restoration"]), "cause"]:
            assert "majority" in cause or "flip" in cause


# -- contracts are never broken mid-term --------------------------------------------------------------

@pytest.mark.parametrize("basis", ["contract", "state_law"])
def test_a_hostile_board_cannot_break_a_contract_mid_term(basis):
    s = scenario(BED, {"governance": {"category": "partner_run", "legal_basis": basis},
                       "district": {"operators": 6},
                       "politics": {"scheduled_flip_year": 4, "union_strength": 1.0, "initial_support": 0.7},
                       "run": {"years": 14}})
    term = s.accountability.contract_term
    hostile_years = 0
    for seed in SEEDS[:5]:
        r = single_run(s, seed)
        assert r.yearly["reversals"].sum() == 0
        assert not (r.events["event"] == "autonomy_rollback").any()
        p = r.schools.set_index(["school_id", "year"])
        ended = r.events[r.events["event"] == "non_renewal"]
        for s_id, year in zip(ended["school_id"], ended["year"]):
            assert p.loc[(s_id, year - 1), "contract_years"] >= term - 1, "a term ended before it was due"
        hostile_years += int((r.yearly["board_pro"] < 4).sum())
    assert hostile_years > 0, "the test needs hostile majorities to mean anything"


# -- visible ------------------------------------------------------------------------------------------

def test_the_politics_chart_shows_seats_elections_reversals_and_restorations():
    import pandas as pd

    from portfolio_sim.kernel import summarize
    from portfolio_sim.report import political_figure
    runs = design("strong_union")
    yearly = pd.concat([r.yearly.assign(seed=i) for i, r in enumerate(runs)], ignore_index=True)
    fig = political_figure(summarize(yearly), yearly, scenario(BED, DESIGNS["strong_union"]))
    names = {t.name for t in fig.data}
    assert {"pro-autonomy seats (of 7)", "election", "reversal (rollback of autonomy)",
            "restoration of rolled-back autonomy"} <= names
    seats = next(t for t in fig.data if t.name == "pro-autonomy seats (of 7)")
    assert 0.0 <= min(seats.y) < max(seats.y) <= 1.0
    kinds = set(pd.concat([r.events for r in runs])["event"])
    assert {"election", "reversal", "restoration"} <= kinds
