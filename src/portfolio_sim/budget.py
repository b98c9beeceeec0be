"""Estimate a run's memory and time before starting it, and refuse what the machine cannot do.

Measured costs (docs/PERFORMANCE.md; this 2-core VM): a process with the model imported holds ~110 MB; a
district holds ~1.3 KB per student and ~5 KB per school (100,000 students: 240 MB peak, 5,000 schools
+23 MB); set-up plus the first year costs ~60 us per student, each further year ~1 us per student
(Chicago: 0.74-1.3 us per student-year). The estimate is rough (within a factor of ~2) and errs high.
`portfolio-sim run` refuses (exit 2, with the estimate) when the memory estimate is above the memory
available now, or the time estimate above MAX_RUN_HOURS, unless --force.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from portfolio_sim.errors import ScenarioError

BASE_MB = 110.0
MB_PER_STUDENT = 1.3e-3
MB_PER_SCHOOL = 5e-3
MB_PER_SCHOOL_YEAR_KEPT = 4e-4      # the per-school panel kept for every seed (schools.csv)
SETUP_US_PER_STUDENT = 60.0
US_PER_STUDENT_YEAR = 1.0
MAX_RUN_HOURS = 2.0                 # longer jobs belong in `portfolio-sim sweep` (resumable, parallel)


@dataclass
class Estimate:
    memory_mb: float
    seconds: float

    def describe(self) -> str:
        hours = self.seconds / 3600
        when = f"{hours:,.1f} hours" if hours >= 1 else f"{self.seconds / 60:,.1f} minutes"
        return f"about {self.memory_mb / 1024:,.1f} GB of memory and {when} on one core"


def estimate(scenario, runs: int | None = None, workers: int = 1) -> Estimate:  # noqa: ANN001 - a Scenario
    """`runs`: how many runs of the scenario (default its seeds; `run --worlds N`: N x seeds, `robustness`
    twice that), `workers` processes each holding a district. Time is CPU time on one core."""
    d, r = scenario.district, scenario.run
    runs = r.seeds if runs is None else runs
    students, schools = d.students, d.schools + d.charter_schools
    schools_end = schools + r.years * (scenario.eligibility.new_schools_per_year)
    memory = (BASE_MB + max(1, min(workers, runs)) * (students * MB_PER_STUDENT + schools_end * MB_PER_SCHOOL)
              + runs * schools_end * (r.years + 1) * MB_PER_SCHOOL_YEAR_KEPT)
    seconds = runs * students * (SETUP_US_PER_STUDENT + max(0, r.years - 1) * US_PER_STUDENT_YEAR) / 1e6
    return Estimate(memory, seconds)


def available_mb() -> float | None:
    """Memory available to a new allocation now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def check_budget(scenario, force: bool = False, runs: int | None = None,  # noqa: ANN001
                 workers: int = 1) -> Estimate:
    """The estimate; a ScenarioError when it is above what the machine has (unless `force`)."""
    est = estimate(scenario, runs, workers)
    if force:
        return est
    avail = available_mb()
    if avail is not None and est.memory_mb > avail:
        raise ScenarioError(f"this run needs {est.describe()}, but only {avail / 1024:,.1f} GB of memory is "
                            "available; use fewer students, schools, seeds or worlds (or `portfolio-sim sweep`), or "
                            "--force to run anyway")
    if est.seconds > MAX_RUN_HOURS * 3600:
        raise ScenarioError(f"this run needs {est.describe()}, above the {MAX_RUN_HOURS:g}-hour limit of "
                            "`run`; use fewer seeds or worlds, or `portfolio-sim sweep` (resumable, parallel), or --force "
                            "to run anyway")
    return est
