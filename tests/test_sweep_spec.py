"""Experiment specs and designs: validation errors (file, field, value, allowed; exit 2), the designs each
kind generates, seeds, fingerprints, and the shipped experiments."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from portfolio_sim.cli import main
from portfolio_sim.kernel import derive_seeds
from portfolio_sim.scenario import Scenario
from portfolio_sim.sweep import design as designs
from portfolio_sim.sweep.spec import SpecError, load_spec, loads_spec, point_seed, run_seed

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"

SMALL = """\
name = "small"
base = "baseline"
years = 2
replicates = 2
seed = 11
[set]
"district.students" = 2000
"district.schools" = 12
"""


MIN = 'name = "small"\nyears = 2\nreplicates = 2\nseed = 11\n'


def spec_file(tmp_path: Path, body: str, head: str = SMALL, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


# -- the shipped experiments ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["closure_governance_choice", "autonomy_domains_reversal", "global_levers_sobol",
                                  "tiny"])
def test_shipped_experiments_validate(name: str) -> None:
    exp = load_spec(EXPERIMENTS / f"{name}.toml")
    assert exp.name == name
    assert exp.points and exp.replicates >= 1
    for p in exp.points[:20]:
        Scenario.model_validate(p.scenario)   # every stored scenario is a valid scenario


def test_required_experiments_cover_the_issue() -> None:
    e1 = load_spec(EXPERIMENTS / "closure_governance_choice.toml")
    assert e1.design == "grid"
    assert set(e1.factor_paths) == {"accountability.closure_percentile", "governance.category", "choice.policy"}
    e2 = load_spec(EXPERIMENTS / "autonomy_domains_reversal.toml")
    assert {"autonomy.staffing", "autonomy.academic", "autonomy.budget", "autonomy.operations",
            "politics.scheduled_flip_year"} <= set(e2.factor_paths)
    assert {p.params["politics.scheduled_flip_year"] for p in e2.points} == {0, 5}
    e3 = load_spec(EXPERIMENTS / "global_levers_sobol.toml")
    assert e3.design in ("sobol", "lhs") and e3.problem is not None and len(e3.factors) >= 6
    for e in (e1, e2, e3):   # laptop-sized defaults
        assert e.n_runs <= 1000
        assert "Question" in e.text or "question" in e.text.lower()


def test_spec_by_name_from_experiments_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert load_spec("tiny").name == "tiny"


# -- grid, list, seeds ----------------------------------------------------------------------------------

def test_grid_is_the_full_product_first_factor_slowest(tmp_path: Path) -> None:
    exp = load_spec(spec_file(tmp_path, """
        [factors]
        "accountability.closure_percentile" = [0, 5, 10]
        "governance.category" = ["district_run", "partner_run"]
        """))
    assert exp.n_runs == 12
    got = [(p.params["accountability.closure_percentile"], p.params["governance.category"]) for p in exp.points]
    assert got == [(0.0, "district_run"), (0.0, "partner_run"), (5.0, "district_run"), (5.0, "partner_run"),
                   (10.0, "district_run"), (10.0, "partner_run")]
    # factor values are canonical (the schema's types) and the stored scenario carries them
    assert isinstance(exp.points[2].params["accountability.closure_percentile"], float)
    scn = Scenario.model_validate(exp.points[3].scenario)
    assert scn.accountability.closure_percentile == 5.0 and scn.governance.category == "partner_run"
    assert scn.district.students == 2000 and scn.run.years == 2 and scn.run.seeds == 2
    assert scn.run.seed == exp.points[3].seed


def test_dotted_keys_and_quoted_keys_are_the_same_spec(tmp_path: Path) -> None:
    a = load_spec(spec_file(tmp_path, """
        [factors]
        "governance.category" = ["district_run", "partner_run"]
        """, name="a.toml"))
    b = load_spec(spec_file(tmp_path, """
        [factors.governance.category]
        values = ["district_run", "partner_run"]
        """, head=SMALL.replace('"district.students" = 2000', "district.students = 2000"), name="b.toml"))
    assert a.fingerprint() == b.fingerprint()


def test_grid_over_bounds_with_num(tmp_path: Path) -> None:
    exp = load_spec(spec_file(tmp_path, """
        [factors."accountability.closure_percentile"]
        bounds = [0, 20]
        num = 5
        [factors."eligibility.conversions_per_year"]
        bounds = [0, 3]
        num = 4
        """))
    assert sorted({p.params["accountability.closure_percentile"] for p in exp.points}) == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert sorted({p.params["eligibility.conversions_per_year"] for p in exp.points}) == [0, 1, 2, 3]


def test_list_design(tmp_path: Path) -> None:
    exp = load_spec(spec_file(tmp_path, """
        [design]
        kind = "list"
        [[design.points]]
        "governance.category" = "partner_run"
        "accountability.closure_percentile" = 10
        [[design.points]]
        governance.category = "district_run"
        accountability.closure_percentile = 0
        """))
    assert [p.params for p in exp.points] == [
        {"governance.category": "partner_run", "accountability.closure_percentile": 10.0},
        {"governance.category": "district_run", "accountability.closure_percentile": 0.0}]


def test_seeds_derive_from_root_point_and_replicate(tmp_path: Path) -> None:
    exp = load_spec(spec_file(tmp_path, """
        [factors]
        "accountability.closure_percentile" = [0, 5, 10]
        """))
    seeds = {(p.index, r): run_seed(p.seed, r) for p in exp.points for r in range(3)}
    assert len(set(seeds.values())) == 9                  # independent across points and replicates
    for p in exp.points:
        assert p.seed == point_seed(11, p.index)
        # `portfolio-sim run` on the point's scenario (run.seed = point seed) gives the same replicate seeds
        assert [run_seed(p.seed, r) for r in range(3)] == derive_seeds(p.seed, 3)
    crn = load_spec(spec_file(tmp_path, """
        [factors]
        "accountability.closure_percentile" = [0, 5, 10]
        """, head="common_random_numbers = true\n" + SMALL, name="crn.toml"))
    assert {p.seed for p in crn.points} == {11}             # every point: the same replicate seeds


def test_fingerprint_is_stable_and_sensitive(tmp_path: Path) -> None:
    body = """
        [factors]
        "accountability.closure_percentile" = [0, 5]
        """
    a = load_spec(spec_file(tmp_path, body, name="a.toml"))
    again = load_spec(spec_file(tmp_path, body, name="a.toml"))
    assert a.fingerprint() == again.fingerprint()
    more_reps = load_spec(spec_file(tmp_path, body, head=SMALL.replace("replicates = 2", "replicates = 5"), name="b.toml"))
    assert more_reps.fingerprint() == a.fingerprint()      # replicates may grow
    other = load_spec(spec_file(tmp_path, body, head=SMALL.replace("years = 2", "years = 3"), name="c.toml"))
    assert other.fingerprint() != a.fingerprint()
    other_set = load_spec(spec_file(tmp_path, body + '\n"choice.policy" = ["unified"]\n', name="d.toml"))
    assert other_set.fingerprint() != a.fingerprint()


# -- sampled designs -----------------------------------------------------------------------------------

SAMPLED_FACTORS = """
[factors."accountability.closure_percentile"]
bounds = [0, 20]
[factors."eligibility.conversions_per_year"]
bounds = [0, 4]
[factors."governance.category"]
levels = ["district_run", "partner_led", "partner_run"]
"""


@pytest.mark.parametrize("kind,samples,expected", [("lhs", 20, 20), ("sobol", 8, 8 * (3 + 2)),
                                                   ("morris", 4, 4 * (3 + 1))])
def test_sampled_designs(tmp_path: Path, kind: str, samples: int, expected: int) -> None:
    body = f'[design]\nkind = "{kind}"\nsamples = {samples}\n' + SAMPLED_FACTORS
    exp = load_spec(spec_file(tmp_path, body))
    assert len(exp.points) == expected == designs.n_points(kind, 3, samples)
    assert exp.problem is not None and exp.problem["names"] == exp.factor_paths
    closure = [p.params["accountability.closure_percentile"] for p in exp.points]
    conv = [p.params["eligibility.conversions_per_year"] for p in exp.points]
    cat = [p.params["governance.category"] for p in exp.points]
    assert all(0.0 <= v <= 20.0 for v in closure) and len(set(closure)) > 2
    assert all(isinstance(v, int) and 0 <= v <= 4 for v in conv)
    assert set(cat) <= {"district_run", "partner_led", "partner_run"} and len(set(cat)) >= 2
    # the design row is kept, and maps back to the values
    for p in exp.points:
        assert p.row is not None and len(p.row) == 3
        for f, x in zip(exp.factors, p.row, strict=True):
            assert designs.value_from_row(f, x) == p.params[f.path]
    # deterministic: the same spec gives the same design; another design seed another
    assert load_spec(spec_file(tmp_path, body)).fingerprint() == exp.fingerprint()
    reseeded = load_spec(spec_file(tmp_path, body.replace(f"samples = {samples}\n", f"samples = {samples}\nseed = 99\n"),
                                   name="other.toml"))
    assert reseeded.fingerprint() != exp.fingerprint()


def test_lhs_integer_factor_covers_its_range(tmp_path: Path) -> None:
    exp = load_spec(spec_file(tmp_path, """
        [design]
        kind = "lhs"
        samples = 50
        [factors."eligibility.conversions_per_year"]
        bounds = [0, 4]
        """))
    values = [p.params["eligibility.conversions_per_year"] for p in exp.points]
    counts = np.bincount(values, minlength=5)
    assert counts.min() >= 7, counts          # uniform over the integers 0..4, endpoints included


def test_every_point_is_validated_and_a_bad_one_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net behind the per-factor checks: a generated point the schema rejects is reported with its
    index, path and value."""
    path = spec_file(tmp_path, """
        [design]
        kind = "lhs"
        samples = 4
        [factors."accountability.closure_percentile"]
        bounds = [0, 20]
        """)
    real = designs.Design.params

    def broken(self, i):  # noqa: ANN001, ANN202
        return {"accountability.closure_percentile": 75.0} if i == 2 else real(self, i)

    monkeypatch.setattr(designs.Design, "params", broken)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and "point 2" in msg and "accountability.closure_percentile" in msg and "75.0" in msg
    assert "from 0.0 to 50.0" in msg


