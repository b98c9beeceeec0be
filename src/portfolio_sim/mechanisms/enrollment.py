"""Enrollment: ageing, entering cohorts, school choice, assignment, and exits to outside options.

What it models (DOMAIN.md lever 6; seed 003 "Student enrollment"; seed 000 lesson 8; seed 001 on
enrollment decline):

* Students age a grade a year; graduates leave; a kindergarten cohort enters, growing or shrinking
  by `district.cohort_change` a year.
* Who chooses: students entering a grade band (K, 6, 9), students displaced by a closure, students
  outside the district at an entry grade (they may come back), and a share `choice.switch_rate` of
  dissatisfied students in other years.
* What they rank: a family values a school by perceived quality (last year's published rating seen
  through noise set by `choice.information_quality`; new schools have no track record), distance,
  a taste for autonomous schools, and an idiosyncratic taste. It considers the
  `choice.consideration_set` nearest schools of the band. A share `choice.participation` of families
  rank actively; the rest take the nearest school. Schools worth less than the outside option
  (private school, moving away; `choice.outside_option_appeal`) are not ranked; a family that ranks
  nothing leaves the district.
* Policies: `zones` (zone school, plus charters a family prefers), `zone_plus_open` (a guaranteed zone
  seat plus up to `max_choices - 1` district-wide choices), `unified` (up to `max_choices` ranked
  schools in one lottery, as Denver SchoolChoice and New Orleans OneApp).
* Assignment: student-proposing deferred acceptance (`portfolio_sim.matching`) with priorities
  continuing student > sibling > zone, and one lottery number per student breaking ties. Students the
  lottery leaves unassigned are placed administratively at the nearest district school with room.
  Capacity is never exceeded; if no seat exists at all, the student leaves the district.

Because capacity binds, the advantage active choosers get shrinks as participation rises
(Maroulis et al., JASSS 19(1) 7, 2016).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.matching import deferred_acceptance
from portfolio_sim.mechanisms import achievement
from portfolio_sim.state import CHARTER, OUTSIDE

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

ENTRY, DISPLACED, SWITCHER = 0, 1, 2
SWITCHING_COST = 0.5       # a move mid-band must beat the current school by this much utility
INFO_NOISE_AT_ZERO = 1.5   # SD of perception noise (in rating-z units) when information_quality = 0
OUTSIDE_BASE = -2.2        # outside option utility at appeal 0: ~10% prefer it to their nearby school
BETTER_SCHOOL_MARGIN = 20  # a displaced student "lands in a better school" if it is rated this many
                           # percentile points above the closed one (de la Torre & Gwynne 2009)


def step(model: PortfolioModel) -> None:
    age_and_enter(model)
    rows, kinds = who_chooses(model)
    assign(model, rows, kinds)


def age_and_enter(model: PortfolioModel) -> None:
    st, rng = model.students, model.streams["enrollment"]
    active = st.grade >= 0
    st.grade[active] += 1
    graduates = st.grade >= 13
    st.grade[graduates] = -1
    st.school[graduates] = OUTSIDE
    st.displaced[graduates] = False

    target = int(round(model.kindergarten_cohort * (1.0 + model.scenario.district.cohort_change) ** model.year))
    free = np.flatnonzero(st.grade < 0)
    new = np.sort(rng.permutation(free)[: min(target, len(free))])
    st.grade[new] = 0
    st.school[new] = OUTSIDE
    st.displaced[new] = False
    achievement.new_students(model, new, rng)
    model.entrants = new


def who_chooses(model: PortfolioModel) -> tuple[np.ndarray, np.ndarray]:
    st, rng, sc = model.students, model.streams["enrollment"], model.schools
    active = st.grade >= 0
    g = np.where(active, st.grade, 0)
    entry = active & model.entry_grade[g]
    displaced = active & ~entry & st.displaced
    enrolled = active & (st.school >= 0)
    # A student whose school no longer serves their band (e.g. a K-8 closed) must choose too.
    current = np.where(enrolled, st.school, 0)
    wrong_band = enrolled & (sc.band[current] != model.band_of_grade[g])
    outside_mid = active & ~entry & (st.school == OUTSIDE)  # outside students return only at entry grades
    # Dissatisfied students re-enter choice; the weaker their school looks, the likelier.
    z = model.perceived_z[current]
    p_switch = model.scenario.choice.switch_rate * 2.0 / (1.0 + np.exp(1.5 * z))
    switcher = enrolled & ~entry & ~displaced & ~wrong_band & (rng.random(len(st)) < p_switch)
    kinds = np.full(len(st), -1, dtype=np.int8)
    kinds[entry | wrong_band] = ENTRY
    kinds[displaced] = DISPLACED
    kinds[switcher] = SWITCHER
    kinds[outside_mid] = -1
    rows = np.flatnonzero(kinds >= 0)
    return rows, kinds[rows]


def utilities(model: PortfolioModel, rows: np.ndarray, schools: np.ndarray, rng: np.random.Generator
              ) -> np.ndarray:
    """Utility of school `schools[i, j]` to the family of student `rows[i]` (-inf where schools < 0)."""
    ch, sc, st = model.scenario.choice, model.schools, model.students
    valid = schools >= 0
    s = np.where(valid, schools, 0)
    hh = st.household[rows]
    dx = model.hh_xy[hh, 0][:, None] - sc.x[s]
    dy = model.hh_xy[hh, 1][:, None] - sc.y[s]
    band = model.band_of_grade[st.grade[rows]]
    dist = np.sqrt(dx * dx + dy * dy) / model.geo.spacing[band][:, None]
    noise_sd = INFO_NOISE_AT_ZERO * (1.0 - ch.information_quality)
    seen = model.perceived_z[s] + noise_sd * rng.standard_normal(s.shape)
    u = ch.weight_quality * seen - ch.weight_distance * dist + ch.weight_autonomous * sc.autonomous[s]
    u += rng.gumbel(size=s.shape)      # idiosyncratic taste
    return np.where(valid, u, -np.inf)


def _compact(values: np.ndarray, mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the entries where `mask` holds, in order, padded with -1 to `width` columns."""
    order = np.argsort(~mask, axis=1, kind="stable")[:, :width]
    out = np.take_along_axis(values, order, axis=1)
    if out.shape[1] < width:   # fewer candidates than list slots
        out = np.column_stack([out, np.full((len(out), width - out.shape[1]), -1, dtype=out.dtype)])
    count = np.minimum(mask.sum(1), width)
    out[np.arange(out.shape[1])[None, :] >= count[:, None]] = -1
    return out, count


