"""Yearly outputs: model-level metrics (documented in docs/METRICS.md), the per-school panel, events.

`METRIC_COLUMNS` are the model-level columns the DataCollector records every year, in order (declared
with their labels, units and formats in `portfolio_sim.outputs.METRICS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy.special import ndtri

from portfolio_sim import lifecycle
from portfolio_sim.outputs import COMPUTED, METRICS
from portfolio_sim.scenario import DOMAINS
from portfolio_sim.state import CHARTER, DISTRICT_RUN, PARTNER_LED, PARTNER_RUN, SECTOR_NAMES, TRADITIONAL

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

METRIC_COLUMNS = [m.name for m in METRICS]   # declared once, in portfolio_sim.outputs

# What enrollment counts during the year (choice and exits); status changes are counted from the
# event log instead (`lifecycle.year_counts`).
YEAR_COUNTERS = ("exits_outside", "applicants", "choosers", "first_choice", "unassigned", "displaced",
                 "displaced_to_better", "seats_added")


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


class DistrictEnrollment(NamedTuple):
    """Where the students are this year, computed once for `collect` and `politics_signals`."""

    on: np.ndarray            # bool per slot: an active student (a resident)
    in_district: np.ndarray   # the slots (indexes, ascending) of students enrolled in a district school
    school: np.ndarray        # int per in-district student, in slot order: their school
    count: np.ndarray         # int per school: enrolled students
    low_count: np.ndarray     # float per school: enrolled low-income students (whole numbers)


def district_enrollment(model: PortfolioModel) -> DistrictEnrollment:
    st, sc = model.students, model.schools
    on = st.grade >= 0
    # Students not enrolled anywhere count in an extra bin past the last school.
    school = np.where(on & (st.school >= 0), st.school, len(sc))
    count = np.bincount(school, minlength=len(sc) + 1)[:-1]
    low_count = np.bincount(school, weights=st.low_income, minlength=len(sc) + 1)[:-1]
    in_district = np.flatnonzero(np.append(sc.sector != CHARTER, False)[school])
    return DistrictEnrollment(on, in_district, st.school.take(in_district), count, low_count)


def collect(model: PortfolioModel, where: DistrictEnrollment | None = None) -> dict[str, float]:
    st, sc = model.students, model.schools
    y = {**model.year_stats, **lifecycle.year_counts(model)}
    scn = model.scenario
    on, in_district, sch, count, low_count = district_enrollment(model) if where is None else where
    district_school = sc.sector != CHARTER
    n = int(count[district_school].sum())
    ach = st.achievement.take(in_district)    # (takes by index: faster than boolean masks)
    low = st.low_income.take(in_district)
    by_sector = np.bincount(sc.sector, weights=np.where(district_school, count, 0), minlength=5).astype(np.int64)
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
        "mean_growth": float(sc.value_added[sch].mean()) if n else float("nan"),
        "achievement_gap": float(ach.take(np.flatnonzero(~low)).mean() - ach.take(np.flatnonzero(low)).mean())
        if low.any() and (~low).any() else 0.0,
        "share_below_bar": _ratio(float(count[below_school].sum()), n),
        "enrollment_traditional": int(by_sector[TRADITIONAL]),
        "enrollment_autonomous": int(by_sector[DISTRICT_RUN] + by_sector[PARTNER_LED] + by_sector[PARTNER_RUN]),
        "enrollment_district_run": int(by_sector[DISTRICT_RUN]),
        "enrollment_partner_led": int(by_sector[PARTNER_LED]),
        "enrollment_partner_run": int(by_sector[PARTNER_RUN]),
        "enrollment_charter": int(count[~district_school].sum()),
        "enrollment_outside": int(on.sum()) - int(count.sum()),
        "exits_outside": y["exits_outside"],
        "schools_open": int(district_open.sum()),
        "autonomous_schools": int(auto_open.sum()),
        "openings": y["openings"], "closures": y["closures"], "restarts": y["restarts"],
        "conversions": y["conversions"], "renewals": y["renewals"], "non_renewals": y["non_renewals"],
        "operators_active": int(sum(1 for o in np.flatnonzero(model.operators.active)
                                    if (auto_open & (sc.operator == o)).any())),
        "political_support": model.board.support,
        "board_pro": model.board.pro_seats,
        "board_seats": len(model.board.seats),
        "published_results": float("nan") if model.board.published_results is None else model.board.published_results,
        "election": y["election"], "reversals": y["reversals"], "restorations": y["restorations"], "budget_shock": y["budget_shock"],
        "autonomy_office": int(model.office_active),
        "first_choice_rate": _ratio(y["first_choice"], y["choosers"]),
        "unassigned": _ratio(y["unassigned"], y["applicants"]),
        "displaced": y["displaced"],
        "displaced_to_better": _ratio(y["displaced_to_better"], y["displaced"]),
        "segregation_index": dissimilarity(np.where(district_school, low_count, 0.0),
                                           np.where(district_school, count - low_count, 0.0)),
        "per_pupil_resources": float(sc.resources[sch].mean()) if n else float("nan"),
    }
    granted = sc.granted[auto_open].mean(0) if auto_open.any() else np.zeros(len(DOMAINS))
    effective = sc.effective[auto_open].mean(0) if auto_open.any() else np.zeros(len(DOMAINS))
    m["autonomy_granted"] = float(granted.mean())
    m["autonomy_effective"] = float(effective.mean())
    for i, d in enumerate(DOMAINS):
        m[f"granted_{d}"] = float(granted[i])
        m[f"effective_{d}"] = float(effective[i])
    for metric in COMPUTED:       # metrics declared with their own computation (outputs.Metric.compute)
        m[metric.name] = metric.compute(model)
    return m


def relative_results(model: PortfolioModel, match_k: int) -> float | None:
    """Autonomous schools' results against a fair comparison, in percentile points (None: none to judge).

    A converted school: its rating change since the year before it converted minus the mean change, over
    the same years, of the `match_k` traditional schools closest to it then on both things the school was
    selected on: its rating and its principal (the district's principal evaluation, which the authorizer
    judged the plan by). A matched difference in differences: regression to the mean in the rating and
    principals' reversion toward average (turnover) happen to both alike, so neither is credited or
    blamed on the initiative. A new school: its rating minus the traditional schools' mean rating.
    Schools become comparable once rated after their first autonomous year."""
    sc, hist, leaders = model.schools, model.rating_history, model.leader_history
    now = sc.rating_pct
    rated = sc.is_open & ~np.isnan(now)
    trad = np.flatnonzero(rated & (sc.sector == TRADITIONAL))
    auto = np.flatnonzero(rated & sc.autonomous & (sc.autonomy_year >= 0) & (sc.autonomy_year < model.year))
    if len(auto) == 0 or len(trad) == 0:
        return None
    gaps = []
    for s in auto:
        ref = int(sc.autonomy_year[s]) - 1
        before = hist[ref] if 0 <= ref < len(hist) else None
        if before is None or s >= len(before) or np.isnan(before[s]):
            gaps.append(float(now[s] - now[trad].mean()))      # a new school: no record of its own
            continue
        peers = trad[trad < len(before)]
        peers = peers[~np.isnan(before[peers])]
        if len(peers) == 0:
            continue
        # Distance in standard-deviation units: the rating as a z-score, the principal as rated.
        z = ndtri(np.clip(before[np.append(peers, s)], 0.5, 99.5) / 100.0)
        lead = leaders[ref][np.append(peers, s)]
        distance = np.hypot(z[:-1] - z[-1], lead[:-1] - lead[-1])
        near = peers[np.argsort(distance, kind="stable")[:match_k]]
        gaps.append(float((now[s] - before[s]) - (now[near] - before[near]).mean()))
    return float(np.mean(gaps)) if gaps else None


def politics_signals(model: PortfolioModel, m: dict[str, float], previous: dict[str, float],
                     where: DistrictEnrollment | None = None) -> dict:
    """What next year's politics reacts to (kept beside the metrics, not in the output)."""
    before = previous.get("students", m["students"]) or 1
    school = (district_enrollment(model) if where is None else where).school   # in district schools
    return {
        # Families' satisfaction: how good their children's district schools look (Family.satisfaction).
        "family_satisfaction": float(model.perceived_z[school].mean()) if len(school) else 0.0,
        # Are autonomous schools doing better than comparable traditional schools? (published by politics)
        "relative_results": relative_results(model, model.scenario.assumptions.politics.results_match_k),
        "closures": m["closures"], "schools_open": m["schools_open"],
        "displaced_share": m["displaced"] / max(m["students"], 1),
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
        # years into the current contract/MOU term (-1: none); reviewed when this reaches contract_term
        "contract_years": np.where(sc.contract_year[rows] >= 0, model.year - sc.contract_year[rows], -1),
    }
