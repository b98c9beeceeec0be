"""Tests for the school-assignment engine (student-proposing deferred acceptance).

The fast vectorised DA is checked against the plain-Python reference, against the definition of
stability (both through ``is_stable`` and through an independent brute force here), and against
student-optimality by enumerating every stable matching of tiny instances.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portfolio_sim.matching import Matching, deferred_acceptance, deferred_acceptance_reference, is_stable

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Scores with deliberate exact ties, both zeros (which must tie), values one ulp apart next to
# huge magnitudes (they collide in the packed sort key and need the exact re-sort), infinities.
TIE_SCORES = [0.0, -0.0, 1.0, float(np.nextafter(1.0, 2.0)), 2.0, -1.0, 1e300, -1e300, np.inf, -np.inf]


@st.composite
def instances(draw, max_students=8, max_schools=4, max_capacity=3):
    """(choices, scores, capacity): random lists without gaps or repeats, -1 padding, NaN padding scores."""
    n_schools = draw(st.integers(1, max_schools))
    n = draw(st.integers(0, max_students))
    k = draw(st.integers(0, n_schools))
    capacity = np.array(draw(st.lists(st.integers(0, max_capacity), min_size=n_schools, max_size=n_schools)))
    kind = draw(st.sampled_from(["ties", "class + lottery", "any float"]))
    choices = np.full((n, k), -1, np.int64)
    scores = np.full((n, k), np.nan)
    for i in range(n):
        length = draw(st.integers(0, k))
        listed = draw(st.permutations(range(n_schools)))[:length]
        lottery = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75]))  # one per student; few values, so ties
        for r, school in enumerate(listed):
            choices[i, r] = school
            if kind == "ties":
                scores[i, r] = draw(st.sampled_from(TIE_SCORES))
            elif kind == "class + lottery":  # school-specific priority class + single tie-break
                scores[i, r] = draw(st.integers(0, 2)) + (1.0 - lottery)
            else:
                scores[i, r] = draw(st.floats(allow_nan=False))
    return choices, scores, capacity


def assert_same(a: Matching, b: Matching) -> None:
    np.testing.assert_array_equal(a.school, b.school)
    np.testing.assert_array_equal(a.rank, b.rank)


def assert_feasible(choices, capacity, m: Matching) -> None:
    """Plain checks, independent of is_stable: types, list membership, capacity."""
    n = choices.shape[0]
    assert m.school.dtype == np.int32 and m.rank.dtype == np.int32
    assert m.school.shape == (n,) and m.rank.shape == (n,)
    for i in range(n):
        if m.school[i] == -1:
            assert m.rank[i] == -1
        else:
            assert choices[i, m.rank[i]] == m.school[i]
    assigned = m.school[m.school >= 0]
    assert (np.bincount(assigned, minlength=len(capacity)) <= capacity).all()


def brute_force_stable(choices, scores, capacity):
    """Every matching of a tiny instance, and which of them are stable, straight from the definition.

    Returns (ranks, stable): ranks is (M, n), one row per way to give each student one of their
    listed schools or nothing (-1); stable[m] says whether row m respects capacity and has no
    blocking pair. Written independently of the module under test.
    """
    n, k = choices.shape
    n_schools = len(capacity)
    lengths = (choices >= 0).sum(axis=1)
    combos = list(itertools.product(*[range(-1, length) for length in lengths]))
    ranks = np.array(combos, np.int64).reshape(len(combos), n)
    padded = np.hstack([choices, np.full((n, 1), -1)])  # rank -1 indexes this padding column
    school = padded[np.arange(n), ranks]  # (M, n)
    priority = np.full((n, n_schools), np.nan)  # priority[j, s]: j's score at s
    for j in range(n):
        for r in range(lengths[j]):
            priority[j, choices[j, r]] = scores[j, r]
    count = (school[:, :, None] == np.arange(n_schools)).sum(axis=1)  # (M, S)
    stable = (count <= capacity).all(axis=1)
    for i in range(n):
        for r in range(lengths[i]):
            s, p = choices[i, r], scores[i, r]
            prefers = (ranks[:, i] == -1) | (r < ranks[:, i])
            below_i = (priority[:, s] < p) | ((priority[:, s] == p) & (np.arange(n) > i))
            holds_someone_below = ((school == s) & below_i).any(axis=1)
            stable &= ~(prefers & ((count[:, s] < capacity[s]) | holds_someone_below))
    return ranks, stable


def matching_from_ranks(choices, ranks) -> Matching:
    n = choices.shape[0]
    padded = np.hstack([choices, np.full((n, 1), -1)])
    return Matching(padded[np.arange(n), ranks].astype(np.int32), np.asarray(ranks, np.int32))


def random_instance(rng, n, n_schools, k, *, fill=0.9, ragged=False, ties_only=False):
    """Random lists (popularity-skewed), class 0-2 per (student, school) + one lottery per student."""
    popularity = rng.gamma(2.0, 1.0, n_schools)
    keys = np.log(popularity) + rng.gumbel(size=(n, n_schools))  # Gumbel top-k: weighted, distinct
    choices = np.argsort(-keys, axis=1)[:, :k]
    priority_class = rng.integers(0, 3, size=(n, k))
    scores = priority_class.astype(float) if ties_only else priority_class + (1.0 - rng.random(n))[:, None]
    if ragged:
        cut = rng.integers(0, k + 1, n)
        pad = np.arange(k) >= cut[:, None]
        choices[pad] = -1
        scores[pad] = np.nan
    capacity = rng.multinomial(int(fill * n), np.full(n_schools, 1.0 / n_schools))
    return choices, scores, capacity


# --------------------------------------------------------------------------- property tests


@PROPERTY
@given(instances())
def test_fast_matches_reference(instance):
    assert_same(deferred_acceptance(*instance), deferred_acceptance_reference(*instance))


@PROPERTY
@given(instances())
def test_result_is_feasible_and_stable(instance):
    choices, scores, capacity = instance
    m = deferred_acceptance(choices, scores, capacity)
    assert_feasible(choices, capacity, m)
    assert is_stable(choices, scores, capacity, m)


@PROPERTY
@given(instances(max_students=6, max_schools=3))
def test_student_optimal_among_all_stable_matchings(instance):
    choices, scores, capacity = instance
    ranks, stable = brute_force_stable(choices, scores, capacity)
    da = deferred_acceptance(choices, scores, capacity)
    assert stable[(ranks == da.rank).all(axis=1)].all()  # DA's own matching is stable by brute force
    others = ranks[stable]
    big = np.iinfo(np.int32).max  # unassigned is worse than any listed school
    da_rank = np.where(da.rank < 0, big, da.rank)
    assert (da_rank <= np.where(others < 0, big, others)).all()


@PROPERTY
@given(instances(max_students=5, max_schools=3), st.randoms(use_true_random=False))
def test_is_stable_agrees_with_brute_force(instance, rnd):
    """On all stable matchings and a sample of the others, including over-capacity ones."""
    choices, scores, capacity = instance
    ranks, stable = brute_force_stable(choices, scores, capacity)
    rows = list(np.flatnonzero(stable)) + rnd.sample(range(len(ranks)), min(10, len(ranks)))
    for row in rows:
        m = matching_from_ranks(choices, ranks[row])
        assert is_stable(choices, scores, capacity, m) == stable[row]


# --------------------------------------------------------------------------- the checker itself can fail


def test_is_stable_rejects_planted_blocking_pair():
    choices = np.array([[0], [0]])
    scores = np.array([[2.0], [1.0]])
    capacity = np.array([1])
    good = Matching(np.array([0, -1], np.int32), np.array([0, -1], np.int32))
    blocked = Matching(np.array([-1, 0], np.int32), np.array([-1, 0], np.int32))  # student 0 outranks 1
    assert is_stable(choices, scores, capacity, good)
    assert not is_stable(choices, scores, capacity, blocked)


def test_is_stable_rejects_over_capacity_and_free_seats():
    choices = np.array([[0, 1], [0, 1]])
    scores = np.ones((2, 2))
    capacity = np.array([1, 1])
    over = Matching(np.array([0, 0], np.int32), np.array([0, 0], np.int32))
    assert not is_stable(choices, scores, capacity, over)
    # Student 1 left out although school 1 has a free seat.
    idle_seat = Matching(np.array([0, -1], np.int32), np.array([0, -1], np.int32))
    assert not is_stable(choices, scores, capacity, idle_seat)
    assert is_stable(choices, scores, capacity, Matching(np.array([0, 1], np.int32), np.array([0, 1], np.int32)))


def test_is_stable_rejects_unlisted_school_and_wrong_rank():
    choices = np.array([[0, -1], [1, 0]])
    scores = np.array([[1.0, np.nan], [5.0, 1.0]])
    capacity = np.array([1, 1])
    assert is_stable(choices, scores, capacity, Matching(np.array([0, 1], np.int32), np.array([0, 0], np.int32)))
    unlisted = Matching(np.array([1, 0], np.int32), np.array([0, 1], np.int32))  # student 0 never listed 1
    assert not is_stable(choices, scores, capacity, unlisted)
    wrong_rank = Matching(np.array([0, 1], np.int32), np.array([0, 1], np.int32))
    assert not is_stable(choices, scores, capacity, wrong_rank)


def test_is_stable_rejects_lost_tie():
    # Equal priority at the school: the lower index must get the seat.
    choices, scores, capacity = np.array([[0], [0]]), np.array([[1.0], [1.0]]), np.array([1])
    assert is_stable(choices, scores, capacity, Matching(np.array([0, -1]), np.array([0, -1])))
    assert not is_stable(choices, scores, capacity, Matching(np.array([-1, 0]), np.array([-1, 0])))


# --------------------------------------------------------------------------- classic examples


def test_textbook_three_by_three_rejection_chain():
    # School priorities: school 0: s1 > s2 > s0; school 1: s0 > s2 > s1; school 2: all equal.
    choices = np.array([[0, 1, 2], [1, 0, 2], [0, 1, 2]])
    scores = np.array([[1.0, 3.0, 1.0], [1.0, 3.0, 1.0], [2.0, 2.0, 1.0]])
    capacity = np.array([1, 1, 1])
    # s2 displaces s0 at 0; s0 displaces s1 at 1; s1 displaces s2 at 0; s2 is refused by 1, gets 2.
    m = deferred_acceptance(choices, scores, capacity)
    assert m.school.tolist() == [1, 0, 2]
    assert m.rank.tolist() == [1, 1, 2]
    assert_same(m, deferred_acceptance_reference(choices, scores, capacity))


def test_student_optimal_not_school_optimal():
    # Two stable matchings: {0->0, 1->1} (students' favourites) and {0->1, 1->0} (schools'). DA gives the first.
    choices = np.array([[0, 1], [1, 0]])
    scores = np.array([[1.0, 2.0], [1.0, 2.0]])  # each school prefers the student who ranks it second
    m = deferred_acceptance(choices, scores, np.array([1, 1]))
    assert m.school.tolist() == [0, 1] and m.rank.tolist() == [0, 0]


def test_sibling_priority_beats_lottery_and_ties_go_to_lower_index():
    # Scores = class + (1 - lottery); student 2 has a sibling (class 2) at school 0.
    lottery = np.array([0.1, 0.2, 0.9, 0.1])
    priority_class = np.array([[0], [0], [2], [0]])
    scores = priority_class + (1.0 - lottery)[:, None]
    m = deferred_acceptance(np.zeros((4, 1), int), scores, np.array([2]))
    assert m.school.tolist() == [0, -1, 0, -1]  # sibling, then lottery 0.1 tie: lower index 0 beats 3


def test_exact_ties_and_signed_zeros_go_to_lower_index():
    choices = np.zeros((3, 1), int)
    for tied in ([[1.0], [1.0], [1.0]], [[-0.0], [0.0], [-0.0]], [[0.0], [-0.0], [0.0]]):
        m = deferred_acceptance(choices, np.array(tied), np.array([1]))
        assert m.school.tolist() == [0, -1, -1]


def test_scores_closer_than_packed_precision_are_ordered_exactly():
    # With 1e300 and -1e300 present the packed key keeps only the top bits of each score, so the
    # scores below collide there; the higher score must still win, whatever the student index.
    eps = np.finfo(float).eps
    choices = np.array([[0], [0], [0], [1], [1]])
    scores = np.array([[1.0], [1.0 + 2 * eps], [1.0 + eps], [1e300], [-1e300]])
    m = deferred_acceptance(choices, scores, np.array([1, 2]))
    assert m.school.tolist() == [-1, 0, -1, 1, 1]
    m = deferred_acceptance(choices, scores, np.array([2, 2]))
    assert m.school.tolist() == [-1, 0, 0, 1, 1]


def test_zero_capacity_school_is_skipped():
    choices = np.array([[0, 1], [0, 1], [1, 0]])
    scores = np.ones((3, 2))
    m = deferred_acceptance(choices, scores, np.array([0, 2]))
    assert m.school.tolist() == [1, 1, -1]
    assert m.rank.tolist() == [1, 1, -1]


def test_empty_lists_and_empty_instances():
    choices = np.array([[-1, -1], [0, -1], [-1, -1]])
    scores = np.array([[np.nan, np.nan], [3.0, np.nan], [np.nan, np.nan]])  # padding scores are ignored
    m = deferred_acceptance(choices, scores, np.array([1]))
    assert m.school.tolist() == [-1, 0, -1] and m.rank.tolist() == [-1, 0, -1]
    for n, k in [(0, 0), (0, 3), (4, 0)]:
        m = deferred_acceptance(np.zeros((n, k), int), np.zeros((n, k)), np.array([2, 2]))
        assert m.school.tolist() == [-1] * n and m.rank.tolist() == [-1] * n
        assert m.school.dtype == np.int32 and m.rank.dtype == np.int32
    m = deferred_acceptance(np.zeros((0, 0), int), np.zeros((0, 0)), np.zeros(0, int))  # no schools at all
    assert m.school.size == 0


def test_everyone_wants_one_school():
    rng = np.random.default_rng(3)
    scores = rng.permutation(50).astype(float)[:, None]
    m = deferred_acceptance(np.zeros((50, 1), int), scores, np.array([7]))
    assert set(np.flatnonzero(m.school == 0)) == set(np.argsort(-scores[:, 0])[:7])


def test_inputs_not_modified_and_list_inputs_accepted():
    choices = np.array([[1, 0], [0, -1]], np.int32)
    scores = np.array([[-0.0, 2.0], [1.0, np.nan]])
    before = (choices.copy(), scores.copy())
    m = deferred_acceptance(choices, scores, [1, 1])
    np.testing.assert_array_equal(choices, before[0])
    assert np.signbit(scores[0, 0]) and np.isnan(scores[1, 1])
    assert_same(m, deferred_acceptance(choices.tolist(), scores.tolist(), np.array([1, 1], np.uint8)))
    full = np.array([[1, 0], [0, 1]])
    assert_same(
        deferred_acceptance(full.astype(np.uint16), np.ones((2, 2), np.float32), (1, 1)),
        deferred_acceptance(full, np.ones((2, 2)), np.array([1, 1])),
    )


@pytest.mark.parametrize(
    ("choices", "scores", "capacity", "message"),
    [
        ([0, 1], [1.0, 1.0], [1, 1], "2-D"),
        ([[0, 1]], [[1.0]], [1, 1], "same shape"),
        ([[0.0, 1.0]], [[1.0, 1.0]], [1, 1], "integer"),
        ([[0, 2]], [[1.0, 1.0]], [1, 1], "school indices"),
        ([[0, -2]], [[1.0, 1.0]], [1, 1], "school indices"),
        ([[0, 1]], [[1.0, 1.0]], [1, -1], "capacity must be >= 0"),
        ([[0, 1]], [[1.0, 1.0]], [[1, 1]], "1-D"),
        ([[0, 1]], [[1.0, 1.0]], [1.0, 1.0], "integers"),
        ([[-1, 1]], [[1.0, 1.0]], [1, 1], "only appear after"),
        ([[1, 1]], [[1.0, 1.0]], [1, 1], "more than once"),
        ([[0, 1, -1]], [[1.0, np.nan, 0.0]], [1, 1], "NaN"),
    ],
)
def test_invalid_inputs_raise_clear_errors(choices, scores, capacity, message):
    for func in (deferred_acceptance, deferred_acceptance_reference):
        with pytest.raises(ValueError, match=message):
            func(np.array(choices), np.array(scores), np.array(capacity))
    with pytest.raises(ValueError, match=message):
        is_stable(np.array(choices), np.array(scores), np.array(capacity), Matching(np.array([-1]), np.array([-1])))


def test_duplicate_check_on_long_lists():
    choices = np.tile(np.arange(20), (3, 1))
    choices[2, 19] = 5
    with pytest.raises(ValueError, match="student 2 lists the same school"):
        deferred_acceptance(choices, np.ones((3, 20)), np.ones(20, int))


def test_is_stable_rejects_wrongly_shaped_matching():
    with pytest.raises(ValueError, match="shape"):
        is_stable(np.array([[0]]), np.array([[1.0]]), np.array([1]), Matching(np.array([0, 0]), np.array([0, 0])))


# --------------------------------------------------------------------------- medium random instances


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ragged": True, "fill": 0.6},
        {"ties_only": True, "fill": 1.1},  # priority classes only: huge exact ties, index breaks them
    ],
    ids=["lottery", "ragged-lists", "ties-only"],
)
def test_medium_random_instance(options):
    rng = np.random.default_rng(2024)
    choices, scores, capacity = random_instance(rng, 5000, 30, 8, **options)
    m = deferred_acceptance(choices, scores, capacity)
    assert_same(m, deferred_acceptance_reference(choices, scores, capacity))
    assert is_stable(choices, scores, capacity, m)
    assert_feasible(choices, capacity, m)
    assert (m.school >= 0).sum() > 0.5 * min(capacity.sum(), 5000)