def _append(lists: np.ndarray, count: np.ndarray, school: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Append `school[i]` at position `count[i]` of row i where `where[i]` (the row has room)."""
    out = np.column_stack([lists, np.full(len(lists), -1, dtype=lists.dtype)])
    r = np.flatnonzero(where)
    out[r, count[r]] = school[r]
    return out


def ranked_lists(model: PortfolioModel, rows: np.ndarray, kinds: np.ndarray, active: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each applicant's ranked list (n, max_choices) and zone school (n,)."""
    ch, st, sc, geo = model.scenario.choice, model.students, model.schools, model.geo
    k = ch.max_choices
    lists = np.full((len(rows), k), -1, dtype=np.int32)
    zone_of = np.full(len(rows), -1, dtype=np.int32)
    band_all = model.band_of_grade[st.grade[rows]]
    cell_all = geo.hh_cell[st.household[rows]]
    for b in range(model.n_bands):
        sel = np.flatnonzero(band_all == b)
        if len(sel) == 0:
            continue
        r = rows[sel]
        zone = geo.zone[b][cell_all[sel]]
        zone_of[sel] = zone
        cand = geo.candidates[b][cell_all[sel]].copy()
        # The zone school is always considered.
        has_zone = (cand == zone[:, None]).any(1)
        cand[~has_zone, -1] = zone[~has_zone]
        u = utilities(model, r, cand, rng)
        order = np.argsort(-u, axis=1, kind="stable")
        cand, u = np.take_along_axis(cand, order, 1), np.take_along_axis(u, order, 1)
        u_zone = np.where(cand == zone[:, None], u, -np.inf).max(1)
        u_out = OUTSIDE_BASE + ch.outside_option_appeal + rng.gumbel(size=len(sel))
        kind, act = kinds[sel], active[sel]
        prev = st.school[r]
        is_charter = (sc.sector[np.maximum(cand, 0)] == CHARTER) & (cand >= 0)
        out = np.full((len(sel), k), -1, dtype=np.int32)

        # Switchers compare alternatives with staying; they keep their seat (priority) as a fallback.
        sw = kind == SWITCHER
        if sw.any():
            cur = prev[sw][:, None]
            u_cur = utilities(model, r[sw], cur, rng)[:, 0]
            better = (u[sw] > (u_cur + SWITCHING_COST)[:, None]) & (cand[sw] != cur) & (u[sw] > u_out[sw, None])
            if ch.policy == "zones":
                better &= is_charter[sw]
            alt, n_alt = _compact(cand[sw], better, k - 1)
            stay = np.maximum(u_cur, u[sw].max(1)) >= u_out[sw]
            out[sw] = _append(alt, n_alt, cur[:, 0], stay)

        ns = ~sw
        chooser = ns & act
        passive = ns & ~act
        if ch.policy == "unified":
            keep = (u > u_out[:, None]) & (cand >= 0)
            out[chooser], _ = _compact(cand[chooser], keep[chooser], k)
            # Passive families list the nearest district schools, nearest first.
            dist_order = np.argsort(_distance(model, r[passive], cand[passive]), axis=1, kind="stable")
            near = np.take_along_axis(cand[passive], dist_order, 1)
            out[passive], _ = _compact(near, (near >= 0) & ~(sc.sector[np.maximum(near, 0)] == CHARTER), k)
        else:
            if ch.policy == "zones":
                better = is_charter & (u > u_zone[:, None])
            else:  # zone_plus_open
                better = (u > u_zone[:, None]) & (cand != zone[:, None]) & (cand >= 0)
            better &= u > u_out[:, None]
            alt, n_alt = _compact(cand[chooser], better[chooser], k - 1)
            take_zone = np.maximum(u_zone[chooser], u[chooser].max(1, initial=-np.inf)) >= u_out[chooser]
            take_zone &= (n_alt > 0) | (u_zone[chooser] >= u_out[chooser])
            out[chooser] = _append(alt, n_alt, zone[chooser], take_zone)
            out[passive, 0] = zone[passive]
        lists[sel] = out
    return lists, zone_of


def _distance(model: PortfolioModel, rows: np.ndarray, schools: np.ndarray) -> np.ndarray:
    s = np.maximum(schools, 0)
    hh = model.students.household[rows]
    d = np.hypot(model.hh_xy[hh, 0][:, None] - model.schools.x[s], model.hh_xy[hh, 1][:, None] - model.schools.y[s])
    return np.where(schools >= 0, d, np.inf)


def priority_scores(model: PortfolioModel, rows: np.ndarray, kinds: np.ndarray, lists: np.ndarray,
                    zone_of: np.ndarray, lottery: np.ndarray) -> np.ndarray:
    """Priority class (continuing 3 > sibling 2 > zone 1 > none 0) plus the single lottery tie-break."""
    ch, st = model.scenario.choice, model.students
    n_sc = len(model.schools)
    cls = np.zeros(lists.shape, dtype=np.float64)
    if ch.zone_priority:
        cls = np.maximum(cls, (lists == zone_of[:, None]) & (lists >= 0))
    if ch.sibling_priority:
        # Siblings: another student of the household who stays enrolled at the school this year.
        staying = np.ones(len(st), dtype=bool)
        staying[rows] = False
        staying &= (st.grade >= 0) & (st.school >= 0)
        keys = np.unique(st.household[staying].astype(np.int64) * n_sc + st.school[staying])
        ask = st.household[rows].astype(np.int64)[:, None] * n_sc + np.maximum(lists, 0)
        pos = np.searchsorted(keys, ask).clip(0, max(len(keys) - 1, 0))
        sib = (keys[pos] == ask) & (lists >= 0) if len(keys) else np.zeros(lists.shape, bool)
        cls = np.maximum(cls, 2.0 * sib)
    cont = (kinds == SWITCHER)[:, None] & (lists == st.school[rows][:, None]) & (lists >= 0)
    cls = np.maximum(cls, 3.0 * cont)
    return cls + (1.0 - lottery)[:, None]


def assign(model: PortfolioModel, rows: np.ndarray, kinds: np.ndarray) -> None:
    st, sc, rng, ch = model.students, model.schools, model.streams["enrollment"], model.scenario.choice
    prev = st.school[rows].copy()
    was_district = (prev >= 0) & (sc.sector[np.maximum(prev, 0)] != CHARTER)
    new_entrant = np.isin(rows, model.entrants)
    returning = (prev == OUTSIDE) & ~new_entrant & (model.year > 0)   # left earlier, may come back
    active = (rng.random(len(rows)) < ch.participation) | (kinds == SWITCHER) | returning

    lists, zone_of = ranked_lists(model, rows, kinds, active, rng)
    lottery = rng.random(len(rows))
    scores = priority_scores(model, rows, kinds, lists, zone_of, lottery)

    # Seats left after students who stay put.
    staying = np.ones(len(st), dtype=bool)
    staying[rows] = False
    staying &= (st.grade >= 0) & (st.school >= 0)
    free = np.where(sc.is_open, sc.capacity, 0) - np.bincount(st.school[staying], minlength=len(sc))
    free = np.maximum(free, 0)
    match = deferred_acceptance(lists, scores, free)
    school = match.school.copy()

    listed = lists[:, 0] >= 0
    unmatched = listed & (school < 0)
    if unmatched.any():
        left = free - np.bincount(school[school >= 0], minlength=len(sc))
        school[unmatched] = place_administratively(model, rows[unmatched], lottery[unmatched], left)

    st.school[rows] = np.where(school >= 0, school, OUTSIDE)
    st.displaced[rows] = False
    # Who chose actively this year and where everyone landed (for analysis of choice effects).
    model.last_choice = {"rows": rows, "active": active, "school": school}

    now_out = (school < 0) | (sc.sector[np.maximum(school, 0)] == CHARTER)
    y = model.year_stats
    y["exits_outside"] += int((now_out & (was_district | new_entrant)).sum())
    y["applicants"] += int(listed.sum())
    chose = listed & active
    y["choosers"] += int(chose.sum())
    y["first_choice"] += int((chose & (match.rank == 0)).sum())
    y["unassigned"] += int(unmatched.sum())
    disp = kinds == DISPLACED
    if disp.any():
        landed = school[disp]
        ok = landed >= 0
        y["displaced"] += int(disp.sum())
        new_pct = np.nan_to_num(sc.rating_pct[landed[ok]], nan=50.0)   # new schools: no record yet
        old_pct = np.nan_to_num(sc.rating_pct[prev[disp][ok]], nan=50.0)
        y["displaced_to_better"] += int((new_pct >= old_pct + BETTER_SCHOOL_MARGIN).sum())


def place_administratively(model: PortfolioModel, rows: np.ndarray, lottery: np.ndarray, free: np.ndarray
                           ) -> np.ndarray:
    """Unassigned students go to the nearest district school of their band with room (by lottery order);
    if the consideration set is full, to any district school of the band with room; else nowhere."""
    st, sc, geo = model.students, model.schools, model.geo
    out = np.full(len(rows), -1, dtype=np.int32)
    band = model.band_of_grade[st.grade[rows]]
    cells = geo.hh_cell[st.household[rows]]
    free = free.copy()
    for b in range(model.n_bands):
        sel = np.flatnonzero(band == b)
        if len(sel) == 0:
            continue
        cand = geo.candidates[b][cells[sel]]
        cand = np.where((cand >= 0) & (sc.sector[np.maximum(cand, 0)] != CHARTER), cand, -1)
        order = np.argsort(_distance(model, rows[sel], cand), axis=1, kind="stable")
        near, _ = _compact(np.take_along_axis(cand, order, 1), np.take_along_axis(cand, order, 1) >= 0,
                           cand.shape[1])
        m = deferred_acceptance(near, np.broadcast_to((1.0 - lottery[sel])[:, None], near.shape).copy(), free)
        out[sel] = m.school
        free -= np.bincount(m.school[m.school >= 0], minlength=len(free))
        rest = sel[m.school < 0]
        if len(rest):
            # Any district school of the band with room, biggest gaps first, in lottery order.
            pool = np.flatnonzero(sc.is_open & (sc.band == b) & (sc.sector != CHARTER) & (free > 0))
            pool = pool[np.argsort(-free[pool], kind="stable")]
            seats = np.repeat(pool, free[pool])
            take = rest[np.argsort(lottery[rest], kind="stable")][: len(seats)]
            out[take] = seats[: len(take)]
            free -= np.bincount(seats[: len(take)], minlength=len(free))
    return out
