"""Enrollment: ageing, entering cohorts, school choice, assignment, and exits to outside options.

What it models (DOMAIN.md lever 6; seed 003 "Student enrollment"; seed 000 lesson 8; seed 001 on
enrollment decline):

* Students age a grade a year; graduates leave; a kindergarten cohort enters, growing or shrinking
  by `district.cohort_change` a year.
* Who chooses: students entering a grade band (K, 6, 9), students displaced by a closure, students
  outside the district at an entry grade (they may come back), and a share `choice.switch_rate` of
  dissatisfied students in other years.
* What they rank: a family values a school by perceived quality (last year's published rating seen
  through noise set by `choice.information_quality`; low-income families weigh it less, the less so
  the better the information, EVIDENCE.md E-CHO-1b; a school with no track record shows
  `choice.unrated_school_z` or its operator's record), distance,
  a taste for autonomous schools, and an idiosyncratic taste. It considers the
  `choice.consideration_set` nearest schools of the band. A share `choice.participation` of families
  rank actively; the rest take the nearest school. Schools worth less than the outside option
  (private school, moving away; `choice.outside_option_appeal`) are not ranked; a family that ranks
  nothing leaves the district.
* Policies: `zones` (zone school, plus charters a family prefers), `zone_plus_open` (a guaranteed zone
  seat plus up to `max_choices - 1` district-wide choices), `unified` (up to `max_choices` ranked
  schools in one lottery, as Denver SchoolChoice and New Orleans OneApp).
* Assignment: student-proposing deferred acceptance (`portfolio_sim.matching`) with priorities
  continuing student > displaced student (only with `choice.displaced_priority`) > sibling > zone, and
  one lottery number per student breaking ties. Students the lottery leaves unassigned are placed
  administratively at the nearest district school with room; if the band has no seat left anywhere,
  the nearest district school they consider adds seats. Capacity is never exceeded, and nobody leaves
  the district for want of a seat. Any family choosing a school, active or passive, leaves when the
  outside option beats its zone school. Without a priority of their own, students displaced
  by a closure compete with every entering student for seats in better schools, which is why most land
  in similar or weaker ones (de la Torre & Gwynne 2009; DOMAIN.md patterns).

Because capacity binds, the advantage active choosers get shrinks as participation rises
(Maroulis et al., JASSS 19(1) 7, 2016).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from portfolio_sim.matching import _descending_key as descending_key
from portfolio_sim.matching import deferred_acceptance
from portfolio_sim.mechanisms import Mechanism, achievement
from portfolio_sim.state import CHARTER, OUTSIDE, Column

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel

ENTRY, DISPLACED, SWITCHER = 0, 1, 2
# Priority classes at a school (higher first); one lottery number per student breaks ties within a class.
PRIORITY_ZONE, PRIORITY_SIBLING, PRIORITY_DISPLACED, PRIORITY_CONTINUING = 1, 2, 3, 4
# Coefficients: `model.scenario.assumptions.enrollment` (declared in portfolio_sim/assumptions.py).


def step(model: PortfolioModel) -> None:
    if model.geo_dirty:              # a school opened or closed since the zones were drawn
        model.geo.update(model.schools)
        model.geo_dirty = False
    age_and_enter(model)
    rows, kinds = who_chooses(model)
    assign(model, rows, kinds)
    model.update_school_counts(enrollment_only=True)   # the rest is counted after achievement


def age_and_enter(model: PortfolioModel) -> None:
    st, rng = model.students, model.streams["enrollment"]
    np.add(st.grade, 1, out=st.grade, where=st.grade >= 0)
    graduates = np.flatnonzero(st.grade >= 13)
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
    g = np.maximum(st.grade, 0)     # grade 0 stands in for inactive slots (grade -1)
    entry = active & model.entry_grade[g]
    displaced = active & ~entry & st.displaced
    enrolled = active & (st.school >= 0)
    # A student whose school no longer serves their band (e.g. a K-8 closed) must choose too.
    current = np.where(enrolled, st.school, 0)
    wrong_band = enrolled & (sc.band[current] != model.band_of_grade[g])
    outside_mid = active & ~entry & (st.school == OUTSIDE)  # outside students return only at entry grades
    # Dissatisfied students re-enter choice; the weaker their school looks, the likelier.
    # (per school, then looked up per student: the same numbers, 600 exponentials instead of 400,000)
    steep = model.scenario.assumptions.enrollment.switch_steepness
    p_switch = (model.scenario.choice.switch_rate * 2.0 / (1.0 + np.exp(steep * model.perceived_z)))[current]
    switcher = enrolled & ~entry & ~displaced & ~wrong_band & (rng.random(len(st)) < p_switch)
    # Later rules win: outside mid-band, else switcher, else displaced, else entry (or wrong band).
    kinds = np.where(entry | wrong_band, np.int8(ENTRY), np.int8(-1))
    kinds = np.where(displaced, np.int8(DISPLACED), kinds)
    kinds = np.where(switcher, np.int8(SWITCHER), kinds)
    kinds = np.where(outside_mid, np.int8(-1), kinds)
    rows = np.flatnonzero(kinds >= 0)
    return rows, kinds[rows]


def school_values(schools: np.ndarray, table: np.ndarray | None = None, cells: np.ndarray | None = None
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """A lookup: per-school values -> their values at each entry of `schools` (a new array; school 0
    stands in where an entry is -1). When `schools` is `table[cells]`, whole rows of a small per-cell
    table (a consideration set), it looks the table up once and copies rows: the same numbers, faster."""
    if table is not None:
        table = np.where(table >= 0, table, 0)
        return lambda values: np.take(values[table], cells, axis=0)
    s = schools if schools.min(initial=0) >= 0 else np.where(schools >= 0, schools, 0)
    return lambda values: values[s]


def distances(model: PortfolioModel, rows: np.ndarray, schools: np.ndarray,
              at: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Straight-line distance from the home of student `rows[i]` to school `schools[i, j]`:
    sqrt(dx * dx + dy * dy) (school 0 stands in where schools < 0). `at`: `school_values(schools)`."""
    sc = model.schools
    at = school_values(schools) if at is None else at
    hh = model.students.household[rows]
    dx, dy = at(sc.x), at(sc.y)
    np.subtract(model.hh_xy[hh, 0][:, None], dx, out=dx)
    np.subtract(model.hh_xy[hh, 1][:, None], dy, out=dy)
    dx *= dx
    dy *= dy
    dx += dy
    return np.sqrt(dx, out=dx)


