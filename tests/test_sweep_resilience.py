"""Sweeps at cluster scale, with real processes: a Dask scheduler and workers started as separate
processes (`dask scheduler`, `dask worker`), killed and restarted; process pools whose runs hang or whose
driver is killed; the driver as a subprocess sent SIGTERM. Each test takes seconds (tiny runs, a few
years); runs are made slow or stuck on purpose by tests/sweep_helpers.slow_task."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

import sweep_helpers as h
from portfolio_sim.sweep.analysis import Results
from portfolio_sim.sweep.runner import SweepOptions, run_sweep

TINY = h.ROOT / "experiments" / "tiny.toml"


def spec_with(tmp: Path, name: str, replicates: int, years: int = 2) -> Path:
    text = TINY.read_text(encoding="utf-8").replace('name = "tiny"', f'name = "{name}"')
    text = text.replace("replicates = 2", f"replicates = {replicates}").replace("years = 3", f"years = {years}")
    path = tmp / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def values(db: Path | str) -> pd.DataFrame:
    with Results(db) as res:
        return res.yearly().drop(columns="run_id").reset_index(drop=True)


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver submits sweep_helpers.slow_task (0.3 s per run) in this process and its pool workers."""
    import portfolio_sim.sweep.runner as runner
    monkeypatch.setattr(runner, "run_task", h.slow_task)
    monkeypatch.setenv(h.DELAY_VAR, "0.3")


# -- 1. the Dask scheduler is lost ------------------------------------------------------------------------

def test_lost_scheduler_is_waited_for_and_its_runs_are_not_failures(tmp_path: Path, slow: None) -> None:
    """Kill -9 the scheduler mid-sweep, start it again at the same address (and a worker, as a job queue
    would: `dask worker` exits when its scheduler goes): the driver puts the runs in flight back in the
    queue, reconnects and finishes; nothing is stored as failed; the values are those of a serial run."""
    spec = spec_with(tmp_path, "lost", replicates=3)          # 12 runs
    db = tmp_path / "lost.db"
    port = h.free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [h.start_scheduler(port), h.start_worker(address, 2, **{h.DELAY_VAR: "0.3"})]
    out: dict[str, object] = {}

    def drive() -> None:
        try:
            out["report"] = run_sweep(spec, db=db, executor="dask", scheduler=address,
                                      options=SweepOptions(reconnect_timeout=60, batch=1))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            out["error"] = exc

    thread = threading.Thread(target=drive)
    try:
        thread.start()
        h.wait_for(lambda: h.done_count(db) >= 2)
        h.stop(procs[0])                                        # the scheduler dies with runs in flight
        time.sleep(1.0)
        procs += [h.start_scheduler(port), h.start_worker(address, 2, **{h.DELAY_VAR: "0.3"})]
        thread.join(timeout=90)
    finally:
        h.stop(*procs)
    assert not thread.is_alive() and "error" not in out, out.get("error")
    report = out["report"]
    assert report.reconnects == 1 and report.requeued >= 1 and report.failed == 0, report
    with Results(db) as res:
        runs = res.runs()
    assert len(runs) == 12 and set(runs["status"]) == {"done"} and runs["attempts"].eq(1).all()
    ref = tmp_path / "ref.db"
    assert run_sweep(spec, db=ref).done == 12
    pd.testing.assert_frame_equal(values(db), values(ref), check_exact=True)


def test_scheduler_that_does_not_come_back_stops_with_exit_3(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, "gone", replicates=4)          # 16 runs
    db = tmp_path / "gone.db"
    port = h.free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = h.start_scheduler(port)
    worker = h.start_worker(address, 2, **{h.DELAY_VAR: "0.3"})
    proc = h.driver(["sweep", str(spec), "--db", str(db), "--scheduler", address, "--reconnect-timeout", "3",
                     "--write-batch", "1", "-q"], **{h.DELAY_VAR: "0.3"})
    try:
        h.wait_for(lambda: h.done_count(db) >= 2, timeout=60)
        h.stop(scheduler)
        lost_at = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - lost_at
    finally:
        h.stop(proc, scheduler, worker)
    assert proc.returncode == 3, (proc.returncode, stderr)
    assert "lost the Dask scheduler" in stderr and "did not come back within 3s" in stderr, stderr
    assert "to continue: portfolio-sim sweep" in stderr and "Traceback" not in stderr
    assert took < 20, took
    with Results(db) as res:
        runs = res.runs()
        sessions = res.sessions()
    assert 2 <= len(runs) < 16 and set(runs["status"]) == {"done"}      # nothing stored as failed
    assert sessions["outcome"].iloc[-1] == "scheduler lost"


