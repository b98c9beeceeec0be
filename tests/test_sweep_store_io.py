"""Reading a results store: chunked reads and streamed exports (bounded memory), reads that never change
the file, and damaged or foreign databases refused with exit 2 (issue 15 items 7 and 11)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from portfolio_sim.cli import main
from portfolio_sim.sweep.analysis import Results
from portfolio_sim.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.toml"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("io") / "tiny.db"
    assert run_sweep(TINY, db=path).done == 8
    return path


def copy_db(db: Path, tmp: Path, name: str = "copy.db") -> Path:
    """A self-contained copy (checkpointed, rollback journal: no -wal file needed)."""
    out = tmp / name
    src = sqlite3.connect(db)
    dst = sqlite3.connect(out)
    src.backup(dst)
    src.close()
    dst.execute("PRAGMA journal_mode=DELETE")
    dst.close()
    return out


# -- 8. chunked reads and streamed exports -------------------------------------------------------------

def test_iter_table_chunks_add_up_to_the_table(db: Path) -> None:
    with Results(db) as res:
        whole = res.schools()
        chunks = list(res.iter_table("schools", chunk_rows=7))
        assert len(chunks) == -(-len(whole) // 7) and max(len(c) for c in chunks) == 7
        pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole, check_exact=True)
        # by filter: a factor value, years, columns
        sub = pd.concat(res.iter_table("schools", chunk_rows=5, years=[2, 3], columns=["enrollment"],
                                       where={"governance.category": "partner_run"}), ignore_index=True)
        expect = whole[whole["year"].isin([2, 3]) & (whole["governance.category"] == "partner_run")]
        assert list(sub.columns) == ["run_id", "point", "replicate", "seed", "accountability.closure_percentile",
                                     "governance.category", "year", "school_id", "enrollment"]
        pd.testing.assert_frame_equal(sub, expect[list(sub.columns)].reset_index(drop=True), check_exact=True)
        yearly = res.yearly(where={"accountability.closure_percentile": [20]}, metrics=["mean_achievement"])
        assert set(yearly["accountability.closure_percentile"]) == {20} and len(yearly) == 4 * 4
        with pytest.raises(Exception, match="not a factor"):
            res.yearly(where={"district.students": 1})


def test_export_streams_in_chunks_to_parquet_and_csv(db: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import portfolio_sim.sweep.commands as commands
    monkeypatch.setattr(commands, "EXPORT_CHUNK_ROWS", 10)
    monkeypatch.setattr(commands, "PARQUET_ROW_GROUP", 50)
    with Results(db) as res:
        schools, events = res.schools(), res.events()
    read: list[int] = []
    real = Results.iter_table

    def counting(self, *a, **k):  # noqa: ANN001, ANN202
        for df in real(self, *a, **k):
            read.append(len(df))
            yield df

    monkeypatch.setattr(Results, "iter_table", counting)
    out = tmp_path / "schools.parquet"
    assert main(["results", str(db), "--table", "schools", "--out", str(out)]) == 0
    assert max(read) == 10 and sum(read) == len(schools)                       # read a chunk at a time
    assert pq.ParquetFile(out).num_row_groups == -(-len(schools) // 50)      # written in row groups of 50
    pd.testing.assert_frame_equal(pd.read_parquet(out), schools, check_exact=True, check_dtype=False)
    gz = tmp_path / "events.csv.gz"
    assert main(["results", str(db), "--table", "events", "--out", str(gz)]) == 0
    back = pd.read_csv(gz, keep_default_na=False, na_values=[""])
    assert len(back) == len(events) and list(back.columns) == list(events.columns)
    assert not list(tmp_path.glob(".*.tmp"))


# -- issue 15, items 7 and 11 ----------------------------------------------------------------------------

def test_bad_database_urls_and_paths_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "://"]) == 2
    assert "error: --db '://': not a database URL" in capsys.readouterr().err
    assert main(["sweep", str(TINY), "--db", "/dev/null", "-q"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert not Path("/dev/null-journal").exists()
    assert main(["sweep", str(TINY), "--db", str(tmp_path), "-q"]) == 2       # a directory
    assert "not a regular file" in capsys.readouterr().err


def test_a_foreign_experiments_table_is_refused_and_left_alone(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, title TEXT)")
    con.execute("INSERT INTO experiments (title) VALUES ('lab notebook')")
    con.commit()
    con.close()
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    assert main(["sweep", str(TINY), "--db", str(other), "-q"]) == 2
    err = capsys.readouterr().err
    assert "not a portfolio_sim results database" in err and "experiments" in err and "Traceback" not in err
    assert main(["results", str(other)]) == 2
    assert "not a" in capsys.readouterr().err
    assert err.count("not a portfolio_sim results database") == 1         # said once, not wrapped twice
    con = sqlite3.connect(other)
    assert con.execute("SELECT title FROM experiments").fetchall() == [("lab notebook",)]
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["experiments"]   # nothing created
    con.close()
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("damage", ["bad_json", "missing_table", "missing_runs"])
def test_a_damaged_results_database_exits_2(db: Path, tmp_path: Path, damage: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = copy_db(db, tmp_path)
    con = sqlite3.connect(bad)
    if damage == "bad_json":
        con.execute("UPDATE points SET params = '{not json'")
        con.execute("UPDATE experiments SET factors = '[{'")
    elif damage == "missing_table":
        con.execute("DROP TABLE school_panel")
    else:
        con.execute("DROP TABLE yearly")
        con.execute("DROP TABLE runs")
    con.commit()
    con.close()
    summary = ["results", str(bad)]
    yearly = ["results", str(bad), "--out", str(tmp_path / "x.parquet")]
    schools = ["results", str(bad), "--table", "schools", "--out", str(tmp_path / "s.csv")]
    must_fail = {"bad_json": [yearly, schools], "missing_table": [schools],
                 "missing_runs": [summary, yearly, schools]}[damage]
    for args in (summary, yearly, schools):
        code = main(args)
        err = capsys.readouterr().err
        assert code == (2 if args in must_fail else 0), (args, code, err)
        if code == 2:
            assert err.startswith("error: ") and "Traceback" not in err, err


@pytest.mark.parametrize("version, says", [("999", "written by a newer portfolio_sim"), ("x", "is not a number")])
def test_a_store_of_a_newer_schema_is_refused_by_results(db: Path, tmp_path: Path, version: str, says: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A newer version's layout may not read as this one expects: `results` says so (exit 2) rather than
    reading it (the writer, `sweep`, already refused it)."""
    newer = copy_db(db, tmp_path)
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    assert con.total_changes == 1
    con.commit()
    con.close()
    assert main(["results", str(newer)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


def test_reading_never_changes_the_database(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = copy_db(db, tmp_path, "readonly.db")
    digest = hashlib.sha256(ro.read_bytes()).hexdigest()
    mtime = ro.stat().st_mtime_ns
    assert main(["results", str(ro)]) == 0
    assert main(["results", str(ro), "--table", "schools", "--out", str(tmp_path / "s.parquet")]) == 0
    with Results(ro) as res:
        assert len(res.yearly()) == 32
    capsys.readouterr()
    assert hashlib.sha256(ro.read_bytes()).hexdigest() == digest and ro.stat().st_mtime_ns == mtime
    con = sqlite3.connect(f"file:{ro}?mode=ro", uri=True)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"      # not switched to WAL
    con.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("readonly")) == ["readonly.db"]
    # a read-only file (a shared, archived store) reads too
    ro.chmod(0o444)
    try:
        assert main(["results", str(ro)]) == 0
    finally:
        ro.chmod(0o644)
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)


# -- issue 15 re-audit ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["://", "/dev/null", "foreign", "damaged"])
def test_dry_run_refuses_the_store_the_sweep_would_refuse(store: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep --dry-run` said OK for a --db the sweep itself refuses ('://', /dev/null, another program's
    database, a damaged file); it checks without writing anything."""
    path = tmp_path / "other.db"
    if store == "foreign":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, title TEXT)")
        con.commit()
        con.close()
    elif store == "damaged":
        path.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    db = str(path) if store in ("foreign", "damaged") else store
    before = path.read_bytes() if path.exists() else None
    assert main(["sweep", str(TINY), "--db", db, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --db ") and "Traceback" not in captured.err, captured.err
    assert "OK:" not in captured.out
    assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (["other.db"] if before is not None else [])


def test_a_new_store_in_a_system_or_source_folder_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`sweep --db /etc/x.db` created a 221 KB database in /etc (and in src/portfolio_sim) while
    `run --out` and `results --out` refuse those folders."""
    import portfolio_sim

    package = Path(portfolio_sim.__file__).resolve().parent
    for db in ("/etc/portfolio_sim_test.db", str(package / "portfolio_sim_test.db")):
        try:
            for extra in ([], ["--dry-run"]):
                assert main(["sweep", str(TINY), "--db", db, "-q", *extra]) == 2
                assert "give a folder of" in capsys.readouterr().err
                assert not Path(db).exists()
        finally:        # a regression must not leave a database in /etc
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    Path(db + suffix).unlink(missing_ok=True)
                except OSError:
                    pass


def test_results_scenario_of_an_impossible_point_exits_2(db: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--scenario 10**30 raised OverflowError (exit 1); a stored scenario that does not validate raised
    a pydantic ValidationError (exit 1)."""
    assert main(["results", str(db), "--scenario", str(10**30)]) == 2
    assert "has no point 1000000000000000000000000000000 (points 0 to 3)" in capsys.readouterr().err
    bad = copy_db(db, tmp_path)
    con = sqlite3.connect(bad)
    con.execute("""UPDATE points SET scenario = '{"district": 5}'""")
    con.commit()
    con.close()
    assert main(["results", str(bad), "--scenario", "0"]) == 2
    err = capsys.readouterr().err
    assert "point 0 holds no valid scenario" in err and "internal error" not in err
    assert main(["results", "/dev/null"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_exports_may_go_in_the_project_folder_but_not_over_its_files(db: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """README's `portfolio-sim results results/X.db --out closure.parquet`, run from the checkout, was
    refused as "the portfolio_sim source folder"; replacing pyproject.toml with --scenario N --out is not."""
    from portfolio_sim.outdir import _package_tree

    root = _package_tree()
    if not (root / "pyproject.toml").is_file():
        pytest.skip("not a checkout")
    monkeypatch.chdir(root)
    out = root / "test_export_audit15.parquet"
    try:
        assert main(["results", str(db), "--out", out.name]) == 0
        assert out.is_file()
    finally:
        out.unlink(missing_ok=True)
    before = (root / "pyproject.toml").read_bytes()
    assert main(["results", str(db), "--scenario", "0", "--out", "pyproject.toml"]) == 2
    assert "a file of the portfolio_sim project folder" in capsys.readouterr().err
    assert (root / "pyproject.toml").read_bytes() == before
