"""School assignment by student-proposing deferred acceptance (Gale–Shapley).

This is the engine of a unified enrolment system (Denver SchoolChoice, New Orleans OneApp): every
student submits a ranked list of schools, every school ranks its applicants by a priority score
(priority class such as sibling/zone, plus a single lottery number per student that breaks ties),
and the district runs student-proposing deferred acceptance (DA). The outcome is *stable* (no
student and school would both rather be matched to each other, no school is over capacity) and
*student-optimal* (every student weakly prefers it to any other stable matching).

Inputs
------
``choices[i, r]`` is the r-th choice (0-based school index) of student i, best first, padded with
-1 after the last choice. ``scores[i, r]`` is i's priority at school ``choices[i, r]``; higher is
better, and exact ties at a school go to the lower student index, so the result is deterministic.
``capacity[s]`` is the number of seats at school s.

The fast algorithm
------------------
DA's outcome does not depend on the order in which proposals are processed, so
:func:`deferred_acceptance` runs it in *rounds*: every student who is currently not held
somewhere proposes to their next choice, each school keeps the best ``capacity`` students among
those it already holds and the new proposers, and the rest are rejected and propose again in the
next round. Each round is a handful of numpy array operations over that round's proposers only.

1. **One sort up front.** All (student, choice) entries are sorted by (school, priority from best
   to worst, student index) with one ``np.sort`` of packed 64-bit integers (school | the high
   bits of an order-preserving integer image of the score | entry number). Entries whose packed
   high bits collide although their scores differ are re-sorted exactly afterwards (rare), so the
   order is exact. Afterwards a school's whole applicant list is a contiguous block, and an
   entry's *position* in it is its priority: lower position = better.

2. **Schools are cutoffs.** A student rejected by a school never proposes to it again, so what a
   school holds is always the best ``capacity`` of everyone who has ever proposed to it. We keep
   one boolean flag per position ("this entry has proposed") and, per school, a cutoff position
   ``cut``: the school holds exactly the flagged positions in ``[block start, cut)``. A full
   school's ``cut`` is one past its worst held student, so a new proposal at position >= ``cut``
   is rejected immediately; anything better is flagged in. If that overfills the school by m
   seats, the m worst held students are the last m flagged positions below ``cut``: we walk
   backwards from ``cut`` over windows of flags (vectorised over all overfull schools), evict
   them, and move ``cut`` to just past the worst student kept.

Why it is exact: positions encode the school's strict priority order (ties already broken by
student index), a school's held set is exactly the best ``capacity`` flagged positions, and a
student only moves down their own list after a rejection, which is what DA does. The rounds only
change the order in which proposals are processed, which does not change DA's outcome. Cutoffs
only move towards the top of each list, so the total scanning work over all rounds is bounded by
the number of entries, and the per-round work is proportional to that round's proposals.

:func:`deferred_acceptance_reference` is the textbook one-proposal-at-a-time version, kept as the
readable specification; the tests check that both agree, and :func:`is_stable` checks a matching
directly against the definition.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import NamedTuple

import numpy as np

__all__ = ["Matching", "deferred_acceptance", "deferred_acceptance_reference", "is_stable"]


class Matching(NamedTuple):
    """Result of an assignment: one entry per student."""

    school: np.ndarray  # int32 (n,): assigned school index, -1 if unassigned
    rank: np.ndarray  # int32 (n,): 0-based position of that school in the student's list, -1 if unassigned


# ---------------------------------------------------------------------------------------------
# Input checking (shared by all three public functions)
# ---------------------------------------------------------------------------------------------


def _validate(choices, scores, capacity) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the inputs; return (choices, scores as float64, capacity as int64, list lengths)."""
    choices = np.asarray(choices)
    if choices.ndim != 2:
        raise ValueError(f"choices must be a 2-D array (students x ranked choices), got shape {choices.shape}")
    if choices.dtype.kind not in "iu":
        if choices.size:
            raise ValueError(f"choices must hold integer school indices, got dtype {choices.dtype}")
        choices = choices.astype(np.int64)
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores must be numeric: {exc}") from None
    if scores.shape != choices.shape:
        raise ValueError(f"scores must have the same shape as choices {choices.shape}, got {scores.shape}")
    capacity = np.asarray(capacity)
    if capacity.ndim != 1:
        raise ValueError(f"capacity must be a 1-D array with one entry per school, got shape {capacity.shape}")
    if capacity.dtype.kind not in "iu":
        if capacity.size:
            raise ValueError(f"capacity must hold integers, got dtype {capacity.dtype}")
    if capacity.size and capacity.min() < 0:
        s = int(np.argmin(capacity))
        raise ValueError(f"capacity must be >= 0, school {s} has capacity {capacity[s]}")
    capacity = capacity.astype(np.int64)
    n_schools = capacity.size

    if choices.size:
        lo, hi = int(choices.min()), int(choices.max())
        if lo < -1 or hi >= n_schools:
            bad = lo if lo < -1 else hi
            raise ValueError(
                f"choices must be school indices 0..{n_schools - 1} (there are {n_schools} schools) "
                f"or -1 for an empty slot, found {bad}"
            )
    if choices.dtype not in (np.int32, np.int64):
        choices = choices.astype(np.int64)  # values are in range now, so this cannot wrap
    valid = choices >= 0
    if choices.shape[1] > 1:
        gap = valid[:, 1:] & ~valid[:, :-1]
        if gap.any():
            i = int(np.flatnonzero(gap.any(axis=1))[0])
            raise ValueError(f"student {i}: -1 (no choice) must only appear after the last real choice")
        srt = np.sort(choices, axis=1)  # -1 padding sorts first and is excluded below
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            i = int(np.flatnonzero(dup.any(axis=1))[0])
            raise ValueError(f"student {i} lists the same school more than once")
    nan = np.isnan(scores)
    if nan.any() and (nan & valid).any():
        i = int(np.flatnonzero((nan & valid).any(axis=1))[0])
        raise ValueError(f"student {i} has a NaN score for a listed school")
    lengths = valid.sum(axis=1, dtype=np.int64)
    return choices, scores, capacity, lengths


