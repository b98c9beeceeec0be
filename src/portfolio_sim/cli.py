"""Command line: `portfolio-sim run | validate | scenarios | schema | assumptions | robustness | discover |
sweep | results`.

Exit codes: 0 success; 2 bad input (scenario errors, bad arguments, an unusable --out directory), with
the message on stderr after `error: ` and no traceback; 1 an unexpected failure (set
PORTFOLIO_SIM_DEBUG=1 for the traceback); 130 interrupted. Nothing user-supplied is eval'd: scenario
files are TOML and `--set` values are TOML literals (see :func:`portfolio_sim.scenario.parse_override`).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from portfolio_sim import outputs
from portfolio_sim.errors import ScenarioError

DEBUG_ENV = "PORTFOLIO_SIM_DEBUG"

OUTPUT_FILES = ("yearly.csv", "summary.csv", "schools.csv", "events.csv", "scenario.toml", "report.html")

# (metric, label, kind, format): the output registry's key metrics. kind "level": the value in that year;
# "cumulative": the per-seed total from year 0 up to that year.
KEY_METRICS: list[tuple[str, str, str, str]] = [
    (m.name, m.label + (" (cumulative)" if m.cumulative else ""), "cumulative" if m.cumulative else "level", m.format)
    for m in outputs.KEY_METRICS]


class CliError(ScenarioError):
    """Bad command-line input that is not about the scenario itself (e.g. an unusable --out)."""


# ------------------------------------------------------------------------------------------------
# Argument parsing
# ------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portfolio-sim",
        description="Agent-based simulation of school districts that grow autonomous district schools.",
        epilog=f"Exit codes: 0 ok, 2 bad input, 1 internal error ({DEBUG_ENV}=1 shows the traceback).")
    try:
        from importlib.metadata import version
        ver = version("portfolio_sim")
    except Exception:  # not installed (PYTHONPATH=src)
        ver = "unknown"
    parser.add_argument("--version", action="version", version=f"%(prog)s {ver}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                       help="override one lever, e.g. --set accountability.closure_percentile=10 "
                            "(repeatable; VALUE is a TOML literal, bare words are text)")

    run = sub.add_parser("run", help="run a scenario and write CSVs and an HTML report",
                         description="Run a scenario over several seeds; write yearly.csv, summary.csv, "
                                     "schools.csv, events.csv, scenario.toml and report.html.")
    run.add_argument("scenario", metavar="SCENARIO", help="a scenario file path or a preset name")
    run.add_argument("--years", type=int, metavar="N", help="simulated years (sets run.years)")
    run.add_argument("--seeds", type=int, metavar="K", help="replicate seeds (sets run.seeds)")
    run.add_argument("--seed", type=int, metavar="S", help="root seed (sets run.seed)")
    add_set(run)
    run.add_argument("--decisions", metavar="FILE",
                     help="workshop decisions by year (TOML [year.N] tables, as the dashboard exports them); "
                          "written to the output as decisions.toml")
    run.add_argument("--out", metavar="DIR", help="output directory (default: runs/<scenario name>)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary table")
    run.add_argument("--force", action="store_true",
                     help="write into a non-empty --out folder that is not an earlier run, and run even when "
                          "the estimated memory or time is above the limits (docs/PERFORMANCE.md, Limits)")
    add_world_args(run)

    val = sub.add_parser("validate", help="check a scenario file without running it")
    val.add_argument("scenario", metavar="SCENARIO", help="a scenario file path or a preset name")
    add_set(val)

    sub.add_parser("scenarios", help="list the preset scenarios")

    schema = sub.add_parser("schema", help="print the lever reference (docs/SCENARIO.md)")
    schema.add_argument("--markdown", action="store_true", help="Markdown output (the default)")

    assume = sub.add_parser("assumptions", help="list the model's declared assumptions (docs/ASSUMPTIONS.md)")
    fmt = assume.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="a JSON list of objects (name is the --set path)")
    fmt.add_argument("--markdown", action="store_true", help="Markdown (docs/ASSUMPTIONS.md)")

    rob = sub.add_parser("robustness", help="a design against an alternative across plausible worlds",
                         description="Run SCENARIO and --against OTHER on the same plausible worlds and seeds "
                                     "(common random numbers) and write robustness.csv and drivers.csv (docs/UNCERTAINTY.md).")
    rob.add_argument("scenario", metavar="SCENARIO", help="the design: a scenario file path or a preset name")
    rob.add_argument("--against", required=True, metavar="OTHER", help="the alternative design")
    rob.add_argument("--years", type=int, metavar="Y", help="simulated years (default: SCENARIO's run.years)")
    rob.add_argument("--seeds", type=int, default=2, metavar="K", help="seeds per world (default 2)")
    rob.add_argument("--seed", type=int, metavar="S", help="root seed (default: SCENARIO's run.seed)")
    add_set(rob)
    rob.add_argument("--out", metavar="DIR", help="output directory (default: runs/robustness_<SCENARIO>)")
    rob.add_argument("--force", action="store_true",
                     help="write into a non-empty --out folder that is not an earlier run, and run even when "
                          "the estimated memory or time is above the limits (docs/PERFORMANCE.md, Limits)")
    add_world_args(rob)
    rob.set_defaults(worlds=None)

    disc = sub.add_parser("discover", help="scenario discovery on a sweep: PRIM boxes and SALib sensitivity",
                          description="Where does an outcome fail? PRIM (EMA workbench) boxes over the sweep's "
                                      "assumptions and levers, and SALib delta sensitivity (docs/UNCERTAINTY.md).")
    disc.add_argument("db", metavar="DB", help="the sweep's results store (SQLite file or database URL)")
    disc.add_argument("--outcome", required=True, metavar="METRIC", help="a yearly metric, e.g. autonomy_effective")
    side = disc.add_mutually_exclusive_group(required=True)
    side.add_argument("--below", type=float, metavar="VALUE", help="a run fails when METRIC < VALUE")
    side.add_argument("--above", type=float, metavar="VALUE", help="a run fails when METRIC > VALUE")
    disc.add_argument("--year", type=int, metavar="Y", help="simulated year (default: the last)")
    disc.add_argument("--experiment", metavar="NAME", help="experiment in DB (default: the only one)")
    disc.add_argument("--min-coverage", type=float, default=0.5, metavar="C",
                      help="report the densest PRIM box covering at least this share of failures (default 0.5)")
    disc.add_argument("--out", metavar="DIR", help="write boxes.csv, sensitivity.csv and plotly HTML figures here")

    from portfolio_sim.sweep.commands import add_parsers as add_sweep_parsers  # sweep, results
    add_sweep_parsers(sub)
    return parser


def add_world_args(p: argparse.ArgumentParser) -> None:
    """--worlds/--vary/--workers: plausible worlds (docs/UNCERTAINTY.md)."""
    p.add_argument("--worlds", type=int, metavar="N",
                   help="N plausible worlds: Latin-hypercube draws of the declared assumptions, each run on "
                        "every seed (yearly.csv gains a world column; worlds.csv lists the draws)")
    p.add_argument("--vary", metavar="LIST",
                   help="with --worlds: comma-separated assumption groups or paths to vary "
                        "(default: every assumption with low < high)")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="with --worlds: worker processes (default 1; results are identical for any W)")


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def _dash() -> str:
    enc = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return "\u2013" if enc.startswith("utf") else "-"


_fmt = outputs.format_value


def key_metric_rows(yearly: pd.DataFrame) -> tuple[int, int, list[tuple[str, str, str]]]:
    """(first year, last year, [(label, first, last)]) with 'median [p10-p90]' across seeds."""
    first, last = int(yearly["year"].min()), int(yearly["year"].max())
    dash = _dash()
    rows = []
    for metric, label, kind, fmt in KEY_METRICS:
        if metric not in yearly:
            continue
        cells = []
        for year in (first, last):
            if kind == "cumulative":
                values = yearly[yearly["year"] <= year].groupby("seed")[metric].sum()
            else:
                values = yearly.loc[yearly["year"] == year, metric]
            values = values.astype(float)
            q = values.quantile([0.1, 0.5, 0.9]).tolist() if len(values) else [float("nan")] * 3
            if len(values) > 1:
                cells.append(f"{_fmt(q[1], fmt)} [{_fmt(q[0], fmt)}{dash}{_fmt(q[2], fmt)}]")
            else:
                cells.append(_fmt(q[1], fmt))
        rows.append((label, cells[0], cells[1]))
    return first, last, rows


def _safe_dirname(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100]
    return cleaned or "unnamed"


def prepare_out_dir(out: str | None, scenario_name: str, force: bool = False) -> Path:
    """The run's output folder, created; refused (exit 2) where a run may not write (portfolio_sim.outputs)."""
    from portfolio_sim.outdir import check_out_dir

    from portfolio_sim.outdir import RUN_FILES

    path = Path(out) if out else Path("runs") / _safe_dirname(scenario_name)
    check_out_dir(path, force)
    if path.is_dir():     # an earlier run's files are replaced: say which, so nothing goes unnoticed
        try:
            replaced = sorted(e.name for e in os.scandir(path) if e.name in RUN_FILES)
        except OSError:
            replaced = []
        if replaced:
            print(f"note: replacing {', '.join(replaced)} in {path} (an earlier run's files)", file=sys.stderr)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {path}: cannot create the directory ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise CliError(f"--out {path}: the directory is not writable")
    return path




# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.table import Table
    from rich.text import Text

    from portfolio_sim.decisions import decisions_toml, load_decisions, per_school
    from portfolio_sim.kernel import derive_seeds, single_run, stack_seeds, summarize, yearly_table
    from portfolio_sim.report import write_report
    from portfolio_sim.scenario import Override, load_scenario

    overrides = list(args.overrides)
    for flag, key in (("years", "run.years"), ("seeds", "run.seeds"), ("seed", "run.seed")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(Override(f"{key}={value}", f"--{flag} {value}"))   # errors name the flag
    scenario = load_scenario(args.scenario, overrides)
    decided = load_decisions(args.decisions, scenario.run.years) if args.decisions else {}
    chosen = per_school(decided)
    if chosen and scenario.run.seeds > 1:
        year, school = chosen[0]
        raise CliError(f"{args.decisions}: year.{year}.schools.{school}: decisions about one school need one "
                       f"seed (every seed draws its own district); got {scenario.run.seeds} seeds; allowed: "
                       "--seeds 1, or decisions for every school (docs/WORKSHOP.md)")
    if not scenario.district.schools_csv:       # with CSVs the size is known only once they are read
        from portfolio_sim.budget import check_budget
        check_budget(scenario, args.force)
    if args.worlds is not None or args.vary is not None:
        if args.decisions:
            raise CliError("--worlds with --decisions: not supported; allowed: one or the other")
        from portfolio_sim.uncertainty.commands import run_worlds
        return run_worlds(args, scenario, lambda out, name: prepare_out_dir(out, name, args.force))
    out = prepare_out_dir(args.out, scenario.name, args.force)

    seeds = derive_seeds(scenario.run.seed, scenario.run.seeds)
    years = scenario.run.years
    err = Console(stderr=True)
    show_progress = not args.quiet and sys.stderr.isatty()
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("seed-years"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err, disable=not show_progress, transient=False) as progress:
        task = progress.add_task(f"{escape(scenario.name)}", total=len(seeds) * years)
        for i, seed in enumerate(seeds, 1):
            progress.update(task, description=f"{escape(scenario.name)} seed {i}/{len(seeds)}")
            results.append(single_run(scenario, seed, on_year=lambda _y: progress.advance(task), decisions=decided))

    yearly = yearly_table(results)
    summary = summarize(yearly)
    schools = stack_seeds((r.seed, r.schools) for r in results)
    events = stack_seeds((r.seed, r.events) for r in results)

    from portfolio_sim.outdir import atomic_write

    writers = [("yearly.csv", lambda p: yearly.to_csv(p, index=False)),
               ("summary.csv", lambda p: summary.to_csv(p, index=False)),
               ("schools.csv", lambda p: schools.to_csv(p, index=False)),
               ("events.csv", lambda p: events.to_csv(p, index=False)),
               ("scenario.toml", lambda p: p.write_text(scenario.to_toml(), encoding="utf-8")),
               ("report.html", lambda p: write_report(p, yearly, summary, events, scenario, decided))]
    if decided:
        writers.append(("decisions.toml", lambda p: p.write_text(decisions_toml(decided), encoding="utf-8")))
    target = out
    try:
        for name, write in writers:
            target = out / name
            atomic_write(target, write)      # temp file + rename: never half a file, never via a symlink
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None

    # Not a terminal (pipe, file): use a width the table fits in rather than rich's default 80.
    console = Console() if sys.stdout.isatty() else Console(width=110)
    if not args.quiet:
        first, last, rows = key_metric_rows(yearly)
        start = scenario.run.start_year
        table = Table(title=Text(f"{scenario.name}: median [p10{_dash()}p90] across {len(seeds)} seed(s)"),
                      title_justify="left")
        table.add_column("metric", no_wrap=True)
        table.add_column(f"{start + first} (year {first})", justify="right", no_wrap=True)
        table.add_column(f"{start + last} (year {last})", justify="right", no_wrap=True)
        for label, a, b in rows:
            table.add_row(Text(label), Text(a), Text(b))
        console.print(table)
        console.print(f"Wrote {', '.join(OUTPUT_FILES)} to {escape(str(out))}/", highlight=False,
                      soft_wrap=True)
        console.print(f"Report: {escape(str(out / 'report.html'))}", highlight=False, soft_wrap=True)
    else:
        print(f"wrote {out}")
    return 0


def key_levers(scenario) -> str:  # noqa: ANN001 - a Scenario
    d, e, g, a, c, r = (scenario.district, scenario.eligibility, scenario.governance, scenario.accountability,
                        scenario.choice, scenario.run)
    autonomy = "/".join(f"{v:g}" for v in scenario.granted_autonomy().values())
    parts = [f"{d.students:,} students, {d.schools} schools"]
    if e.schools == "none":
        parts.append("no autonomy policy")
    else:
        parts.append(f"eligible {e.schools} ({e.conversions_per_year} conversions/yr, "
                     f"{e.new_schools_per_year} new/yr), {g.category} by {g.legal_basis}, "
                     f"autonomy staffing/academic/budget/operations {autonomy}")
    if a.closure_percentile > 0:
        parts.append(f"{a.intervention} below p{a.closure_percentile:g} for {a.consecutive_years}y "
                     f"({a.applies_to})")
    else:
        parts.append("no interventions")
    parts.append(f"choice {c.policy}")
    parts.append(f"{r.years} years x {r.seeds} seed(s), root seed {r.seed}")
    return "; ".join(parts)


def cmd_validate(args: argparse.Namespace) -> int:
    from portfolio_sim.scenario import load_scenario, resolve_scenario_path

    path = resolve_scenario_path(args.scenario)
    scenario = load_scenario(args.scenario, list(args.overrides))
    if scenario.district.schools_csv:
        from portfolio_sim.district_csv import check_district_csv
        check_district_csv(scenario.district, scenario.run.years)   # the files, read as a run reads them
    print(f"OK: {scenario.name} ({path})")
    print(f"  {key_levers(scenario)}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from portfolio_sim.scenario import list_presets, presets_dir

    presets = list_presets()
    console = Console()
    if not presets:
        console.print(Text(f"No preset scenarios in {presets_dir()}"))
        return 0
    table = Table(title="Preset scenarios (portfolio-sim run NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for name, desc in presets:
        table.add_row(Text(name), Text(desc))
    console.print(table)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from portfolio_sim.scenario import schema_markdown

    text = schema_markdown()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_assumptions(args: argparse.Namespace) -> int:
    from portfolio_sim import assumptions

    text = assumptions.to_json() if args.json else assumptions.markdown() if args.markdown else assumptions.table()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from portfolio_sim.sweep.commands import cmd_sweep as run_sweep_command
    return run_sweep_command(args)


def cmd_results(args: argparse.Namespace) -> int:
    from portfolio_sim.sweep.commands import cmd_results as results_command
    return results_command(args)


def cmd_robustness(args: argparse.Namespace) -> int:
    from portfolio_sim.uncertainty.commands import cmd_robustness as robustness_command
    return robustness_command(args, prepare_out_dir)


def cmd_discover(args: argparse.Namespace) -> int:
    from portfolio_sim.uncertainty.commands import cmd_discover as discover_command
    return discover_command(args, prepare_out_dir)


COMMANDS = {"discover": cmd_discover, "robustness": cmd_robustness, "run": cmd_run, "validate": cmd_validate, "scenarios": cmd_scenarios, "schema": cmd_schema,
            "assumptions": cmd_assumptions, "sweep": cmd_sweep, "results": cmd_results}


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------

def _robust_streams() -> bool:
    """Make printing never fail on text the terminal cannot encode (a non-ASCII scenario name under
    PYTHONIOENCODING=ascii, a non-UTF-8 path): such characters are escaped. False when stdout is closed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass
    return sys.stdout is not None


def main(argv: Sequence[str] | None = None) -> int:
    if not _robust_streams():        # `portfolio-sim ... >&-`: nowhere to print results
        if sys.stderr is not None:
            print("error: standard output is closed; redirect it instead (e.g. >/dev/null)", file=sys.stderr)
        return 2
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    nul = next((a for a in given if isinstance(a, str) and "\x00" in a), None)
    if nul is not None:    # a process's arguments cannot hold one; callers of main() can: no path or value may
        print(f"error: argument {nul[:80]!r} contains a NUL byte; allowed: text without NUL bytes", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2, message printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()          # a full disk shows here, not as "Exception ignored" at exit
        return code
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `portfolio-sim schema | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            return _internal_error(exc)
        # `> /dev/full`, a full disk or quota: the output cannot be written; not a fault of the program
        print(f"error: cannot write the output ({exc.strerror}); free some space or write elsewhere",
              file=sys.stderr)
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the flush at exit would fail again
        except OSError:
            pass
        return 2
    except Exception as exc:
        return _internal_error(exc)


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _internal_error(exc: BaseException) -> int:
    """Exit 1 for an unexpected failure (called inside the handler, so the traceback is at hand)."""
    print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    else:
        print(f"(re-run with {DEBUG_ENV}=1 to see the traceback)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