# -- 2. workers that join later ---------------------------------------------------------------------------

def test_workers_that_join_after_the_driver_starts_are_used(tmp_path: Path, slow: None) -> None:
    """Against an empty scheduler the driver queues a few runs; a 4-thread worker that joins later gets
    a window sized to it (2 tasks per thread), and the session records the worker count over time."""
    spec = spec_with(tmp_path, "elastic", replicates=6)       # 24 runs
    db = tmp_path / "elastic.db"
    port = h.free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [h.start_scheduler(port)]
    out: dict[str, object] = {}
    thread = threading.Thread(target=lambda: out.setdefault("report", run_sweep(
        spec, db=db, executor="dask", scheduler=address)))
    try:
        thread.start()
        time.sleep(1.5)
        assert h.done_count(db) == 0
        procs.append(h.start_worker(address, 4, **{h.DELAY_VAR: "0.3"}))
        thread.join(timeout=90)
    finally:
        h.stop(*procs)
    report = out["report"]
    assert report.done == 24, report
    assert report.max_in_flight >= 8, report.max_in_flight       # was fixed at 8 whatever joined
    log = report.workers_log
    assert log[0][1] == 0 and max(n for _, n in log) == 4, log
    with Results(db) as res:
        stored = res.sessions()["workers_log"].iloc[-1]
    assert [list(x) for x in stored] == log


# -- 3. per-run timeout; Ctrl-C / SIGTERM end everything ------------------------------------------------

def test_a_process_pool_run_is_timed_from_when_its_worker_starts_it() -> None:
    """The pool marks a queued task "running" as soon as it enters its call queue; the run clock must not
    start then (nor while a worker is still starting up), only when a worker begins the task."""
    from portfolio_sim.sweep.executors import open_executor

    ex = open_executor("process", workers=1)
    try:
        submitted = time.monotonic()
        first, second = ex.submit(time.sleep, 1.5), ex.submit(time.sleep, 0)
        h.wait_for(lambda: first in ex.start_times([first]), timeout=60)
        h.wait_for(second.running, timeout=10)        # queued behind `first`, yet "running" to the pool
        started = ex.start_times([first, second])
        assert set(started) == {first}, started
        assert submitted <= started[first] <= time.monotonic()
        second.result(timeout=60)
        h.wait_for(lambda: ex.start_times([first, second]) == {}, timeout=5)   # finished runs are forgotten
    finally:
        ex.kill()


