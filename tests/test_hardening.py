"""Regression tests for issue 15 (hardening): every input the schema allows runs, every bad input is
refused clearly (exit 2, a message naming what is wrong), nothing outside the run is touched."""

from __future__ import annotations

import os
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

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


def _model_strategy(model, prefix: str) -> st.SearchStrategy:
    """Every field of a schema group (recursing into nested groups such as assumptions.politics)."""
    fields = {}
    for n, f in model.model_fields.items():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            fields[n] = _model_strategy(f.annotation, f"{prefix}.{n}")
        elif (prefix, n) not in SKIP:
            fields[n] = field_strategy(prefix, n, f)
    return st.fixed_dictionaries(fields)


def scenarios() -> st.SearchStrategy:
    """Random scenarios over the whole schema: every group, including declared assumptions."""
    groups = {n: _model_strategy(f.annotation, n) for n, f in Scenario.model_fields.items()
              if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
    assert set(GROUPS) <= set(groups)
    return st.fixed_dictionaries(groups).map(_consistent)


def _consistent(data: dict) -> dict:
    """The schema's one cross-field rule: operator appetite low <= high (swap a drawn pair)."""
    setup = data.get("assumptions", {}).get("setup", {})
    if setup.get("operator_appetite_low", 0) > setup.get("operator_appetite_high", 1):
        setup["operator_appetite_low"], setup["operator_appetite_high"] = (setup["operator_appetite_high"],
                                                                          setup["operator_appetite_low"])
    return data


def test_every_field_has_a_strategy():
    """The property test below covers the whole schema: a new field type fails here, not silently."""
    assert scenarios() is not None      # builds every field's strategy (field_strategy raises on a new type)


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


# -- helpers for the CLI regressions ------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from portfolio_sim import cli  # noqa: E402

TINY = ["--set", "district.students=400", "--set", "district.schools=4", "--set", "district.neighbourhoods=4"]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and stderr of `portfolio-sim ARGV` in-process."""
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err


def fifo(tmp_path: Path, name: str = "pipe") -> Path:
    p = tmp_path / name
    os.mkfifo(p)
    return p


# -- item 5: file arguments are regular files of bounded size -------------------------------------------------

@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/urandom"])
def test_decisions_from_a_fifo_or_device_is_refused(capsys, tmp_path, special):
    path = str(fifo(tmp_path)) if special == "fifo" else special
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "--decisions", path,
                        "--out", str(tmp_path / "out"), "-q")
    assert code == 2 and "not a regular file" in err


@pytest.mark.parametrize("command", [["validate"], ["run", "--years", "1", "-q"]])
def test_scenario_from_a_fifo_or_device_is_refused(capsys, tmp_path, command):
    for path in (str(fifo(tmp_path)), "/dev/zero"):
        code, err = run_cli(capsys, command[0], path, *command[1:])
        assert code == 2 and "not a regular file" in err


def test_spec_from_a_fifo_is_refused(capsys, tmp_path):
    code, err = run_cli(capsys, "sweep", str(fifo(tmp_path)), "--dry-run")
    assert code == 2 and "not a regular file" in err


def test_oversized_scenario_and_decisions_are_refused(capsys, tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    code, err = run_cli(capsys, "validate", str(big))
    assert code == 2 and "too large" in err and "at most 1 MB" in err
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--decisions", str(big), "--out", str(tmp_path / "o"))
    assert code == 2 and "too large" in err


def test_csv_from_a_fifo_is_refused(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "baseline", *TINY[:2], "--years", "1", "-q", "--out", str(tmp_path / "o"),
                        "--set", f"district.schools_csv={fifo(tmp_path)}")
    assert code == 2 and "not a regular file" in err


# -- item 6: depth limits --------------------------------------------------------------------------------

def test_deeply_nested_toml_is_refused_everywhere(capsys, tmp_path):
    deep = "v = " + "[" * 600 + "]" * 600 + "\n"
    scenario = tmp_path / "deep.toml"
    scenario.write_text(deep)
    code, err = run_cli(capsys, "validate", str(scenario))
    assert code == 2 and "nested too deeply" in err
    code, err = run_cli(capsys, "validate", "baseline", "--set", "autonomy.staffing=" + "{a=" * 600 + "1" + "}" * 600)
    assert code == 2 and "nested too deeply" in err
    code, err = run_cli(capsys, "validate", "baseline", "--set", "run.years=" + "[" * 600 + "]" * 600)
    assert code == 2 and "nested too deeply" in err
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--decisions", str(scenario), "--out", str(tmp_path / "o"))
    assert code == 2 and "nested too deeply" in err
    code, err = run_cli(capsys, "sweep", str(scenario), "--dry-run")
    assert code == 2 and "nested too deeply" in err
    tables = tmp_path / "tables.toml"
    tables.write_text("[" + ".".join(["a"] * 40) + "]\nx = 1\n")
    code, err = run_cli(capsys, "validate", str(tables))
    assert code == 2 and "nested too deeply" in err


def test_long_extends_chain_is_refused(capsys, tmp_path):
    for i in range(200):
        (tmp_path / f"s{i}.toml").write_text(f'extends = "s{i + 1}.toml"\n' if i < 199 else 'name = "end"\n')
    code, err = run_cli(capsys, "validate", str(tmp_path / "s0.toml"))
    assert code == 2 and "`extends` chain is longer than" in err
    code, _ = run_cli(capsys, "validate", str(tmp_path / "s190.toml"))   # a chain of 10 is fine
    assert code == 0


# -- item 7 (decisions keys): only ASCII digits are years and school ids --------------------------------

@pytest.mark.parametrize("text", ['[year."²"]\nboard = "protect"\n', '[year.1.schools."²"]\nintervention = "spare"\n',
                                  '[year."١"]\nboard = "protect"\n', '[year.99999999999999999999]\nboard = "protect"\n'])
def test_decisions_with_non_ascii_digits_are_refused(capsys, tmp_path, text):
    path = tmp_path / "d.toml"
    path.write_text(text, encoding="utf-8")
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--decisions", str(path),
                        "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and ("not a simulated year" in err or "not a school id" in err)


# -- item 9: decisions for schools that do not exist, several seeds, strict types, one-line --set -------

def test_decision_for_a_missing_school_is_refused(capsys, tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('[year.1.schools.99999]\nintervention = "spare"\n')
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--decisions", str(path),
                        "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and "schools.99999: no such school in year 1" in err
    path.write_text('[year.1.schools.2]\nintervention = "spare"\n')
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--decisions", str(path),
                        "--out", str(tmp_path / "o"), "-q")
    assert code == 0, err


def test_per_school_decisions_need_one_seed(capsys, tmp_path):
    path = tmp_path / "d.toml"
    path.write_text('[year.1.schools.2]\nintervention = "spare"\n')
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--seeds", "3", "--decisions", str(path),
                        "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and "need one seed" in err and not (tmp_path / "o" / "yearly.csv").exists()


@pytest.mark.parametrize("setting", ["run.years=true", 'run.years="5"', "run.years=5.0",
                                     'choice.sibling_priority="no"', "choice.sibling_priority=0",
                                     "choice.sibling_priority=no", "district.low_income_share=true"])
def test_lax_coercion_is_refused(capsys, setting):
    code, err = run_cli(capsys, "validate", "baseline", "--set", setting)
    assert code == 2 and "--set" in err


def test_strict_types_in_files(capsys, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('extends = "baseline"\n[run]\nyears = "5"\n')
    code, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and "run.years" in err and "valid integer" in err
    path.write_text('extends = "baseline"\nname = "ok"\n[run]\nyears = 5\n[district]\nlow_income_share = 1\n')
    assert run_cli(capsys, "validate", str(path))[0] == 0      # an integer for a number field is fine


def test_multiline_set_is_refused(capsys):
    code, err = run_cli(capsys, "validate", "baseline", "--set", "run.years=2\nrun.seeds=3")
    assert code == 2 and "one line" in err


def test_text_fields_take_set_values_as_written(capsys):
    assert run_cli(capsys, "validate", "baseline", "--set", "name=2025")[0] == 0


# -- item 12: CSV errors never echo a file that is not a CSV ------------------------------------------------

def test_csv_errors_do_not_echo_non_csv_files(capsys, tmp_path):
    secret = tmp_path / "environ"
    secret.write_bytes(b"SECRET_TOKEN=hunter2\x00HOME=/root\x00")
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nSECRET_TOKEN=hunter2\n")
    for path in (secret, passwd, Path("/proc/self/environ")):
        code, err = run_cli(capsys, "validate", "baseline", "--set", f"district.schools_csv={path}")
        assert code == 2, err
        assert "hunter2" not in err and "root:x" not in err and "HOME=" not in err and "PATH=" not in err


# -- item 13: messages -------------------------------------------------------------------------------------

def test_set_errors_name_the_set_not_the_preset(capsys):
    code, err = run_cli(capsys, "validate", "baseline", "--set", "district.students=abc")
    assert code == 2
    assert "--set 'district.students=abc': invalid value" in err and "baseline.toml" not in err


def test_bad_value_in_a_parent_is_reported_against_the_parent(capsys, tmp_path):
    (tmp_path / "parent.toml").write_text("[district]\nstudents = -5\n")
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\nname = "child"\n')
    code, err = run_cli(capsys, "validate", str(tmp_path / "child.toml"))
    assert code == 2 and f"{tmp_path / 'parent.toml'}: invalid scenario" in err and "child.toml" not in err


def test_missing_parent_names_whose_extends(capsys, tmp_path):
    (tmp_path / "child.toml").write_text('extends = "nowhere.toml"\n')
    code, err = run_cli(capsys, "validate", str(tmp_path / "child.toml"))
    assert code == 2 and f"{tmp_path / 'child.toml'}: extends = 'nowhere.toml'" in err


def test_nan_is_not_a_number_and_long_values_are_cut(capsys):
    code, err = run_cli(capsys, "validate", "baseline", "--set", "district.low_income_share=nan")
    assert code == 2 and "not a number" in err and "should be less" not in err
    code, err = run_cli(capsys, "validate", "baseline", "--set", "choice.policy=" + "x" * 100_000)
    assert code == 2 and len(err) < 2_000 and "(100,002 characters)" in err


def test_toml_with_a_byte_order_mark_is_read(capsys, tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'extends = "baseline"\nname = "bom"\n')
    code, err = run_cli(capsys, "validate", str(path))
    assert code == 0, err


# -- item 8: validate and sweep --dry-run read the district CSVs ------------------------------------------

def test_validate_and_dry_run_read_the_csvs(capsys, tmp_path):
    spec = tmp_path / "spec.toml"
    for bad in (tmp_path / "missing.csv", tmp_path, Path("/etc/passwd"), fifo(tmp_path)):
        code, err = run_cli(capsys, "validate", "baseline", "--set", f"district.schools_csv={bad}")
        assert code == 2 and str(bad) in err, (bad, err)
        spec.write_text(f'name = "csvs"\nbase = "baseline"\nyears = 1\n[set]\n"district.schools_csv" = "{bad}"\n'
                        '[factors]\n"run.start_year" = [2025, 2026]\n')
        code, err = run_cli(capsys, "sweep", str(spec), "--dry-run", "--db", str(tmp_path / "r.db"))
        assert code == 2 and str(bad) in err, (bad, err)
    assert not (tmp_path / "r.db").exists()


# -- item 10: --out safety --------------------------------------------------------------------------------

@pytest.mark.parametrize("out", ["/", "/etc", "/usr/lib/portfolio", "/proc/self", "SRC", "SRC_PARENT"])
def test_out_refuses_system_and_source_folders(capsys, out):
    if out == "SRC":
        out = str(Path(cli.__file__).resolve().parent / "runs")
    elif out == "SRC_PARENT":                       # src/ in a checkout: --force must not write beside the package
        out = str(Path(cli.__file__).resolve().parent.parent)
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", out, "--force")
    assert code == 2 and "--out" in err
    assert not Path(out).exists() or out in ("/", "/etc", "/proc/self") or "source folder" in err
    assert not (Path(out) / "yearly.csv").exists()


def test_out_refuses_unrelated_non_empty_folders_without_force(capsys, tmp_path):
    (tmp_path / "thesis.docx").write_text("precious")
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(tmp_path))
    assert code == 2 and "thesis.docx" in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.docx"]
    code, _ = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(tmp_path), "--force")
    assert code == 0 and (tmp_path / "thesis.docx").read_text() == "precious"


def test_an_earlier_run_is_overwritten_and_symlinks_are_not_followed(capsys, tmp_path):
    out, outside = tmp_path / "run", tmp_path / "outside.html"
    assert run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(out))[0] == 0
    outside.write_text("not yours")
    (out / "report.html").unlink()
    (out / "report.html").symlink_to(outside)
    assert run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(out))[0] == 0
    assert outside.read_text() == "not yours"
    assert not (out / "report.html").is_symlink() and "<html" in (out / "report.html").read_text().lower()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_leaves_no_partial_file(tmp_path):
    from portfolio_sim.outdir import atomic_write

    target = tmp_path / "yearly.csv"
    target.write_text("old, complete")

    def fail(p):
        p.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_text() == "old, complete" and [p.name for p in tmp_path.iterdir()] == ["yearly.csv"]


# -- item 6 / 7: --out names and depth ----------------------------------------------------------------------

def test_out_too_long_or_too_deep(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(tmp_path / ("n" * 300)))
    assert code == 2 and "at most 255" in err and len(err) < 1000
    deep = tmp_path.joinpath(*["d"] * 200)
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(deep))
    assert code == 2 and "folders deep" in err
    assert list(tmp_path.iterdir()) == []


def test_long_scenario_name_gives_a_usable_default_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _ = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--set", "name=" + "n" * 300)
    assert code == 0 and len((next((tmp_path / "runs").iterdir())).name) <= 100


# -- item 7: encodings and a closed stdout (real processes) ---------------------------------------------------

def _cli_process(*argv: str, env: dict | None = None, **kw):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "portfolio_sim.cli", *argv], capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})}, **kw)


def test_non_ascii_name_with_an_ascii_terminal(tmp_path):
    r = _cli_process("run", "baseline", *TINY, "--years", "1", "--set", "name=écoles_ü", "--out", str(tmp_path / "o"),
                     env={"PYTHONIOENCODING": "ascii"})
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "o" / "report.html").exists()


def test_closed_stdout_and_bad_bytes(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(f"{sys.executable} -m portfolio_sim.cli schema >&-", shell=True, capture_output=True,
                       timeout=120)
    assert r.returncode == 2 and b"standard output is closed" in r.stderr
    r = _cli_process("validate", "baseline", "--set", os.fsdecode(b"name=\xff"))
    assert r.returncode == 2 and b"not valid UTF-8" in r.stderr and b"Traceback" not in r.stderr


# -- item 4: memory and time estimated before a run ----------------------------------------------------------

@pytest.mark.parametrize("argv", [["--seeds", "10000"],
                                  ["--set", "district.students=2000000", "--set", "district.schools=5000",
                                   "--seeds", "100"]])
def test_runs_beyond_the_machine_are_refused_with_the_estimate(capsys, tmp_path, argv):
    code, err = run_cli(capsys, "run", "baseline", *argv, "-q", "--out", str(tmp_path / "o"))
    assert code == 2 and "GB of memory" in err and "--force" in err
    assert not (tmp_path / "o").exists()


def test_estimate_follows_the_measured_costs():
    from portfolio_sim.budget import estimate

    small = estimate(Scenario.model_validate({"district": {"students": 100_000, "schools": 500}, "run": {"years": 1}}))
    assert 150 < small.memory_mb < 500 and 3 < small.seconds < 15     # measured: 240 MB, 6 s
    big = estimate(Scenario.model_validate({"district": {"students": 2_000_000, "schools": 5000},
                                            "run": {"years": 10, "seeds": 100}}))
    assert big.seconds > 2 * 3600


# -- item 2: matching input coercion --------------------------------------------------------------------------

def test_matching_huge_unsigned_capacity_and_non_real_scores():
    import numpy as np

    from portfolio_sim.matching import deferred_acceptance, deferred_acceptance_reference

    choices, scores = np.array([[0, 1], [0, 1], [1, 0]]), np.array([[0.5, 0.2], [0.7, 0.1], [0.1, 0.9]])
    for solve in (deferred_acceptance, deferred_acceptance_reference):
        m = solve(choices, scores, np.array([2**63, 2**64 - 1], dtype=np.uint64))
        assert m.school.tolist() == [0, 0, 1]          # every school has room for everyone
        for bad in (scores + 1j, scores.astype(str), np.array([["a", "b"]] * 3, dtype=object)):
            with pytest.raises(ValueError, match="real numbers"):
                solve(choices, bad, np.array([1, 1]))


# -- item 3: sweep designs are counted before they are built ------------------------------------------------

@pytest.mark.parametrize("design", [
    '[factors]\n"district.low_income_share" = {bounds = [0, 1], num = 10000}\n'
    '"district.income_segregation" = {bounds = [0, 1], num = 10000}\n'
    '"choice.participation" = {bounds = [0, 1], num = 10000}\n',
    '[design]\nkind = "sobol"\nsamples = 524288\nsecond_order = true\n[factors]\n'
    '"district.low_income_share" = {bounds = [0, 1]}\n"choice.participation" = {bounds = [0, 1]}\n',
    '[design]\nkind = "lhs"\nsamples = 1000000\n[factors]\n"district.low_income_share" = {bounds = [0, 1]}\n'])
def test_huge_designs_are_refused_quickly(capsys, tmp_path, design):
    import time

    spec = tmp_path / "big.toml"
    spec.write_text('name = "big"\nbase = "baseline"\nyears = 1\nreplicates = 1\n' + design)
    start = time.monotonic()
    code, err = run_cli(capsys, "sweep", str(spec), "--dry-run", "--db", str(tmp_path / "r.db"))
    assert code == 2 and "points; at most 100,000" in err and "PORTFOLIO_SIM_MAX_POINTS" in err
    assert time.monotonic() - start < 30          # counted, not built (building took minutes)


def test_design_cap_can_be_raised_or_lowered(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\nbase = "baseline"\nyears = 1\n[factors]\n"run.start_year" = [2025, 2026, 2027]\n')
    monkeypatch.setenv("PORTFOLIO_SIM_MAX_POINTS", "2")
    code, err = run_cli(capsys, "sweep", str(spec), "--dry-run", "--db", str(tmp_path / "r.db"))
    assert code == 2 and "3 points; at most 2" in err
    monkeypatch.setenv("PORTFOLIO_SIM_MAX_POINTS", "3")
    assert run_cli(capsys, "sweep", str(spec), "--dry-run", "--db", str(tmp_path / "r.db"))[0] == 0


# -- issue 15 re-audit (real hostile inputs the first pass missed) ---------------------------------------------

def test_decision_values_and_keys_are_quoted_short(capsys, tmp_path):
    """A 100 KB decision value was echoed whole (a 100,139-byte message)."""
    path = tmp_path / "d.toml"
    path.write_text('[year.1]\nintervention = "' + "x" * 100_000 + '"\n')
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--decisions", str(path), "-q",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "is not a decision; allowed: rule, spare" in err and len(err) < 1_000, len(err)
    path.write_text('[year.1]\n"' + "k" * 100_000 + '" = "spare"\n')
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--decisions", str(path), "-q",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "unknown decision(s)" in err and len(err) < 1_000, len(err)


def test_the_same_decision_year_twice_is_refused(capsys, tmp_path):
    """[year.1] and [year.01] are both year 1: one silently replaced the other (the run kept "close")."""
    path = tmp_path / "d.toml"
    path.write_text('[year.1]\nintervention = "spare"\n[year.01]\nintervention = "close"\n')
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "2", "--decisions", str(path), "-q",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "[year.01] is year 1 again" in err
    assert not (tmp_path / "o").exists()


def test_an_assumption_set_in_a_parent_is_reported_against_the_parent(capsys, tmp_path):
    """A child's (even empty) [assumptions.politics] table took the blame for its parent's bad value."""
    (tmp_path / "parent.toml").write_text('extends = "baseline"\n[assumptions.politics]\nincumbency = 9\n')
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\n[assumptions.politics]\nseat_noise = 0.5\n')
    code, err = run_cli(capsys, "validate", str(tmp_path / "child.toml"))
    assert code == 2 and f"{tmp_path / 'parent.toml'}: invalid scenario" in err and "child.toml" not in err
    assert "assumptions.politics.incumbency" in err
    # a --set of the whole table replaces the parent's values: its own errors are its own
    code, err = run_cli(capsys, "validate", str(tmp_path / "child.toml"), "--set",
                        "assumptions.politics={incumbency=0.5, bogus=1}")
    assert code == 2 and "--set 'assumptions.politics={incumbency=0.5, bogus=1}': invalid value" in err
    assert "parent.toml" not in err


def test_run_flag_errors_name_the_flag(capsys, tmp_path):
    """`--seeds 0` was reported as "--set 'run.seeds=0'", a --set the user never typed."""
    code, err = run_cli(capsys, "run", "baseline", "--seeds", "0", "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: --seeds 0: invalid value") and "--set" not in err


@pytest.mark.parametrize("command", [["run", "baseline"],
                                     ["robustness", "baseline", "--against", "indianapolis_innovation", "--seeds", "1"]])
def test_huge_world_counts_are_refused_with_the_estimate(capsys, tmp_path, command):
    """--worlds 1000000000 died with MemoryError (exit 1) drawing the worlds."""
    code, err = run_cli(capsys, *command, *TINY, "--years", "1", "--worlds", "1000000000",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "GB of memory" in err and "worlds" in err and "--force" in err
    assert not (tmp_path / "o").exists()


def test_replacing_an_earlier_runs_files_is_said(capsys, tmp_path):
    """A folder holding a yearly.csv counts as an earlier run; the run now says what it replaces."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "yearly.csv").write_text("mine\n")
    code, err = run_cli(capsys, "run", "baseline", *TINY, "--years", "1", "-q", "--out", str(out))
    assert code == 0 and f"note: replacing yearly.csv in {out}" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [["schema"], ["validate", "baseline"], ["assumptions", "--json"]])
