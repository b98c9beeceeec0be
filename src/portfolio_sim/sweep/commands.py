"""The `sweep` and `results` subcommands (wired into :mod:`portfolio_sim.cli`).

    portfolio-sim sweep SPEC [--db URL] [--workers N] [--executor serial|process|dask] [--scheduler ADDRESS]
                             [--retry-failed] [--limit N] [--dry-run] [--quiet]
    portfolio-sim results DB [--experiment NAME] [--table yearly|runs|points|schools|events|sessions]
                             [--out FILE.parquet|FILE.csv|-] [--scenario POINT]

Errors in the spec, the database URL or the arguments exit 2 with `error: ` and no traceback (they are
:class:`~portfolio_sim.errors.ScenarioError`); a sweep that stored failed runs exits 1.
"""

from __future__ import annotations

import argparse
import os
import signal
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
        epilog="Specs: docs/SWEEPS.md and experiments/*.toml. Exit codes: 0 ok, 1 some runs failed (stored with "
               "their errors; --retry-failed runs them again), 2 bad input, 130 interrupted (stored runs kept).")
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
    from portfolio_sim.sweep.runner import SweepAborted, resolve_db, run_sweep
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

    exp = load_spec(args.spec)
    if args.dry_run:
        return _dry_run(exp, resolve_db(exp, args.db))

    # SIGTERM (a batch scheduler ending the job) stops like Ctrl-C: stored runs are kept.
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        pass
    progress = CliProgress(quiet=args.quiet)
    try:
        report = run_sweep(exp, db=args.db, executor=executor, workers=workers, scheduler=args.scheduler,
                           retry_failed=args.retry_failed, limit=args.limit, progress=progress)
    except SweepAborted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    stored_done = report.done_before + report.done + report.duplicates
    if report.planned:
        print(f"{exp.name}: {report.done} done, {report.failed} failed in {_fmt_secs(report.elapsed)} "
              f"({report.rate:.2f} runs/s, {report.executor}); {stored_done}/{report.total} runs stored as done")
    else:
        print(f"{exp.name}: nothing to run; {stored_done}/{report.total} runs stored as done")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if report.version_mismatch:
        print(f"warning: {report.version_mismatch} results came from workers running another portfolio_sim version",
              file=sys.stderr)
    if report.failed_before and not args.retry_failed:
        print(f"note: {report.failed_before} runs failed in an earlier invocation and were not run again; "
              "--retry-failed runs them", file=sys.stderr)
    path = _db_arg(report.db_url)
    if report.remaining == 0:
        print(f"complete. Export: portfolio-sim results {path} --out {exp.name}.parquet")
    elif report.planned and not report.failed:
        print(f"{report.remaining} runs not done yet; run the same command again to continue")
    if report.failed:
        print(f"error: {report.failed} runs failed (errors stored; see `portfolio-sim results {path}`); run again "
              "with --retry-failed to retry them", file=sys.stderr)
        first = _first_error(report.db_url, exp.name)
        if first:
            print(f"  first error: {first}", file=sys.stderr)
        return 1
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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
    from portfolio_sim.sweep.store import friendly_db, sqlite_path

    check_point_files(exp)      # district CSVs, read and validated as the runs will
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
    from portfolio_sim.sweep.analysis import Results

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
            df = res.table(args.table, args.experiment)
            return _export(df, args.out, args.table)
        return _summary(res, args.experiment)


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SweepCliError(f"--out {path}: cannot write ({exc.strerror or exc})") from None


def _export(df: Any, out: str, table: str) -> int:
    if out == "-":
        df.to_csv(sys.stdout, index=False)
        return 0
    path = Path(out)
    name = path.name.lower()
    if name.endswith(".parquet"):
        kind = "parquet"
    elif name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")):
        kind = "csv"
    else:
        raise SweepCliError(f"--out {out}: allowed: a file ending in .parquet or .csv (or .csv.gz), or '-'")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            df.to_parquet(path, index=False)
        else:
            df.to_csv(path, index=False)
    except OSError as exc:
        raise SweepCliError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {len(df)} rows of {table} to {path}")
    return 0


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
