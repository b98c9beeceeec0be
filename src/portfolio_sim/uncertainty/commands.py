"""CLI verbs of the uncertainty package: `run --worlds` (and `robustness`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from portfolio_sim.errors import ScenarioError
from portfolio_sim.scenario import Scenario


def _check_counts(args: argparse.Namespace) -> None:
    from portfolio_sim.cli import CliError

    if args.worlds is None:
        raise CliError("--vary needs --worlds N; allowed: --worlds 1 or more")
    if args.worlds < 1:
        raise CliError(f"--worlds {args.worlds}: must be an integer of at least 1")
    if args.workers < 1:
        raise CliError(f"--workers {args.workers}: must be an integer of at least 1")


def _vary(args: argparse.Namespace) -> list[str] | None:
    return [v for v in args.vary.split(",") if v.strip()] if args.vary else None


def run_worlds(args: argparse.Namespace, scenario: Scenario, prepare_out_dir: Callable[[str | None, str], Path]) -> int:
    from portfolio_sim.cli import CliError, key_metric_rows
    from portfolio_sim.report import write_report
    from portfolio_sim.uncertainty.report import ensemble_runs_line, ensemble_section, flat_runs
    from portfolio_sim.uncertainty.worlds import (ensemble_tasks, ensemble_yearly, run_tasks, sample_worlds,
                                                  summarize_ensemble)
    from portfolio_sim.kernel import derive_seeds

    _check_counts(args)
    from portfolio_sim.budget import check_budget
    # before the worlds are drawn: --worlds 1000000000 would need 954 GiB for the draws alone
    if not scenario.district.schools_csv:       # with CSVs the size is known only once they are read
        check_budget(scenario, getattr(args, "force", False), runs=args.worlds * scenario.run.seeds,
                     workers=args.workers)
    worlds = sample_worlds(args.worlds, scenario.run.seed, _vary(args))
    out = prepare_out_dir(args.out, scenario.name)
    seeds = derive_seeds(scenario.run.seed, scenario.run.seeds)
    results = run_tasks(ensemble_tasks(scenario, worlds, seeds), args.workers)
    yearly = ensemble_yearly(results)
    summary = summarize_ensemble(yearly)

    def with_ids(frames: list[tuple[int, int, pd.DataFrame]]) -> pd.DataFrame:
        parts = [f.assign(world=w, seed=s)[["world", "seed", *f.columns]] for w, s, f in frames]
        nonempty = [p for p in parts if not p.empty]
        return pd.concat(nonempty, ignore_index=True) if nonempty else parts[0]

    schools = with_ids([(w, r.seed, r.schools) for w, r in results])
    events = with_ids([(w, r.seed, r.events) for w, r in results])
    flat = flat_runs(yearly)
    from portfolio_sim.outdir import atomic_write

    flat_events = flat_runs(events, yearly) if "world" in events else events

    def report(p: Path) -> None:
        write_report(p, flat, summary, flat_events, scenario,
                     sections=[ensemble_section(summary, len(worlds), len(seeds), worlds.shape[1], scenario.run.seed)],
                     runs_line=ensemble_runs_line(len(worlds), len(seeds), scenario.run.seed))

    writers = [(name, (lambda f: lambda p: f.to_csv(p, index=False))(frame))
               for name, frame in (("yearly.csv", yearly), ("summary.csv", summary), ("schools.csv", schools),
                                   ("events.csv", events), ("worlds.csv", worlds.reset_index()))]
    writers += [("scenario.toml", lambda p: p.write_text(scenario.to_toml(), encoding="utf-8")),
                ("report.html", report)]
    target = out
    try:
        for name, write in writers:
            target = out / name
            atomic_write(target, write)  # temp file + rename, as `run` writes
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not args.quiet:
        first, last, rows = key_metric_rows(flat)
        print(f"{scenario.name}: median [p10-p90] across {len(worlds)} world(s) x {len(seeds)} seed(s)")
        for label, a, b in rows:
            print(f"  {label:<30} year {first}: {a:<28} year {last}: {b}")
        print(f"Wrote yearly.csv, summary.csv, schools.csv, events.csv, worlds.csv, scenario.toml, report.html "
              f"to {out}/")
    else:
        print(f"wrote {out}")
    return 0


__all__ = ["run_worlds", "ScenarioError"]


def cmd_robustness(args: argparse.Namespace, prepare_out_dir: Callable[[str | None, str], Path]) -> int:
    """`portfolio-sim robustness SCENARIO --against OTHER`: robustness.csv and a printed table."""
    from portfolio_sim.cli import CliError
    from portfolio_sim.scenario import load_scenario
    from portfolio_sim.uncertainty.robustness import robustness_detail

    if args.worlds is None:
        args.worlds = 20
    _check_counts(args)
    if args.seeds < 1:
        raise CliError(f"--seeds {args.seeds}: must be an integer of at least 1")
    if args.years is not None and args.years < 1:
        raise CliError(f"--years {args.years}: must be an integer of at least 1")
    overrides = list(args.overrides) + ([f"run.years={args.years}"] if args.years is not None else [])
    design = load_scenario(args.scenario, overrides)
    alternative = load_scenario(args.against, overrides)
    root = design.run.seed if args.seed is None else args.seed
    from portfolio_sim.budget import check_budget
    for scenario in (design, alternative):   # each design runs on every world and seed
        if not scenario.district.schools_csv:
            check_budget(scenario, args.force, runs=2 * args.worlds * args.seeds, workers=args.workers)
    vary = _vary(args)
    from portfolio_sim.uncertainty.worlds import sample_worlds
    sample_worlds(1, root, vary)  # bad --vary fails before any run
    out = prepare_out_dir(args.out, f"robustness_{design.name}", args.force)
    detail = robustness_detail(design, alternative, args.worlds, args.seeds, root, design.run.years, vary,
                               args.workers)
    table = detail.table
    from portfolio_sim.outdir import atomic_write

    target = out / "robustness.csv"
    try:
        atomic_write(target, lambda p: table.to_csv(p, index=False))
        target = out / "drivers.csv"
        atomic_write(target, lambda p: detail.drivers.to_csv(p, index=False))
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"{design.name} against {alternative.name}: {args.worlds} world(s) x {args.seeds} seed(s), "
              f"{design.run.years} year(s), root seed {root}")
    for r in table.itertuples():
        clear = {True: "clear of seed noise", False: "within seed noise", None: "seed noise unknown"}[
            r.clear_of_seed_noise]
        print(f"  {r.label:<30} better in {r.share_better:4.0%} of worlds; median diff {r.median_diff:+.4g} "
              f"[p10 {r.p10_diff:+.4g}, p90 {r.p90_diff:+.4g}]; {clear}")
        for d in detail.drivers[detail.drivers["metric"] == r.metric].itertuples():
            print(f"  {'':<30}   follows {d.assumption} across worlds (Spearman rho {d.rho:+.2f}, "
                  f"Bonferroni p {d.p_adjusted:.2g})")
    print(f"Wrote robustness.csv, drivers.csv to {out}/")
    return 0


def cmd_discover(args: argparse.Namespace, prepare_out_dir: Callable[[str | None, str], Path]) -> int:
    """`portfolio-sim discover DB --outcome M --below V`: PRIM box and delta sensitivity, printed."""
    from portfolio_sim.cli import CliError
    from portfolio_sim.uncertainty.discovery import cases_from_store, discover, write_figures

    if not 0 < args.min_coverage <= 1:
        raise CliError(f"--min-coverage {args.min_coverage}: allowed: a number above 0 and at most 1")
    if "://" not in args.db and not Path(args.db).is_file():
        raise CliError(f"{args.db}: no such results store; allowed: a SQLite file written by `portfolio-sim "
                       "sweep` or a database URL")
    if args.out:        # an unusable --out is refused before the analysis, not after it
        from portfolio_sim.outdir import check_out_dir
        check_out_dir(Path(args.out))
    x, y = cases_from_store(args.db, args.outcome, args.year, args.experiment)
    d = discover(x, y, args.outcome, args.below, args.above, args.min_coverage)
    print(f"{d.rule}: {d.failing} of {d.cases} runs fail")
    print(f"PRIM box (densest with coverage >= {args.min_coverage:g}): coverage {d.coverage:.2f}, "
          f"density {d.density:.2f}")
    if d.limits.empty:
        print("  no restriction: failures are spread over the whole sample")
    for r in d.limits.itertuples():
        if isinstance(r.low, str):
            print(f"  {r.factor} in {{{r.low}}} (of {{{r.full_low}}})")
        else:
            print(f"  {r.factor} in [{r.low:.4g}, {r.high:.4g}] (sampled [{r.full_low:.4g}, {r.full_high:.4g}])")
    print(f"Global sensitivity of {args.outcome} (SALib delta, over the same runs):")
    for r in d.sensitivity.head(10).itertuples():
        print(f"  {r.factor:<45} delta {r.delta:.3f} +/- {r.delta_conf:.3f}   S1 {r.S1:.3f}")
    if args.out:
        out = prepare_out_dir(args.out, "discover")
        try:
            from portfolio_sim.outdir import atomic_write
            for name, frame in (("boxes.csv", d.limits), ("prim_trajectory.csv", d.trajectory),
                                ("sensitivity.csv", d.sensitivity)):
                atomic_write(out / name, (lambda f: lambda p: f.to_csv(p, index=False))(frame))
            paths = write_figures(d, out)
        except OSError as exc:
            raise CliError(f"cannot write to {out}: {exc.strerror or exc}") from None
        print(f"Wrote boxes.csv, prim_trajectory.csv, sensitivity.csv, {', '.join(p.name for p in paths)} to {out}/")
    return 0
