"""Regression tests for issue 15 (hardening): every input the schema allows runs, every bad input is
refused clearly (exit 2, a message naming what is wrong), nothing outside the run is touched."""

from __future__ import annotations

import os
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portfolio_sim.kernel import single_run
from portfolio_sim.scenario import GROUPS, Scenario

# Size fields kept small so each drawn scenario runs in a fraction of a second; every other field is
# drawn over the whole range the schema allows.
SMALL_BOUNDS = {("district", "students"): (100, 3000), ("district", "schools"): (3, 25),
                ("district", "neighbourhoods"): (1, 60), ("district", "charter_schools"): (0, 15),
                ("district", "operators"): (0, 12), ("run", "years"): (1, 4), ("run", "seeds"): (1, 1)}
EXAMPLES = int(os.environ.get("HARDENING_EXAMPLES", "40"))   # more for a longer search
SKIP = {("district", "schools_csv"), ("district", "neighbourhoods_csv")}


def _bounds(field):
    lo = hi = None
    for meta in field.metadata:
        lo = getattr(meta, "ge", lo) if getattr(meta, "ge", None) is not None else lo
        hi = getattr(meta, "le", hi) if getattr(meta, "le", None) is not None else hi
    return lo, hi


def field_strategy(group: str, name: str, field) -> st.SearchStrategy:
    ann = field.annotation
    if typing.get_origin(ann) is typing.Literal:
        return st.sampled_from(typing.get_args(ann))
    if ann is bool:
        return st.booleans()
    lo, hi = SMALL_BOUNDS.get((group, name), _bounds(field))
    if ann is int:
        return st.integers(int(lo), int(hi))
    if ann is float:
        return st.floats(float(lo), float(hi), allow_nan=False, allow_infinity=False)
    raise AssertionError(f"no strategy for {group}.{name}: {ann!r}")


def scenarios() -> st.SearchStrategy:
    groups = {}
    for gname, model in GROUPS.items():
        fields = {n: field_strategy(gname, n, f) for n, f in model.model_fields.items() if (gname, n) not in SKIP}
        groups[gname] = st.fixed_dictionaries(fields)
    return st.fixed_dictionaries(groups)


def test_every_field_has_a_strategy():
    """The property test below covers the whole schema: a new field type fails here, not silently."""
    for gname, model in GROUPS.items():
        for n, f in model.model_fields.items():
            if (gname, n) not in SKIP:
                field_strategy(gname, n, f)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_any_scenario_within_bounds_runs(data, seed):
    """Issue 15 item 1: a random scenario from the whole schema, on a small district, runs to the end."""
    scenario = Scenario.model_validate(data)
    result = single_run(scenario, seed)
    assert result.yearly["year"].tolist() == list(range(scenario.run.years + 1))


def test_no_operators_runs():
    """Issue 15 item 1: district.operators = 0 (allowed) crashed in mechanisms/autonomy.py."""
    scenario = Scenario.model_validate({
        "district": {"students": 1500, "schools": 8, "operators": 0},
        "eligibility": {"schools": "all", "conversions_per_year": 3, "new_schools_per_year": 2},
        "governance": {"category": "partner_run"}, "autonomy": {"staffing": 1, "budget": 1},
        "run": {"years": 3}})
    result = single_run(scenario, 3)
    assert result.yearly["year"].max() == 3
