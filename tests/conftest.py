"""Shared fixtures: small scenarios that run in well under a second."""

from __future__ import annotations

import pytest

from portfolio_sim.scenario import Scenario


def small(**groups) -> Scenario:
    """A small district (a few thousand students) with the given group overrides."""
    data: dict = {"district": {"students": 4000, "schools": 18, "operators": 6}, "run": {"years": 6}}
    for group, values in groups.items():
        data.setdefault(group, {}).update(values)
    return Scenario.model_validate(data)


AUTONOMY_POLICY = {
    "eligibility": {"schools": "turnaround", "conversions_per_year": 3, "turnaround_percentile": 40},
    "autonomy": {"staffing": 1.0, "academic": 1.0, "budget": 1.0, "operations": 1.0},
    "politics": {"initial_support": 0.8, "budget_shock_probability": 0.0},
}


@pytest.fixture
def small_scenario() -> Scenario:
    return small()
