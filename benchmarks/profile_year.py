"""Where the time goes in one Chicago-size (or Denver-size) year (docs/PERFORMANCE.md, "Where the time goes").

    python benchmarks/profile_year.py              # set-up, 2 warm-up years, then profile year 3
    python benchmarks/profile_year.py --setup      # profile the set-up instead
    python benchmarks/profile_year.py --top 30
    python benchmarks/profile_year.py --denver     # the Denver-size benchmark district instead

Prints (1) CPU time per step of the yearly order and per enrollment stage, and (2) cProfile's top
functions by own time, each with its share of the profiled year.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CHICAGO  # noqa: E402

from portfolio_sim import model as model_module  # noqa: E402
from portfolio_sim.mechanisms import (accountability, achievement, authorizing, autonomy, enrollment,  # noqa: E402
                                      finance, politics, talent)
from portfolio_sim.scenario import Scenario, load_scenario  # noqa: E402

STAGES = [
    (politics, "step", "politics"), (authorizing, "step", "authorizing"),
    (enrollment, "age_and_enter", "enrollment: ageing and entry"),
    (enrollment, "who_chooses", "enrollment: who chooses"),
    (enrollment, "distances", "enrollment: distances"),
    (enrollment, "utilities", "enrollment: utilities (incl. random draws)"),
    (enrollment, "ranked_lists", "enrollment: ranked lists (rest)"),
    (enrollment, "priority_scores", "enrollment: priorities and siblings"),
    (enrollment, "deferred_acceptance", "enrollment: deferred acceptance"),
    (enrollment, "assign", "enrollment: assignment (rest)"),
    (autonomy, "update_effective", "effective autonomy"), (talent, "step", "talent"),
    (achievement, "step", "achievement"), (accountability, "step", "accountability"), (finance, "step", "finance"),
    (model_module.PortfolioModel, "update_school_counts", "school counts"),
    (model_module.PortfolioModel, "_collect", "data collection"),
    # set-up only
    (model_module, "build_district", "set-up: district generation"),
    (model_module.PortfolioModel, "_init_students", "set-up: students"),
    (model_module.PortfolioModel, "_init_agents", "set-up: Mesa agents (Schools, Operators, Families)"),
    (model_module.Geography, "update", "zones and consideration sets"),
    (model_module.PortfolioModel, "_initial_state", "set-up: year-0 state (rest)"),
]


def instrument() -> collections.Counter:
    """Wrap each stage to add its CPU time (own time: nested stages are subtracted)."""
    spent: collections.Counter = collections.Counter()
    stack: list[list[float]] = []

    def wrap(owner, name, label):
        f = getattr(owner, name)

        @functools.wraps(f)
        def timed(*args, **kwargs):
            stack.append([0.0])
            t = time.process_time()
            try:
                return f(*args, **kwargs)
            finally:
                total = time.process_time() - t
                inner = stack.pop()[0]
                spent[label] += total - inner
                if stack:
                    stack[-1][0] += total
        setattr(owner, name, timed)

    for owner, name, label in STAGES:
        wrap(owner, name, label)
    return spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warm", type=int, default=2, help="years stepped before the profiled one (default 2)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--setup", action="store_true", help="profile the set-up (year 0) instead of a year")
    p.add_argument("--denver", action="store_true", help="the denver_innovation preset instead of Chicago")
    args = p.parse_args()

    if args.denver:
        scenario = load_scenario("denver_innovation", overrides=["run.years=10", "choice.policy=unified"])
    else:
        scenario = Scenario.model_validate(CHICAGO)
    name = "Denver" if args.denver else "Chicago"
    spent = instrument()
    prof = cProfile.Profile(time.process_time)   # CPU time, like the stage timings
    if args.setup:
        # No cProfile here: its per-call cost would swamp the 280,000 Family constructors.
        t = time.process_time()
        model = model_module.PortfolioModel(scenario, seed=1)
        what = "set-up (PortfolioModel(...): the district, agents and year-0 assignment)"
    else:
        model = model_module.PortfolioModel(scenario, seed=1)
        for _ in range(args.warm):
            model.step()
        spent.clear()
        t = time.process_time()
        prof.enable()
        model.step()
        prof.disable()
        what = f"year {model.year}"
    total = time.process_time() - t
    model.release()

    print(f"{name}-size district ({scenario.district.students:,} students), {what}: {total:.3f} s CPU"
          f"{'' if args.setup else ' (under cProfile)'}\n")
    print("By stage (own CPU time):")
    for label, sec in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {label:52s} {sec * 1e3:8.1f} ms  {100 * sec / total:5.1f}%")
    print(f"  {'(everything else)':52s} {(total - sum(spent.values())) * 1e3:8.1f} ms")

    if args.setup:
        return 0
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    print(f"\nTop {args.top} functions by own time (share of the {total:.3f} s):")
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in entries:
        where = f"{Path(file).name}:{line}({func})" if line else func
        print(f"  {100 * tottime / total:5.1f}%  {tottime * 1e3:8.1f} ms  cum {cumtime * 1e3:8.1f} ms  "
              f"{ncalls:6d} calls  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
