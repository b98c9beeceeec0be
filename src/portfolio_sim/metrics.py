"""Yearly outputs: model-level metrics (documented in docs/METRICS.md), the per-school panel, events.

`METRIC_COLUMNS` are the model-level columns the DataCollector records every year, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.scenario import DOMAINS
from portfolio_sim.state import CHARTER, DISTRICT_RUN, PARTNER_LED, PARTNER_RUN, SECTOR_NAMES, TRADITIONAL

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

METRIC_COLUMNS = [
    "year", "calendar_year", "students", "residents", "mean_achievement", "mean_growth", "achievement_gap",
    "share_below_bar",
    "enrollment_traditional", "enrollment_autonomous", "enrollment_district_run", "enrollment_partner_led",
    "enrollment_partner_run", "enrollment_charter", "enrollment_outside", "exits_outside",
    "schools_open", "autonomous_schools", "openings", "closures", "restarts", "conversions", "renewals",
    "non_renewals", "operators_active",
    "autonomy_granted", "autonomy_effective",
    *[f"granted_{d}" for d in DOMAINS], *[f"effective_{d}" for d in DOMAINS],
    "political_support", "board_pro", "election", "reversals", "budget_shock", "autonomy_office",
    "first_choice_rate", "unassigned", "displaced", "displaced_to_better",
    "segregation_index", "per_pupil_resources",
]

YEAR_COUNTERS = ("exits_outside", "applicants", "choosers", "first_choice", "unassigned", "displaced",
                 "displaced_to_better", "openings", "closures", "restarts", "conversions", "renewals",
                 "non_renewals", "reversals", "budget_shock", "election")


def new_year_stats() -> dict[str, int]:
    return {k: 0 for k in YEAR_COUNTERS}


def dissimilarity(low: np.ndarray, other: np.ndarray) -> float:
    """Duncan dissimilarity index of low-income vs other students across schools (0 even, 1 apart)."""
    lt, ot = low.sum(), other.sum()
    if lt == 0 or ot == 0:
        return 0.0
    return float(0.5 * np.abs(low / lt - other / ot).sum())


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def collect(model: PortfolioModel) -> dict[str, float]:
    st, sc, y = model.students, model.schools, model.year_stats
    scn = model.scenario
    on = st.grade >= 0
    school = np.maximum(st.school, 0)
    in_district = on & (st.school >= 0) & (sc.sector[school] != CHARTER)
    n = int(in_district.sum())
    ach = st.achievement[in_district]
    low = st.low_income[in_district]
    by_sector = np.bincount(sc.sector[school[in_district]], minlength=5)
    district_open = sc.is_open & (sc.sector != CHARTER)
    auto_open = sc.is_open & sc.autonomous

    bar = scn.accountability.closure_percentile
    # Schools closed at the end of this year still taught their students this year.
    taught = (sc.is_open | np.isin(np.arange(len(sc)), model.closed_this_year)) & (sc.sector != CHARTER)
    below_school = taught & (np.nan_to_num(sc.rating_pct, nan=100.0) < bar)
    m: dict[str, float] = {
        "year": model.year,
        "calendar_year": scn.run.start_year + model.year,
        "students": n,
        "residents": int(on.sum()),
        "mean_achievement": float(ach.mean()) if n else float("nan"),
        "mean_growth": float(sc.value_added[school[in_district]].mean()) if n else float("nan"),
        "achievement_gap": float(ach[~low].mean() - ach[low].mean()) if low.any() and (~low).any() else 0.0,
        "share_below_bar": _ratio(float(below_school[school[in_district]].sum()), n),
        "enrollment_traditional": int(by_sector[TRADITIONAL]),
        "enrollment_autonomous": int(by_sector[DISTRICT_RUN] + by_sector[PARTNER_LED] + by_sector[PARTNER_RUN]),
        "enrollment_district_run": int(by_sector[DISTRICT_RUN]),
        "enrollment_partner_led": int(by_sector[PARTNER_LED]),
        "enrollment_partner_run": int(by_sector[PARTNER_RUN]),
        "enrollment_charter": int((on & (st.school >= 0) & (sc.sector[school] == CHARTER)).sum()),
        "enrollment_outside": int((on & (st.school < 0)).sum()),
        "exits_outside": y["exits_outside"],
        "schools_open": int(district_open.sum()),
        "autonomous_schools": int(auto_open.sum()),
        "openings": y["openings"], "closures": y["closures"], "restarts": y["restarts"],
        "conversions": y["conversions"], "renewals": y["renewals"], "non_renewals": y["non_renewals"],
        "operators_active": int(sum(1 for o in np.flatnonzero(model.operators.active)
                                    if (auto_open & (sc.operator == o)).any())),
        "political_support": model.board.support,
        "board_pro": int(model.board.stance == "pro"),
        "election": y["election"], "reversals": y["reversals"], "budget_shock": y["budget_shock"],
        "autonomy_office": int(model.office_active),
        "first_choice_rate": _ratio(y["first_choice"], y["choosers"]),
        "unassigned": _ratio(y["unassigned"], y["applicants"]),
        "displaced": y["displaced"],
        "displaced_to_better": _ratio(y["displaced_to_better"], y["displaced"]),
        "segregation_index": dissimilarity(
            np.bincount(school[in_district & st.low_income], minlength=len(sc)).astype(float),
            np.bincount(school[in_district & ~st.low_income], minlength=len(sc)).astype(float)),
        "per_pupil_resources": float(sc.resources[school[in_district]].mean()) if n else float("nan"),
    }
    granted = sc.granted[auto_open].mean(0) if auto_open.any() else np.zeros(len(DOMAINS))
    effective = sc.effective[auto_open].mean(0) if auto_open.any() else np.zeros(len(DOMAINS))
    m["autonomy_granted"] = float(granted.mean())
    m["autonomy_effective"] = float(effective.mean())
    for i, d in enumerate(DOMAINS):
        m[f"granted_{d}"] = float(granted[i])
        m[f"effective_{d}"] = float(effective[i])
    return m


def politics_signals(model: PortfolioModel, m: dict[str, float], previous: dict[str, float]) -> dict:
    """What next year's politics reacts to (kept beside the metrics, not in the output)."""
    sc = model.schools
    rated = ~np.isnan(sc.rating_pct) & sc.is_open
    auto = rated & sc.autonomous
    before = previous.get("students", m["students"]) or 1
    st = model.students
    enrolled = (st.grade >= 0) & (st.school >= 0)
    school = st.school[enrolled]
    district = sc.sector[school] != CHARTER
    return {
        # Families' satisfaction: how good their children's district schools look (Family.satisfaction).
        "family_satisfaction": float(model.perceived_z[school[district]].mean()) if district.any() else 0.0,
        # Are autonomous schools improving? Rating now minus rating when they became autonomous.
        "autonomous_improvement": float((sc.rating_pct[auto] - sc.pre_autonomy_pct[auto]).mean())
        if auto.any() else None,
        "closures": m["closures"], "schools_open": m["schools_open"],
        "district_enrollment_change": (m["students"] - before) / before,
        "autonomous_school_share": m["autonomous_schools"] / max(m["schools_open"], 1),
    }