# -- validation errors ---------------------------------------------------------------------------------

ERRORS = [
    # (spec body after SMALL, substrings the message must contain)
    ('[factors]\n"accountability.closure_pctl" = [0, 5]\n',
     ["factors.accountability.closure_pctl", "not a scenario field", "known fields in accountability",
      "closure_percentile"]),
    ('[factors]\n"acountability.closure_percentile" = [0, 5]\n', ["no group 'acountability'", "groups:"]),
    ('[factors]\n"accountability.closure_percentile" = [0, 60]\n',
     ["factors.accountability.closure_percentile", "60", "from 0.0 to 50.0"]),
    ('[factors]\n"governance.category" = ["district_run", "charter"]\n',
     ["governance.category", "'charter'", "one of 'district_run', 'partner_led', 'partner_run'"]),
    ('[factors]\n"eligibility.conversions_per_year" = [1, 2.5]\n', ["conversions_per_year", "2.5"]),
    ('[design]\nkind = "grd"\n', ["design.kind", "'grd'", "one of 'grid', 'list', 'lhs', 'sobol', 'morris'"]),
    ("replicate = 3\n", ["replicate: unknown key", "known keys here", "replicates"]),
    ("[outputs]\nyearly = false\n", ["outputs.yearly", "always"]),
    ('[set]\n"run.seed" = 3\n', ["set.run.seed", "cannot be set or varied", "seed"]),
    ('[factors]\n"run.years" = [2, 3]\n', ["run.years", "years"]),
    ('[set]\n"district.students" = 50\n', ["district.students", "50", "from 100 to 2000000"]),
    ('[set]\n"district.students" = 2000\n[factors]\n"district.students" = [2000]\n', ["also in [set]"]),
    ('[design]\nkind = "sobol"\nsamples = 12\n[factors."accountability.closure_percentile"]\nbounds = [0, 10]\n',
     ["design.samples", "power of 2", "12", "8 or 16"]),
    ('[design]\nkind = "lhs"\n[factors."accountability.closure_percentile"]\nbounds = [0, 10]\n',
     ["design.samples", "required"]),
    ('[design]\nkind = "lhs"\nsamples = 4\n[factors]\n"accountability.closure_percentile" = [0, 10]\n',
     ["lhs design samples each factor", "bounds"]),
    ('[design]\nkind = "lhs"\nsamples = 4\n[factors."accountability.closure_percentile"]\nbounds = [-5, 10]\n',
     ["bounds", "[-5.0, 10.0]", "outside", "from 0.0 to 50.0"]),
    ('[design]\nkind = "lhs"\nsamples = 4\n[factors."governance.category"]\nbounds = [0, 1]\n',
     ["not a number field", "levels"]),
    ('[design]\nkind = "morris"\nsamples = 4\n[factors."eligibility.conversions_per_year"]\nbounds = [0.5, 3]\n',
     ["integer field", "[0.5, 3.0]"]),
    ('[design]\nkind = "grid"\nsamples = 4\n', ["design.samples", "only for lhs / sobol / morris"]),
    ('[design]\nkind = "list"\n[[design.points]]\n"governance.category" = "partner_run"\n'
     '[[design.points]]\n"choice.policy" = "unified"\n', ["design.points[0]", "missing choice.policy"]),
    ('[factors]\n"accountability.closure_percentile" = [5, 5.0]\n', ["appears twice"]),
    ("[factors\n", ["not valid TOML"]),
    ('[set]\n"district.students" = 2000\nreplicates = 3\n', ["set.replicates", "top-level key", "move it above"]),
]


