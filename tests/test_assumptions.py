"""Declared assumptions: well-formed declarations, part of the scenario (TOML, --set, errors, sweeps), listed by
the CLI, documented in docs/ASSUMPTIONS.md, and no coefficient left as a bare literal in the mechanisms."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest

from portfolio_sim import assumptions
from portfolio_sim.cli import main
from portfolio_sim.errors import ScenarioError
from portfolio_sim.kernel import single_run
from portfolio_sim.scenario import Scenario, load_scenario, loads_scenario
from portfolio_sim.sweep.batch import build_batch_scenario
from portfolio_sim.sweep.spec import SpecError, loads_spec

ROOT = Path(__file__).resolve().parents[1]
MECHANISMS = ROOT / "src" / "portfolio_sim" / "mechanisms"
DOC = ROOT / "docs" / "ASSUMPTIONS.md"
SMALL = ["district.students=3000", "district.schools=12", "run.years=4", "eligibility.schools=all",
         "eligibility.conversions_per_year=3"]


def test_every_default_is_inside_its_range_and_well_formed() -> None:
    assert len(assumptions.DECLARED) >= 60
    for a in assumptions.DECLARED:
        assert a.low <= a.default <= a.high, a.path
        assert a.low < a.high, a.path
        assert a.unit and a.meaning and a.source, a.path
        assert a.meaning.endswith("."), a.path
        if a.integer:
            assert all(float(x).is_integer() for x in (a.default, a.low, a.high)), a.path


def test_scenario_carries_every_assumption_at_its_default() -> None:
    scn = Scenario()
    for a in assumptions.DECLARED:
        value = getattr(getattr(scn.assumptions, a.group), a.name)
        assert value == a.default and type(value) is (int if a.integer else float), a.path


def test_json_listing_has_the_keys_and_names_are_set_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assumptions", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == len(assumptions.DECLARED)
    for r in records:
        assert {"name", "default", "low", "high", "unit", "source", "meaning", "group"} <= set(r)
        assert r["name"].startswith(f"assumptions.{r['group']}.")
    # every name works with --set (at its default: the scenario is unchanged)
    sets = [f"{r['name']}={r['default']}" for r in records]
    assert load_scenario("baseline", sets) == load_scenario("baseline")


def test_table_lists_every_assumption_by_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assumptions"]) == 0
    out = capsys.readouterr().out
    for group in assumptions.GROUP_DOCS:
        assert f"[assumptions.{group}]" in out
    for a in assumptions.DECLARED:
        assert f"  {a.name} " in out


def test_set_of_a_politics_coefficient_changes_political_support() -> None:
    base = load_scenario("baseline", SMALL)
    pulled = load_scenario("baseline", [*SMALL, "assumptions.politics.opinion_pull=0.5"])
    assert pulled.assumptions.politics.opinion_pull == 0.5
    a = single_run(base, 3).yearly["political_support"].to_numpy()
    b = single_run(pulled, 3).yearly["political_support"].to_numpy()
    assert a[0] == b[0]               # the same start
    assert (a[1:] != b[1:]).any()     # a stronger pull to the starting level changes the path


@pytest.mark.parametrize("override, needles", [
    ("assumptions.politics.incumbency=3", ["assumptions.politics.incumbency", "3", "from 0.0 to 1.5"]),
    ("assumptions.politics.no_such=1", ["assumptions.politics.no_such", "unknown field", "incumbency"]),
    ("assumptions.nogroup.x=1", ["assumptions.nogroup", "unknown field", "politics"]),
    ("assumptions.finance.viability_years=2.5", ["assumptions.finance.viability_years", "from 1 to 4"]),
])
def test_bad_assumption_exits_2_naming_path_and_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       override: str, needles: list[str]) -> None:
    rc = main(["run", "baseline", "--out", str(tmp_path / "o"), "--quiet", "--set", override])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err}"
    assert not (tmp_path / "o").exists()


def test_appetite_range_must_be_ordered() -> None:
    with pytest.raises(ScenarioError, match="operator_appetite_low .0.9. must not exceed"):
        load_scenario("baseline", ["assumptions.setup.operator_appetite_low=0.9",
                                   "assumptions.setup.operator_appetite_high=0.5"])


def test_toml_tables_through_extends_and_round_trip(tmp_path: Path) -> None:
    parent = tmp_path / "parent.toml"
    parent.write_text('extends = "baseline"\n[assumptions.politics]\nincumbency = 1.0\n', encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text(textwrap.dedent("""\
        extends = "parent.toml"
        [assumptions.politics]
        seat_noise = 1.5
        [assumptions.achievement]
        rho = 0.8
        """), encoding="utf-8")
    scn = load_scenario(child)
    assert scn.assumptions.politics.incumbency == 1.0          # from the parent
    assert scn.assumptions.politics.seat_noise == 1.5  # from the child
    assert scn.assumptions.achievement.rho == 0.8
    assert scn.assumptions.talent.attraction == 1.5            # untouched: the default
    text = scn.to_toml()
    assert "[assumptions.politics]" in text
    assert loads_scenario(text) == scn


def test_bad_assumption_table_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[assumptions.achievement]\nrho = 1.2\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "assumptions.achievement.rho" in str(err.value) and "from 0.5 to 0.9" in str(err.value)


def test_sweep_varies_an_assumption_and_checks_its_bounds() -> None:
    head = 'name = "a"\nbase = "baseline"\nyears = 2\nreplicates = 1\nseed = 3\n'
    exp = loads_spec(head + '[factors."assumptions.politics.incumbency"]\nbounds = [0.0, 1.0]\nnum = 3\n')
    assert [p.params["assumptions.politics.incumbency"] for p in exp.points] == [0.0, 0.5, 1.0]
    assert [p.scenario["assumptions"]["politics"]["incumbency"] for p in exp.points] == [0.0, 0.5, 1.0]
    nested = loads_spec(head + '[factors.assumptions.politics.incumbency]\nbounds = [0.0, 1.0]\nnum = 3\n')
    assert nested.fingerprint() == exp.fingerprint()
    lhs = loads_spec(head + '[design]\nkind = "lhs"\nsamples = 4\n[factors."assumptions.achievement.rho"]\n'
                     'bounds = [0.6, 0.8]\n')
    assert all(0.6 <= p.params["assumptions.achievement.rho"] <= 0.8 for p in lhs.points)
    with pytest.raises(SpecError, match=r"outside.*from 0.5 to 0.9"):
        loads_spec(head + '[design]\nkind = "lhs"\nsamples = 4\n[factors."assumptions.achievement.rho"]\n'
                   'bounds = [0.2, 0.8]\n')
    with pytest.raises(SpecError, match="known in assumptions.politics"):
        loads_spec(head + '[factors]\n"assumptions.politics.nope" = [1, 2]\n')
    fixed = loads_spec(head + '[set]\n"assumptions.politics.incumbency" = 0.9\n')
    assert fixed.points[0].scenario["assumptions"]["politics"]["incumbency"] == 0.9


def test_batch_overrides_accept_assumptions() -> None:
    scn = build_batch_scenario("baseline", overrides={"assumptions.talent.attraction": 2.0})
    assert scn.assumptions.talent.attraction == 2.0
    with pytest.raises(ScenarioError, match="not a declared assumption"):
        build_batch_scenario("baseline", overrides={"assumptions.talent.nope": 2.0})


def test_assumptions_doc_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8").rstrip("\n") == assumptions.markdown().rstrip("\n"), (
        "docs/ASSUMPTIONS.md is stale: regenerate it with `portfolio-sim assumptions --markdown > docs/ASSUMPTIONS.md`")


# -- no bare coefficients in the mechanisms ----------------------------------------------------------

# Numbers that are structure, not assumptions: identities (0, 1, -1), halves/doubles of a formula, 100
# (percent), and the neutral 50th percentile; plus, per module, the few numeric guards and reporting
# thresholds that are not coefficients of behaviour (each with why).
STRUCTURAL = {0, 1, -1, 2, 0.5, 100, 50}
ALLOWED = {
    "accountability.py": {1e-9},                    # division guard
    "autonomy.py": {4, 1e-9},                       # four domains (flat Dirichlet over them); division guard
    "enrollment.py": {13, 256},                     # grade past 12 graduates; bit widths of the sort keys
    "politics.py": {0.2},                           # log a school's rollback above 20% (reporting only)
    "talent.py": {3, 10, 1e-9},                     # clip of attractiveness z; redistribution passes; guard
    "authorizing.py": {12, 0.01},                   # months per year; SD guard
}


def _numeric_literals(path: Path) -> list[tuple[int, float]]:
    """Numbers inside function bodies (module-level constants and defaults of signatures excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(fn):
            if isinstance(node, ast.Constant) and type(node.value) in (int, float):
                found.append((node.lineno, node.value))
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
                    isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
                found.append((node.lineno, -node.operand.value))
    return found


def test_no_numeric_coefficient_left_in_the_mechanisms() -> None:
    problems = []
    for path in sorted(MECHANISMS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        allowed = STRUCTURAL | ALLOWED.get(path.name, set())
        for line, value in _numeric_literals(path):
            if value not in allowed and -value not in allowed:
                problems.append(f"{path.name}:{line}: {value!r}")
    assert not problems, ("numeric literals in mechanisms: declare them in portfolio_sim/assumptions.py and read "
                          "them from model.scenario.assumptions (or add a structural number to ALLOWED with why):\n"
                          + "\n".join(problems))


def test_the_literal_scan_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    return 0.37 * x - 4\n", encoding="utf-8")
    assert {v for _, v in _numeric_literals(bad)} == {0.37, 4}


def test_cli_run_records_a_changed_assumption(tmp_path: Path) -> None:
    out = tmp_path / "o"
    sets = [x for s in [*SMALL, "assumptions.politics.opinion_pull=0.5"] for x in ("--set", s)]
    assert main(["run", "baseline", *sets, "--years", "2", "--seeds", "1", "--out", str(out), "--quiet"]) == 0
    assert "opinion_pull = 0.5" in (out / "scenario.toml").read_text(encoding="utf-8")
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "assumptions.politics.opinion_pull" in report
    assert "assumptions.politics.incumbency" not in report      # unchanged assumptions are not listed
    again = tmp_path / "again"
    assert main(["run", str(out / "scenario.toml"), "--out", str(again), "--quiet"]) == 0
    assert (again / "yearly.csv").read_bytes() == (out / "yearly.csv").read_bytes()
