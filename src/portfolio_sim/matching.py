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
:func:`deferred_acceptance` runs it in *rounds*: every student not currently held proposes to
their next choice, each school keeps the best ``capacity`` students among those it holds and the
new proposers, and the rest are rejected and propose again next round. A round is a handful of
numpy operations on that round's proposers (plus one merge into the held students); there is no
Python loop over students. Rounds are needed only for chains of displacements, typically a few
dozen even for a million students.

1. **One sort up front.** All (student, choice) entries are sorted by (school, priority best
   first, student index) with one ``np.sort`` of packed 64-bit integers (school | high bits of an
   order-preserving integer image of the score | entry number); neighbours whose packed keys
   collide although their scores differ are then re-sorted exactly (rare). Each school's
   applicants now form a contiguous block, and an entry's *position* in this order encodes its
   priority exactly: at the same school, lower position = higher priority.

2. **Held students are a sorted array of positions.** Positions are grouped by school, so each
   school's held students form one segment of that array, best first. New proposers are merged
   in (a stable sort of the two sorted runs merges them in one pass); a school over capacity by m
   drops the last m of its segment.

3. **Cuts.** A student rejected by a school never proposes to it again, so a school holds the
   best ``capacity`` of everyone who has *ever* proposed to it, and once full it stays full and
   only gets choosier. ``cut[s]`` is one past the position of its worst held student (the block
   end while it has free seats). A proposal at or after the cut would be rejected at once, so
   such students skip straight on to their next choice that is still inside its school's cut
   (vectorised look-ahead along their lists), instead of spending one round per rejection.

Why it is exact: positions order each school's applicants exactly as the priorities do (ties
broken by student index); each round leaves every school holding exactly the best ``capacity``
of its proposers so far; and a student moves down their list only after being rejected, or when
the school's cut shows they would be rejected. That is DA with proposals processed in a
particular order, and DA's result does not depend on that order.

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
    raw = np.asarray(scores)
    if raw.dtype.kind not in "iufbO":     # complex (the imaginary part would be dropped), text, dates
        raise ValueError(f"scores must be real numbers, got dtype {raw.dtype}")
    try:
        with np.errstate(all="raise"):
            scores = raw.astype(np.float64)
    except (TypeError, ValueError, FloatingPointError, np.exceptions.ComplexWarning) as exc:
        raise ValueError(f"scores must be real numbers: {exc}") from None
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
    # No school can take more than every student: cap there before the cast, so a uint64 capacity of
    # 2**63 or more cannot wrap negative.
    capacity = np.minimum(capacity, choices.shape[0]).astype(np.int64) if capacity.size else capacity.astype(np.int64)
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
        # Column by column (lists are short, students many): the lengths, and a -1 followed by a choice.
        cols = np.ascontiguousarray(valid.T)
        lengths = np.zeros(n, np.int64)
        gap = np.zeros(n, bool)
        for r in range(k):
            lengths += cols[r]
            if r:
                gap |= cols[r] & ~cols[r - 1]
        if gap.any():
            i = int(np.argmax(gap))
            raise ValueError(f"student {i}: -1 (no choice) must only appear after the last real choice")
    i = _first_duplicate(choices, lengths)
    if i >= 0:
        raise ValueError(f"student {i} lists the same school more than once")
    nan = np.isnan(scores)
    if nan.any() and (nan & valid).any():
        i = int(np.flatnonzero((nan & valid).any(axis=1))[0])
        raise ValueError(f"student {i} has a NaN score for a listed school")
    return choices, scores, capacity, lengths


def _first_duplicate(choices: np.ndarray, lengths: np.ndarray) -> int:
    """Index of the first student who lists a school twice, or -1 (-1 padding does not count)."""
    n, k = choices.shape
    if n == 0 or k <= 1:
        return -1
    if k > 16:  # sort each row, compare neighbours
        srt = np.sort(choices, axis=1)
        dup = ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any(axis=1)
    else:
        # Few columns: compare every pair of columns, on the transpose so that each comparison
        # runs along all students. Padding gets a different negative number per column.
        cols = np.ascontiguousarray(choices.T)
        if lengths.min() < k:
            cols = np.where(cols >= 0, cols, -1 - np.arange(k, dtype=cols.dtype)[:, None])
        dup = np.zeros(n, bool)
        for r in range(1, k):
            dup |= (cols[:r] == cols[r]).any(axis=0)
    return int(np.argmax(dup)) if dup.any() else -1


def _empty_matching(n: int) -> Matching:
    return Matching(np.full(n, -1, np.int32), np.full(n, -1, np.int32))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[j], starts[j] + lengths[j]) over j, without a Python loop."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if ends.size else 0) + np.repeat(starts - (ends - lengths), lengths)


# ---------------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------------


_CHUNK = 1 << 16  # elementwise passes over all entries run in chunks that stay in cache
_MAGNITUDE = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _descending_key(scores: np.ndarray) -> np.ndarray:
    """uint64 keys ordered like the scores from highest to lowest (so exact ties stay ties).

    IEEE doubles order like sign-magnitude integers: for x >= 0 flip the magnitude bits (a higher
    score gets a smaller key, all below 2**63); for x < 0 keep the bits (sign bit set, so after
    every x >= 0, and the more negative the larger). Adding 0.0 first turns -0.0 into +0.0.
    """
    bits = (scores + 0.0).view(np.int64)
    flip = bits >> 63  # -1 for x < 0, 0 otherwise
    np.invert(flip, out=flip)
    flip &= _MAGNITUDE
    bits ^= flip
    return bits.view(np.uint64)


