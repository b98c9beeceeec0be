"""The sweep driver against a real PostgreSQL server that restarts, stays down, or is shared by two
drivers (started for this module as in tests/test_sweep_postgres.py, with a handle to stop and start it)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sweep_helpers as h
from portfolio_sim.sweep.analysis import Results
from portfolio_sim.sweep.runner import SweepOptions, run_sweep
from test_sweep_postgres import _free_port, _pg_bin

TINY = h.ROOT / "experiments" / "tiny.toml"


class PgServer:
    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            pytest.skip("NO POSTGRESQL SERVER BINARIES: the PostgreSQL resilience tests did NOT run")
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="portfolio_sim_pgr_"))
        self.data, self.sock, self.log = self.base / "data", self.base / "sock", self.base / "server.log"
        self.sock.mkdir()
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.port = _free_port()
        r = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        assert r.returncode == 0, r.stderr

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        # Durable commits (the defaults): the tests crash the server, and a commit the driver counted must
        # survive it (synchronous_commit=off would lose the last ones: not the store's guarantee to test).
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.sock}"
        r = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")
        assert r.returncode == 0, r.stdout + r.stderr

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def done_count(self, name: str) -> int:
        import psycopg
        try:
            with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={name}",
                                 connect_timeout=2) as conn:
                return conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
        except psycopg.Error:
            return 0


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.stop("fast")
        shutil.rmtree(server.base, ignore_errors=True)


def spec_with(tmp: Path, name: str, replicates: int) -> Path:
    text = TINY.read_text(encoding="utf-8").replace('name = "tiny"', f'name = "{name}"')
    path = tmp / f"{name}.toml"
    path.write_text(text.replace("replicates = 2", f"replicates = {replicates}").replace("years = 3", "years = 2"),
                    encoding="utf-8")
    return path


def check_once(url: str, n: int) -> None:
    with Results(url) as res:
        runs = res.runs()
        assert len(runs) == n and set(runs["status"]) == {"done"} and runs["attempts"].eq(1).all()
        assert len(res.yearly()) == n * 3                    # every run whole: years 0..2


# -- 5. database outages ------------------------------------------------------------------------------

def test_a_brief_postgres_restart_is_survived(pg: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import portfolio_sim.sweep.runner as runner
    monkeypatch.setattr(runner, "run_task", h.slow_task)
    monkeypatch.setenv(h.DELAY_VAR, "0.2")
    url = pg.create_db("restart")
    spec = spec_with(tmp_path, "restart", replicates=3)      # 12 runs
    out: dict[str, object] = {}

    def drive() -> None:
        try:
            out["report"] = run_sweep(spec, db=url, options=SweepOptions(batch=1, db_retry=60))
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc

    thread = threading.Thread(target=drive)
    thread.start()
    h.wait_for(lambda: pg.done_count("restart") >= 3, timeout=60)
    pg.stop("immediate")                                     # a crash-restart of the server
    time.sleep(0.5)
    pg.start()
    thread.join(timeout=90)
    assert not thread.is_alive() and "error" not in out, out.get("error")
    report = out["report"]
    assert report.done == 12 and report.failed == 0 and report.outages >= 1, report
    assert any("accepted writes again" in w for w in report.warnings), report.warnings
    check_once(url, 12)


def test_a_database_that_stays_down_stops_the_sweep_with_exit_3(pg: PgServer, tmp_path: Path) -> None:
    url = pg.create_db("down")
    spec = spec_with(tmp_path, "down", replicates=4)         # 16 runs
    proc = h.driver(["sweep", str(spec), "--db", url, "--db-retry", "2", "--write-batch", "1", "-q"],
                    **{h.DELAY_VAR: "0.2"})
    try:
        h.wait_for(lambda: pg.done_count("down") >= 2, timeout=60)
        pg.stop("immediate")
        _, stderr = proc.communicate(timeout=60)
    finally:
        h.stop(proc)
        pg.start()
    assert proc.returncode == 3, (proc.returncode, stderr)
    assert "the sweep could not continue" in stderr and "stayed unavailable" in stderr and "Traceback" not in stderr
    assert "to continue: portfolio-sim sweep" in stderr
    before = pg.done_count("down")
    assert 2 <= before < 16
    report = run_sweep(spec, db=url)                          # rerun: the rest, once each
    assert report.done == 16 - before and report.failed == 0
    check_once(url, 16)


# -- 6. two drivers on a new database ----------------------------------------------------------------------

def test_two_drivers_on_a_new_database_share_the_work(pg: PgServer, tmp_path: Path) -> None:
    """Two drivers started together on an empty database: the schema is created once (advisory lock), each
    run is claimed by one of them (leases) and computed once; each reports what it skipped."""
    url = pg.create_db("shared")
    spec = spec_with(tmp_path, "shared", replicates=4)       # 16 runs
    args = ["sweep", str(spec), "--db", url, "--write-batch", "1", "-q"]
    procs = [h.driver(args, **{h.DELAY_VAR: "0.3"}) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    check_once(url, 16)
    with Results(url) as res:
        sessions = res.sessions()
    assert len(sessions) == 2 and sessions["stored_done"].sum() == 16, sessions
    assert (sessions["stored_done"] > 0).all()               # both did work
    assert sessions["skipped"].sum() >= 1
    assert any("planned runs were skipped: another sweep driver" in err for _, err in outs)
    assert "complete." in outs[0][0] + outs[1][0]
