"""Fixed-seed regression baseline: speed work must never change what the model computes.

A few small fixed scenarios are run with fixed seeds for 6 years, and everything they produce is
compared with the CSV files in `tests/baseline/`:

* every yearly metric (`RunResult.yearly`),
* the whole per-school panel (`RunResult.schools`),
* the whole event log (`RunResult.events`),
* a digest of the final student-level state (school, grade and achievement of every student slot).

Integers and text must match exactly; floats to a relative tolerance of 1e-9 (bit-identical results
pass trivially; the tolerance only absorbs last-bit differences of libm/SIMD between machines).

When a change is *meant* to alter results (a model change, a deliberate change of random-number
use), regenerate the baseline on purpose and commit the new files with the change:

    python tests/test_regression_baseline.py --update
    # or: PORTFOLIO_SIM_UPDATE_BASELINE=1 python -m pytest tests/test_regression_baseline.py

and say in the commit message why the results changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio_sim.model import PortfolioModel
from portfolio_sim.scenario import Scenario, load_scenario

BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
YEARS = 6
RTOL = 1e-9
ATOL = 1e-12
UPDATE_ENV = "PORTFOLIO_SIM_UPDATE_BASELINE"
HOW_TO_UPDATE = (
    "If this change is MEANT to alter model results, regenerate the baseline on purpose with\n"
    "    python tests/test_regression_baseline.py --update\n"
    f"(or {UPDATE_ENV}=1 python -m pytest tests/test_regression_baseline.py), review `git diff tests/baseline`,\n"
    "and commit the new files with the change, saying why results changed. Otherwise a speed/refactoring\n"
    "change has altered what the model computes: fix it (results must stay bit-identical)."
)


def _small_district(**extra) -> dict:
    return {"students": 5000, "schools": 14, "neighbourhoods": 16, **extra}


def _baseline() -> Scenario:
    """The baseline preset (zones, restarts, no autonomy) scaled to ~5,000 students."""
    return load_scenario("baseline", overrides=["district.students=5000", "district.schools=12",
                                                "district.neighbourhoods=16"])


def _autonomy_unified() -> Scenario:
    """Busy autonomy scenario: unified choice, charters, turnaround conversions and new schools run by
    partners under contract, closures, renewals with operator replacement, an incubator, budget shocks,
    a la carte services and a scheduled board flip in year 3 (a reversal)."""
    return Scenario.model_validate({
        "district": _small_district(charter_schools=3, operators=4, cohort_change=-0.03, min_viable_share=0.6),
        "choice": {"policy": "unified", "participation": 0.8, "switch_rate": 0.1},
        "eligibility": {"schools": "turnaround", "conversions_per_year": 2, "new_schools_per_year": 1,
                        "turnaround_percentile": 45, "target_share": 0.6},
        "governance": {"category": "partner_run", "legal_basis": "contract", "operator_employs_staff": True},
        "autonomy": {"staffing": 1.0, "academic": 1.0, "budget": 1.0, "operations": 1.0},
        "accountability": {"closure_percentile": 20, "consecutive_years": 2, "intervention": "close",
                           "applies_to": "all", "contract_term": 2, "renewal_percentile": 55,
                           "min_years_rated": 1},
        "central_office": {"autonomy_office": True, "services": "a_la_carte"},
        "talent": {"incubator": True, "leader_pipeline": 0.8},
        "implementation": {"planning_months": 0, "startup_funding": 600, "governance_councils": True},
        "politics": {"initial_support": 0.8, "budget_shock_probability": 0.3, "scheduled_flip_year": 4},
        "run": {"years": YEARS},
    })


def _zone_plus_open_status() -> Scenario:
    """Partner-led turnaround with zone-plus-open choice, a status framework, restarts and operator
    replacement, public-enterprise services (the other choice policy and rating framework)."""
    return Scenario.model_validate({
        "district": _small_district(band_structure="k8-912", operators=3, charter_schools=2),
        "choice": {"policy": "zone_plus_open", "max_choices": 4},
        "eligibility": {"schools": "all", "conversions_per_year": 2, "target_share": 0.5},
        "governance": {"category": "partner_led", "legal_basis": "mou"},
        "autonomy": {"staffing": 0.7, "academic": 0.9, "budget": 0.6, "operations": 0.8, "waivers": "prescribed"},
        "accountability": {"framework": "status", "closure_percentile": 25, "consecutive_years": 1,
                           "intervention": "replace_operator", "applies_to": "autonomous"},
        "central_office": {"services": "public_enterprise"},
        "politics": {"initial_support": 0.9, "election_cycle": 1, "volatility": 0.2, "scheduled_flip_year": 3},
        "assumptions": {"politics": {"restore_chance": 1.0}},     # a restoration once a majority returns
        "run": {"years": YEARS},
    })


def _denver_preset() -> Scenario:
    """The denver_innovation preset (a la carte waivers, unified choice, large charter sector), scaled."""
    return load_scenario("denver_innovation", overrides=["district.students=5000", "district.schools=12",
                                                         "district.charter_schools=5",
                                                         "district.neighbourhoods=16", f"run.years={YEARS}"])


CASES = {
    # (seed 13, was 11: with issue 11's school effects seed 11 has no restart in six years)
    "baseline_5k": (_baseline, 13),
    "autonomy_unified": (_autonomy_unified, 2),             # (was 7: no incubator entry since issue 11)
    "zone_plus_open_status": (_zone_plus_open_status, 8),   # (was 3: no operator replacement since issue 11)
    "denver_innovation_5k": (_denver_preset, 5),
}
TABLES = ("yearly", "schools", "events", "state")


def _state_digest(model: PortfolioModel) -> pd.DataFrame:
    """The final student-level state, as per-array SHA-256 digests plus a few exact summaries."""
    st = model.students
    rows = []
    for name in ("household", "grade", "school", "low_income", "baseline", "achievement", "displaced"):
        arr = np.ascontiguousarray(getattr(st, name))
        rows.append({"array": f"students.{name}", "dtype": str(arr.dtype), "size": arr.size,
                     "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
                     "sum": float(arr.astype(np.float64).sum())})
    return pd.DataFrame(rows)


def run_case(name: str) -> dict[str, pd.DataFrame]:
    make, seed = CASES[name]
    model = PortfolioModel(make(), seed)
    try:
        for _ in range(YEARS):
            model.step()
        return {"yearly": model.yearly_frame(), "schools": model.schools_frame(), "events": model.events_frame(),
                "state": _state_digest(model)}
    finally:
        model.release()


def _path(case: str, table: str) -> Path:
    return BASELINE_DIR / f"{case}.{table}.csv"


def _write(frame: pd.DataFrame, target) -> None:
    frame.to_csv(target, index=False, na_rep="NaN")   # floats are written exactly (shortest round-trip repr)


def _read(source) -> pd.DataFrame:
    return pd.read_csv(source, keep_default_na=False, na_values=["NaN"])   # "" stays an empty string


def _roundtrip(frame: pd.DataFrame) -> pd.DataFrame:
    """Through CSV and back, so actual and expected have the same dtypes."""
    buf = io.StringIO()
    _write(frame, buf)
    buf.seek(0)
    return _read(buf)


def differences(expected: pd.DataFrame, actual: pd.DataFrame, limit: int = 8) -> list[str]:
    """Human-readable differences: exact for integers, booleans and text; RTOL for floats."""
    out: list[str] = []
    if list(expected.columns) != list(actual.columns):
        missing = [c for c in expected.columns if c not in actual.columns]
        extra = [c for c in actual.columns if c not in expected.columns]
        return [f"columns differ: missing {missing}, unexpected {extra}"]
    if len(expected) != len(actual):
        out.append(f"row count {len(actual)} != expected {len(expected)}")
    n = min(len(expected), len(actual))
    for col in expected.columns:
        e, a = expected[col].iloc[:n], actual[col].iloc[:n]
        if e.dtype.kind == "f" or a.dtype.kind == "f":
            ev, av = e.to_numpy(np.float64), a.to_numpy(np.float64)
            bad = ~np.isclose(av, ev, rtol=RTOL, atol=ATOL, equal_nan=True)
        else:
            bad = (e.astype(str).to_numpy() != a.astype(str).to_numpy())
        for i in np.flatnonzero(bad)[:limit - len(out)]:
            out.append(f"row {i}, column {col!r}: got {a.iloc[i]}, expected {e.iloc[i]}")
        if len(out) >= limit:
            break
    return out


def update(cases=CASES) -> None:
    BASELINE_DIR.mkdir(exist_ok=True)
    for case in cases:
        for table, frame in run_case(case).items():
            _write(frame, _path(case, table))
            print(f"wrote {_path(case, table).relative_to(BASELINE_DIR.parent.parent)} ({len(frame)} rows)")


@pytest.mark.parametrize("case", list(CASES))
def test_results_match_baseline(case: str) -> None:
    if os.environ.get(UPDATE_ENV):
        update([case])
        pytest.skip(f"{UPDATE_ENV} set: baseline for {case} regenerated")
    missing = [str(_path(case, t)) for t in TABLES if not _path(case, t).exists()]
    assert not missing, f"baseline files missing: {missing}\n{HOW_TO_UPDATE}"
    actual = run_case(case)
    problems = []
    for table in TABLES:
        expected = _read(_path(case, table))
        diff = differences(expected, _roundtrip(actual[table]))
        problems += [f"  {case}.{table}: {d}" for d in diff]
    assert not problems, ("results differ from the fixed-seed regression baseline:\n" + "\n".join(problems)
                          + "\n\n" + HOW_TO_UPDATE)


def test_baseline_scenarios_exercise_the_mechanisms() -> None:
    """The baseline is only worth something if its scenarios reach the code paths speed work touches."""
    events = set()
    for case in CASES:
        frame = _read(_path(case, "events"))
        events |= set(frame["event"])
    for kind in ("conversion", "opening", "closure", "restart", "renewal", "non_renewal", "operator_replaced",
                 "reversal", "restoration", "election", "budget_shock", "operator_entry", "warning"):
        assert kind in events, f"no {kind!r} event in any baseline scenario: widen the scenarios"


if __name__ == "__main__":
    if "--update" in sys.argv[1:]:
        update()
    else:
        print(__doc__)
        sys.exit(pytest.main([__file__, "-q"]))
