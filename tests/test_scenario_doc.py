"""docs/SCENARIO.md is generated from the schema and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from portfolio_sim.scenario import schema_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "SCENARIO.md"


def test_scenario_reference_is_up_to_date():
    expected = schema_markdown().rstrip("\n")
    assert DOC.read_text(encoding="utf-8").rstrip("\n") == expected, (
        "docs/SCENARIO.md is stale: regenerate it with `portfolio-sim schema --markdown > docs/SCENARIO.md`")