def utilities(model: PortfolioModel, rows: np.ndarray, schools: np.ndarray, rng: np.random.Generator,
              dist: np.ndarray | None = None, at: Callable[[np.ndarray], np.ndarray] | None = None
              ) -> np.ndarray:
    """Utility of school `schools[i, j]` to the family of student `rows[i]` (-inf where schools < 0):

        weight_quality * (rating z + perception noise) - weight_distance * distance / school spacing
        + weight_autonomous * autonomous + Gumbel taste

    `dist` may pass in `distances(model, rows, schools)` when the caller needs them too, `at` the
    lookup `school_values(schools, ...)`. (Computed in place, with the same floating-point operations
    in the same order and the same random draws as the formula reads; a multiplication by a weight of
    1 and the addition of a zero autonomy term are skipped, which leaves every result bit unchanged.)
    """
    ch, sc, st = model.scenario.choice, model.schools, model.students
    at = school_values(schools) if at is None else at
    if dist is None:
        dist = distances(model, rows, schools, at)
    band = model.band_of_grade[st.grade[rows]]
    d = dist / model.geo.spacing[band][:, None]
    e = model.scenario.assumptions.enrollment
    noise_sd = e.info_noise_at_zero * (1.0 - ch.information_quality)
    u = rng.standard_normal(schools.shape)
    u *= noise_sd
    u += at(model.perceived_z)            # the rating z as this family sees it
    low_weight = quality_weight_low_income(model)
    if low_weight != 1.0:                 # low-income families weigh published quality less (E-CHO-1b)
        u *= np.where(st.low_income[rows], ch.weight_quality * low_weight, ch.weight_quality)[:, None]
    elif ch.weight_quality != 1.0:
        u *= ch.weight_quality
    if ch.weight_distance != 1.0:
        d *= ch.weight_distance
    u -= d
    if ch.weight_autonomous != 0.0:       # (adding 0 could only turn a -0.0 into +0.0, which the
        u += ch.weight_autonomous * at(sc.autonomous)   # Gumbel term added next does anyway)
    u += rng.gumbel(size=schools.shape)   # idiosyncratic taste
    if schools.min(initial=0) < 0:
        u[schools < 0] = -np.inf
    return u