@pytest.mark.parametrize("body,needles", ERRORS, ids=[f"e{i}" for i in range(len(ERRORS))])
def test_spec_errors_name_file_field_value_allowed(tmp_path: Path, body: str, needles: list[str]) -> None:
    path = spec_file(tmp_path, body, head=MIN)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in:\n{msg}"


def test_missing_name_and_bad_base(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"name: required"):
        loads_spec('base = "baseline"\n', source="s.toml")
    with pytest.raises(SpecError, match=r"name: String should match pattern"):
        loads_spec('name = "has space"\n', source="s.toml")
    with pytest.raises(SpecError, match=r"base: .*no_such_preset: no such scenario file or preset"):
        loads_spec('name = "x"\nbase = "no_such_preset"\n', source="s.toml")


def test_base_relative_to_the_spec_and_csv_paths(tmp_path: Path) -> None:
    (tmp_path / "scn").mkdir()
    (tmp_path / "scn" / "mine.toml").write_text('extends = "baseline"\nname = "mine"\n[district]\nstudents = 3000\n',
                                                encoding="utf-8")
    exp = load_spec(spec_file(tmp_path, """
        base = "scn/mine.toml"
        [factors]
        "district.schools_csv" = ["data/schools.csv"]
        """, head='name = "rel"\nyears = 2\n'))
    scn = exp.points[0].scenario
    assert scn["district"]["students"] == 3000
    assert scn["district"]["schools_csv"] == str((tmp_path / "data" / "schools.csv").resolve())


