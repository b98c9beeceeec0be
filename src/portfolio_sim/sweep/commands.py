"""The `sweep` and `results` subcommands (wired into :mod:`portfolio_sim.cli`).

    portfolio-sim sweep SPEC [--db URL] [--workers N] [--executor serial|process|dask] [--scheduler ADDRESS]
                             [--retry-failed] [--limit N] [--dry-run] [--quiet] [--run-timeout S]
                             [--reconnect-timeout S] [--db-retry S] [--write-batch N]
    portfolio-sim results DB [--experiment NAME] [--table yearly|runs|points|schools|events|sessions]
                             [--out FILE.parquet|FILE.csv|-] [--scenario POINT]

Errors in the spec, the database URL or the arguments exit 2 with `error: ` and no traceback (they are
:class:`~portfolio_sim.errors.ScenarioError`). `sweep` exit codes: 0 every planned run done; 1 some runs
are stored as failed (or timed out; --retry-failed runs them); 2 bad input; 3 the sweep could not continue
(the Dask scheduler or the database did not come back, workers keep dying; rerun to continue); 130
interrupted (Ctrl-C, SIGTERM). Stored runs are kept in every case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from portfolio_sim.errors import ScenarioError

TABLE_CHOICES = ("yearly", "runs", "points", "schools", "events", "sessions")
EXECUTOR_CHOICES = ("serial", "process", "dask")


class SweepCliError(ScenarioError):
    """Bad `sweep` / `results` arguments."""


def add_parsers(sub: Any) -> None:
    """Add `sweep` and `results` to the CLI's subparsers."""
    sw = sub.add_parser(
        "sweep", help="run an experiment spec (a parameter sweep) into a results database",
        description="Run every (point, replicate) of an experiment spec and store each run in a SQL database. "
                    "Running the same command again resumes: completed runs are skipped.",
        epilog="Specs: docs/SWEEPS.md and experiments/*.toml. Exit codes: 0 every planned run done; 1 some runs "
               "failed or timed out (stored with their errors; --retry-failed runs them again); 2 bad input; 3 the "
               "sweep could not continue (scheduler or database lost, workers keep dying: rerun to continue); "
               "130 interrupted. Stored runs are kept in every case.")
    sw.add_argument("spec", metavar="SPEC", help="an experiment spec (TOML file), or the name of one in experiments/")
    sw.add_argument("--db", metavar="URL",
                    help="SQLite file path or SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
                         "(default: results/<experiment>.db)")
    sw.add_argument("--workers", type=int, metavar="N",
                    help="parallel workers (default: 1; all CPUs with --executor process/dask)")
    sw.add_argument("--executor", choices=EXECUTOR_CHOICES,
                    help="serial, a local process pool, or Dask (default: serial; process when --workers > 1; "
                         "dask with --scheduler)")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="Dask scheduler address (tcp://host:8786); default: a local Dask cluster")
    sw.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    sw.add_argument("--limit", type=int, metavar="N", help="run at most N runs now (the rest on a later run)")
    sw.add_argument("--dry-run", action="store_true", help="validate the spec and show the design; run nothing")
    sw.add_argument("--quiet", "-q", action="store_true", help="no progress output on stderr (the summary is still printed)")
    sw.add_argument("--run-timeout", type=float, metavar="SECONDS",
                    help="stop a run after this long and store it as timed out (default: 10x an estimate of the "
                         "design's slowest run from students x years, at least 60; 0: no limit)")
    sw.add_argument("--reconnect-timeout", type=float, metavar="SECONDS", default=120.0,
                    help="how long to wait for a lost Dask scheduler before stopping with exit 3 (default 120)")
    sw.add_argument("--db-retry", type=float, metavar="SECONDS", default=300.0,
                    help="how long to retry a database that refuses writes, keeping finished results in memory, "
                         "before stopping with exit 3 (default 300)")
    sw.add_argument("--write-batch", type=int, metavar="N", default=32,
                    help="runs stored per database transaction at most (default 32; each run stays whole)")

    rs = sub.add_parser(
        "results", help="summarize or export a sweep results database",
        description="Without --out: list the experiments in DB with their run counts and failures. With --out: "
                    "export a tidy table (one row per run x year for `yearly`, factor values as columns).")
    rs.add_argument("db", metavar="DB", help="SQLite file path or SQLAlchemy URL")
    rs.add_argument("--experiment", metavar="NAME", help="which experiment (needed when DB holds several)")
    rs.add_argument("--table", choices=TABLE_CHOICES, default="yearly", help="table to export (default: yearly)")
    rs.add_argument("--out", metavar="FILE", help="write FILE.parquet or FILE.csv (FILE.csv.gz); '-' for CSV on stdout")
    rs.add_argument("--scenario", type=int, metavar="POINT",
                    help="print the resolved scenario (TOML) of design point POINT; `portfolio-sim run` on it "
                         "repeats the point's replicates")


