"""Helpers for the real-process sweep tests (tests/test_sweep_resilience.py): a task function that is slow
or hangs on purpose (imported by module path in pool workers, Dask workers and driver subprocesses: they get
``tests/`` on PYTHONPATH), and starting Dask schedulers and workers as separate processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from portfolio_sim.sweep.task import run_task

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SRC = ROOT / "src"
DASK = Path(sys.executable).parent / "dask"

DELAY_VAR = "SWEEP_TEST_DELAY"          # seconds every run sleeps first
HANG_VAR = "SWEEP_TEST_HANG_POINT"      # runs of this point never finish


def slow_task(task: dict[str, Any]) -> dict[str, Any]:
    """`run_task`, after a pause; runs of the point named in SWEEP_TEST_HANG_POINT hang (a stuck run)."""
    if task["point"] == int(os.environ.get(HANG_VAR, "-1")):
        time.sleep(3600)
    time.sleep(float(os.environ.get(DELAY_VAR, "0")))
    return run_task(task)


def patch() -> None:
    """Make the sweep driver submit `slow_task` (for driver subprocesses started with `python -c`)."""
    import portfolio_sim.sweep.runner as runner
    runner.run_task = slow_task


DRIVER = "import sys, sweep_helpers; sweep_helpers.patch(); from portfolio_sim.cli import main; sys.exit(main(sys.argv[1:]))"


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "PORTFOLIO_SIM_DEBUG"}
    out["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS)])
    out.update(extra)
    return out


def driver(args: list[str], **extra: str) -> subprocess.Popen[str]:
    """`portfolio-sim ARGS` in a new process (its own session) submitting `slow_task`."""
    return subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_scheduler(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                             "--no-show"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the Dask scheduler did not start")


def start_worker(address: str, nthreads: int = 1, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(DASK), "worker", address, "--nthreads", str(nthreads), "--no-dashboard",
                             "--nworkers", "1"], env=env(**extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(*procs: subprocess.Popen[Any] | None) -> None:
    import signal
    for proc in procs:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def done_count(db: Path) -> int:
    import sqlite3
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def wait_for(predicate: Any, timeout: float = 60.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("timed out waiting")
