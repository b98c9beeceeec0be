"""Declared assumptions: every coefficient of the mechanisms, with its range, unit and source.

Levers (`scenario.py`) are what a district decides; assumptions are what the model takes to be true about
how districts respond. Each is declared ONCE below as an :class:`Assumption` (EMA-workbench style: a
parameter is an object with a name, a default, a plausible range and its provenance), grouped by the
mechanism that reads it. From these declarations :func:`_build` makes the pydantic groups, so that

* a scenario has ``scenario.assumptions.<group>.<name>`` (defaults: the values the model always used),
* TOML scenarios may carry ``[assumptions.politics]`` tables (also through ``extends``),
* ``--set assumptions.politics.incumbency=0.8`` works, with the same errors as for levers (the
  plausible range ``[low, high]`` is the allowed range),
* sweeps vary ``assumptions.<group>.<name>`` like any lever,
* ``portfolio-sim assumptions`` lists them and ``docs/ASSUMPTIONS.md`` is generated from them.

A mechanism reads ``a = model.scenario.assumptions.politics`` once per call (outside loops) and uses
``a.incumbency``. To add one: append an ``Assumption(...)`` to ``DECLARED`` under its group, read it in the
mechanism, and regenerate the doc (``portfolio-sim assumptions --markdown > docs/ASSUMPTIONS.md``).

Sources: "seed 003, ..." names a passage of a seed document in /work/shared/seeds; "modelling choice"
says honestly that no source gives the number (it was set so that the model's behaviour is plausible).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

MC = "modelling choice"


@dataclass(frozen=True)
class Assumption:
    """One declared coefficient: its default (today's value), plausible range, unit, meaning, source."""

    group: str
    name: str
    default: float
    low: float
    high: float
    unit: str
    meaning: str
    source: str = MC
    integer: bool = False

    @property
    def path(self) -> str:
        """The dotted path used by `--set`, sweeps and the JSON listing."""
        return f"assumptions.{self.group}.{self.name}"


# What each group is, in the order of the year (docs/ODD.md "Process overview").
GROUP_DOCS: dict[str, str] = {
    "politics": "Support, elections, reversals and what protects autonomy (mechanisms/politics.py).",
    "authorizing": "Operators, approvals, new-school sites, launches (mechanisms/authorizing.py).",
    "enrollment": "Families' choices and switching (mechanisms/enrollment.py).",
    "autonomy": "Granting, interference, capacity to use autonomy, the implementation dip (mechanisms/autonomy.py).",
    "talent": "Leader pipeline and turnover; excellent teachers' sorting (mechanisms/talent.py).",
    "achievement": "Student growth and school value-added (mechanisms/achievement.py).",
    "finance": "Budgets, services and viability (mechanisms/finance.py).",
    "setup": "Set-up and school life-cycle numbers used by the model itself (model.py).",
}


def _a(group: str, name: str, default: float, low: float, high: float, unit: str, meaning: str,
       source: str = MC, integer: bool = False) -> Assumption:
    return Assumption(group, name, default, low, high, unit, meaning, source, integer)


S3_REL = "seed 003, district-school relationship"
DECLARED: tuple[Assumption, ...] = (
    # -- politics ---------------------------------------------------------------------------------
    # What protects policy/MOU autonomy from a mid-term rollback (contract and state law: fully protected,
    # since a board cannot break a contract before its term or override state law).
    _a("politics", "protection_district_policy", 0.35, 0.1, 0.6, "share 0-1",
       "Protection of autonomy resting on district policy against a rollback.",
       f"{S3_REL} (policy susceptible to changes in leadership), EVIDENCE.md E-POL-8; value {MC}"),
    _a("politics", "protection_mou", 0.25, 0.0, 0.5, "share 0-1",
       "Protection of autonomy resting on an MOU against a rollback.",
       f"{S3_REL} (MOUs susceptible to changes in leadership), EVIDENCE.md E-POL-7; value {MC}"),
    _a("politics", "protection_partner_led", 0.05, 0.0, 0.2, "share 0-1",
       "Extra protection of a partner-led school (an operator manages it).", f"seed 003, \"Categories\"; value {MC}"),
    _a("politics", "protection_partner_run", 0.15, 0.0, 0.4, "share 0-1",
       "Extra protection of a partner-run school (full governance shift).",
       f"seed 003, \"Categories\"; value {MC}"),
    _a("politics", "protection_councils", 0.05, 0.0, 0.2, "share 0-1",
       "Extra protection where governance councils exist.", f"seed 003, \"School Governance Committees\"; value {MC}"),
    _a("politics", "protection_office", 0.10, 0.0, 0.3, "share 0-1",
       "Extra protection from an active autonomy office at full strength.",
       f"seed 000, lesson 2; seed 003 \"dedicated district office\"; value {MC}"),
    _a("politics", "protection_max", 0.98, 0.8, 1.0, "share 0-1", "Most protection any policy/MOU school can have."),
    # Non-renewal at the end of a term by a hostile majority (the one way contract/state-law autonomy ends).
    _a("politics", "nonrenewal_state_law", 0.03, 0.0, 0.15, "probability per term end",
       "Chance a hostile board majority declines to renew a performing school's state-law arrangement "
       "(doubled when it has a reason: budget pressure, unions, low support).",
       f"EVIDENCE.md E-POL-9 (state-law arrangements end by state decision over decades); value {MC}"),
    _a("politics", "nonrenewal_contract", 0.12, 0.0, 0.4, "probability per term end",
       "Chance a hostile majority declines to renew a performing school's contract (doubled with a reason).",
       f"EVIDENCE.md E-POL-10 (Springfield: no reversal within a term); value {MC}"),
    _a("politics", "nonrenewal_district_policy", 0.25, 0.0, 0.6, "probability per term end",
       "Chance a hostile majority declines to renew a performing school's policy-based term (doubled with a reason).",
       f"EVIDENCE.md E-POL-8 (Denver zone folded after renewal difficulties); value {MC}"),
    _a("politics", "nonrenewal_mou", 0.3, 0.0, 0.6, "probability per term end",
       "Chance a hostile majority declines to renew a performing school's MOU (doubled with a reason).",
       f"EVIDENCE.md E-POL-8; value {MC}"),
    # Rollbacks and restorations.
    _a("politics", "rollback_base", 0.5, 0.2, 1.0, "share 0-1",
       "Share of `rollback_intensity` a one-seat hostile majority applies (a unanimous board: all of it).", MC),
    _a("politics", "union_mobilisation", 0.25, 0.0, 0.6, "probability/yr at full union strength",
       "Yearly chance the union mobilises a hostile majority to act (staffing and academics first); community "
       "engagement softens it as it softens opposition.",
       f"seed 003, \"Include community leaders\"; EVIDENCE.md E-POL-6; value {MC}"),
    _a("politics", "restore_chance", 0.5, 0.0, 1.0, "probability/yr",
       "Yearly chance a protective majority restores rolled-back autonomy."),
    _a("politics", "restore_rate", 0.5, 0.0, 1.0, "share",
       "Share of rolled-back autonomy a restoration gives back."),
    _a("politics", "office_disband_chance", 0.5, 0.0, 1.0, "probability",
       "Chance that a reversing board disbands the autonomy office.",
       f"seed 000, lesson 2 (LA disbanded ISIC); value {MC}"),
    # Elections.
    _a("politics", "incumbent_runs", 0.75, 0.6, 0.85, "probability",
       "Chance a member whose seat is up runs again.", "EVIDENCE.md E-POL-1, E-POL-2 (about 75% of incumbents run)"),
    _a("politics", "incumbency", 0.75, 0.0, 1.5, "log-odds",
       "Edge of a running incumbent's stance in the seat's vote (with seat_noise 1: wins ~0.77 at even support).",
       "EVIDENCE.md E-POL-1, E-POL-2 (incumbents win 0.72-0.8); value set to match"),
    _a("politics", "seat_noise", 1.0, 0.3, 2.0, "log-odds SD",
       "Seat-level noise in a seat's vote (candidates, turnout).", MC),
    _a("politics", "election_swing", 0.4, 0.0, 1.0, "log-odds SD",
       "District-wide swing shared by all seats up in one election.", f"EVIDENCE.md E-POL-4 (single elections move 1-2 seats); value {MC}"),
    _a("politics", "union_candidate_edge", 0.4, 0.0, 1.0, "log-odds at full union strength",
       "Vote edge of union-backed (skeptical) candidates from low-turnout elections.",
       "EVIDENCE.md E-POL-6 (about 80% of union-endorsed candidates win), E-POL-3b; value " + MC),
    # Opinion.
    _a("politics", "opinion_pull", 0.25, 0.05, 0.6, "share/yr",
       "Share of the gap between opinion and the political climate closed each year (log-odds).", MC),
    _a("politics", "climate_pull", 0.05, 0.0, 0.3, "share/yr",
       "Share of the gap between the climate and its starting level closed each year.", MC),
    _a("politics", "climate_drift", 0.2, 0.0, 0.4, "log-odds SD/yr",
       "Yearly drift of the political climate (0.2 log-odds ~ 0.05 of opinion near 0.5; opinion follows it part-way).",
       "EVIDENCE.md E-POL-11 (year-to-year SD of opinion ~0.03 [0.02, 0.06])"),
    _a("politics", "results_match_k", 3, 1, 10, "schools", "Traditional schools matched to each converted "
       "school on its rating and principal before conversion (the comparison group; a metric definition).", MC, integer=True),
    _a("politics", "results_lag", 1, 0, 3, "years",
       "Years before a year's relative results reach the public (publication and reporting).", MC, integer=True),
    _a("politics", "results_noise", 5.0, 0.0, 15.0, "percentile points",
       "Noise in the published relative results (reporting, which schools are compared).", MC),
    _a("politics", "results_scale", 20.0, 5.0, 50.0, "percentile points",
       "Relative results (autonomous minus matched traditional change) that move opinion the most."),
    _a("politics", "support_results", 0.3, 0.0, 0.8, "log-odds/yr",
       "Yearly opinion change from relative results at full scale (small: EVIDENCE.md E-POL-3).",
       f"EVIDENCE.md E-POL-3 (results seldom move board elections); value {MC}"),
    _a("politics", "support_closures", 3.0, 0.0, 10.0, "log-odds per closed share",
       "Opinion lost per share of schools closed last year (before engagement softens it)."),
    _a("politics", "closure_local_weight", 1.0, 0.0, 5.0, "closed-share per displaced share",
       "How much more a closure weighs per share of district students it displaced (felt where it happens).",
       "EVIDENCE.md section 4 (closures); value " + MC),
    _a("politics", "engagement_softening", 0.5, 0.0, 1.0, "share 0-1",
       "How much full community engagement softens backlash from closures and unions.",
       f"seed 003, \"Include community leaders\"; value {MC}"),
    _a("politics", "support_engagement", 0.08, 0.0, 0.2, "log-odds/yr",
       "Yearly opinion gained from full community engagement while autonomous schools exist.",
       f"seed 003, \"Include community leaders\"; seed 004; value {MC}"),
    _a("politics", "support_enrollment_loss", 4.0, 0.0, 12.0, "log-odds per enrollment share",
       "Opinion lost per share of district enrollment lost last year."),
    _a("politics", "support_union", 0.25, 0.0, 0.6, "log-odds/yr",
       "Yearly opinion lost to union opposition at full union strength, all schools autonomous.",
       f"seed 003, \"Include community leaders\" (unions may perceive a loss of authority); value {MC}"),
    _a("politics", "union_deal_factor", 0.5, 0.0, 1.0, "share 0-1",
       "Union opposition left where elect-to-work or a separate agreement was negotiated.",
       f"seed 003, \"Enabling Autonomy under Collective Bargaining Agreements\"; value {MC}"),
    _a("politics", "support_shock", 0.3, 0.0, 1.0, "log-odds",
       "Opinion lost in a budget-shock year.", f"{S3_REL} (budget challenges); value {MC}"),
    _a("politics", "support_satisfaction", 0.2, 0.0, 0.8, "log-odds per unit satisfaction",
       "Yearly opinion change per unit change in families' satisfaction (mean rating z of their schools, "
       "displaced families included) since the start."),
    _a("politics", "support_councils", 0.04, 0.0, 0.15, "log-odds/yr",
       "Yearly opinion from governance councils giving families a voice.",
       f"seed 003, \"School Governance Committees\"; value {MC}"),
    # -- authorizing ------------------------------------------------------------------------------
    _a("authorizing", "operator_takeover", 0.6, 0.2, 1.0, "share 0-1",
       "How far a school's model moves to its new operator's quality.",
       f"seed 003, \"Engage school operators\"; value {MC}"),
    _a("authorizing", "commitment_state_law", 0.9, 0.5, 1.0, "share 0-1",
       "How strongly state law binds an operator to stay through hostile years."),
    _a("authorizing", "commitment_contract", 0.8, 0.4, 1.0, "share 0-1",
       "How strongly a contract binds an operator to stay."),
    _a("authorizing", "commitment_district_policy", 0.2, 0.0, 0.5, "share 0-1",
       "How strongly district policy binds an operator to stay."),
    _a("authorizing", "commitment_mou", 0.1, 0.0, 0.4, "share 0-1",
       "How strongly an MOU binds an operator to stay."),
    _a("authorizing", "stay_appetite_weight", 0.5, 0.0, 1.0, "share 0-1",
       "Weight of an operator's appetite (the rest: legal commitment) in its decision to stay."),
    _a("authorizing", "hostile_support", 0.35, 0.1, 0.6, "support 0-1",
       "Support below which operators find the climate hostile (as under a skeptical board)."),
    _a("authorizing", "hostile_years_to_exit", 2, 1, 5, "years",
       "Hostile years in a row before an operator may leave.", integer=True),
    _a("authorizing", "operator_growth_percentile", 60.0, 40.0, 90.0, "percentile",
       "Operators whose schools are rated at least this high may take one more school."),
    _a("authorizing", "operator_shrink_percentile", 25.0, 5.0, 45.0, "percentile",
       "Operators whose schools are rated below this lose capacity."),
    _a("authorizing", "pitch_noise", 0.05, 0.0, 0.2, "SD/yr",
       "Noise in how good an operator's pitch looks to the district."),
    _a("authorizing", "pitch_appetite", 0.02, 0.0, 0.1, "SD/yr per unit appetite",
       "How much an operator's appetite for growth improves its pitch."),
    _a("authorizing", "incubator_every", 3, 1, 10, "years",
       "Years between operators launched by an incubator.", "seed 003, \"Engage school operators\" (The Mind Trust); "
       f"value {MC}", integer=True),
    _a("authorizing", "incubator_pipeline_gain", 0.03, 0.0, 0.1, "SD/yr",
       "Quality edge of an incubated operator at full leader-pipeline investment."),
    _a("authorizing", "incubated_capacity", 2, 1, 6, "schools",
       "Schools an incubated operator can run at launch.", integer=True),
    _a("authorizing", "incubated_appetite", 0.8, 0.3, 1.0, "share 0-1",
       "Appetite for growth of an incubated operator."),
    _a("authorizing", "approval_noise_at_zero", 1.2, 1.0, 2.0, "SD (applicant z)",
       "Noise in how the authorizer sees an applicant at rigor 0 (falls by 1 SD per unit rigor).",
       f"seed 000, lesson 5 (rigorous authorization); value {MC}"),
    _a("authorizing", "approval_bar_slope", 1.5, 0.5, 3.0, "applicant z per unit rigor",
       "How fast the approval bar rises with rigor."),
    _a("authorizing", "approval_bar_pivot", 0.35, 0.0, 0.6, "rigor 0-1",
       "Rigor at which the approval bar is at the mean applicant."),
    _a("authorizing", "weak_school_percentile", 35.0, 10.0, 50.0, "percentile",
       "Students in schools rated below this want better seats (new schools are sited near them)."),
    _a("authorizing", "site_jitter", 0.02, 0.0, 0.1, "map units",
       "Spread of a new school's site around the student whose demand places it."),
    _a("authorizing", "startup_years", 2, 1, 3, "years",
       "Years of start-up funding a new autonomous school gets.", "seed 003, \"Ensure sufficient funding\"",
       integer=True),
    # -- enrollment -------------------------------------------------------------------------------
    _a("enrollment", "switching_cost", 0.5, 0.0, 2.0, "utility",
       "How much a mid-band move must beat the current school by."),
    _a("enrollment", "info_noise_at_zero", 1.5, 0.5, 3.0, "SD (rating z)",
       "Noise in families' perception of quality when choice.information_quality = 0."),
    _a("enrollment", "outside_base", -3.1, -4.5, -1.5, "utility",
       "Utility of leaving the district at outside_option_appeal 0 (about 10% prefer it to a nearby school)."),
    _a("enrollment", "switch_steepness", 1.5, 0.0, 4.0, "per rating z",
       "How much faster families of weaker-looking schools re-enter choice."),
    _a("enrollment", "better_school_margin", 20.0, 5.0, 40.0, "percentile points",
       "A displaced student lands in a better school if it is rated this far above the closed one "
       "(a metric definition).", "de la Torre & Gwynne 2009 (Chicago school closings)"),
    _a("enrollment", "low_income_quality_weight", 0.5, 0.33, 1.0, "share of others' weight",
       "Low-income families' weight on a school's published quality, relative to other families', at "
       "choice.information_quality = 0 (less information, other priorities).",
       "EVIDENCE.md E-CHO-1b (about half [one third, equal]); E-CHO-2, E-CHO-3"),
    _a("enrollment", "information_weight_gain", 2.0, 1.0, 3.0, "multiplier",
       "How much full information (choice.information_quality = 1) multiplies low-income families' weight "
       "on quality (capped at other families' weight); linear in information_quality.",
       "EVIDENCE.md E-CHO-1b (simplified information doubled the implicit preference for academics [x1.5, x3])"),
    # -- autonomy ---------------------------------------------------------------------------------
    _a("autonomy", "need_to_request", 0.2, 0.05, 0.5, "share of plan",
       "A la carte: a school requests a domain its plan leans on at least this much.",
       f"seed 003, \"Planning and Implementing School Autonomies\"; value {MC}"),
    _a("autonomy", "shield_partner_led", 0.35, 0.0, 0.7, "share 0-1",
       "Share of central-office interference a partner-led school is shielded from.",
       f"seed 003, \"Categories\"; value {MC}"),
    _a("autonomy", "shield_partner_run", 0.75, 0.3, 1.0, "share 0-1",
       "Share of central-office interference a partner-run school is shielded from.",
       f"seed 003, \"Categories\"; value {MC}"),
    _a("autonomy", "max_interference", 0.6, 0.2, 0.9, "share 0-1",
       "Share of autonomy unusable at zero buy-in with no office and no shield.",
       f"seed 000, lesson 3 (central-office buy-in); value {MC}"),
    _a("autonomy", "a_la_carte_interference", 1.2, 1.0, 1.6, "multiplier",
       "Extra interference with a la carte waivers and no autonomy office (every school's waivers differ)."),
    _a("autonomy", "cba_cap_elect_to_work", 0.7, 0.4, 1.0, "share 0-1",
       "Most staffing autonomy usable under elect-to-work agreements.",
       f"seed 003, \"Enabling Autonomy under Collective Bargaining Agreements\" (LA Pilot); value {MC}"),
    _a("autonomy", "cba_cap_separate_agreement", 0.85, 0.5, 1.0, "share 0-1",
       "Most staffing autonomy usable under a separate agreement.",
       f"seed 003, \"Enabling Autonomy under Collective Bargaining Agreements\" (Springfield); value {MC}"),
    _a("autonomy", "mandatory_services_operations_cap", 0.3, 0.0, 0.7, "share 0-1",
       "Most operations autonomy usable when district services are mandatory.",
       f"seed 003, \"Operations\"; value {MC}"),
    _a("autonomy", "full_readiness_months", 15.0, 12.0, 18.0, "months",
       "Planning time after which a school is fully ready (no planning-related dip).",
       "seed 003, \"Provide sufficient planning time\" (12-18 months recommended)"),
    _a("autonomy", "readiness_dip_reduction", 0.5, 0.2, 0.8, "share 0-1",
       "Share of the implementation dip that full planning time avoids.",
       f"seed 003, note 2; EVIDENCE.md E-IMP-1 (dip shrinks by up to half at 12+ months; evidence thin); value {MC}"),
    _a("autonomy", "capacity_dip_reduction", 0.3, 0.0, 0.6, "share 0-1",
       "Share of the implementation dip that full capacity avoids.", f"seed 003, note 2; value {MC}"),
    _a("autonomy", "funding_dip_reduction", 0.25, 0.0, 0.6, "share 0-1",
       "Share of the implementation dip that full start-up funding avoids.",
       f"EVIDENCE.md E-IMP-2, E-TIME-7 (evidence thin); value {MC}"),
    _a("autonomy", "dip_decay_years", 1.0, 0.5, 3.0, "years",
       "Time constant over which the implementation dip fades.",
       f"seed 003, note 2 (first few years underwhelming); value {MC}"),
    _a("autonomy", "capacity_base", 0.45, 0.2, 0.7, "capacity 0-1",
       "Capacity to use autonomy of a school with an average leader and no support."),
    _a("autonomy", "capacity_breakeven", 0.62, 0.45, 0.8, "capacity 0-1",
       "Capacity at which autonomy neither helps nor hurts; below it a school misuses what it is granted.",
       f"EVIDENCE.md E-AUT-1, E-AUT-7 (district-run mean ~0), E-SPR-1/3 (many schools no better or worse); "
       f"value {MC}, set so that district-run conversions average ~0"),
    _a("autonomy", "misaligned_cost", 0.08, 0.0, 0.2, "SD/yr",
       "Value-added lost per year with all four domains used with no plan for them (spread evenly).",
       f"seed 003, \"Planning and Implementing School Autonomies\" (a la carte fits goals); E-SPR-3; value {MC}"),
    _a("autonomy", "support_loss", 0.03, 0.0, 0.1, "SD/yr",
       "Value-added lost at full operations autonomy from district support the school no longer gets, where "
       "no autonomy office replaces it.", f"seed 000, lesson 2; EVIDENCE.md E-SPR-3; value {MC}"),
    _a("autonomy", "capacity_planning", 0.2, 0.0, 0.3, "capacity",
       "Lasting capacity from full planning time (readiness built before launch).",
       f"seed 003, \"Provide sufficient planning time\"; EVIDENCE.md E-IMP-1 (evidence thin); value {MC}"),
    _a("autonomy", "capacity_leader", 0.12, 0.0, 0.3, "capacity per SD",
       "Capacity per SD of principal quality."),
    _a("autonomy", "capacity_trained", 0.15, 0.0, 0.3, "capacity",
       "Capacity from a principal trained to run an autonomous school.", f"seed 004; seed 000, lesson 7; value {MC}"),
    _a("autonomy", "capacity_office", 0.10, 0.0, 0.3, "capacity",
       "Capacity from an active autonomy office at full strength.", f"seed 000, lesson 2; value {MC}"),
    _a("autonomy", "capacity_startup", 0.08, 0.0, 0.3, "capacity",
       "Lasting capacity from full start-up funding (what it bought: training, planning staff, materials).",
       f"seed 003, \"Ensure sufficient funding\"; EVIDENCE.md E-IMP-2, E-TIME-4 (lasts after the money ends); "
       f"value {MC}"),
    _a("autonomy", "startup_full_funding", 1500.0, 500.0, 5000.0, "$ per pupil",
       "Start-up funding per pupil that gives the full start-up capacity."),
    _a("autonomy", "capacity_operator", 1.0, 0.0, 3.0, "capacity per SD/yr",
       "Capacity per unit of the operator's quality (partner schools)."),
    _a("autonomy", "capacity_fit_sd", 0.2, 0.05, 0.35, "capacity per SD",
       "Spread of school-level implementation fit (unobserved: staff culture, leader-school fit) in capacity.",
       f"EVIDENCE.md E-SPR-2 (between-school SD of the autonomy effect ~0.10 SD/yr [0.06, 0.15]), E-SPR-1, "
       f"E-SPR-5; value {MC}, sized to that spread"),
    _a("autonomy", "capacity_councils", 0.05, 0.0, 0.2, "capacity",
       "Capacity from trained governance councils.", f"seed 003, \"School Governance Committees\"; value {MC}"),
    # -- talent -----------------------------------------------------------------------------------
    _a("talent", "pipeline_per_school", 0.05, 0.01, 0.15, "leaders/yr per school",
       "Trained leaders a year per district school at full pipeline investment.",
       f"seed 000, lesson 7; value {MC}"),
    _a("talent", "pipeline_leader_boost", 0.8, 0.2, 1.5, "SD",
       "Mean quality of pipeline leaders (the general pool: 0, SD 1).", f"seed 004; value {MC}"),
    _a("talent", "rollback_turnover", 0.15, 0.0, 0.4, "probability/yr",
       "Extra yearly chance a principal leaves after autonomy was rolled back."),
    _a("talent", "rollback_turnover_threshold", 0.3, 0.1, 0.7, "share 0-1",
       "Rollback (in some domain) above which leaders leave more often."),
    _a("talent", "teacher_exit", 0.16, 0.10, 0.25, "share/yr",
       "Share of a school's teachers who leave it each year; their posts are the vacancies excellent teachers "
       "sort into (sorting is bounded by this rate).", "EVIDENCE.md E-TAL-4 (NCES follow-up survey: 0.16)"),
    _a("talent", "hire_share_cap", 2.0, 1.0, 4.0, "multiple of the pool's share",
       "Most excellent share among one school's hires, as a multiple of the excellent share of the year's "
       "applicant pool (an attractive school still hires from the pool that applies).",
       f"EVIDENCE.md E-TAL-1 (most teacher variance is within schools); value {MC}"),
    _a("talent", "attraction", 1.5, 0.5, 3.0, "per attractiveness unit",
       "How strongly excellent teachers follow school attractiveness.",
       f"seed 003, \"Develop a talent strategy\"; value {MC}"),
    _a("talent", "attract_resources", 2.0, 0.0, 4.0, "per resource share",
       "Attractiveness per share of per-pupil resources above the starting level."),
    _a("talent", "attract_staffing", 1.5, 0.0, 3.0, "per unit autonomy",
       "Attractiveness of full staffing autonomy (freedom to recruit) to a school whose plan relies on it."),
    _a("talent", "reach_per_differentiation", 1.0, 0.0, 2.0, "reach multiplier",
       "Extra reach of excellent teachers under full differentiated staffing (1: doubles it).",
       f"seed 003, \"Develop a talent strategy\"; value {MC}"),
    # -- achievement ------------------------------------------------------------------------------
    _a("achievement", "rho", 0.7, 0.5, 0.9, "share/yr",
       "Persistence of achievement from one year to the next (school effects fade at 1 - rho).",
       MC + " (school effects fade, as value-added research describes; not calibrated)"),
    _a("achievement", "sigma", 0.3, 0.15, 0.5, "SD",
       "Yearly student-level noise in achievement growth."),
    _a("achievement", "baseline_gap", 0.7, 0.3, 1.0, "SD",
       "Long-run gap between low-income and other students without school effects."),
    _a("achievement", "baseline_sd", 0.6, 0.3, 0.9, "SD",
       "Spread of long-run levels within an income group."),
    _a("achievement", "leader_effect", 0.05, 0.03, 0.11, "SD/yr per SD",
       "Value-added per SD of principal quality.", "EVIDENCE.md E-TAL-2 (0.05 SD/yr [0.03, 0.11]), E-TAL-3"),
    _a("achievement", "teacher_effect", 0.12, 0.08, 0.20, "SD/yr per share",
       "Value-added per unit share of excellent (+1 SD) teachers, in absolute terms: all-excellent staff vs "
       "all-average adds this much.",
       "EVIDENCE.md E-TAL-1 (teacher SD 0.12 SD/yr [0.08, 0.20]), E-TAL-1b"),
    _a("achievement", "teacher_reference_share", 0.2, 0.05, 0.5, "share 0-1",
       "Excellent-teacher share at which the rest of value-added is centred (a typical district): a district "
       "with more excellent teachers gains value-added everywhere.", MC),
    _a("achievement", "resource_effect", 0.04, 0.0, 0.15, "SD/yr",
       "Value-added of 100% more per-pupil resources than the starting level."),
    _a("achievement", "displacement_cost", -0.05, -0.10, 0.0, "SD",
       "One-year achievement cost for a student displaced by a closure, in their first year at the new school "
       "(after that they grow with the new school's value-added).",
       "EVIDENCE.md E-CLO-2 (-0.05 SD [-0.10, -0.02]), E-CLO-4; 0 = phase-out without disruption (E-CLO-7)"),
    _a("achievement", "enterprise_service_gain", 0.01, 0.0, 0.05, "SD/yr",
       "Value-added from services run as competing public enterprises.",
       f"seed 000, lesson 4; value {MC}"),
    # -- finance ----------------------------------------------------------------------------------
    _a("finance", "outside_service_discount", 0.15, 0.0, 0.4, "share 0-1",
       "Outside providers' price advantage for schools that opt out of district services.",
       f"seed 003, \"Operations\"; value {MC}"),
    _a("finance", "enterprise_discount", 0.10, 0.0, 0.3, "share 0-1",
       "How much cheaper public enterprises become when they compete for schools.",
       f"seed 000, lesson 4; value {MC}"),
    _a("finance", "budget_stretch", 0.10, 0.0, 0.3, "share 0-1",
       "Extra instruction from the same dollars under full budget autonomy.",
       f"seed 003, \"Budget\" (reallocated savings); value {MC}"),
    _a("finance", "shock_recovery", 0.3, 0.0, 1.0, "share/yr",
       "Share of a budget cut restored each year."),
    _a("finance", "opt_out_operations", 0.5, 0.1, 1.0, "autonomy 0-1",
       "Operations autonomy at which an autonomous school opts out of district services."),
    _a("finance", "viability_years", 2, 1, 4, "years",
       "Years under the viable enrollment share (and years settled) before a consolidation closure.",
       integer=True),
    # -- set-up -----------------------------------------------------------------------------------
    _a("setup", "operator_appetite_low", 0.3, 0.0, 1.0, "share 0-1",
       "Lowest appetite for growth of a starting operator (drawn uniformly up to operator_appetite_high)."),
    _a("setup", "operator_appetite_high", 1.0, 0.0, 1.0, "share 0-1",
       "Highest appetite for growth of a starting operator."),
    _a("setup", "restart_keep", 0.5, 0.0, 1.0, "share 0-1",
       "Share of a restarted school's model quality kept (the rest is a fresh draw)."),
    _a("setup", "restart_min_sd", 0.02, 0.0, 0.1, "SD/yr",
       "Least spread of a restarted school's fresh draw."),
    _a("setup", "new_school_capacity", 0.8, 0.4, 1.2, "share",
       "A new school's seats as a share of the median school of its band."),
    _a("setup", "building_adjustment", 1.0, 0.0, 1.0, "share 0-1",
       "Under open or unified choice, how far under-used starting buildings have been consolidated to the "
       "regime's demand (1: seats = enrollment at set-up plus district.capacity_slack, never more than the "
       "zone-sized building; 0: sized for attendance zones as under zones).",
       f"{MC} (EVIDENCE.md E-ENR-5: districts that have run choice for years resize and consolidate buildings)"),
    _a("setup", "new_school_min_seats", 60, 20, 200, "seats", "Fewest seats of a new school.", integer=True),
    _a("setup", "new_school_default_seats", 300, 100, 1000, "seats",
       "Seats of a new school's reference when no open school serves its band.", integer=True),
)


# ------------------------------------------------------------------------------------------------
# The pydantic groups, built from the declarations
# ------------------------------------------------------------------------------------------------

def _field(a: Assumption) -> tuple[type, Any]:
    kind = int if a.integer else float
    default = int(a.default) if a.integer else float(a.default)
    extra = {"unit": a.unit, "source": a.source}
    return kind, Field(default, ge=a.low, le=a.high, description=a.meaning, json_schema_extra=extra)


def _build() -> tuple[type[BaseModel], dict[str, type[BaseModel]]]:
    config = ConfigDict(extra="forbid", validate_assignment=True)
    groups: dict[str, type[BaseModel]] = {}
    for group in GROUP_DOCS:
        fields = {a.name: _field(a) for a in DECLARED if a.group == group}
        cls = create_model(f"{group.title()}Assumptions", __config__=config, **fields)  # type: ignore[call-overload]
        cls.__doc__ = GROUP_DOCS[group]
        groups[group] = cls
    top = create_model("Assumptions", __config__=config,  # type: ignore[call-overload]
                       **{g: (cls, Field(default_factory=cls, description=GROUP_DOCS[g])) for g, cls in groups.items()})
    top.__doc__ = "Declared assumptions of every mechanism (docs/ASSUMPTIONS.md)."
    return top, groups


Assumptions, ASSUMPTION_GROUPS = _build()
BY_PATH: dict[str, Assumption] = {a.path: a for a in DECLARED}


def _check_declarations() -> None:
    seen: set[str] = set()
    for a in DECLARED:
        if a.group not in GROUP_DOCS:
            raise ValueError(f"{a.path}: unknown group {a.group!r}")
        if a.path in seen:
            raise ValueError(f"{a.path}: declared twice")
        seen.add(a.path)


_check_declarations()


# ------------------------------------------------------------------------------------------------
# Listings: table, JSON, Markdown
# ------------------------------------------------------------------------------------------------

def _num(x: float, integer: bool = False) -> str:
    return str(int(x)) if integer else f"{x:g}"


def as_records() -> list[dict[str, Any]]:
    """One dict per assumption: name (the --set path), default, low, high, unit, source, meaning, group."""
    return [{"name": a.path, "group": a.group, "key": a.name, "default": a.default, "low": a.low,
             "high": a.high, "unit": a.unit, "meaning": a.meaning, "source": a.source, "integer": a.integer}
            for a in DECLARED]


def to_json() -> str:
    return json.dumps(as_records(), indent=2)


def table() -> str:
    """Plain-text table grouped by mechanism (`portfolio-sim assumptions`)."""
    lines: list[str] = []
    width = max(len(a.name) for a in DECLARED)
    for group, doc in GROUP_DOCS.items():
        lines += [f"[assumptions.{group}]  {doc}"]
        for a in (x for x in DECLARED if x.group == group):
            rng = f"{_num(a.default, a.integer)}  [{_num(a.low, a.integer)}, {_num(a.high, a.integer)}]"
            lines.append(f"  {a.name:<{width}}  {rng:<22}  {a.unit:<26}  {a.meaning}  ({a.source})")
        lines.append("")
    lines.append("Set one with --set assumptions.GROUP.NAME=VALUE, or a [assumptions.GROUP] table in a scenario.")
    return "\n".join(lines)


def markdown() -> str:
    """docs/ASSUMPTIONS.md, generated from the declarations."""
    counts = ", ".join(f"{g} {sum(a.group == g for a in DECLARED)}" for g in GROUP_DOCS)
    out = ["# Assumptions reference", "",
           "Generated from `src/portfolio_sim/assumptions.py` by `portfolio-sim assumptions --markdown`; do not edit.",
           "",
           "Levers (docs/SCENARIO.md) are what a district decides; assumptions are the coefficients the model",
           "takes to be true about how a district responds. Each has a default (the value the model uses), a",
           "plausible range (also the range a scenario may set), a unit and a source: a seed passage, a study,",
           "or \"modelling choice\" where no source gives the number. Set one in a scenario file with a",
           "`[assumptions.GROUP]` table, on the command line with `--set assumptions.GROUP.NAME=VALUE`, or vary",
           "it in a sweep as a factor `assumptions.GROUP.NAME`. `portfolio-sim assumptions --json` lists them.",
           "",
           "The ranges are judgements of what is plausible (none is an estimated confidence interval); where the",
           "source cites a seed, the seed supports the mechanism or an ordering (e.g. state law protects more than",
           "an MOU), and the number itself is a modelling choice unless the source says otherwise. Sources naming",
           "an `EVIDENCE.md` row (e.g. E-TAL-1) rest on the study in that row of docs/EVIDENCE.md; tests/test_effects.py",
           "checks that the model's own measurements land in those rows' ranges.",
           "", f"{len(DECLARED)} assumptions: {counts}.", ""]
    for group, doc in GROUP_DOCS.items():
        out += [f"## `[assumptions.{group}]`", "", doc, "",
                "| name | default | low | high | unit | meaning | source |", "|---|---|---|---|---|---|---|"]
        for a in (x for x in DECLARED if x.group == group):
            out.append(f"| `{a.name}` | {_num(a.default, a.integer)} | {_num(a.low, a.integer)} | "
                       f"{_num(a.high, a.integer)} | {a.unit} | {a.meaning} | {a.source} |")
        out.append("")
    return "\n".join(out)