def _school_order(school: np.ndarray, scores: np.ndarray, n_schools: int):
    """Sort the entries by (school, score descending, entry number ascending).

    ``school`` and ``scores`` list the valid entries in row-major order, so entry number order is
    student index order and exact ties go to the lower student index. Returns ``order`` (the
    entry numbers in that order), its inverse ``position`` and the end of each school's block.
    """
    n_entries = school.size
    ebits = max(1, (n_entries - 1).bit_length())
    sbits = (n_schools - 1).bit_length()
    dbits = 64 - sbits - ebits  # bits left in the packed key for the score
    if dbits < 1:
        raise ValueError(f"instance too large: {n_entries} entries at {n_schools} schools")
    # Keep the top dbits of (key - smallest key), so the bits go where the scores differ.
    low = int(_descending_key(np.array([scores.max()]))[0])
    span = int(_descending_key(np.array([scores.min()]))[0]) - low
    score_shift = np.uint64(max(0, span.bit_length() - dbits))
    school_shift = np.uint64(ebits + dbits)
    entry_bits = np.uint64(ebits)

    # Pack (school | top bits of the score key | entry number) into one uint64 and sort the
    # values: much faster than an argsort or a lexsort, and the entry number rides along.
    packed = np.empty(n_entries, np.uint64)
    for a in range(0, n_entries, _CHUNK):
        b = min(a + _CHUNK, n_entries)
        part = _descending_key(scores[a:b])
        part -= np.uint64(low)
        part >>= score_shift
        part <<= entry_bits
        part |= np.arange(a, b, dtype=np.uint64)
        if sbits:
            part |= school[a:b].astype(np.uint64) << school_shift
        packed[a:b] = part
    packed.sort()
    block_end = np.empty(n_schools, np.int64)
    block_end[:-1] = np.searchsorted(packed, np.arange(1, n_schools, dtype=np.uint64) << school_shift)
    block_end[-1] = n_entries

    # Unpack the entry numbers and invert the permutation. On the way, note the neighbours whose
    # packed keys agree above the entry number: they are ordered by entry number only, which is
    # right for exact score ties but wrong if the scores differ below the kept bits.
    pos_dtype = np.int32 if n_entries < 2**31 else np.int64
    position = np.empty(n_entries, pos_dtype)
    pairs = []
    for a in range(0, n_entries, _CHUNK):
        b = min(a + _CHUNK, n_entries)
        high = packed[a : b + 1] >> entry_bits
        pairs.append(np.flatnonzero(high[1:] == high[:-1]) + a)  # pair j = positions j, j + 1
        packed[a:b] &= np.uint64((1 << ebits) - 1)
        position[packed[a:b]] = np.arange(a, b, dtype=pos_dtype)
    order = packed.view(np.int64)

    # Re-sort the runs that hold such a wrong pair exactly (rare: it takes two scores at one school
    # closer than the kept precision).
    pair = np.concatenate(pairs)
    bad = scores[order[pair]] != scores[order[pair + 1]]
    if bad.any():
        new_run = np.ones(pair.size, bool)  # group the pairs into runs of consecutive positions
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
        position[order[pos]] = pos
    return order, position, block_end


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
        entry_student = np.repeat(np.arange(n, dtype=np.int64), lengths)  # = valid // k (lists have no gaps)
        del valid

    # pos_entry lists the entries school by school, best priority first; entry_pos inverts it.
    pos_entry, entry_pos, block_end = _school_order(entry_school, entry_scores, n_schools)
    block_start = np.empty_like(block_end)
    block_start[0] = 0
    block_start[1:] = block_end[:-1]

    # held_pos: positions of all students held so far, sorted. Positions are grouped by school,
    # so each school's held students form one segment of it, best first, and its worst students
    # are at the end of its segment. A full school's cut is one past its worst held student (a
    # school with free seats has cut = block end; one without seats has cut = block start).
    held_pos = np.empty(0, entry_pos.dtype)
    held = np.zeros(n_schools, np.int64)
    cut = np.where(capacity > 0, block_end, block_start)
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

        # Everyone left proposes inside their school's cut: merge them into the held students.
        pos.sort()
        merged = np.concatenate([held_pos, pos])
        merged.sort(kind="stable")  # two sorted runs: the stable sort (timsort) merges them in one pass
        held += np.bincount(entry_school[entry], minlength=n_schools)

        # Overfull schools drop the students at the end of their segment.
        over = np.flatnonzero(held > capacity)
        if not over.size:
            break
        end = np.cumsum(held)[over]
        excess = held[over] - capacity[over]
        drop = _ranges(end - excess, excess)
        gone = merged[drop]
        cut[over] = merged[end - excess - 1] + 1  # capacity >= 1 here, so a student stays
        held[over] = capacity[over]
        keep = np.ones(merged.size, bool)
        keep[drop] = False
        held_pos = merged[keep]

        gone_entry = pos_entry[gone]
        active = gone_entry // k if entry_student is None else entry_student[gone_entry]
        active.sort()  # student order makes the lookups below walk memory forwards
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
    outranks = (sc > worst_score[s]) | ((sc == worst_score[s]) & (student < worst_student[s]))
    blocks = (count[s] < capacity[s]) | outranks
    return not bool(blocks.any())
