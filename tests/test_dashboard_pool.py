"""The dashboard's worker pool never outlives its server, even one killed with kill -9 (issue 13, item 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

SERVER = """
import os, sys, time
from portfolio_sim.dashboard.simulation import WorkerPool
pool = WorkerPool(1)
print(pool.submit(0, os.getpid).result(timeout=120), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_pool_workers_exit_when_the_server_is_killed():
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(server.stdout.readline())
        assert worker != server.pid and _alive(worker)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), f"pool worker {worker} outlived its killed server"
    finally:
        if server.poll() is None:
            server.kill()
