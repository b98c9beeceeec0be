"""Running sweeps into SQLite: what is stored, identical values across executors, resume after kill -9,
failed runs and --retry-failed, spec changes, and the results export."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from portfolio_sim.cli import main
from portfolio_sim.kernel import run_many, single_run
from portfolio_sim.metrics import METRIC_COLUMNS
from portfolio_sim.scenario import Scenario, loads_scenario
from portfolio_sim.sweep.analysis import Results
from portfolio_sim.sweep.runner import run_sweep
from portfolio_sim.sweep.spec import load_spec, run_seed
from portfolio_sim.sweep.store import EVENT_COLUMNS, INT_METRICS, PANEL_COLUMNS, Store, StoreError, normalize_url
from portfolio_sim.sweep.task import make_task, run_task
from sweep_helpers import done_count

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TINY = ROOT / "experiments" / "tiny.toml"


def copy_spec(tmp: Path, name: str = "tiny.toml", replace: dict[str, str] | None = None) -> Path:
    text = TINY.read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def stored(db: Path | str) -> dict[str, pd.DataFrame]:
    """Every stored table that should not depend on how the sweep ran (run ids, timings, workers aside)."""
    with Results(db) as res:
        return {"yearly": res.yearly().drop(columns="run_id"),
                "schools": res.schools().drop(columns="run_id"),
                "events": res.events().drop(columns="run_id"),
                "runs": res.runs()[["point", "replicate", "seed", "status"]]}


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in a:
        pd.testing.assert_frame_equal(a[name].reset_index(drop=True), b[name].reset_index(drop=True),
                                      check_exact=True, obj=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny experiment run serially, uninterrupted: (spec, db)."""
    tmp = tmp_path_factory.mktemp("ref")
    spec = copy_spec(tmp)
    db = tmp / "ref.db"
    report = run_sweep(spec, db=db)
    assert (report.done, report.failed, report.planned) == (8, 0, 8)
    return spec, db


# -- what is stored ---------------------------------------------------------------------------------

def test_store_holds_runs_points_provenance_and_outputs(reference: tuple[Path, Path]) -> None:
    spec, db = reference
    exp = load_spec(spec)
    with Results(db) as res:
        info = res.info()
        assert info["spec_text"] == spec.read_text(encoding="utf-8")
        assert info["fingerprint"] == exp.fingerprint() and info["design"] == "grid"
        assert info["package_version"] and info["root_seed"] == 7 and info["replicates"] == 2
        assert "git_commit" in info          # the commit when run from a git checkout, else None
        runs = res.runs()
        assert len(runs) == 8 and set(runs["status"]) == {"done"}
        assert not runs.duplicated(["point", "replicate"]).any()
        assert (runs["duration_s"] > 0).all() and runs["worker"].str.len().gt(0).all()
        # seeds: from the root seed, the point and the replicate
        for _, r in runs.iterrows():
            assert r["seed"] == run_seed(exp.points[r["point"]].seed, r["replicate"])
        yearly = res.yearly()
        assert len(yearly) == 8 * 4                                   # years 0..3
        assert list(yearly.columns[:6]) == ["run_id", "point", "replicate", "seed",
                                            "accountability.closure_percentile", "governance.category"]
        assert [c for c in METRIC_COLUMNS if c not in yearly.columns] == []
        assert len(res.schools()) > 8 * 4 * 10 and len(res.events()) > 0
        pts = res.points()
        assert len(pts) == 4 and Scenario.model_validate(res.scenario(3).model_dump()).governance.category == "partner_run"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sessions = con.execute("SELECT planned, stored_done, stored_failed, finished_at FROM sessions").fetchall()
        assert sessions == [(8, 8, 0, sessions[0][3])] and sessions[0][3] is not None
    finally:
        con.close()


def test_stored_values_are_single_run_values(reference: tuple[Path, Path]) -> None:
    spec, db = reference
    exp = load_spec(spec)
    with Results(db) as res:
        yearly = res.yearly()
    for point, rep in [(0, 0), (3, 1)]:
        p = exp.points[point]
        direct = single_run(Scenario.model_validate(p.scenario), run_seed(p.seed, rep)).yearly
        got = yearly[(yearly["point"] == point) & (yearly["replicate"] == rep)][list(direct.columns)]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), direct.reset_index(drop=True), check_exact=True,
                                      check_dtype=False)