def _empty_matching(n: int) -> Matching:
    return Matching(np.full(n, -1, np.int32), np.full(n, -1, np.int32))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[j], starts[j] + lengths[j]) over j, without a Python loop."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if ends.size else 0) + np.repeat(starts - (ends - lengths), lengths)


# ---------------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------------


def _school_order(school: np.ndarray, scores: np.ndarray, n_schools: int) -> np.ndarray:
    """Order of the entries by (school, score descending, entry number ascending).

    ``school`` and ``scores`` list the valid entries in row-major order, so entry number order is
    student index order: ties go to the lower student index. Returns the entry numbers in that order.
    """
    n_entries = school.size
    ebits = max(1, (n_entries - 1).bit_length())
    sbits = (n_schools - 1).bit_length()
    dbits = 64 - sbits - ebits  # bits of the score that fit into the packed sort key
    if dbits < 0:
        raise ValueError(f"instance too large: {n_entries} entries at {n_schools} schools")

    # Integer image of the score, ordered from best to worst: IEEE doubles order like sign-magnitude
    # integers, so flip the magnitude bits of negatives; then invert for descending order.
    # Adding 0.0 turns -0.0 into +0.0 so the two zeros tie, as they do as floats.
    key = scores + 0.0
    key = key.view(np.int64)
    key ^= (key >> 63) & np.int64(0x7FFF_FFFF_FFFF_FFFF)
    np.invert(key, out=key)
    kmin = int(key.min())
    span = int(key.max()) - kmin
    # Shift to 0..span as uint64 (wrap-around subtraction is exact because span < 2**64).
    exact = key.view(np.uint64)
    exact -= np.uint64(kmin % (1 << 64))

    packed = np.arange(n_entries, dtype=np.uint64)
    if dbits > 0:
        packed |= (exact >> np.uint64(max(0, span.bit_length() - dbits))) << np.uint64(ebits)
    if sbits > 0:
        packed |= school.astype(np.uint64) << np.uint64(ebits + dbits)
    packed.sort()  # plain value sort of uint64 is much faster than an argsort
    order = (packed & np.uint64((1 << ebits) - 1)).astype(np.int64)

    # Entries whose (school, score prefix) collide are ordered by entry number only. That is right
    # for exact score ties and wrong when the full scores differ: re-sort those runs exactly.
    prefix = packed >> np.uint64(ebits)
    del packed
    pair = np.flatnonzero(prefix[1:] == prefix[:-1])  # pair j = positions (j, j + 1)
    del prefix
    if pair.size:
        bad = exact[order[pair]] != exact[order[pair + 1]]
        if bad.any():
            # Split the colliding pairs into maximal runs of consecutive positions.
            run = np.cumsum(np.r_[True, pair[1:] != pair[:-1] + 1])
            bad_run = np.zeros(run[-1] + 1, bool)
            bad_run[run[bad]] = True
            keep = bad_run[run]
            starts = pair[keep & np.r_[True, run[1:] != run[:-1]]]
            stops = pair[keep & np.r_[run[1:] != run[:-1], True]] + 2
            pos = _ranges(starts, stops - starts)
            run_of_pos = np.repeat(np.arange(starts.size), stops - starts)
            sub = order[pos]
            order[pos] = sub[np.lexsort((sub, exact[sub], run_of_pos))]
    return order


