"""The comparison's robustness check (issue 12) without a browser: the dashboard's check gives the CLI's
numbers, runs in the worker pool, reports progress, cancels, says what it found in words, and is shown only
while it checks what the comparison holds."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from conftest import AUTONOMY_POLICY, small
from portfolio_sim.dashboard.robust import SEEDS_PER_WORLD, sentences
from portfolio_sim.dashboard.simulation import WorkerPool
from portfolio_sim.dashboard.state import DashboardState
from portfolio_sim.uncertainty.robustness import robustness


def tiny(**groups):
    s = small(**groups)
    s.district.students, s.district.schools, s.run.years, s.run.seeds = 1500, 8, 3, 2
    return s


def session(design, reference) -> DashboardState:
    state = DashboardState(preset=None)
    state._set_scenario(reference, "test", None, autorun=False)
    state.compare_add_current("reference")
    state._set_scenario(design, "test", None, autorun=False)
    state.compare_add_current("design")
    return state


@pytest.fixture(scope="module")
def pool():
    """A private one-worker pool (the module's global one stays untouched)."""
    import portfolio_sim.dashboard.robust as robust_mod
    p = WorkerPool(1)
    original = robust_mod.worker_pool
    robust_mod.worker_pool = lambda: p
    yield p
    robust_mod.worker_pool = original
    p.shutdown()


@pytest.fixture(scope="module")
def checked(pool):
    state = session(tiny(**AUTONOMY_POLICY), tiny())
    offer = state.robustness
    offer.worlds.value = 4
    assert offer.why_not() == ""
    reports = []
    state.add_progress_sink(reports.append)
    assert offer.start()
    assert state.controller.join(180)
    return state, reports


def test_the_check_gives_the_cli_numbers_with_progress_from_the_pool(checked, pool):
    state, reports = checked
    assert state.controller.status.state == "done", state.controller.status.error
    check = state.robustness.current()
    assert check is not None and check.runs == 2 * 4 * SEEDS_PER_WORLD and check.workers == 1
    store = state.compare.value
    design, reference = (store.run_scenario(e) for e in state.robustness.pair(store))
    cli = robustness(design, reference, 4, SEEDS_PER_WORLD, root=store.settings.seed, years=design.run.years)
    pd.testing.assert_frame_equal(check.detail.table, cli, check_exact=True)     # the CLI's numbers exactly
    assert pool._executor is not None and pool._executor._processes              # it ran in the worker pool
    done = [r.done for r in reports if r.kind == "compare" and r.total]
    assert done and done[-1] == reports[-1].total and done == sorted(done)     # progress up to the end


def test_the_check_says_what_it_found_in_plain_words(checked):
    state, _ = checked
    found = {s["metric"]: s for s in sentences(state.robustness.current())}
    auto = found["enrollment_autonomous"]                         # the reference grants no autonomy
    assert auto["tone"] == "better"
    assert auto["text"].startswith("Students in autonomous schools: better in 100% of plausible worlds; the "
                                   "difference was +")
    assert "in 8 of 10 worlds" in auto["text"] and "students" in auto["text"]
    for s in found.values():
        assert s["text"].endswith(".") and "nan" not in s["text"]


def test_the_check_is_shown_only_while_it_checks_the_current_comparison(checked):
    state, _ = checked
    offer = state.robustness
    assert offer.current() is not None
    state.compare_settings(years=2)
    assert offer.current() is None                                # the comparison changed: out of date
    state.compare_settings(years=3)
    assert offer.current() is not None
    offer.worlds.value = 10
    assert offer.current() is None
    offer.worlds.value = 4


def test_a_design_against_itself_is_the_same_everywhere(pool):
    s = tiny(**AUTONOMY_POLICY)
    state = session(s, s)
    state.robustness.worlds.value = 2
    assert state.robustness.start() and state.controller.join(120)
    texts = [x["text"] for x in sentences(state.robustness.current())]
    assert all(t.endswith("the same in every plausible world.") for t in texts), texts


def test_cancel_stops_the_check_and_keeps_no_result(pool):
    slow = tiny(**AUTONOMY_POLICY)
    slow.run.years = 60
    state = session(slow, tiny())
    state.compare_settings(years=60)
    assert state.robustness.start()
    deadline = time.time() + 60
    while state.controller.status.state == "running" and not state.live_status.done and time.time() < deadline:
        time.sleep(0.05)
    t0 = time.perf_counter()
    assert state.cancel()
    assert state.controller.join(30)
    assert state.controller.status.state == "cancelled"
    assert time.perf_counter() - t0 < 20                         # stopped between years, not at the end
    assert state.robustness.result.value is None
    assert not pool._waiting                                      # the waiting runs were dropped


def test_why_not_says_what_is_missing_or_too_big():
    state = DashboardState(preset=None)
    state._set_scenario(tiny(), "test", None, autorun=False)
    assert "Add a design and a reference" in state.robustness.why_not()
    assert not state.robustness.start()
    state.compare_add_current("one")
    assert "Add a design" in state.robustness.why_not()
    big = tiny()
    big.district.students = 600_000
    state._set_scenario(big, "test", None, autorun=False)
    state.compare_add_current("big")
    state.compare_settings(years=10)
    state.robustness.worlds.value = 10
    assert state.robustness.why_not() == ""                   # 10 worlds of 600,000 students: allowed
    state.robustness.worlds.value = 50
    assert "portfolio-sim robustness" in state.robustness.why_not()   # 50: too much for a shared server


def test_worker_pool_replaces_its_workers_without_hanging(monkeypatch):
    """More queued tasks than TASKS_PER_WORKER through one worker (as a check's 40+ runs are): every task
    finishes and the workers were replaced (the executor's own max_tasks_per_child hangs here on 3.11)."""
    import os
    from concurrent.futures import wait

    import portfolio_sim.dashboard.simulation as sim_mod
    monkeypatch.setattr(sim_mod, "TASKS_PER_WORKER", 2)
    p = WorkerPool(1)
    try:
        futures = [p.submit(5, os.getpid) for _ in range(7)]
        done, not_done = wait(futures, timeout=120)
        assert not not_done, f"{len(not_done)} of 7 tasks never ran"
        pids = [f.result() for f in futures]
        assert len(set(pids)) == 4 and os.getpid() not in pids      # a fresh worker every 2 tasks
    finally:
        p.shutdown()