def test_run_task_is_pure_plain_data() -> None:
    exp = load_spec(TINY)
    p = exp.points[1]
    task = make_task(exp.name, p.index, 0, run_seed(p.seed, 0), p.scenario, keep_schools=True, keep_events=True)
    a, b = run_task(task), run_task(dict(task))
    assert a["status"] == "done" and a["error"] is None
    assert a["yearly"] == b["yearly"] and a["schools"] == b["schools"] and a["events"] == b["events"]
    for table in ("yearly", "schools", "events"):
        for values in a[table].values():
            assert all(v is None or type(v) in (int, float, str, bool) for v in values)


def test_schema_matches_the_model_outputs() -> None:
    """The store's column lists and types follow metrics.py (a drift here would lose or mistype data)."""
    r = single_run(Scenario.model_validate({"district": {"students": 2000, "schools": 12}, "run": {"years": 1}}), 1)
    ints = {c for c in r.yearly.columns if pd.api.types.is_integer_dtype(r.yearly[c])} - {"year"}
    assert ints == set(INT_METRICS)
    assert [c for c in r.schools.columns if c not in ("year", "school_id")] == list(PANEL_COLUMNS)
    assert tuple(r.events.columns) == EVENT_COLUMNS


# -- identical values across executors ----------------------------------------------------------------

@pytest.mark.parametrize("executor,workers,processes", [("process", 2, True), ("dask", 2, False),
                                                        ("dask", 2, True)],
                         ids=["process-2", "dask-localcluster-threads", "dask-localcluster-processes"])
def test_identical_values_across_executors(reference: tuple[Path, Path], tmp_path: Path, executor: str,
                                           workers: int, processes: bool) -> None:
    spec, ref_db = reference
    db = tmp_path / f"{executor}.db"
    report = run_sweep(spec, db=db, executor=executor, workers=workers, processes=processes)
    assert (report.done, report.failed) == (8, 0), report
    with Results(db) as res:
        assert res.runs()["worker"].nunique() >= 1
    assert_same(stored(db), stored(ref_db))


def test_dask_scheduler_address(reference: tuple[Path, Path], tmp_path: Path) -> None:
    """--scheduler ADDRESS: the driver connects to a running Dask cluster (here an in-process one)."""
    from distributed import LocalCluster

    spec, ref_db = reference
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        db = tmp_path / "remote.db"
        report = run_sweep(spec, db=db, executor="dask", scheduler=cluster.scheduler_address)
        assert report.done == 8 and report.executor.startswith(f"dask {cluster.scheduler_address}")
    with Results(db) as res:
        assert res.runs()["worker"].str.startswith("dask:").all()
    assert_same(stored(db), stored(ref_db))


def test_unreachable_scheduler_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import portfolio_sim.sweep.executors as executors
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "2s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["sweep", str(TINY), "--db", str(tmp_path / "s.db"), "--scheduler", f"tcp://127.0.0.1:{port}", "-q"])
    assert code == 2
    assert f"--scheduler tcp://127.0.0.1:{port}: cannot connect" in capsys.readouterr().err


# -- resume ---------------------------------------------------------------------------------------------