def test_hung_run_in_a_process_pool_times_out_and_the_sweep_finishes(tmp_path: Path, slow: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(h.HANG_VAR, "1")                       # both runs of point 1 never finish
    monkeypatch.setenv(h.DELAY_VAR, "0")
    db = tmp_path / "hung.db"
    start = time.monotonic()
    report = run_sweep(TINY, db=db, executor="process", workers=2, options=SweepOptions(run_timeout=3))
    took = time.monotonic() - start
    assert (report.done, report.failed, report.timed_out) == (6, 2, 2), report
    assert took < 40, took
    with Results(db) as res:
        failed = res.runs(status="failed")
        assert set(failed["point"]) == {1} and failed["error"].str.startswith("TimeoutError").all()
        assert res.runs(status="done")["attempts"].eq(1).all()         # requeued runs were not failures
        assert res.sessions()["timed_out"].iloc[-1] == 2


def test_default_run_timeout_follows_the_design_size() -> None:
    from portfolio_sim.sweep.runner import MIN_RUN_TIMEOUT, default_run_timeout, estimated_run_seconds
    from portfolio_sim.sweep.spec import load_spec

    tiny = load_spec(TINY)
    assert default_run_timeout(tiny) == MIN_RUN_TIMEOUT
    big = load_spec(TINY)
    big.max_students = 2_000_000           # what load_spec records for a design with a district this large
    assert estimated_run_seconds(big) > 10 * estimated_run_seconds(tiny)
    assert default_run_timeout(big) > MIN_RUN_TIMEOUT


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _all_gone(procs: list[psutil.Process], timeout: float) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def test_stop_signals_record_the_first_signal_and_interrupt_on_the_second() -> None:
    """Under StopSignals a first Ctrl-C (or SIGTERM) is a request the driver's loop honours; a second one,
    or any while `immediate` is set, interrupts at once; the previous handlers come back afterwards."""
    from portfolio_sim.sweep.runner import StopSignals

    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        stop.immediate = False                    # as once the driver has a pool
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)                          # the handler runs in the main thread, between bytecodes
        assert stop.requested == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before
    with StopSignals() as stop, pytest.raises(KeyboardInterrupt):   # before the executor starts: at once
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_signal_ends_the_driver_and_its_pool_within_seconds(tmp_path: Path, sig: signal.Signals) -> None:
    """A run hangs in a 2-process pool; SIGTERM (or Ctrl-C) still ends the driver and both workers within
    seconds, with exit 130, stored runs kept."""
    db = tmp_path / "term.db"
    proc = h.driver(["sweep", str(TINY), "--db", str(db), "--workers", "2", "--write-batch", "1", "-q"],
                    **{h.HANG_VAR: "1"})
    try:
        h.wait_for(lambda: h.done_count(db) >= 2 and len(_descendants(proc.pid)) >= 2, timeout=60)
        workers = _descendants(proc.pid)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        gone = _all_gone(workers, timeout=5)
    finally:
        h.stop(proc)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert took < 10, took
    assert gone, [p.pid for p in workers if p.is_running()]
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert h.done_count(db) >= 2


# -- 4. pool workers exit when their driver dies -------------------------------------------------------

def test_pool_workers_exit_when_the_driver_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "orphans.db"
    proc = h.driver(["sweep", str(TINY), "--db", str(db), "--workers", "2", "-q"], **{h.HANG_VAR: "1"})
    workers: list[psutil.Process] = []
    try:
        h.wait_for(lambda: len(_descendants(proc.pid)) >= 2, timeout=60)
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)                   # the driver only, not its process group
        proc.wait(timeout=10)
        gone = _all_gone(workers, timeout=10)
        alive = [p.pid for p in workers if p.is_running()]
    finally:
        for p in workers + _descendants(proc.pid):     # orphans too, should the test fail
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        h.stop(proc)
    assert gone, alive


def test_hung_run_on_a_dask_worker_times_out_and_its_worker_is_restarted(tmp_path: Path, slow: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(h.DELAY_VAR, "0")
    spec = spec_with(tmp_path, "dask_hung", replicates=1)     # 4 runs; point 1 hangs
    db = tmp_path / "dask_hung.db"
    port = h.free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [h.start_scheduler(port), h.start_worker(address, 2, **{h.HANG_VAR: "1"})]
    try:
        report = run_sweep(spec, db=db, executor="dask", scheduler=address, options=SweepOptions(run_timeout=4))
    finally:
        h.stop(*procs)
    assert (report.done, report.failed, report.timed_out) == (3, 1, 1), report
    with Results(db) as res:
        failed = res.runs(status="failed")
    assert list(failed["point"]) == [1] and failed["error"].str.startswith("TimeoutError").all()


# -- 5. a database outage on SQLite: a lock held longer than the busy timeout ------------------------------

def test_a_sqlite_lock_longer_than_the_busy_timeout_is_survived(tmp_path: Path, slow: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    import portfolio_sim.sweep.store as store
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT", 0.3)
    spec = spec_with(tmp_path, "locked", replicates=2)       # 8 runs
    db = tmp_path / "locked.db"
    out: dict[str, object] = {}
    thread = threading.Thread(target=lambda: out.setdefault("report", run_sweep(
        spec, db=db, options=SweepOptions(batch=1, db_retry=30))))
    thread.start()
    h.wait_for(lambda: h.done_count(db) >= 2, timeout=60)
    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")                           # another program holds the database
    time.sleep(2.0)
    con.execute("ROLLBACK")
    con.close()
    thread.join(timeout=60)
    report = out["report"]
    assert report.done == 8 and report.failed == 0 and report.outages >= 1, report
    with Results(db) as res:
        runs = res.runs()
    assert len(runs) == 8 and runs["attempts"].eq(1).all()