def _evict(flags, cut, floor, excess, held):
    """Evict the ``excess`` worst held students at each overfull school (vectorised over schools).

    A school holds the flagged positions in ``[floor, cut)``, ``held`` of them (> ``excess`` > 0).
    Walk backwards from ``cut`` in windows until the (excess+1)-th flagged position, the worst
    student who stays, is found. Returns (positions of the evicted entries, new cut = one past the
    worst student kept).
    """
    need = excess + 1
    # Window long enough for `need` flags at the school's average density, with slack.
    width = 2 * need * (cut - floor) // held + 64
    new_cut = np.empty_like(cut)
    evicted = []
    todo = np.arange(cut.size)
    hi = cut.copy()
    while todo.size:
        lo = np.maximum(hi - width, floor)
        span = hi - lo
        idx = _ranges(lo, span)
        hit = flags[idx]
        flagged = idx[hit]  # flagged positions, ascending within each school's window
        csum = np.r_[0, np.cumsum(hit)]  # csum[x] = flags among the first x window positions
        ends = np.cumsum(span)
        f_start, f_end = csum[ends - span], csum[ends]  # this school's slice of `flagged`
        count = f_end - f_start
        found = count >= need
        if np.any(~found & (lo == floor)):
            raise AssertionError("matching invariant broken: school holds fewer students than expected")
        new_cut[todo[found]] = flagged[f_end[found] - need[found]] + 1
        # Found: the need-1 flagged positions after the worst kept one go; else the whole window goes.
        ev_start = np.where(found, f_end - need + 1, f_start)
        ev_len = np.where(found, need - 1, count)
        evicted.append(flagged[_ranges(ev_start, ev_len)])
        more = ~found
        todo, hi, need, width, floor = todo[more], lo[more], (need - count)[more], 2 * width[more], floor[more]
    return np.concatenate(evicted), new_cut


def deferred_acceptance(choices: np.ndarray, scores: np.ndarray, capacity: np.ndarray) -> Matching:
    """Student-proposing deferred acceptance, vectorised (see the module docstring).

    Returns the same matching as :func:`deferred_acceptance_reference` on every input.
    """
    choices, scores, capacity, lengths = _validate(choices, scores, capacity)
    n, k = choices.shape
    n_schools = capacity.size
    n_entries = int(lengths.sum())
    if n_entries == 0:
        return _empty_matching(n)

    # Valid entries in row-major order: student i's r-th choice is entry row_start[i] + r.
    row_start = np.cumsum(lengths) - lengths
    if n_entries == n * k:
        entry_school = choices.ravel()
        entry_scores = scores.ravel()
        entry_student = None  # entry // k
    else:
        valid = np.flatnonzero(choices.ravel() >= 0)
        entry_school = choices.ravel()[valid]
        entry_scores = scores.ravel()[valid]
        entry_student = valid // k

    # pos_entry: entries in (school, priority) order; entry_pos: its inverse permutation.
    pos_entry = _school_order(entry_school, entry_scores, n_schools)
    pos_dtype = np.int32 if n_entries < 2**31 else np.int64
    entry_pos = np.empty(n_entries, pos_dtype)
    entry_pos[pos_entry] = np.arange(n_entries, dtype=pos_dtype)
    block_size = np.bincount(entry_school, minlength=n_schools)
    block_end = np.cumsum(block_size)
    block_start = block_end - block_size

    # School s holds the flagged positions in [block_start[s], cut[s]); a school that is not full
    # accepts anyone (cut = block end), a school without seats accepts no one (cut = block start).
    flags = np.zeros(n_entries, bool)
    cut = np.where(capacity > 0, block_end, block_start)
    held = np.zeros(n_schools, np.int64)
    nxt = np.zeros(n, np.int64)  # index of the choice the student is proposing to / held at
    active = np.flatnonzero(lengths > 0)

    while active.size:
        entry = row_start[active] + nxt[active]
        pos = entry_pos[entry]
        out = pos >= cut[entry_school[entry]]
        if out.any():
            # A proposal at or beyond a full school's cut is rejected on the spot, and cuts only
            # move up, so move such students straight to their next choice that is still within
            # reach, or past the end of their list, rather than spending a round per rejection.
            stud = active[out]
            col = nxt[stud, None] + np.arange(1, k + 1)  # the last column is always off the list
            listed = col < lengths[stud, None]
            ahead = row_start[stud, None] + np.where(listed, col, 0)
            stop = ~listed | (entry_pos[ahead] < cut[entry_school[ahead]])
            nxt[stud] += stop.argmax(axis=1) + 1
            active = active[nxt[active] < lengths[active]]  # the others stay unassigned
            entry = row_start[active] + nxt[active]
            pos = entry_pos[entry]
        # Everyone left is inside their school's cut: the school takes them in for now.
        flags[pos] = True
        held += np.bincount(entry_school[entry], minlength=n_schools)
        over = np.flatnonzero(held > capacity)
        if not over.size:
            break
        gone, cut[over] = _evict(flags, cut[over], block_start[over], held[over] - capacity[over], held[over])
        held[over] = capacity[over]
        gone_entry = pos_entry[gone]
        active = gone_entry // k if entry_student is None else entry_student[gone_entry]
        nxt[active] += 1  # an evicted student moves on to their next choice
        active = active[nxt[active] < lengths[active]]

    assigned = np.flatnonzero(nxt < lengths)
    result = _empty_matching(n)
    result.school[assigned] = choices[assigned, nxt[assigned]]
    result.rank[assigned] = nxt[assigned]
    return result