def school_panel(model: PortfolioModel) -> dict[str, np.ndarray | list]:
    """One row per school open at some point this year (closed this year included)."""
    sc = model.schools
    rows = np.flatnonzero(sc.is_open | np.isin(np.arange(len(sc)), model.closed_this_year))
    ops = model.operators
    return {
        "year": np.full(len(rows), model.year),
        "school_id": rows,
        "name": [sc.name[r] for r in rows],
        "sector": [SECTOR_NAMES[sc.sector[r]] for r in rows],
        "band": sc.band[rows].astype(int),
        "x": sc.x[rows].round(4), "y": sc.y[rows].round(4),
        "open": sc.is_open[rows],
        "operator": [ops.name[sc.operator[r]] if sc.operator[r] >= 0 else "" for r in rows],
        "enrollment": sc.enrollment[rows], "capacity": sc.capacity[rows],
        "low_income_share": np.round(sc.low_income_enrolled[rows] / np.maximum(sc.enrollment[rows], 1), 4),
        "mean_achievement": sc.mean_achievement[rows].round(4),
        "value_added": sc.value_added[rows].round(4),
        "rating_percentile": sc.rating_pct[rows].round(2),
        "years_below_bar": sc.years_below[rows],
        "autonomy_granted": sc.granted[rows].mean(1).round(4),
        "autonomy_effective": sc.effective[rows].mean(1).round(4),
        **{f"effective_{d}": sc.effective[rows, i].round(4) for i, d in enumerate(DOMAINS)},
        "leader_quality": sc.leader_quality[rows].round(3),
        "excellent_teacher_share": sc.teacher_share[rows].round(4),
        "per_pupil_resources": sc.resources[rows].round(0),
        "years_in_status": model.year - sc.status_year[rows],
    }
