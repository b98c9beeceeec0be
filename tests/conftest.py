"""Shared fixtures: small scenarios that run in well under a second."""

from __future__ import annotations

import hashlib

import pytest

from portfolio_sim.scenario import Scenario


SMALL = {"district": {"students": 4000, "schools": 18, "operators": 6}, "run": {"years": 6}}


def layered(*layers: dict) -> dict:
    """Scenario data from layers of {group: {field: value}}, later layers winning field by field."""
    out: dict = {}
    for layer in layers:
        for group, values in layer.items():
            out.setdefault(group, {}).update(values)
    return out


def scenario(*layers: dict) -> Scenario:
    """A validated scenario from layers (see `layered`) over the schema's defaults."""
    return Scenario.model_validate(layered(*layers))


def small(*layers: dict, **groups: dict) -> Scenario:
    """A small district (a few thousand students) with the given layers and group overrides."""
    return scenario(SMALL, *layers, groups)


def result_digest(result) -> str:
    """SHA-256 of a run's yearly metrics, school panel and event log: equal digests, identical runs."""
    h = hashlib.sha256()
    for frame in (result.yearly, result.schools, result.events):
        h.update(frame.to_csv(index=False).encode())
    return h.hexdigest()


AUTONOMY_POLICY = {
    "eligibility": {"schools": "turnaround", "conversions_per_year": 3, "turnaround_percentile": 40},
    "autonomy": {"staffing": 1.0, "academic": 1.0, "budget": 1.0, "operations": 1.0},
    "politics": {"initial_support": 0.8, "budget_shock_probability": 0.0},
}


@pytest.fixture
def small_scenario() -> Scenario:
    return small()