# ---------------------------------------------------------------------------------------------
# Reference and checker
# ---------------------------------------------------------------------------------------------


def deferred_acceptance_reference(choices, scores, capacity) -> Matching:
    """Textbook student-proposing deferred acceptance, one proposal at a time (plain Python).

    A queue of free students; each proposes to the next school on their list. The school keeps
    the proposer if it has a free seat, or if the proposer outranks its weakest held student (who is
    then rejected and rejoins the queue); otherwise the proposer is rejected. Slow but obviously
    right, used as the specification of :func:`deferred_acceptance`.
    """
    choices, scores, capacity, lengths = _validate(choices, scores, capacity)
    n = choices.shape[0]
    cap = capacity.tolist()
    # Per school a min-heap of ((score, -student), student): the root is the weakest held student
    # (lowest score; among equal scores the highest index, since ties go to the lower index).
    held: list[list] = [[] for _ in cap]
    nxt = [0] * n
    free = deque(i for i in range(n) if lengths[i] > 0)
    while free:
        i = free.popleft()
        s = int(choices[i, nxt[i]])
        entry = ((float(scores[i, nxt[i]]), -i), i)
        heap = held[s]
        if len(heap) < cap[s]:
            heapq.heappush(heap, entry)
            continue
        if heap and entry[0] > heap[0][0]:
            i = heapq.heapreplace(heap, entry)[1]  # the weakest held student is rejected instead
        nxt[i] += 1
        if nxt[i] < lengths[i]:
            free.append(i)

    result = _empty_matching(n)
    for s, heap in enumerate(held):
        for _, i in heap:
            result.school[i] = s
            result.rank[i] = nxt[i]
    return result


def is_stable(choices, scores, capacity, matching) -> bool:
    """True if ``matching`` is a stable assignment for this instance.

    Checks that every assigned student holds the school listed at their stated rank (unassigned:
    school and rank -1), that no school is over capacity, and that there is no blocking pair: a
    student and a school they rank above their assignment (or any listed school, if unassigned)
    that has a free seat or holds a student it ranks below them (ties go to the lower index).
    """
    choices, scores, capacity, lengths = _validate(choices, scores, capacity)
    n = choices.shape[0]
    school = np.asarray(matching[0])
    rank = np.asarray(matching[1])
    if school.shape != (n,) or rank.shape != (n,):
        raise ValueError(f"matching.school and matching.rank must have shape ({n},)")
    school = school.astype(np.int64)
    rank = rank.astype(np.int64)

    unassigned = school == -1
    if np.any(rank[unassigned] != -1):
        return False
    a = np.flatnonzero(~unassigned)
    if np.any((rank[a] < 0) | (rank[a] >= lengths[a])):
        return False
    if np.any(choices[a, rank[a]] != school[a]):  # also rejects school indices out of range
        return False
    count = np.bincount(school[a], minlength=capacity.size)
    if np.any(count > capacity):
        return False

    # Weakest held student per school: lowest score, then highest index. Schools holding nobody
    # get (+inf, -1), which nobody beats; they can only be blocked through a free seat.
    worst_score = np.full(capacity.size, np.inf)
    worst_student = np.full(capacity.size, -1)
    if a.size:
        held_score = scores[a, rank[a]]
        order = np.lexsort((-a, held_score, school[a]))
        held_school = school[a][order]
        weakest = order[np.r_[True, held_school[1:] != held_school[:-1]]]
        worst_score[school[a][weakest]] = held_score[weakest]
        worst_student[school[a][weakest]] = a[weakest]

    # Candidate blocking pairs: every listed school strictly above the student's assignment.
    limit = np.where(unassigned, lengths, rank)
    student, r = np.nonzero(np.arange(choices.shape[1]) < limit[:, None])
    s = choices[student, r]
    sc = scores[student, r]
    blocks = (count[s] < capacity[s]) | (sc > worst_score[s]) | ((sc == worst_score[s]) & (student < worst_student[s]))
    return not bool(blocks.any())