def quality_weight_low_income(model: PortfolioModel) -> float:
    """Low-income families' weight on published quality relative to other families': the assumption
    `low_income_quality_weight` at information_quality 0, multiplied by up to `information_weight_gain`
    at full information (linear in between), never above other families' weight (Hastings, Van Weelden
    & Weinstein 2007: simple information doubled low-income parents' implicit weight on academics)."""
    e, info = model.scenario.assumptions.enrollment, model.scenario.choice.information_quality
    return min(1.0, e.low_income_quality_weight * (1.0 + (e.information_weight_gain - 1.0) * info))


def _utility_of(u: np.ndarray, cand: np.ndarray, school: np.ndarray) -> np.ndarray:
    """Per row, the utility of school `school[i]` among the candidates `cand[i]` (-inf if not there)."""
    return np.where(cand == school[:, None], u, -np.inf).max(1)


def _compact(values: np.ndarray, mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the entries where `mask` holds, in order, padded with -1 to `width` columns; and how
    many there are (at most `width`)."""
    out = np.full((len(values), width), -1, dtype=values.dtype)
    slot = np.cumsum(mask, axis=1, dtype=np.int32)   # 1-based place of each masked entry in its row
    flat = np.flatnonzero(mask & (slot <= width))
    row = flat // max(mask.shape[1], 1)
    out.ravel()[row * width + slot.ravel()[flat] - 1] = values.ravel()[flat]
    count = np.minimum(slot[:, -1], width) if mask.shape[1] else np.zeros(len(values), np.int32)
    return out, count


def _append(lists: np.ndarray, count: np.ndarray, school: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Append `school[i]` at position `count[i]` of row i where `where[i]` (the row has room)."""
    out = np.column_stack([lists, np.full(len(lists), -1, dtype=lists.dtype)])
    r = np.flatnonzero(where)
    out[r, count[r]] = school[r]
    return out


def _rows(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`a[index]` for row numbers `index` (a take: faster than fancy indexing)."""
    return a.take(index, axis=0)


def _fit(a: np.ndarray, width: int) -> np.ndarray:
    """The first `width` columns of `a`, padded with -1 if it has fewer."""
    if a.shape[1] >= width:
        return a[:, :width]
    return np.column_stack([a, np.full((len(a), width - a.shape[1]), -1, dtype=a.dtype)])


def _row_count(mask: np.ndarray) -> np.ndarray:
    """Number of True entries in each row of a 2-D bool array (`mask.sum(1)`, faster on short rows)."""
    if mask.shape[1] < 256:
        return np.einsum("ij->i", mask.view(np.uint8))
    return mask.sum(1)


def _district_school_lookup(model: PortfolioModel) -> np.ndarray:
    """bool per school, plus a False at the end: `lookup[schools]` is True for listed (>= 0) district
    (non-charter) schools, False for charters and for -1 entries."""
    return np.append(model.schools.sector != CHARTER, False)


def _is_charter(model: PortfolioModel, schools: np.ndarray) -> np.ndarray:
    return (model.schools.sector[np.maximum(schools, 0)] == CHARTER) & (schools >= 0)


def stable_row_argsort(keys: np.ndarray, shift_out: list | None = None) -> np.ndarray:
    """`np.argsort(keys, axis=1, kind="stable")` for uint64 keys, about three times faster on the
    short rows of a consideration set.

    The column index is packed into the low bits of each key, so one plain `np.sort` of the rows
    (much faster per row than an argsort) yields the order. Neighbours whose truncated keys agree
    are checked against the full keys: a genuine tie is already in column order (what a stable sort
    gives); rows where truncation hid a difference (needs two values ~1e-9 apart relative) are
    re-sorted exactly. If `shift_out` is a list, (each row's keys sorted, without their low bits;
    the number of low bits) is appended to it.
    """
    n, c = keys.shape
    bits = max(1, (c - 1).bit_length())
    low = np.uint64((1 << bits) - 1)
    packed = keys & ~low
    packed |= np.arange(c, dtype=np.uint64)
    packed.sort(axis=1)
    order = np.bitwise_and(packed, low).view(np.intp)   # column numbers: small, so the view is exact
    packed >>= np.uint64(bits)
    close = packed[:, 1:] == packed[:, :-1]
    rows = np.flatnonzero(close.any(1))
    if len(rows):
        full = np.take_along_axis(keys[rows], order[rows], 1)
        wrong = rows[((full[:, 1:] != full[:, :-1]) & close[rows]).any(1)]
        if len(wrong):
            order[wrong] = np.argsort(keys[wrong], axis=1, kind="stable")
    if shift_out is not None:
        shift_out.append((packed, bits))
    return order


def _best_first(u: np.ndarray) -> np.ndarray:
    """Per row, the column order of `u` from highest to lowest (ties keep their order):
    `np.argsort(-u, axis=1, kind="stable")`."""
    return stable_row_argsort(descending_key(u))


def _nearest_first(model: PortfolioModel, rows: np.ndarray, cand: np.ndarray, dist: np.ndarray,
                   u: np.ndarray) -> np.ndarray:
    """Each row of `cand` sorted by distance from home (`_distance`: np.hypot), nearest first, schools at
    exactly the same distance in order of utility `u` (best first); unlisted entries (-1) last. That
    is: sorted by utility, then stably by distance.

    Sorted by `dist` instead (`distances`: sqrt of the sum of squares, which agrees with hypot to a
    few units in the last place), a row whose neighbours are all at least ~1e-12 apart (relative) is
    already in hypot order, with no ties, so it needs no utility order. The few rows with two schools
    at (nearly) the same distance are redone exactly as the definition says.
    """
    finite = cand.min(initial=0) >= 0
    d = dist if finite else np.where(cand >= 0, dist, np.inf)
    sorted_keys: list = []
    # Distances are >= 0: their bit patterns sort like them, and m units apart in the last place are
    # at least m * 2**-53 apart relative. Neighbours < 2**13 units apart (~1e-12) count as close.
    order = stable_row_argsort(d.view(np.uint64), sorted_keys)
    near = np.take_along_axis(cand, order, 1)
    high, bits = sorted_keys[0]
    close = (high[:, 1:] - high[:, :-1]) < np.uint64(1 << max(0, 13 - bits))
    if not finite:
        close &= high[:, 1:] < (np.float64(np.inf).view(np.uint64) >> np.uint64(bits))
    redo = np.flatnonzero(close.any(1))
    if len(redo):
        by_u = np.argsort(-u[redo], axis=1, kind="stable")
        c = np.take_along_axis(cand[redo], by_u, 1)
        near[redo] = np.take_along_axis(c, np.argsort(_distance(model, rows[redo], c), axis=1, kind="stable"), 1)
    return near


def ranked_lists(model: PortfolioModel, rows: np.ndarray, kinds: np.ndarray, active: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each applicant's ranked list (n, max_choices) and zone school (n,)."""
    ch, st, geo = model.scenario.choice, model.students, model.geo
    e = model.scenario.assumptions.enrollment
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
        cells = cell_all[sel]
        cand = np.take(geo.considered[b], cells, axis=0)    # the zone school is always considered
        at = school_values(cand, geo.considered[b], cells)
        dist = distances(model, r, cand, at)
        u = utilities(model, r, cand, rng, dist, at)
        u_out = e.outside_base + ch.outside_option_appeal + rng.gumbel(size=len(sel))
        # Row numbers (not masks: taking rows by index is several times faster than by a mask).
        kind, act = kinds[sel], active[sel]
        sw = np.flatnonzero(kind == SWITCHER)
        chooser = np.flatnonzero((kind != SWITCHER) & act)
        passive = np.flatnonzero((kind != SWITCHER) & ~act)
        out = np.full((len(sel), k), -1, dtype=np.int32)

        # Switchers compare alternatives with staying; they keep their seat (priority) as a fallback.
        if len(sw):
            cur = st.school[r[sw]][:, None]
            u_cur = utilities(model, r[sw], cur, rng)[:, 0]
            u_sw = _rows(u, sw)
            order = _best_first(u_sw)
            c_sw, u_sw = np.take_along_axis(_rows(cand, sw), order, 1), np.take_along_axis(u_sw, order, 1)
            better = (u_sw > (u_cur + e.switching_cost)[:, None]) & (c_sw != cur) & (u_sw > u_out[sw][:, None])
            if ch.policy == "zones":
                better &= _is_charter(model, c_sw)
            alt, n_alt = _compact(c_sw, better, k - 1)
            stay = np.maximum(u_cur, u_sw.max(1)) >= u_out[sw]
            out[sw] = _append(alt, n_alt, cur[:, 0], stay)

        # Active choosers rank what they prefer to the outside option, best first.
        u_ch, c_ch = _rows(u, chooser), _rows(cand, chooser)
        order = _best_first(u_ch)
        if ch.policy == "unified":
            # What they prefer to the outside option (unlisted entries have utility -inf) comes first
            # in the ranking: list the first n_keep.
            n_keep = _row_count(u_ch > u_out[chooser][:, None])
            c_ch = np.take_along_axis(c_ch, order, 1)
            out[chooser] = np.where(np.arange(k) < n_keep[:, None], _fit(c_ch, k), -1)
            # Passive families list the nearest district schools, nearest first.
            if len(passive):
                near = _nearest_first(model, r[passive], _rows(cand, passive), _rows(dist, passive),
                                      _rows(u, passive))
                out[passive], _ = _compact(near, _district_school_lookup(model)[near], k)
        else:
            zone_ch = zone[chooser]
            u_zone = np.where(c_ch == zone_ch[:, None], u_ch, -np.inf).max(1)
            c_ch, u_ch = np.take_along_axis(c_ch, order, 1), np.take_along_axis(u_ch, order, 1)
            if ch.policy == "zones":
                better = _is_charter(model, c_ch) & (u_ch > u_zone[:, None])
            else:  # zone_plus_open
                better = (u_ch > u_zone[:, None]) & (c_ch != zone_ch[:, None]) & (c_ch >= 0)
            better &= u_ch > u_out[chooser][:, None]
            alt, n_alt = _compact(c_ch, better, k - 1)
            take_zone = np.maximum(u_zone, u_ch.max(1, initial=-np.inf)) >= u_out[chooser]
            take_zone &= (n_alt > 0) | (u_zone >= u_out[chooser])
            out[chooser] = _append(alt, n_alt, zone_ch, take_zone)
            out[passive, 0] = zone[passive]
        # Any family choosing a school, active or passive, first decides whether to stay in the district:
        # it leaves when the outside option beats its address-based school (the zone school), the
        # option every family knows (EVIDENCE.md E-ENR-1b, E-ENR-4). Active and passive families leave
        # alike, so participation changes where families go, not how many leave. (Switchers compare
        # their current school and alternatives with it above.)
        if len(chooser) + len(passive):
            # (the zone school's column in each cell's consideration set: a small per-cell table)
            zone_col = np.argmax(geo.considered[b] == geo.zone[b][:, None], axis=1)
            u_zone_all = u[np.arange(len(sel)), zone_col[cells]]
            leave = (kind != SWITCHER) & (u_zone_all < u_out)
            out[leave] = -1
        lists[sel] = out
    return lists, zone_of


def _distance(model: PortfolioModel, rows: np.ndarray, schools: np.ndarray) -> np.ndarray:
    s = np.maximum(schools, 0)
    hh = model.students.household[rows]
    d = np.hypot(model.hh_xy[hh, 0][:, None] - model.schools.x[s], model.hh_xy[hh, 1][:, None] - model.schools.y[s])
    return np.where(schools >= 0, d, np.inf)


def priority_scores(model: PortfolioModel, rows: np.ndarray, kinds: np.ndarray, lists: np.ndarray,
                    zone_of: np.ndarray, lottery: np.ndarray, staying: np.ndarray | None = None) -> np.ndarray:
    """Priority class (continuing 4 > displaced 3 > sibling 2 > zone 1 > none 0) plus the single lottery
    tie-break. (`staying`: `staying_students(model, rows)`, computed here if not given.)"""
    ch, st = model.scenario.choice, model.students
    listed = lists >= 0
    cls = np.zeros(lists.shape, dtype=np.int8)   # the highest class that applies (set lowest first)
    if ch.zone_priority:
        cls[(lists == zone_of[:, None]) & listed] = PRIORITY_ZONE
    if ch.sibling_priority:
        cls[siblings_at(model, rows, lists, staying)] = PRIORITY_SIBLING
    if ch.displaced_priority:
        cls[(kinds == DISPLACED)[:, None] & listed] = PRIORITY_DISPLACED
    cont = (kinds == SWITCHER)[:, None] & (lists == st.school[rows][:, None]) & listed
    cls[cont] = PRIORITY_CONTINUING
    return cls + (1.0 - lottery)[:, None]


def staying_students(model: PortfolioModel, rows: np.ndarray) -> np.ndarray:
    """bool per slot: enrolled students who are not choosing this year (`rows` are choosing)."""
    st = model.students
    staying = (st.grade >= 0) & (st.school >= 0)
    staying[rows] = False
    return staying


def siblings_at(model: PortfolioModel, rows: np.ndarray, lists: np.ndarray, staying: np.ndarray | None = None
                ) -> np.ndarray:
    """bool (n, k): another student of the household of `rows[i]` stays enrolled at school `lists[i, j]`
    this year (a student "stays" unless they are choosing this year).

    A household's student slots are one contiguous range (`model.household_slots`), so this walks the
    households' j-th slots for j = 0, 1, ... (at most the largest household's size), over only the
    applicants whose household has that many slots: a few passes over small arrays.
    """
    st = model.students
    staying = staying_students(model, rows) if staying is None else staying
    start, end = model.household_bounds(st.household[rows])
    size = end - start
    if not len(rows) or not staying.any():   # (at the start everyone chooses: nobody stays)
        return np.zeros(lists.shape, dtype=bool)
    there = np.where(staying[start], st.school[start], -2)     # every household has a first slot;
    sib = lists == there[:, None]                                # -2 never matches a list entry
    idx = np.arange(len(rows))
    for j in range(1, int(size.max())):
        idx = idx[size[idx] > j]
        slot = start[idx] + j
        there = np.where(staying[slot], st.school[slot], -2)
        sib[idx] |= lists[idx] == there[:, None]
    return sib


def assign(model: PortfolioModel, rows: np.ndarray, kinds: np.ndarray) -> None:
    st, sc, rng, ch = model.students, model.schools, model.streams["enrollment"], model.scenario.choice
    prev = st.school[rows].copy()
    was_district = (prev >= 0) & (sc.sector[np.maximum(prev, 0)] != CHARTER)
    is_entrant = np.zeros(len(st), dtype=bool)
    is_entrant[model.entrants] = True
    new_entrant = is_entrant[rows]                   # (np.isin(rows, model.entrants), without a sort)
    returning = (prev == OUTSIDE) & ~new_entrant & (model.year > 0)   # left earlier, may come back
    active = (rng.random(len(rows)) < ch.participation) | (kinds == SWITCHER) | returning

    lists, zone_of = ranked_lists(model, rows, kinds, active, rng)
    lottery = rng.random(len(rows))
    staying = staying_students(model, rows)
    scores = priority_scores(model, rows, kinds, lists, zone_of, lottery, staying)

    # Seats left after students who stay put (the others counted in an extra bin, then dropped).
    stay_count = np.bincount(np.where(staying, st.school, len(sc)), minlength=len(sc) + 1)[:-1]
    free = np.maximum(np.where(sc.is_open, sc.capacity, 0) - stay_count, 0)
    match = deferred_acceptance(lists, scores, free)
    school = match.school.copy()

    listed = lists[:, 0] >= 0
    unmatched = listed & (school < 0)
    if unmatched.any():
        left = free - np.bincount(school[school >= 0], minlength=len(sc))
        school[unmatched] = place_administratively(model, rows[unmatched], lottery[unmatched], left)

    st.school[rows] = np.where(school >= 0, school, OUTSIDE)
    # Students a closure moved carry a one-year disruption cost in achievement (achievement.step).
    model.closure_movers = rows[st.displaced[rows] & (school >= 0)]
    st.displaced[rows] = False
    # Who chose actively this year, what they ranked first with which priority there, and where
    # everyone landed (for analysis of choice effects: `lottery_estimate`).
    model.last_choice = {"rows": rows, "active": active, "school": school, "first": lists[:, 0],
                         "first_class": np.rint(scores[:, 0] - (1.0 - lottery)).astype(np.int8),
                         "lottery": lottery}

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
        margin = model.scenario.assumptions.enrollment.better_school_margin
        y["displaced_to_better"] += int((new_pct >= old_pct + margin).sum())


def place_administratively(model: PortfolioModel, rows: np.ndarray, lottery: np.ndarray, free: np.ndarray
                           ) -> np.ndarray:
    """Unassigned students go to the nearest district school of their band with room (by lottery order);
    if the consideration set is full, to any district school of the band with room; if every district
    school of the band is full, to the nearest district school they consider, which adds the seats
    (portable classrooms, a welcoming school taking in a closed school's students): a district places
    every resident who wants a public school, it does not send them away."""
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
            still = rest[out[rest] < 0]
            if len(still):   # no seat anywhere in the band: the nearest considered school adds seats
                nearest = near[np.searchsorted(sel, still), 0]
                ok = nearest >= 0
                out[still[ok]] = nearest[ok]
                added = np.bincount(nearest[ok], minlength=len(free))
                sc.capacity += added.astype(sc.capacity.dtype)
                model.year_stats["seats_added"] += int(added.sum())
    return out


def lottery_estimate(model: PortfolioModel) -> tuple[float, int]:
    """The lottery estimate of the last assignment (`model.last_choice`), as lottery studies measure it:
    among active choosers, winners (placed at their first choice) minus losers (placed elsewhere) in the
    value-added of the school they attend, within strata of first choice x priority class there (only
    strata with both winners and losers), averaged with weights = stratum size. Returns (estimate in
    SD/yr, students in the strata used); NaN if no stratum has both."""
    c, va = model.last_choice, model.schools.value_added
    use = c["active"] & (c["first"] >= 0) & (c["school"] >= 0)
    first, cls, school = c["first"][use].astype(np.int64), c["first_class"][use].astype(np.int64), c["school"][use]
    win = school == first
    stratum = np.unique(first * (int(cls.max(initial=0)) + 1) + cls, return_inverse=True)[1]
    n = np.bincount(stratum)
    n_win = np.bincount(stratum, weights=win)
    y = va[school]
    sum_win = np.bincount(stratum, weights=np.where(win, y, 0.0))
    sum_lose = np.bincount(stratum, weights=np.where(win, 0.0, y))
    both = (n_win > 0) & (n_win < n)
    if not both.any():
        return float("nan"), 0
    gap = sum_win[both] / n_win[both] - sum_lose[both] / (n[both] - n_win[both])
    return float(np.average(gap, weights=n[both])), int(n[both].sum())


MECHANISM = Mechanism(
    name="enrollment", order=3, step=step, phase="enrollment", stream="enrollment", stream_index=5,
    reads=("scenario.choice", "scenario.district", "model.perceived_z", "model.entry_grade", "model.band_of_grade",
           "schools.is_open", "schools.sector", "schools.capacity", "schools.band", "schools.x", "schools.y",
           "schools.rating_pct", "schools.autonomous", "students.low_income"),
    writes=("students.grade", "students.school", "students.displaced", "model.entrants", "model.last_choice", "model.year_stats", "model.geo",
            "schools.capacity",
            "model.geo_dirty", "schools.enrollment"),
    calls=("achievement.new_students",), assumptions="enrollment",
    state=(Column("closure_movers", "int[]", np.zeros(0, dtype=np.int64), "students a closure moved this year "
                  "(slots): achievement charges them the one-year disruption cost", "enrollment"),),
)