def test_cli_spec_error_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec_file(tmp_path, '[factors]\n"accountability.closure_percentile" = [0, 60]\n')
    assert main(["sweep", str(path), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "from 0.0 to 50.0" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.db").exists()        # nothing written for an invalid spec
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "no such experiment spec" in capsys.readouterr().err
    assert main(["sweep", str(path), "--workers", "0"]) == 2


def test_dry_run_shows_the_design_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "dry.db"
    assert main(["sweep", str(EXPERIMENTS / "tiny.toml"), "--db", str(db), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tiny: grid design, 4 point(s) x 2 replicate(s) = 8 runs of 3 years" in out
    assert "point 0: accountability.closure_percentile=0.0, governance.category='district_run'" in out
    assert not db.exists()


# -- streamed designs: point i computed from i, never a list of every point ------------------------

def _grid_spec(tmp_path: Path, n_closure: int, n_operators: int, name: str) -> Path:
    return spec_file(tmp_path, f"""
        [factors]
        "accountability.closure_percentile" = {{bounds = [0, 20], num = {n_closure}}}
        "district.operators" = {{bounds = [1, 200], num = {n_operators}}}
        """, name=name)


def test_grid_index_to_point_is_the_nested_loop_order() -> None:
    """Mixed radix, last factor fastest: the order itertools.product gave when points were a list; on a
    design of 10^12 points, far beyond any list, point i is computed at once."""
    import itertools

    from portfolio_sim.sweep.spec import Factor

    values = [[0.0, 5.0, 10.0], ["a", "b"], [1, 2, 3, 4]]
    factors = [Factor(f"g.f{k}", "values", values=v) for k, v in enumerate(values)]
    design = designs.Design(factors, 24)
    assert [tuple(design.params(i).values()) for i in range(24)] == list(itertools.product(*values))
    huge = [Factor(f"g.f{k}", "values", values=list(range(10_000))) for k in range(3)]
    big = designs.Design(huge, 10_000 ** 3)
    assert big.params(123_456_789_012) == {"g.f0": 1234, "g.f1": 5678, "g.f2": 9012}
    with pytest.raises(IndexError):
        big.params(10_000 ** 3)


def test_sampled_points_are_the_rows_salib_draws(tmp_path: Path) -> None:
    exp = load_spec(spec_file(tmp_path, """
        [design]
        kind = "sobol"
        samples = 8
        [factors]
        "accountability.closure_percentile" = {bounds = [0, 20]}
        "governance.category" = {levels = ["district_run", "partner_led", "partner_run"]}
        """))
    assert exp.problem is not None
    X = designs.sample("sobol", exp.problem, 8, exp.design_seed or 0)
    assert len(exp.points) == len(X) == 32
    for i in (0, 7, 31):
        assert exp.points[i].row == [float(v) for v in X[i]]
    assert exp.points[-1].index == 31 and [p.index for p in exp.points[30:]] == [30, 31]


def test_a_large_design_plans_in_bounded_memory(tmp_path: Path) -> None:
    """Loading (every point validated), fingerprinting and planning a design keep only aggregates: the peak
    does not grow with the design (10x the points, about the same peak) and stays a small fraction of what
    the points would take as a list, as they did before they were streamed."""
    import tracemalloc

    from portfolio_sim.sweep.runner import plan_runs

    def peak(path: Path) -> tuple[int, int, int]:
        tracemalloc.start()
        try:
            exp = load_spec(path)
            exp.fingerprint()
            plan = plan_runs(exp, {(0, 0): "done"})
            planned = sum(1 for _ in plan)
            return tracemalloc.get_traced_memory()[1], planned, len(plan)
        finally:
            tracemalloc.stop()

    small_peak, _, _ = peak(_grid_spec(tmp_path, 6, 20, "small.toml"))           # 120 points
    big = _grid_spec(tmp_path, 30, 40, "big.toml")                                # 1,200 points
    big_peak, planned, n_planned = peak(big)
    assert planned == n_planned == 1_200 * 2 - 1                                 # 2 replicates, one done
    exp = load_spec(big)
    assert exp.max_students == 2000 and len(exp.points) == 1_200
    tracemalloc.start()
    as_list = [exp.points[i] for i in range(0, 1_200, 10)]                       # a tenth, as a list
    list_bytes = tracemalloc.get_traced_memory()[0] * 10
    tracemalloc.stop()
    del as_list
    print(f"peak {small_peak / 2**20:.2f} MB (120 points), {big_peak / 2**20:.2f} MB (1,200 points); "
          f"1,200 points as a list {list_bytes / 2**20:.1f} MB")
    assert big_peak < 1.5 * small_peak + 2**19, (small_peak, big_peak)
    assert big_peak < list_bytes / 5 and big_peak - small_peak < list_bytes / 50, (big_peak, list_bytes)


def test_stored_states_of_a_million_runs_plan_in_a_few_megabytes() -> None:
    """Resuming a big sweep reads every stored run's status: one byte per run (a dict keyed by (point,
    replicate) took about 200 bytes per run), and the plan skips exactly the settled runs."""
    import tracemalloc

    from portfolio_sim.sweep.runner import Plan
    from portfolio_sim.sweep.store import RunStates

    n_points, replicates = 100_000, 10
    tracemalloc.start()
    try:
        states = RunStates(n_points, replicates)
        rows = [(p, r, "done") for p in range(0, n_points, 2) for r in range(replicates)]      # half done
        rows += [(1, 0, "failed"), (3, 9, "failed"), (n_points + 5, 0, "done")]               # last: not in design
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for k in range(0, len(rows), RunStates.CHUNK):
            states.add(rows[k:k + RunStates.CHUNK])
        del rows
        plan = Plan(n_points, replicates, states)
        first = next(iter(plan))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert (states.done, states.failed) == (n_points // 2 * replicates, 2)
    assert len(plan) == n_points * replicates // 2 - 2 and first == (3, 0)       # 1 failed at r=0: settled
    assert len(Plan(n_points, replicates, states, retry_failed=True)) == n_points * replicates // 2
    print(f"peak {peak / 2**20:.1f} MB for {n_points * replicates:,} runs")
    assert peak < 12_000_000, peak           # the codes (1 MB), one chunk's arrays, one replicate's indices