# ------------------------------------------------------------------------------------------------
# sweep
# ------------------------------------------------------------------------------------------------

def _fmt_secs(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class CliProgress:
    """A rich progress bar on a terminal (counts, failures, rate, ETA); plain lines every `every` seconds
    otherwise (logs of batch jobs); nothing with `quiet`."""

    def __init__(self, quiet: bool = False, every: float = 30.0):
        from rich.console import Console

        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = every
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0

    def start(self, report: Any) -> None:
        from rich.markup import escape

        if self.quiet:
            return
        before = f"{report.done_before} done, {report.failed_before} failed before"
        self.err.print(f"experiment {escape(report.experiment)}: {report.points} points x {report.replicates} "
                       f"replicates = {report.total} runs; {before}")
        self.err.print(f"store: {escape(report.db)}")
        if not report.planned:
            return
        self.err.print(f"running {report.planned} runs on {escape(report.executor)}")
        self._last = time.monotonic()
        if not self.tty:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                             TextColumn("[red]{task.fields[failed]} failed"), TextColumn("{task.fields[rate]}"),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.err,
                             transient=False)
        self._bar.start()
        self._task = self._bar.add_task(escape(report.experiment), total=report.planned, failed=0, rate="")

    def advance(self, status: str, report: Any) -> None:
        rate = f"{report.rate:.2f} runs/s" if report.elapsed > 0 else ""
        if self._bar is not None:
            self._bar.update(self._task, completed=report.completed, failed=report.failed, rate=rate)
            return
        now = time.monotonic()
        if self.quiet or now - self._last < self.every:
            return
        self._last = now
        left = report.planned - report.completed
        eta = _fmt_secs(left / report.rate) if report.rate > 0 else "?"
        self.err.print(f"{report.completed}/{report.planned} runs, {report.failed} failed, {rate}, "
                       f"elapsed {_fmt_secs(report.elapsed)}, ETA {eta}")

    def finish(self, report: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if report.interrupted:
            self.err.print(f"interrupted: {report.done} runs stored by this invocation ({report.done_before + report.done}"
                           f"/{report.total} in all); run the same command again to resume")


def _need_sweep_extra() -> None:
    """The sweep commands need the `sweep` extra; say so plainly rather than with an ImportError."""
    import importlib.util
    missing = [m for m in ("sqlalchemy", "SALib", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise SweepCliError(f"the sweep commands need the `sweep` extra ({', '.join(missing)} not installed): "
                            "pip install -e '.[sweep]'")


def cmd_sweep(args: argparse.Namespace) -> int:
    _need_sweep_extra()
    from portfolio_sim.sweep.executors import default_workers
    from portfolio_sim.sweep.runner import StopSignals, SweepAborted, SweepOptions, resolve_db, run_sweep
    from portfolio_sim.sweep.spec import load_spec

    if args.workers is not None and args.workers < 1:
        raise SweepCliError(f"--workers {args.workers}: allowed: an integer >= 1")
    if args.limit is not None and args.limit < 0:
        raise SweepCliError(f"--limit {args.limit}: allowed: an integer >= 0")
    executor = args.executor or ("dask" if args.scheduler else
                                 "process" if (args.workers or 1) > 1 else "serial")
    if args.scheduler and executor != "dask":
        raise SweepCliError("--scheduler needs --executor dask")
    workers = args.workers or (1 if executor == "serial" else default_workers())
    for flag, value in (("--run-timeout", args.run_timeout), ("--reconnect-timeout", args.reconnect_timeout),
                        ("--db-retry", args.db_retry)):
        if value is not None and not (value >= 0 and value < float("inf")):
            raise SweepCliError(f"{flag} {value}: allowed: a number of seconds >= 0")
    if args.write_batch < 1:
        raise SweepCliError(f"--write-batch {args.write_batch}: allowed: an integer >= 1")
    options = SweepOptions(run_timeout=args.run_timeout, reconnect_timeout=args.reconnect_timeout,
                           db_retry=args.db_retry, batch=args.write_batch)

    exp = load_spec(args.spec)
    if args.dry_run:
        return _dry_run(exp, resolve_db(exp, args.db))

    # Ctrl-C and SIGTERM (a batch scheduler ending the job) stop the sweep at the driver's next check, within
    # about a second: stored runs are kept, the workers are ended, exit 130.
    progress = CliProgress(quiet=args.quiet)
    try:
        with StopSignals() as stop:
            report = run_sweep(exp, db=args.db, executor=executor, workers=workers, scheduler=args.scheduler,
                               retry_failed=args.retry_failed, limit=args.limit, progress=progress,
                               options=options, stop=stop)
    except SweepAborted as exc:
        print(f"error: the sweep could not continue: {exc}", file=sys.stderr)
        print(f"  to continue: {_command(args)}", file=sys.stderr)
        return exc.exit_code

    stored_done = report.total - report.remaining
    if report.planned:
        timed = f" ({report.timed_out} timed out)" if report.timed_out else ""
        print(f"{exp.name}: {report.done} done, {report.failed} failed{timed} in {_fmt_secs(report.elapsed)} "
              f"({report.rate:.2f} runs/s, {report.executor}); {stored_done}/{report.total} runs stored as done")
    else:
        print(f"{exp.name}: nothing to run; {stored_done}/{report.total} runs stored as done")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if report.version_mismatch:
        print(f"warning: {report.version_mismatch} results came from workers running another portfolio_sim version",
              file=sys.stderr)
    if report.skipped:
        print(f"note: {report.skipped} planned runs were skipped: another sweep driver had claimed (or stored) "
              "them; they are not done by this invocation", file=sys.stderr)
    path = _db_arg(report.db_url)
    if report.remaining == 0:
        print(f"complete. Export: portfolio-sim results {path} --out {exp.name}.parquet")
        return 0
    # What is left, and the command that runs it.
    if report.not_started:
        print(f"{report.not_started} runs not done yet; run the same command again to continue: "
              f"`{_command(args, retry=False)}`")
    if report.failed_left:
        if report.failed:
            first = _first_error(report.db_url, exp.name)
            print(f"error: {report.failed} runs failed in this invocation (errors stored; see `portfolio-sim results "
                  f"{path}`)" + (f"\n  first error: {first}" if first else ""), file=sys.stderr)
        print(f"{report.failed_left} runs are stored as failed; a plain rerun does not run them: "
              f"`{_command(args, retry=True)}` does", file=sys.stderr)
        return 1
    return 0


def _command(args: argparse.Namespace, retry: bool | None = None) -> str:
    """The command line that continues this sweep (``retry`` adds or drops --retry-failed)."""
    import shlex

    parts = ["portfolio-sim", "sweep", args.spec]
    if args.db:
        parts += ["--db", args.db]
    if args.executor:
        parts += ["--executor", args.executor]
    if args.workers:
        parts += ["--workers", str(args.workers)]
    if args.scheduler:
        parts += ["--scheduler", args.scheduler]
    if retry or (retry is None and args.retry_failed):
        parts.append("--retry-failed")
    if args.run_timeout is not None:
        parts += ["--run-timeout", f"{args.run_timeout:g}"]
    return shlex.join(parts)


def _db_arg(url: str) -> str:
    """How to name the database on the command line (a relative SQLite path when under cwd)."""
    from portfolio_sim.sweep.store import display_url, sqlite_path

    path = sqlite_path(url)
    if path is None:
        return display_url(url)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _first_error(db: str, experiment: str) -> str:
    try:
        from portfolio_sim.sweep.analysis import Results
        with Results(db, experiment) as res:
            runs = res.runs(status="failed")
        if runs.empty:
            return ""
        row = runs.iloc[0]
        line = str(row["error"]).strip().splitlines()[0] if row["error"] else ""
        return f"point {row['point']} replicate {row['replicate']}: {line}"
    except Exception:
        return ""


def _dry_run(exp: Any, db_url: str) -> int:
    from portfolio_sim.sweep.spec import check_point_files
    from portfolio_sim.sweep.store import check_store, friendly_db, sqlite_path

    check_point_files(exp)      # district CSVs, read and validated as the runs will
    check_store(db_url)         # an unusable --db is refused here as the sweep would refuse it
    print(f"OK: {exp.summary()}")
    print(f"  base: {exp.base_path}; seed {exp.seed}" + (" (common random numbers)" if exp.common_random_numbers else ""))
    outputs = ["yearly"] + (["schools"] if exp.keep_schools else []) + (["events"] if exp.keep_events else [])
    print(f"  outputs: {', '.join(outputs)}; store: {friendly_db(db_url)}")
    for p in exp.points[:5]:
        params = ", ".join(f"{k}={v!r}" for k, v in p.params.items()) or "(base scenario)"
        print(f"  point {p.index}: {params}")
    if len(exp.points) > 5:
        print(f"  ... {len(exp.points) - 5} more points")
    path = sqlite_path(db_url)
    if path is None or path.is_file():
        try:
            from portfolio_sim.sweep.analysis import Results
            with Results(db_url) as res:
                table = res.experiments()
            row = table[table["name"] == exp.name]
            if not row.empty:
                r = row.iloc[0]
                print(f"  stored: {r['done']} done, {r['failed']} failed of {r['runs']}")
        except ScenarioError:
            pass
    return 0


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------

def cmd_results(args: argparse.Namespace) -> int:
    _need_sweep_extra()
    import json

    from pandas.errors import DatabaseError as PandasDatabaseError
    from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

    from portfolio_sim.sweep.analysis import Results
    from portfolio_sim.sweep.store import friendly_db, normalize_url

    try:
        with Results(args.db, args.experiment) as res:
            if args.scenario is not None:
                text = res.scenario(args.scenario, args.experiment).to_toml()
                if args.out and args.out != "-":
                    _write_text(Path(args.out), text)
                    print(f"wrote {args.out}")
                else:
                    sys.stdout.write(text)
                return 0
            if args.out:
                return _export(res, args.out, args.table, args.experiment)
            return _summary(res, args.experiment)
    except (NoSuchTableError, SQLAlchemyError, PandasDatabaseError, json.JSONDecodeError, KeyError, TypeError,
            AttributeError) as exc:
        # A damaged database or one some other program wrote: say so, no traceback.
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise SweepCliError(f"{friendly_db(normalize_url(args.db))}: not a readable portfolio_sim results database "
                            f"({type(exc).__name__}: {detail[0][:200] if detail else ''})") from None


def _prepare_out_file(path: Path) -> None:
    """The same rules as every other output (portfolio_sim.outdir): no system folder, root or package
    source, no folder/device/pipe in the way; the folder is created; an existing file is replaced."""
    from portfolio_sim.outdir import check_out_file

    if check_out_file(path):
        print(f"note: replacing {path}", file=sys.stderr)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepCliError(f"--out {path}: cannot create the folder ({exc.strerror or exc})") from None


def _write_text(path: Path, text: str) -> None:
    from portfolio_sim.outdir import atomic_write_text

    _prepare_out_file(path)
    try:
        atomic_write_text(path, text)      # temp file + rename: never half a file, never via a symlink
    except OSError as exc:
        raise SweepCliError(f"--out {path}: cannot write ({exc.strerror or exc})") from None


# Rows read and converted at a time. A row in flight costs ~4 KB as Python objects (the driver's row, the
# DataFrame, its copy with the factor columns), ~250 bytes once in Arrow: 10,000 rows keep the export
# within ~50 MB of the process that opens the store, and Parquet row groups are still PARQUET_ROW_GROUP
# rows (the converted chunks are buffered in Arrow until then).
EXPORT_CHUNK_ROWS = 10_000
PARQUET_ROW_GROUP = 100_000
_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


def _export(res: Any, out: str, table: str, experiment: str | None) -> int:
    """Stream `table` to Parquet (a pyarrow ParquetWriter, one row group per chunk) or CSV, a chunk at a
    time: memory stays bounded however large the store is."""
    if out == "-":
        rows = 0
        for i, df in enumerate(res.iter_table(table, experiment, chunk_rows=EXPORT_CHUNK_ROWS)):
            df.to_csv(sys.stdout, index=False, header=i == 0)
            rows += len(df)
        return 0
    path = Path(out)
    name = path.name.lower()
    if name.endswith(".parquet"):
        kind = "parquet"
    elif name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz")):
        kind = "csv"
    else:
        raise SweepCliError(f"--out {out}: allowed: a file ending in .parquet or .csv (or .csv.gz, .csv.bz2, .csv.xz), "
                            "or '-'")
    from portfolio_sim.outdir import atomic_write

    _prepare_out_file(path)
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        chunks = res.iter_table(table, experiment, chunk_rows=EXPORT_CHUNK_ROWS)
        rows = _write_parquet(res, table, experiment, chunks, tmp) if kind == "parquet" else _write_csv(chunks, tmp, name)

    try:
        # temp file + rename: an interrupted export leaves no half file; a symlink at `path` is replaced
        atomic_write(path, write)
    except OSError as exc:
        raise SweepCliError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {rows} rows of {table} to {path}")
    return 0


def _write_parquet(res: Any, table: str, experiment: str | None, chunks: Any, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from portfolio_sim.sweep.analysis import DATA_TABLES

    schema = res.arrow_schema(table, experiment) if table in DATA_TABLES else None
    writer = None
    rows = 0
    buffered: list[Any] = []              # converted chunks (compact Arrow) waiting for a full row group
    pending = 0

    def write_group() -> None:
        nonlocal writer, pending
        group = pa.concat_tables(buffered)
        buffered.clear()
        pending = 0
        if writer is None:
            writer = pq.ParquetWriter(path, group.schema)
        writer.write_table(group, row_group_size=PARQUET_ROW_GROUP)

    try:
        for df in chunks:
            buffered.append(pa.Table.from_pandas(df, schema=schema, preserve_index=False))
            rows += len(df)
            pending += len(df)
            del df                          # the Python objects go now; only the Arrow copy is kept
            if pending >= PARQUET_ROW_GROUP:
                write_group()
        if buffered:
            write_group()
        if writer is None:                # no rows at all: an empty file with the columns
            empty = schema.empty_table() if schema is not None else pa.table({})
            pq.write_table(empty, path)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_csv(chunks: Any, path: Path, name: str) -> int:
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(Path(name).suffix, open)
    rows = 0
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        for i, df in enumerate(chunks):
            df.to_csv(fh, index=False, header=i == 0)
            rows += len(df)
    return rows


def _summary(res: Any, experiment: str | None) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = res.experiments()
    if experiment:
        table = table[table["name"] == experiment]
    console = Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", 120)))
    if table.empty:
        console.print(Text("No experiments in this database."))
        return 0
    t = Table(title=Text(f"Experiments in {_db_arg(res.url)}"), title_justify="left")
    for col in ("name", "design", "points", "replicates", "years", "runs", "done", "failed", "pending", "git"):
        t.add_column(col, justify="left" if col in ("name", "design", "git") else "right", no_wrap=True)
    for _, r in table.iterrows():
        commit = (r["git_commit"] or "")[:10] if isinstance(r["git_commit"], str) else ""
        t.add_row(*(Text(str(v)) for v in (r["name"], r["design"], r["points"], r["replicates"], r["years"], r["runs"],
                                           r["done"], r["failed"], r["pending"], commit)))
    console.print(t)
    for _, r in table.iterrows():
        if int(r["failed"]):
            runs = res.runs(r["name"], status="failed")
            firsts = runs["error"].fillna("").map(lambda e: e.strip().splitlines()[0] if e.strip() else "(no message)")
            console.print(Text(f"{r['name']}: {int(r['failed'])} failed runs; most common errors:"))
            for msg, n in firsts.value_counts().head(3).items():
                console.print(Text(f"  {n} x {msg}"))
    return 0
