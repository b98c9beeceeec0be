"""Every lever in the schema changes behaviour (DOMAIN.md: "Every lever must ... change behaviour").

For each field we change its value, in a context where it can matter, and require the run's outputs
(yearly metrics, school panel, event log) to differ from the same run without the change. A lever
added to the schema without an entry here fails `test_every_lever_is_listed`.
"""

from __future__ import annotations


import pytest

from conftest import result_digest, scenario
from portfolio_sim.kernel import single_run
from portfolio_sim.scenario import GROUPS, Scenario

BASE = {
    "district": {"students": 3000, "schools": 16, "charter_schools": 2, "operators": 5},
    "eligibility": {"schools": "turnaround", "conversions_per_year": 3, "turnaround_percentile": 50,
                    "new_schools_per_year": 1},
    "autonomy": {"staffing": 0.8, "academic": 0.8, "budget": 0.8, "operations": 0.8},
    "governance": {"category": "partner_led", "legal_basis": "mou"},
    "accountability": {"closure_percentile": 10, "consecutive_years": 2},
    "choice": {"policy": "unified"},
    "politics": {"initial_support": 0.85, "election_cycle": 4, "scheduled_flip_year": 4},
    "run": {"years": 6},
}

# lever -> (new value, extra context applied to both runs)
CHANGES: dict[str, tuple] = {
    "district.students": (3500, {}),
    "district.schools": (20, {}),
    "district.band_structure": ("k8-912", {}),
    "district.neighbourhoods": (64, {}),
    "district.low_income_share": (0.3, {}),
    "district.income_segregation": (0.9, {}),
    "district.initial_quality_sd": (0.2, {}),
    "district.quality_income_correlation": (0.5, {}),
    "district.capacity_slack": (0.5, {}),
    "district.students_per_household": (2.5, {}),
    "district.cohort_change": (-0.05, {}),
    "district.per_pupil_funding": (15000.0, {}),
    "district.fixed_cost_per_school": (1_500_000.0, {}),
    "district.min_viable_share": (0.7, {}),
    "district.charter_schools": (5, {}),
    "district.charter_quality": (0.2, {}),
    "district.operators": (1, {}),
    "district.operator_capacity": (1, {}),
    "district.operator_quality_mean": (0.15, {}),
    "district.operator_quality_sd": (0.2, {}),
    "autonomy.staffing": (0.2, {}),
    "autonomy.academic": (0.2, {}),
    "autonomy.budget": (0.2, {}),
    "autonomy.operations": (0.2, {"central_office": {"services": "a_la_carte"}}),
    "autonomy.waivers": ("prescribed", {}),
    "autonomy.max_effect": (0.3, {}),
    "autonomy.budget_multiplier": (1.5, {}),
    "autonomy.dip_depth": (0.2, {}),
    "autonomy.maturation_years": (6.0, {}),
    "governance.category": ("partner_run", {}),
    "governance.legal_basis": ("state_law", {}),
    "governance.collective_bargaining": ("separate_agreement", {}),
    "governance.operator_employs_staff": (True, {"governance": {"category": "partner_run"}}),
    "governance.cba_staffing_cap": (0.9, {}),
    "eligibility.schools": ("all", {}),
    "eligibility.turnaround_percentile": (20.0, {}),
    "eligibility.high_performer_percentile": (40.0, {"eligibility": {"schools": "high_performers"}}),
    "eligibility.conversions_per_year": (1, {}),
    "eligibility.new_schools_per_year": (3, {}),
    "eligibility.target_share": (0.1, {}),
    "central_office.autonomy_office": (True, {}),
    "central_office.office_strength": (0.2, {"central_office": {"autonomy_office": True}}),
    "central_office.buy_in": (0.95, {}),
    "central_office.services": ("public_enterprise", {}),
    "central_office.service_cost_share": (0.3, {}),
    "accountability.approval_rigor": (1.0, {}),
    "accountability.framework": ("status", {}),
    "accountability.closure_percentile": (25.0, {}),
    "accountability.consecutive_years": (1, {}),
    "accountability.intervention": ("close", {"accountability": {"closure_percentile": 25}}),
    "accountability.applies_to": ("autonomous", {}),
    "accountability.contract_term": (2, {}),
    "accountability.renewal_percentile": (90.0, {"accountability": {"contract_term": 1}}),
    "accountability.min_years_rated": (0, {}),
    "accountability.enrollment_grace_years": (0, {"district": {"min_viable_share": 0.8}}),
    "accountability.rating_noise": (0.2, {}),
    "choice.policy": ("zones", {}),
    "choice.max_choices": (2, {}),
    "choice.sibling_priority": (False, {}),
    "choice.zone_priority": (False, {}),
    "choice.displaced_priority": (True, {"accountability": {"intervention": "close", "closure_percentile": 25},
                                         "district": {"capacity_slack": 0.05}}),
    "choice.participation": (0.1, {}),
    "choice.information_quality": (1.0, {}),
    "choice.weight_quality": (4.0, {}),
    "choice.weight_distance": (0.2, {}),
    "choice.weight_autonomous": (2.0, {}),
    "choice.consideration_set": (4, {}),
    "choice.outside_option_appeal": (1.5, {}),
    "choice.switch_rate": (0.3, {}),
    "choice.unrated_school_view": ("prior", {}),
    "choice.unrated_school_z": (-1.5, {"choice": {"unrated_school_view": "prior"}}),
    "talent.leader_pipeline": (1.0, {}),
    "talent.excellent_teacher_share": (0.5, {}),
    "talent.differentiated_staffing": (1.0, {"governance": {"collective_bargaining": "separate_agreement"}}),
    "talent.leader_turnover": (0.5, {}),
    "talent.incubator": (True, {}),
    "implementation.planning_months": (0, {}),
    "implementation.startup_funding": (2000.0, {}),
    "implementation.community_engagement": (1.0, {}),
    "implementation.governance_councils": (True, {}),
    "politics.initial_support": (0.3, {}),
    "politics.election_cycle": (1, {}),
    "politics.board_seats": (5, {}),
    "politics.results_sensitivity": (5.0, {}),
    "politics.closure_backlash": (5.0, {"accountability": {"intervention": "close", "closure_percentile": 25}}),
    "politics.enrollment_loss_sensitivity": (5.0, {"district": {"cohort_change": -0.05}}),
    "politics.union_strength": (1.0, {}),
    "politics.budget_shock_probability": (0.9, {}),
    "politics.budget_shock_size": (0.3, {"politics": {"budget_shock_probability": 0.5}}),
    "politics.reversal_threshold": (0.9, {"politics": {"scheduled_flip_year": 2, "union_strength": 0.0,
                                                       "budget_shock_probability": 0.0}}),
    "politics.rollback_intensity": (1.0, {}),
    "politics.scheduled_flip_year": (2, {}),
    "politics.volatility": (0.3, {}),
    "run.years": (4, {}),
    "run.seed": (999, {}),
    "run.start_year": (2030, {}),
}

# Fields that do not change a single run by design, with the reason and where they are tested.
NOT_A_RUN_LEVER = {
    "district.schools_csv": "selects the CSV loader (tests/test_district_csv.py)",
    "district.neighbourhoods_csv": "selects the CSV loader (tests/test_district_csv.py)",
    "run.seeds": "number of replicates for run_many / the CLI (tests/test_cli.py)",
}


def digest(s: Scenario) -> str:
    return result_digest(single_run(s, s.run.seed))


def test_every_lever_is_listed():
    fields = {f"{g}.{f}" for g, model in GROUPS.items() for f in model.model_fields}
    assert fields == set(CHANGES) | set(NOT_A_RUN_LEVER)


@pytest.mark.parametrize("lever", sorted(CHANGES))
def test_lever_changes_the_run(lever):
    value, context = CHANGES[lever]
    group, name = lever.split(".")
    before = scenario(BASE, context)
    assert getattr(getattr(before, group), name) != value, "the change must be a change"
    after = scenario(BASE, context, {group: {name: value}})
    assert digest(before) != digest(after), f"{lever} = {value!r} changed nothing"
