"""The results store on a real PostgreSQL server, started for this test session.

Debian's PostgreSQL server binaries (initdb, pg_ctl) run a throw-away cluster in a temporary directory,
bound to 127.0.0.1 on a free port with trust authentication, and are torn down afterwards. initdb refuses
to run as root, so as root the server runs as the `postgres` user. The tests are skipped, loudly, only
where no server binaries exist.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.exc import IntegrityError

from portfolio_sim.cli import main
from portfolio_sim.sweep.analysis import Results
from portfolio_sim.sweep.runner import run_sweep
from portfolio_sim.sweep.spec import load_spec, run_seed
from portfolio_sim.sweep.store import Store
from portfolio_sim.sweep.task import make_task, run_task

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.toml"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("NO POSTGRESQL SERVER BINARIES (initdb/pg_ctl not under /usr/lib/postgresql/*/bin or on PATH): "
                    "the PostgreSQL results-store tests did NOT run. Install Debian's `postgresql` package.")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, PostgreSQL binaries exist but there is no `postgres` user to run them")

    def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        return subprocess.run(full, capture_output=True, text=True, timeout=120, check=check)

    base = Path(tempfile.mkdtemp(prefix="portfolio_sim_pg_"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if as_root:
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    started = False
    try:
        r = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                "-E", "UTF8", check=False)
        if r.returncode != 0:
            pytest.fail(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sock} -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off")
        r = run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start",
                check=False)
        if r.returncode != 0:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{text}")
        started = True
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE sweeps")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/sweeps"
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("pgref") / "ref.db"
    assert run_sweep(TINY, db=db).done == 8
    return db


def _tables(db: str | Path, experiment: str) -> dict[str, pd.DataFrame]:
    with Results(db, experiment) as res:
        return {"yearly": res.yearly().drop(columns="run_id"), "schools": res.schools().drop(columns="run_id"),
                "events": res.events().drop(columns="run_id")}


def test_sweep_into_postgres_matches_sqlite(pg_url: str, sqlite_reference: Path) -> None:
    report = run_sweep(TINY, db=pg_url, executor="process", workers=2)
    assert (report.done, report.failed) == (8, 0)
    pg, ref = _tables(pg_url, "tiny"), _tables(sqlite_reference, "tiny")
    for name in pg:
        pd.testing.assert_frame_equal(pg[name], ref[name], check_exact=True, check_dtype=False, obj=name)
    again = run_sweep(TINY, db=pg_url)                      # resume: nothing left
    assert (again.planned, again.done_before) == (0, 8)
    with Results(pg_url) as res:
        info = res.info("tiny")
        assert info["fingerprint"] == load_spec(TINY).fingerprint()
        assert res.experiments().set_index("name").loc["tiny", "done"] == 8


def test_postgres_one_transaction_per_run_and_no_duplicates(pg_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "pg_dup.toml"
    spec.write_text(TINY.read_text(encoding="utf-8").replace('name = "tiny"', 'name = "pg_dup"'), encoding="utf-8")
    exp = load_spec(spec)
    with Store(pg_url) as store:
        reg = store.register(exp)
        p = exp.points[1]
        result = run_task(make_task(exp.name, 1, 0, run_seed(p.seed, 0), p.scenario, True, True))
        assert store.write_result(reg.id, reg.point_ids[1], p.params, result) == "done"
        assert store.write_result(reg.id, reg.point_ids[1], p.params, result) == "duplicate"
        # a result whose data rows cannot be written leaves no run row either (one transaction)
        bad = dict(result, replicate=1, yearly={**result["yearly"], "year": [0] * len(result["yearly"]["year"])})
        with pytest.raises(IntegrityError):
            store.write_result(reg.id, reg.point_ids[1], p.params, bad)
        assert store.counts(reg.id) == {"done": 1}
        failed = dict(result, replicate=1, status="failed", error="boom", yearly=None, schools=None, events=None)
        assert store.write_result(reg.id, reg.point_ids[1], p.params, failed) == "failed"
        assert store.write_result(reg.id, reg.point_ids[1], p.params, dict(result, replicate=1, seed=result["seed"])) == "done"
        assert store.counts(reg.id) == {"done": 2}


def test_results_cli_reads_postgres(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_sweep(TINY, db=pg_url)               # complete (a no-op if an earlier test ran it)
    out = tmp_path / "pg.parquet"
    assert main(["results", pg_url, "--experiment", "tiny", "--out", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 8 * 4
    assert main(["results", pg_url.replace("postgresql+psycopg://", "postgresql://")]) == 0
    assert "tiny" in capsys.readouterr().out


def test_unreachable_server_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    assert main(["sweep", str(TINY), "--db", f"postgresql://nobody@127.0.0.1:{port}/none", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --db postgresql+psycopg://nobody@127.0.0.1") and "cannot open the database" in err


def test_results_on_an_unreachable_server_says_it_cannot_connect(capsys: pytest.CaptureFixture[str]) -> None:
    """Not "not a portfolio_sim results database": nothing was read; the server did not answer."""
    port = _free_port()
    assert main(["results", f"postgresql://nobody@127.0.0.1:{port}/none"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the database" in err and "not a portfolio_sim" not in err, err
