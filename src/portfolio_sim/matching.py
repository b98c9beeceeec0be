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
    n, k = choices.shape
    valid = choices >= 0
    if valid.all():  # the common case: full lists
        lengths = np.full(n, k, np.int64)
    else:
        lengths = np.count_nonzero(valid, axis=1).astype(np.int64)
        gap = valid != (np.arange(k) < lengths[:, None])
        if gap.any():
            i = int(np.flatnonzero(gap.any(axis=1))[0])
            raise ValueError(f"student {i}: -1 (no choice) must only appear after the last real choice")
    if k > 1:
        srt = np.sort(choices, axis=1)  # -1 padding sorts first and is excluded below
        dup = srt[:, 1:] == srt[:, :-1]
        if not valid.all():
            dup &= srt[:, 1:] >= 0
        if dup.any():
            i = int(np.flatnonzero(dup.any(axis=1))[0])
            raise ValueError(f"student {i} lists the same school more than once")
    nan = np.isnan(scores)
    if nan.any() and (nan & valid).any():
        i = int(np.flatnonzero((nan & valid).any(axis=1))[0])
        raise ValueError(f"student {i} has a NaN score for a listed school")
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


def _school_order(school: np.ndarray, scores: np.ndarray, n_schools: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort the entries by (school, score descending, entry number ascending).

    ``school`` and ``scores`` list the valid entries in row-major order, so entry number order is
    student index order and exact ties go to the lower student index. Returns the entry numbers
    in that order and the end of each school's block in it.
    """
    n_entries = school.size
    ebits = max(1, (n_entries - 1).bit_length())
    sbits = (n_schools - 1).bit_length()
    dbits = 64 - sbits - ebits  # bits left in the packed key for the score
    if dbits < 0:
        raise ValueError(f"instance too large: {n_entries} entries at {n_schools} schools")

    # An integer image of the score, best first: IEEE doubles order like sign-magnitude integers,
    # so flip the magnitude bits of negatives, then invert everything to make the order descending.
    # Adding 0.0 turns -0.0 into +0.0 so the two zeros tie, as they do when compared as floats.
    key = (scores + 0.0).view(np.int64)
    sign = key >> 63
    sign &= np.int64(0x7FFF_FFFF_FFFF_FFFF)
    key ^= sign
    np.invert(key, out=key)
    del sign
    kmin = int(key.min())
    span = int(key.max()) - kmin

    # Pack (school | top dbits of the score key | entry number) into one uint64 and sort the
    # values: much faster than an argsort or a lexsort, and the entry number rides along.
    packed = key.view(np.uint64)
    packed -= np.uint64(kmin % (1 << 64))  # now 0..span; wrap-around makes this exact
    if dbits > 0:
        packed >>= np.uint64(max(0, span.bit_length() - dbits))
        packed <<= np.uint64(ebits)
    else:
        packed[:] = 0
    packed |= np.arange(n_entries, dtype=np.uint64)
    school_shift = np.uint64(ebits + dbits)
    if sbits > 0:
        high = school.astype(np.uint64)
        high <<= school_shift
        packed |= high
        del high
    packed.sort()
    block_end = np.empty(n_schools, np.int64)
    block_end[:-1] = np.searchsorted(packed, np.arange(1, n_schools, dtype=np.uint64) << school_shift)
    block_end[-1] = n_entries

    # Entries whose packed keys agree above the entry number are ordered by entry number only:
    # right for exact score ties, wrong if the scores differ below the kept bits. Re-sort those
    # runs exactly (rare: it needs two scores at one school closer than the kept precision).
    high = packed >> np.uint64(ebits)
    pair = np.flatnonzero(high[1:] == high[:-1])  # pair j = positions (j, j + 1)
    del high
    packed &= np.uint64((1 << ebits) - 1)
    order = packed.view(np.int64)
    if pair.size:
        bad = scores[order[pair]] != scores[order[pair + 1]]
        if bad.any():
            # Group the colliding pairs into maximal runs of consecutive positions, keep bad runs.
            new_run = np.ones(pair.size, bool)
            new_run[1:] = pair[1:] != pair[:-1] + 1
            run = np.cumsum(new_run) - 1
            is_bad = np.zeros(run[-1] + 1, bool)
            is_bad[run[bad]] = True
            last = np.ones(pair.size, bool)
            last[:-1] = new_run[1:]
            starts = pair[new_run & is_bad[run]]
            lengths = pair[last & is_bad[run]] + 2 - starts
            pos = _ranges(starts, lengths)
            sub = order[pos]
            order[pos] = sub[np.lexsort((sub, -scores[sub], np.repeat(np.arange(starts.size), lengths)))]
    return order, block_end


def _evict(flags, cut, floor, excess, held):
    """Evict the ``excess`` worst held students at each overfull school (vectorised over schools).

    A school holds the flagged positions in ``[floor, cut)``, ``held`` of them (> ``excess`` > 0).
    Its worst kept student is the (excess+1)-th flagged position counting back from ``cut``, and
    the ``excess`` flagged positions after it are evicted. Returns (positions of the evicted
    entries, new cut = one past the worst kept student).
    """
    need = excess + 1
    # Scan a window below the cut sized for `need` flags at the school's average flag density,
    # with slack; in the rare case that is not enough, widen those windows and scan again.
    lo = np.maximum(cut - (2 * need * (cut - floor) // held + 64), floor)
    while True:
        span = cut - lo
        idx = _ranges(lo, span)
        hit = flags[idx]
        csum = np.zeros(hit.size + 1, np.int64)  # csum[x] = flags among the first x scanned positions
        np.cumsum(hit, out=csum[1:])
        ends = np.cumsum(span)
        f_end = csum[ends]  # flagged positions up to the end of each school's window
        short = f_end - csum[ends - span] < need
        if not short.any():
            break
        if np.any(short & (lo == floor)):
            raise AssertionError("deferred acceptance invariant broken: a school holds too few students")
        lo = np.where(short, np.maximum(cut - 4 * span, floor), lo)
    flagged = idx[hit]  # ascending within each school's window
    return flagged[_ranges(f_end - excess, excess)], flagged[f_end - need] + 1


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

    # Valid entries in row-major order: student i's choices are entries row_start[i]..row_end[i]-1.
    row_end = np.cumsum(lengths)
    row_start = row_end - lengths
    if n_entries == n * k:
        entry_school = choices.ravel()
        entry_scores = scores.ravel()
        entry_student = None  # entry // k
    else:
        valid = np.flatnonzero(choices.ravel() >= 0)
        entry_school = choices.ravel()[valid]
        entry_scores = scores.ravel()[valid]
        entry_student = valid // k
        del valid

    # pos_entry lists the entries school by school, best priority first; entry_pos inverts it.
    pos_entry, block_end = _school_order(entry_school, entry_scores, n_schools)
    pos_dtype = np.int32 if n_entries < 2**31 else np.int64
    entry_pos = np.empty(n_entries, pos_dtype)
    entry_pos[pos_entry] = np.arange(n_entries, dtype=pos_dtype)
    block_start = np.empty_like(block_end)
    block_start[0] = 0
    block_start[1:] = block_end[:-1]

    # School s holds the flagged positions in [block_start[s], cut[s]); a school that is not full
    # accepts anyone (cut = block end), a school without seats accepts no one (cut = block start).
    flags = np.zeros(n_entries, bool)
    cut = np.where(capacity > 0, block_end, block_start)
    held = np.zeros(n_schools, np.int64)
    cur = row_start.copy()  # each student's current entry: the choice proposed to / held at
    active = np.flatnonzero(lengths > 0)

    while active.size:
        entry = cur[active]
        pos = entry_pos[entry]
        out = pos >= cut[entry_school[entry]]
        if out.any():
            # A proposal at or beyond a full school's cut is rejected on the spot, and cuts only
            # move up, so move such students straight on to their next choice still within reach
            # (or off the end of their list): no round is spent per rejection. Look a few
            # choices ahead at a time (more when few students need it), further if not enough.
            todo = active[out]
            look = np.arange(1, min(k, max(2, 2**16 // todo.size)) + 1)[:, None]
            while todo.size:
                ahead = cur[todo] + look  # (look, todo): long inner loops are faster in numpy
                listed = ahead < row_end[todo]
                np.minimum(ahead, n_entries - 1, out=ahead)  # keep unlisted lookups in bounds
                stop = ~listed | (entry_pos[ahead] < cut[entry_school[ahead]])
                found = stop.any(axis=0)
                cur[todo] += np.where(found, stop.argmax(axis=0) + 1, look.size)
                todo = todo[~found]
                look = np.arange(1, 2 * look.size + 1)[:, None]
            active = active[cur[active] < row_end[active]]  # the others stay unassigned
            entry = cur[active]
            pos = entry_pos[entry]
        # Everyone left proposes inside their school's cut: the school takes them in for now.
        flags[pos] = True
        held += np.bincount(entry_school[entry], minlength=n_schools)
        over = np.flatnonzero(held > capacity)
        if not over.size:
            break
        gone, cut[over] = _evict(flags, cut[over], block_start[over], held[over] - capacity[over], held[over])
        held[over] = capacity[over]
        gone_entry = pos_entry[gone]
        active = gone_entry // k if entry_student is None else entry_student[gone_entry]
        cur[active] += 1  # an evicted student moves on to their next choice
        active = active[cur[active] < row_end[active]]

    assigned = np.flatnonzero(cur < row_end)
    result = _empty_matching(n)
    result.school[assigned] = entry_school[cur[assigned]]
    result.rank[assigned] = cur[assigned] - row_start[assigned]
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