def test_output_to_a_full_disk_is_a_clear_error(argv):
    """`schema > /dev/full` was "internal error: OSError: [Errno 28]" with exit 1 (like `>&-`, item 7)."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "portfolio_sim.cli", *argv], stdout=full,
                           stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 2, r.stderr
    assert b"cannot write the output (No space left on device)" in r.stderr and b"internal error" not in r.stderr


def test_discover_refuses_its_out_before_the_analysis(capsys, tmp_path):
    """`discover ... --out /etc` ran PRIM and SALib (15 s here) before refusing the folder."""
    code, err = run_cli(capsys, "discover", str(tmp_path / "missing.db"), "--outcome", "mean_achievement",
                        "--below", "0", "--out", "/etc")
    assert code == 2 and "no such results store" in err       # the store is checked first, as before
    from unittest import mock

    with mock.patch("portfolio_sim.uncertainty.discovery.cases_from_store",
                    side_effect=AssertionError("analysis started")):
        db = tmp_path / "r.db"
        db.write_bytes(b"")
        code, err = run_cli(capsys, "discover", str(db), "--outcome", "mean_achievement", "--below", "0",
                            "--out", "/etc")
    assert code == 2 and "--out /etc: inside the system folder /etc" in err


@pytest.mark.parametrize("setting", ["name=a\x1b[31mred", "name=tab\there", "description=bell\x07"])
def test_control_characters_in_names_and_texts_are_refused(setting: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario's name and texts reach terminals, reports and the dashboard: a terminal escape in them
    was accepted (left by the issue-15 re-audit); line breaks in a description stay allowed."""
    from portfolio_sim.cli import main

    assert main(["validate", "baseline", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert "control character" in err and "Traceback" not in err, err
    from portfolio_sim.scenario import Scenario
    assert Scenario(description="two\nlines\tand a tab").description.count("\n") == 1
