"""The documentation matches the code: docs/METRICS.md and docs/ODD.md.

- every model-level metric has a row in the METRICS.md table;
- every event type the code emits is documented in METRICS.md (found by running a busy scenario, and by
  reading the literal event names in the source);
- every scenario lever (`group.field`, from the schema) appears in ODD.md;
- the yearly order in ODD.md lists the mechanisms in the order `PortfolioModel.step` calls them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import portfolio_sim
from portfolio_sim import mechanisms
from portfolio_sim.kernel import single_run
from portfolio_sim.metrics import METRIC_COLUMNS
from portfolio_sim.model import PortfolioModel
from portfolio_sim.scenario import GROUPS, Scenario

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = Path(portfolio_sim.__file__).resolve().parent
MECHANISMS = ("politics", "authorizing", "enrollment", "autonomy", "talent", "achievement", "accountability",
              "finance")

BUSY = {
    "district": {"students": 4000, "schools": 18, "operators": 6, "charter_schools": 2},
    "eligibility": {"schools": "turnaround", "conversions_per_year": 3, "turnaround_percentile": 40,
                    "new_schools_per_year": 1},
    "autonomy": {"staffing": 1, "academic": 1, "budget": 1, "operations": 1},
    "governance": {"category": "partner_run", "legal_basis": "contract"},
    "accountability": {"closure_percentile": 15, "intervention": "close", "consecutive_years": 2},
    "politics": {"scheduled_flip_year": 4},
    "run": {"years": 8},
}


@pytest.fixture(scope="module")
def metrics_md() -> str:
    return (DOCS / "METRICS.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def odd_md() -> str:
    return (DOCS / "ODD.md").read_text(encoding="utf-8")


def table_row_names(text: str) -> list[str]:
    """First-column names of Markdown table rows that start with "| `name` |"."""
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE)


def section(text: str, heading_contains: str) -> str:
    """The body of the first Markdown section whose heading contains `heading_contains`, up to the next
    heading of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s", line)
        if m and heading_contains in line:
            level = len(m.group(1))
            body = []
            for nxt in lines[i + 1:]:
                h = re.match(r"^(#+)\s", nxt)
                if h and len(h.group(1)) <= level:
                    break
                body.append(nxt)
            return "\n".join(body)
    raise AssertionError(f"no section heading containing {heading_contains!r}")


# -- METRICS.md -------------------------------------------------------------------------------------

def test_every_metric_column_has_a_table_row(metrics_md):
    rows = table_row_names(metrics_md)
    missing = [name for name in METRIC_COLUMNS if name not in rows]
    assert not missing, f"docs/METRICS.md has no row '| `name` |' for: {missing}"


def test_metric_rows_are_in_metric_columns_order(metrics_md):
    rows = table_row_names(section(metrics_md, "Model-level metrics"))
    assert rows == list(METRIC_COLUMNS)


def documented_events(metrics_md: str) -> set[str]:
    return set(table_row_names(section(metrics_md, "Event log")))


def test_every_event_a_busy_run_emits_is_documented(metrics_md):
    result = single_run(Scenario.model_validate(BUSY), 3)
    emitted = set(result.events["event"])
    assert len(emitted) >= 8, f"the busy scenario should emit many event types, got {sorted(emitted)}"
    missing = sorted(emitted - documented_events(metrics_md))
    assert not missing, f"event types emitted but not documented in docs/METRICS.md: {missing}"


def literal_event_names() -> set[str]:
    """Event types written as string literals at the places that log events."""
    names: set[str] = set()
    patterns = (
        r"\blog\(\s*(?:model,\s*)?\"(\w+)\"",                  # model.log("kind", ...), lifecycle.log(model, ...)
        r"close_school\((?:model,\s*)?[^,()]+,\s*\"(\w+)\"",      # close_school(model, s, "kind", why)
        r"revert_to_traditional\((?:model,\s*)?[^,()]+,\s*\"(\w+)\"",  # revert_to_traditional(model, s, "kind", why)
        r"log\(model,\s*\"(\w+)\"",                               # lifecycle: log(model, "kind", ...)
        r"event(?:: str)?\s*=\s*\"(\w+)\"",                    # replace_operator(..., event="kind")
        r"kind = \"(\w+)\" if .* else \"(\w+)\"",             # make_autonomous: opening / conversion
    )
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            for match in re.finditer(pattern, text):
                names.update(g for g in match.groups() if g)
    return names


def test_every_literal_event_name_in_the_code_is_documented(metrics_md):
    names = literal_event_names()
    assert {"closure", "restart", "operator_replaced", "opening", "conversion", "election"} <= names
    missing = sorted(names - documented_events(metrics_md))
    assert not missing, f"event types in the code but not documented in docs/METRICS.md: {missing}"


# -- ODD.md -----------------------------------------------------------------------------------------

def all_levers() -> list[str]:
    return [f"{group}.{field}" for group, cls in GROUPS.items() for field in cls.model_fields]


def test_every_lever_appears_in_odd(odd_md):
    levers = all_levers()
    assert len(levers) > 80
    missing = [lever for lever in levers if f"`{lever}`" not in odd_md]
    assert not missing, f"levers not mentioned (as `group.field`) in docs/ODD.md: {missing}"


def test_every_assumption_appears_in_odd(odd_md):
    from portfolio_sim.assumptions import DECLARED
    missing = [a.path for a in DECLARED if f"`{a.name}`" not in odd_md]
    assert not missing, f"assumptions not mentioned (as `name`) in docs/ODD.md: {missing}"
    for group in {a.group for a in DECLARED}:
        assert f"[assumptions.{group}]" in odd_md, group


def test_lever_table_lists_every_lever(odd_md):
    rows = table_row_names(section(odd_md, "Levers and the submodels that read them"))
    assert sorted(rows) == sorted(all_levers())


def mechanism_order_in_step() -> list[str]:
    """The order PortfolioModel.step runs the mechanisms in: the declared year (`mechanisms.year()`)."""
    assert "for mechanism in self.mechanisms" in inspect.getsource(PortfolioModel.step)
    return [m.name for m in mechanisms.year()]


def mechanism_order_in_odd(odd_md: str) -> list[str]:
    """Mechanisms in the order the numbered items of the ODD's yearly order start with a call to them."""
    body = section(odd_md, "Yearly order")
    order = []
    for line in body.splitlines():
        m = re.match(r"^\d+\.\s+`(?:model\.)?(%s)\.(\w+)\(" % "|".join(MECHANISMS), line)
        if m:
            order.append(m.group(1))
            declared = next(d for d in mechanisms.year() if d.name == m.group(1))
            assert declared.step.__name__ == m.group(2), f"ODD calls {m.group(0)}, the declaration {declared.step}"
    return list(dict.fromkeys(order))


def test_step_calls_every_mechanism():
    assert sorted(mechanism_order_in_step()) == sorted(MECHANISMS)


def test_odd_yearly_order_matches_step(odd_md):
    documented = mechanism_order_in_odd(odd_md)
    assert documented == mechanism_order_in_step(), (
        f"docs/ODD.md yearly order {documented} differs from PortfolioModel.step {mechanism_order_in_step()}")
