"""The fast paths written for speed (docs/PERFORMANCE.md) against the plain reference code they
replaced, on random inputs that include the awkward cases (exact ties, near-ties, unlisted entries).

`tests/test_regression_baseline.py` checks whole runs; these check each piece on inputs whole runs
rarely produce.
"""

from __future__ import annotations

import mesa
import numpy as np
import pytest

from conftest import AUTONOMY_POLICY, small
from portfolio_sim import agents
from portfolio_sim.agents import Family
from portfolio_sim.matching import _descending_key
from portfolio_sim.mechanisms import enrollment
from portfolio_sim.model import PortfolioModel


# -- references: the code the fast paths replaced -----------------------------------------------------

def compact_reference(values, mask, width):
    order = np.argsort(~mask, axis=1, kind="stable")[:, :width]
    out = np.take_along_axis(values, order, axis=1)
    if out.shape[1] < width:
        out = np.column_stack([out, np.full((len(out), width - out.shape[1]), -1, dtype=out.dtype)])
    count = np.minimum(mask.sum(1), width)
    out[np.arange(out.shape[1])[None, :] >= count[:, None]] = -1
    return out, count


def siblings_reference(model, rows, lists):
    st = model.students
    n_sc = len(model.schools)
    staying = np.ones(len(st), dtype=bool)
    staying[rows] = False
    staying &= (st.grade >= 0) & (st.school >= 0)
    keys = np.unique(st.household[staying].astype(np.int64) * n_sc + st.school[staying])
    ask = st.household[rows].astype(np.int64)[:, None] * n_sc + np.maximum(lists, 0)
    pos = np.searchsorted(keys, ask).clip(0, max(len(keys) - 1, 0))
    return (keys[pos] == ask) & (lists >= 0) if len(keys) else np.zeros(lists.shape, bool)


def nearest_first_reference(model, rows, cand, u):
    """Sorted by utility (best first), then stably by np.hypot distance (what ranked_lists did)."""
    by_u = np.argsort(-u, axis=1, kind="stable")
    c = np.take_along_axis(cand, by_u, 1)
    return np.take_along_axis(c, np.argsort(enrollment._distance(model, rows, c), axis=1, kind="stable"), 1)


# -- inputs -------------------------------------------------------------------------------------------

def tricky_floats(rng, shape):
    """Values with exact ties, -inf, +-0.0 and pairs that differ only in their last bits."""
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.1] = -np.inf
    x[rng.random(shape) < 0.05] = 0.0
    x[rng.random(shape) < 0.05] = -0.0
    flat = x.reshape(-1)
    near = rng.random(flat.size) < 0.2
    flat[near] = np.nextafter(np.roll(flat, 1)[near], np.inf)       # one ulp from a neighbour
    tie = rng.random(flat.size) < 0.1
    flat[tie] = np.roll(flat, 1)[tie]                                # equal to a neighbour
    small_gap = (rng.random(flat.size) < 0.1) & np.isfinite(np.roll(flat, 1))
    with np.errstate(over="ignore"):
        flat[small_gap] = np.roll(flat, 1)[small_gap] * (1 + 1e-11)  # below the packed key's precision
    return x


@pytest.mark.parametrize("cols", [1, 2, 3, 8, 15, 16, 17, 40])
def test_stable_row_argsort_is_numpy_stable_argsort(cols):
    rng = np.random.default_rng(cols)
    for _ in range(20):
        x = tricky_floats(rng, (200, cols))
        keys = _descending_key(x)
        np.testing.assert_array_equal(enrollment.stable_row_argsort(keys), np.argsort(keys, axis=1, kind="stable"))
        np.testing.assert_array_equal(enrollment._best_first(x), np.argsort(-x, axis=1, kind="stable"))


def test_stable_row_argsort_empty():
    assert enrollment.stable_row_argsort(np.zeros((0, 5), np.uint64)).shape == (0, 5)


@pytest.mark.parametrize("width", [1, 3, 7, 8, 15, 20])
def test_compact_matches_reference(width):
    rng = np.random.default_rng(width)
    for cols in (1, 4, 15):
        values = rng.integers(0, 50, (300, cols)).astype(np.int32)
        mask = rng.random((300, cols)) < rng.random((300, 1))
        got, count = enrollment._compact(values, mask, width)
        ref, ref_count = compact_reference(values, mask, width)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(count, ref_count)
        assert got.dtype == ref.dtype


@pytest.fixture(scope="module")
def busy_model():
    scn = small(**AUTONOMY_POLICY, choice={"policy": "unified"},
                district={"students": 4000, "schools": 18, "charter_schools": 3, "students_per_household": 2.5})
    model = PortfolioModel(scn, seed=3)
    for _ in range(2):
        model.step()
    yield model
    model.release()


def test_siblings_match_reference(busy_model):
    m = busy_model
    rng = np.random.default_rng(0)
    for share in (0.05, 0.3, 1.0):
        active = np.flatnonzero(m.students.grade >= 0)
        rows = np.sort(rng.choice(active, int(share * len(active)), replace=False))
        lists = rng.integers(-1, len(m.schools), (len(rows), 8)).astype(np.int32)
        # many entries at a sibling's school, so the priority actually applies
        sib_school = m.students.school[np.minimum(rows + 1, len(m.students) - 1)]
        lists[:, 0] = np.where(rng.random(len(rows)) < 0.7, sib_school, lists[:, 0])
        got = enrollment.siblings_at(m, rows, lists)
        np.testing.assert_array_equal(got, siblings_reference(m, rows, lists))
        assert got.any() or share == 1.0   # (everyone choosing: nobody stays to be a sibling)


def test_nearest_first_matches_reference(busy_model):
    m = busy_model
    rng = np.random.default_rng(1)
    rows = np.flatnonzero(m.students.grade >= 0)[:500]
    cand = rng.integers(-1, len(m.schools), (len(rows), 15)).astype(np.int32)
    cand[:, 5] = -1
    # duplicate schools in a row give exact distance ties (the utility order must break them)
    cand[::3, 7] = cand[::3, 2]
    cand[::5, 9] = cand[::5, 2]
    u = tricky_floats(rng, cand.shape)
    u[cand < 0] = -np.inf
    dist = enrollment.distances(m, rows, cand)
    got = enrollment._nearest_first(m, rows, cand, dist, u)
    np.testing.assert_array_equal(got, nearest_first_reference(m, rows, cand, u))


def test_families_created_in_bulk_are_the_same_agents(monkeypatch):
    scn = small()
    fast = PortfolioModel(scn, seed=2)
    monkeypatch.setattr(agents, "_bulk_registration_supported", lambda model: False)
    slow = PortfolioModel(scn, seed=2)
    try:
        def registry(m):
            return [(type(a).__name__, a.unique_id, getattr(a, "row", None), a.pos, a.model is m) for a in m.agents]

        assert registry(fast) == registry(slow)
        assert list(fast.agents_by_type) == list(slow.agents_by_type)
        assert len(fast.agents_by_type[Family]) == len(fast.hh_xy) == len(fast.families)
        assert all(type(f) is Family and f.__dict__.keys() == slow.families[0].__dict__.keys() for f in fast.families)
        # New agents continue the id sequence; removal works as for any agent.
        fast.step()
        slow.step()
        assert registry(fast) == registry(slow)
        f = fast.families[1]
        f.remove()
        assert f not in fast.agents and f not in fast.agents_by_type[Family] and len(fast._agents) == len(slow._agents) - 1
    finally:
        fast.release()
        slow.release()


def test_bulk_registration_detects_mesa_layout():
    model = mesa.Model(seed=1)
    assert agents._bulk_registration_supported(model)