def test_resume_skips_completed_runs(reference: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec, ref_db = reference
    db = tmp_path / "resume.db"
    assert main(["sweep", str(spec), "--db", str(db), "--limit", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "3 done, 0 failed" in out and "5 runs not done yet" in out
    assert main(["sweep", str(spec), "--db", str(db), "-q"]) == 0
    assert "5 done, 0 failed" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--db", str(db), "-q"]) == 0
    assert "nothing to run; 8/8" in capsys.readouterr().out
    assert_same(stored(db), stored(ref_db))


def _sweep_subprocess(spec: Path, db: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PORTFOLIO_SIM_DEBUG"}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.Popen([sys.executable, "-m", "portfolio_sim.cli", "sweep", str(spec), "--db", str(db), "-q", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _done_count(db: Path) -> int:
    return done_count(db)


def _kill_when(proc: subprocess.Popen[bytes], db: Path, at_least: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _done_count(db)
        if n >= at_least or proc.poll() is not None:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)          # the driver and any worker processes it started
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read() if proc.stderr else b"")
    return _done_count(db)


def _check_integrity(db: Path, years: int) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dup = con.execute("SELECT count(*) FROM (SELECT point_index, replicate FROM runs "
                          "GROUP BY experiment_id, point_index, replicate HAVING count(*) > 1)").fetchone()[0]
        assert dup == 0
        # no half-written run: every done run has all its yearly rows and its panel; no orphan data rows
        bad = con.execute("SELECT r.id, count(y.year) FROM runs r LEFT JOIN yearly y ON y.run_id = r.id "
                          "WHERE r.status = 'done' GROUP BY r.id HAVING count(y.year) != ?", (years + 1,)).fetchall()
        assert bad == []
        assert con.execute("SELECT count(*) FROM runs r WHERE r.status = 'done' AND NOT EXISTS "
                           "(SELECT 1 FROM school_panel s WHERE s.run_id = r.id)").fetchone()[0] == 0
        for table in ("yearly", "school_panel", "events"):
            orphans = con.execute(f"SELECT count(*) FROM {table} t WHERE NOT EXISTS "
                                  f"(SELECT 1 FROM runs r WHERE r.id = t.run_id AND r.status = 'done')").fetchone()[0]
            assert orphans == 0, table
    finally:
        con.close()


def test_kill_9_mid_sweep_then_resume(tmp_path: Path) -> None:
    """kill -9 a real `portfolio-sim sweep` twice (serial, then a 2-process pool) while it is writing; the
    database keeps every committed run, whole and once; rerunning completes the set with the values of an
    uninterrupted run."""
    spec = copy_spec(tmp_path, replace={"replicates = 2": "replicates = 8"})   # 32 runs
    db = tmp_path / "killed.db"
    # two runs per write transaction (the default batches up to 32, nearly all of this tiny sweep at once)
    n1 = _kill_when(_sweep_subprocess(spec, db, "--write-batch", "2"), db, at_least=3)
    assert 3 <= n1 < 32, f"the sweep should have been killed part-way (stored {n1} of 32)"
    _check_integrity(db, years=3)
    n2 = _kill_when(_sweep_subprocess(spec, db, "--workers", "2", "--write-batch", "3"), db, at_least=n1 + 4)
    assert n1 <= n2 < 32, (n1, n2)
    _check_integrity(db, years=3)

    assert main(["sweep", str(spec), "--db", str(db), "-q"]) == 0
    _check_integrity(db, years=3)
    with Results(db) as res:
        runs = res.runs()
    assert len(runs) == 32 and set(runs["status"]) == {"done"} and runs["attempts"].eq(1).all()

    clean = tmp_path / "clean.db"
    assert run_sweep(spec, db=clean).done == 32
    assert_same(stored(db), stored(clean))


# -- failures --------------------------------------------------------------------------------------------

def test_failed_runs_are_recorded_and_retried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "schools.csv"
    shutil.copy(ROOT / "examples" / "district_example" / "schools.csv", good)
    spec = tmp_path / "csv.toml"
    spec.write_text("""
name = "csv_failures"
years = 2
replicates = 2
seed = 3
[factors]
"district.schools_csv" = ["schools.csv", "later.csv"]
""", encoding="utf-8")
    db = tmp_path / "fail.db"
    assert main(["sweep", str(spec), "--db", str(db), "-q"]) == 1
    captured = capsys.readouterr()
    assert "2 done, 2 failed" in captured.out
    assert "error: 2 runs failed" in captured.err and "later.csv" in captured.err and "--retry-failed" in captured.err
    with Results(db) as res:
        runs = res.runs()
        failed = runs[runs["status"] == "failed"]
        assert len(failed) == 2 and set(failed["point"]) == {1}
        assert failed["error"].str.contains("later.csv").all() and failed["error"].str.contains("not found").all()
        assert set(res.yearly()["point"]) == {0}             # failed runs have no data rows

    # without --retry-failed, failed runs stay failed: still exit 1, and the message gives the command
    assert main(["sweep", str(spec), "--db", str(db), "-q"]) == 1
    captured = capsys.readouterr()
    assert "nothing to run; 2/4" in captured.out and "not done yet" not in captured.out
    assert "2 runs are stored as failed; a plain rerun does not run them" in captured.err
    assert f"sweep {spec} --db {db} --retry-failed`" in captured.err

    shutil.copy(good, tmp_path / "later.csv")                # fix the cause, then retry
    assert main(["sweep", str(spec), "--db", str(db), "--retry-failed", "-q"]) == 0
    assert "2 done, 0 failed" in capsys.readouterr().out
    with Results(db) as res:
        runs = res.runs()
        assert set(runs["status"]) == {"done"} and len(runs) == 4
        assert runs.set_index("point")["attempts"].to_dict() == {0: 1, 1: 2}
        assert runs["error"].isna().all()
        assert len(res.yearly()) == 4 * 3


def test_duplicate_result_is_not_written_twice(reference: tuple[Path, Path], tmp_path: Path) -> None:
    spec, _ = reference
    exp = load_spec(spec)
    with Store(str(tmp_path / "dup.db")) as store:
        reg = store.register(exp)
        p = exp.points[0]
        result = run_task(make_task(exp.name, 0, 0, run_seed(p.seed, 0), p.scenario, True, True))
        assert store.write_result(reg.id, reg.point_ids[0], p.params, result) == "done"
        assert store.write_result(reg.id, reg.point_ids[0], p.params, result) == "duplicate"
        assert store.counts(reg.id) == {"done": 1}


# -- the experiment identity -------------------------------------------------------------------------------

def test_changed_spec_under_the_same_name_is_refused(reference: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, ref_db = reference
    db = tmp_path / "ident.db"
    shutil.copy(ref_db, db)
    changed = copy_spec(tmp_path, "changed.toml", {'"district.students" = 2000': '"district.students" = 2100'})
    assert main(["sweep", str(changed), "--db", str(db), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: experiment 'tiny'") and "different spec" in err and "Traceback" not in err
    years = copy_spec(tmp_path, "years.toml", {"years = 3": "years = 4"})
    assert main(["sweep", str(years), "--db", str(db), "-q"]) == 2
    assert "years 3 -> 4" in capsys.readouterr().err
    fewer = copy_spec(tmp_path, "fewer.toml", {"replicates = 2": "replicates = 1"})
    assert main(["sweep", str(fewer), "--db", str(db), "-q"]) == 2
    assert "can only grow" in capsys.readouterr().err


def test_replicates_can_grow(reference: tuple[Path, Path], tmp_path: Path) -> None:
    _, ref_db = reference
    db = tmp_path / "grow.db"
    shutil.copy(ref_db, db)
    before = stored(db)
    more = copy_spec(tmp_path, "more.toml", {"replicates = 2": "replicates = 3"})
    report = run_sweep(more, db=db)
    assert (report.done_before, report.done) == (8, 4)
    after = stored(db)
    kept = after["yearly"][after["yearly"]["replicate"] < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before["yearly"].reset_index(drop=True), check_exact=True)
    with Results(db) as res:
        assert res.info()["replicates"] == 3 and res.scenario(0).run.seeds == 3


# -- export ----------------------------------------------------------------------------------------------

def test_results_export_csv_and_parquet(reference: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _, db = reference
    with Results(db) as res:
        yearly = res.yearly()
        n_schools = len(res.schools())
    pq, csv = tmp_path / "out" / "tiny.parquet", tmp_path / "tiny.csv"
    assert main(["results", str(db), "--out", str(pq)]) == 0
    assert main(["results", str(db), "--experiment", "tiny", "--out", str(csv)]) == 0
    assert "wrote 32 rows of yearly" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(pq), yearly, check_exact=True, check_dtype=False)
    back = pd.read_csv(csv)
    assert list(back.columns) == list(yearly.columns)
    pd.testing.assert_frame_equal(back, yearly, check_exact=True, check_dtype=False)
    for table, n in (("runs", 8), ("points", 4), ("schools", n_schools), ("sessions", 1)):
        out = tmp_path / f"{table}.csv"
        assert main(["results", str(db), "--table", table, "--out", str(out)]) == 0
        assert len(pd.read_csv(out)) == n
    events = tmp_path / "events.parquet"
    assert main(["results", str(db), "--table", "events", "--out", str(events)]) == 0
    assert {"event", "cause", "accountability.closure_percentile"} <= set(pd.read_parquet(events).columns)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "200")        # piped output is COLUMNS wide: an 80-column parent would truncate names
        assert main(["results", str(db)]) == 0
    summary = capsys.readouterr().out
    assert "tiny" in summary and "grid" in summary


def test_results_out_follows_the_output_rules(reference: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`results --out` goes through portfolio_sim.outdir like every other output: no system folder, root or
    package source, no folder or device in the way, a symlink replaced (its target untouched), a name too
    long refused clearly; an existing export is replaced whole (temp file + rename)."""
    import portfolio_sim

    _, db = reference
    src = Path(portfolio_sim.__file__).resolve().parent
    (tmp_path / "dir.csv").mkdir()
    os.mkfifo(tmp_path / "fifo.csv")
    for bad, says in (("/etc/x.csv", "system folder /etc"), ("/x.parquet", "file-system root"),
                      (str(src / "x.csv"), "source folder"), (str(tmp_path / "dir.csv"), "is a folder"),
                      (str(tmp_path / "fifo.csv"), "not a regular file"), (str(tmp_path / ("n" * 300 + ".csv")), "at most 255")):
        assert main(["results", str(db), "--out", bad]) == 2, bad
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (bad, err)
        assert main(["results", str(db), "--scenario", "0", "--out", bad]) == 2, bad
        assert says in capsys.readouterr().err
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(victim)
    assert main(["results", str(db), "--out", str(link)]) == 0
    assert victim.read_text(encoding="utf-8") == "keep me" and not link.is_symlink()
    assert main(["results", str(db), "--out", str(link)]) == 0          # an earlier export: replaced
    assert "replacing" in capsys.readouterr().err and len(pd.read_csv(link)) == 32
    scen = tmp_path / "deep" / "p0.toml"
    assert main(["results", str(db), "--scenario", "0", "--out", str(scen)]) == 0
    assert "[run]" in scen.read_text(encoding="utf-8")
    assert not [p.name for p in tmp_path.rglob(".*.tmp")]                # no temporary file left


def test_point_scenario_repeats_the_points_runs(reference: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`results DB --scenario N` prints TOML that `portfolio-sim run` accepts and that repeats the point's
    replicates exactly (run.seed is the point's seed, run.seeds the replicates)."""
    _, db = reference
    assert main(["results", str(db), "--scenario", "2"]) == 0
    scenario = loads_scenario(capsys.readouterr().out)
    runs = run_many(scenario)
    with Results(db) as res:
        yearly = res.yearly()
    for r, result in enumerate(runs):
        got = yearly[(yearly["point"] == 2) & (yearly["replicate"] == r)][list(result.yearly.columns)]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), result.yearly, check_exact=True, check_dtype=False)


def test_results_errors_exit_2(reference: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, db = reference
    assert main(["results", str(tmp_path / "missing.db")]) == 2
    assert "no such results database" in capsys.readouterr().err
    assert main(["results", str(db), "--out", str(tmp_path / "x.xlsx")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err
    assert main(["results", str(db), "--experiment", "nope"]) == 2
    assert "no experiment 'nope'; experiments: tiny" in capsys.readouterr().err
    assert main(["results", str(db), "--scenario", "99"]) == 2
    assert "no point 99" in capsys.readouterr().err
    not_db = tmp_path / "not.db"
    not_db.write_text("hello", encoding="utf-8")
    assert main(["results", str(not_db)]) == 2
    assert main(["sweep", str(TINY), "--db", "mysql+nodriver://x/y", "-q"]) == 2
    assert "error: " in capsys.readouterr().err


def test_two_experiments_in_one_database(reference: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, ref_db = reference
    db = tmp_path / "two.db"
    shutil.copy(ref_db, db)
    other = copy_spec(tmp_path, "other.toml", {'name = "tiny"': 'name = "tiny_other"', "replicates = 2": "replicates = 1"})
    assert run_sweep(other, db=db, limit=2).done == 2
    with Results(db) as res:
        table = res.experiments().set_index("name")
        assert table.loc["tiny", "done"] == 8 and table.loc["tiny_other", "pending"] == 2
        with pytest.raises(StoreError, match="holds 2 experiments"):
            res.yearly()
        assert len(res.yearly("tiny_other")) == 2 * 4
    assert main(["results", str(db), "--out", str(tmp_path / "x.csv")]) == 2
    assert "name one (--experiment NAME)" in capsys.readouterr().err


def test_db_url_forms(tmp_path: Path) -> None:
    assert normalize_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


# -- the driver's handling of broken results and broken pools (serial / fake executors, in-process) ---------

def test_result_that_cannot_be_stored_is_recorded_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import portfolio_sim.sweep.runner as runner

    def clashing(task):  # noqa: ANN001, ANN202 - every yearly row claims year 0: the store's key rejects it
        out = run_task(task)
        if task["point"] == 1 and out["yearly"]:
            out["yearly"]["year"] = [0] * len(out["yearly"]["year"])
        return out

    monkeypatch.setattr(runner, "run_task", clashing)
    report = run_sweep(TINY, db=tmp_path / "clash.db")
    assert (report.done, report.failed) == (6, 2)
    with Results(tmp_path / "clash.db") as res:
        failed = res.runs(status="failed")
        assert set(failed["point"]) == {1} and failed["error"].str.contains("could not be stored").all()
        assert set(res.yearly()["point"]) == {0, 2, 3}


class FakePool:
    """A stand-in process pool: runs tasks in-process, but the pool 'breaks' on chosen submissions."""

    def __init__(self, break_on: set[int], never_works: bool = False):
        from concurrent.futures.process import BrokenProcessPool
        self.broken_type = BrokenProcessPool
        self.recoverable_errors = (BrokenProcessPool,)
        self.break_on, self.never_works = break_on, never_works
        self.window, self.workers, self.description, self.kind = 3, 1, "fake pool", "process"
        self.submitted = 0
        self.restarts = 0

    def submit(self, fn, task):  # noqa: ANN001, ANN201
        import concurrent.futures as cf
        self.submitted += 1
        future: cf.Future = cf.Future()
        if self.never_works or self.submitted in self.break_on:
            future.set_exception(self.broken_type("a child process terminated abruptly"))
        else:
            future.set_result(fn(task))
        return future

    def restart(self) -> None:
        self.restarts += 1

    def close(self, wait: bool = True) -> None:
        pass

    def kill(self) -> None:
        pass

    def current_threads(self) -> int:
        return self.workers

    def alive(self) -> bool:
        return True

    def cancel_hung(self, future) -> None:  # noqa: ANN001
        pass

    def start_times(self, futures) -> dict:  # noqa: ANN001 - its runs finish at submission
        return {}


def test_a_dying_worker_fails_the_runs_in_flight_and_the_pool_restarts(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import portfolio_sim.sweep.runner as runner

    pool = FakePool(break_on={5})
    monkeypatch.setattr(runner, "open_executor", lambda *a, **k: pool)
    report = run_sweep(TINY, db=tmp_path / "died.db")
    assert pool.restarts == 1 and report.warnings and "pool restarted" in report.warnings[0]
    assert report.done + report.failed == 8 and report.failed >= 1
    with Results(tmp_path / "died.db") as res:
        assert res.runs(status="failed")["error"].str.contains("worker process died").all()
    # --retry-failed runs them again
    monkeypatch.setattr(runner, "open_executor", lambda *a, **k: FakePool(break_on=set()))
    again = run_sweep(TINY, db=tmp_path / "died.db", retry_failed=True)
    assert (again.done, again.failed) == (report.failed, 0)


def test_a_pool_that_never_works_aborts_without_failing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import portfolio_sim.sweep.runner as runner

    monkeypatch.setattr(runner, "open_executor", lambda *a, **k: FakePool(set(), never_works=True))
    with pytest.raises(runner.SweepAborted, match="before returning any result"):
        run_sweep(TINY, db=tmp_path / "never.db")
    with Results(tmp_path / "never.db") as res:
        assert res.runs().empty
