"""Workshop decisions (`portfolio_sim.decisions`): players take the central office's and the board's
decisions in the model's place, year by year; the event log says so."""

from __future__ import annotations

import pytest

from conftest import AUTONOMY_POLICY, small
from conftest import result_digest as digest
from portfolio_sim.decisions import RULES, WORKSHOP, Decisions, decisions_from
from portfolio_sim.errors import ScenarioError
from portfolio_sim.kernel import single_run

SEED = 7
CLOSING = {"accountability": {"intervention": "close", "closure_percentile": 25, "consecutive_years": 1}}


def every_year(scenario, **decided) -> dict[int, Decisions]:
    return {y: Decisions(**decided) for y in range(1, scenario.run.years + 1)}


def events(result, kind: str):
    return result.events[result.events["event"] == kind]


def test_a_decision_outside_the_allowed_ones_is_refused_with_the_allowed_ones_named():
    with pytest.raises(ScenarioError, match=r"board: 'abolish' is not a decision; allowed: rule, protect, reverse"):
        Decisions(board="abolish")
    with pytest.raises(ScenarioError, match="unknown decision"):
        decisions_from({"closures": "spare"})
    assert decisions_from({"renewal": "renew"}) == Decisions(renewal="renew")


def test_following_the_rules_every_year_changes_nothing():
    s = small(AUTONOMY_POLICY, CLOSING)
    assert digest(single_run(s, SEED, decisions=every_year(s))) == digest(single_run(s, SEED))
    assert RULES.by_rule and not Decisions(board="protect").by_rule


def test_sparing_failing_schools_prevents_closures_and_is_logged():
    s = small(AUTONOMY_POLICY, CLOSING)
    by_rule = single_run(s, SEED)
    assert len(events(by_rule, "closure")) > 0
    spared = single_run(s, SEED, decisions=every_year(s, intervention="spare"))
    # (a school may still close as under-enrolled: finance, not accountability)
    assert not events(spared, "closure")["cause"].str.contains("below the", regex=False).any()
    logged = events(spared, "spared")
    assert len(logged) > 0 and logged["cause"].str.contains(WORKSHOP, regex=False).all()


def test_the_players_choose_the_intervention():
    s = small(AUTONOMY_POLICY, {"accountability": {"intervention": "restart", "closure_percentile": 25,
                                                   "consecutive_years": 1}})
    assert len(events(single_run(s, SEED), "restart")) > 0
    closing = single_run(s, SEED, decisions=every_year(s, intervention="close"))
    closures = events(closing, "closure")
    assert closures["cause"].str.contains(WORKSHOP, regex=False).sum() > 0


def test_renewal_decisions_override_the_term_average():
    s = small(AUTONOMY_POLICY, {"accountability": {"contract_term": 1, "renewal_percentile": 90}})
    by_rule = single_run(s, SEED)
    assert len(events(by_rule, "non_renewal")) > 0
    renewing = single_run(s, SEED, decisions=every_year(s, renewal="renew"))
    assert len(events(renewing, "non_renewal")) == 0
    assert events(renewing, "renewal")["cause"].str.contains(WORKSHOP, regex=False).any()

    lenient = small(AUTONOMY_POLICY, {"accountability": {"contract_term": 1, "renewal_percentile": 0}})
    assert len(events(single_run(lenient, SEED), "non_renewal")) == 0
    refusing = single_run(lenient, SEED, decisions=every_year(lenient, renewal="not_renew"))
    assert events(refusing, "non_renewal")["cause"].str.contains(WORKSHOP, regex=False).sum() > 0


def test_application_decisions_replace_the_authorizers_judgement():
    s = small(AUTONOMY_POLICY, {"accountability": {"approval_rigor": 0.9}})
    by_rule = single_run(s, SEED)
    assert len(events(by_rule, "application_denied")) > 0
    approving = single_run(s, SEED, decisions=every_year(s, applications="approve"))
    assert len(events(approving, "application_denied")) == 0
    assert approving.yearly["conversions"].sum() > by_rule.yearly["conversions"].sum()
    denying = single_run(s, SEED, decisions=every_year(s, applications="deny"))
    assert denying.yearly["conversions"].sum() == 0 and len(events(denying, "application_approved")) == 0


def test_the_board_protects_or_reverses_autonomy():
    flip = small(AUTONOMY_POLICY, {"politics": {"initial_support": 0.8, "scheduled_flip_year": 4,
                                                "budget_shock_probability": 0.0}})
    assert single_run(flip, SEED).yearly["reversals"].sum() > 0
    protected = single_run(flip, SEED, decisions=every_year(flip, board="protect"))
    assert protected.yearly["reversals"].sum() == 0
    assert len(events(protected, "reversal_averted")) > 0

    calm = small(AUTONOMY_POLICY)   # a supportive board never reverses by itself
    assert single_run(calm, SEED).yearly["reversals"].sum() == 0
    reversed_ = single_run(calm, SEED, decisions={5: Decisions(board="reverse")})
    reversal = events(reversed_, "reversal")
    assert list(reversal["year"]) == [5] and list(reversal["cause"]) == [WORKSHOP]
    assert reversed_.yearly["autonomy_effective"].iloc[5] < single_run(calm, SEED).yearly["autonomy_effective"].iloc[5]


def test_per_school_choices_override_the_choice_for_all():
    """The room closes failing schools in general but spares one it has debated (and the file format
    round-trips both)."""
    from portfolio_sim.decisions import decisions_toml, loads_decisions
    s = small(AUTONOMY_POLICY, CLOSING)
    closed = events(single_run(s, SEED), "closure")
    first = closed.sort_values("year").iloc[0]
    year, school = int(first["year"]), int(first["school_id"])
    decided = {year: Decisions(intervention="close", schools=((school, "intervention", "spare"),))}
    run = single_run(s, SEED, decisions=decided)
    spared = events(run, "spared")
    assert list(spared[spared["year"] == year]["school_id"]) == [school]
    same_year = events(run, "closure")
    assert set(closed[closed["year"] == year]["school_id"]) - {school} <= set(same_year[same_year["year"] == year]["school_id"])
    assert loads_decisions(decisions_toml(decided), years=s.run.years) == decided
    assert decided[year].choice("intervention", school) == "spare"
    assert decided[year].choice("intervention", school + 1) == "close"


def test_per_school_renewal_choice():
    s = small(AUTONOMY_POLICY, {"accountability": {"contract_term": 1, "renewal_percentile": 90}})
    refused = events(single_run(s, SEED), "non_renewal")
    first = refused.sort_values("year").iloc[0]
    year, school = int(first["year"]), int(first["school_id"])
    run = single_run(s, SEED, decisions={year: Decisions(schools=((school, "renewal", "renew"),))})
    renewed = events(run, "renewal")
    row = renewed[(renewed["year"] == year) & (renewed["school_id"] == school)]
    assert len(row) == 1 and WORKSHOP in row["cause"].item()
    again = events(run, "non_renewal")
    others = set(refused[refused["year"] == year]["school_id"]) - {school}
    assert others <= set(again[again["year"] == year]["school_id"])


def test_per_school_choices_are_validated():
    with pytest.raises(ScenarioError, match="cannot be decided school by school; allowed: intervention, renewal"):
        Decisions(schools=((3, "board", "reverse"),))
    with pytest.raises(ScenarioError, match=r"year.2.schools.x: not a school id"):
        from portfolio_sim.decisions import loads_decisions
        loads_decisions('[year.2.schools.x]\nintervention = "spare"\n', "f.toml", 5)
    assert Decisions(schools=((3, "intervention", "rule"),)).by_rule
