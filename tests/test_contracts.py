"""Mechanism contracts: each mechanism changes only the state it declares (`Mechanism.writes` and the
actions it `calls`), and every declared write is one the state table (`portfolio_sim.state`) gives it.

The check hashes every state array, model attribute and random stream before and after each mechanism,
year after year, in runs busy enough to exercise every branch that writes: conversions and new
schools, closures, restarts and operator replacements, non-renewals and reversions, a scheduled board
flip with a reversal, budget shocks, school choice, and workshop decisions.
"""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

from portfolio_sim import mechanisms, state
from portfolio_sim.decisions import RULES, Decisions
from portfolio_sim.kernel import Run
from portfolio_sim.scenario import Scenario

BUSY = {
    "district": {"students": 4000, "schools": 18, "operators": 3, "charter_schools": 2},
    "eligibility": {"schools": "turnaround", "conversions_per_year": 3, "turnaround_percentile": 45,
                    "new_schools_per_year": 1},
    "autonomy": {"staffing": 1, "academic": 1, "budget": 1, "operations": 1},
    "governance": {"category": "partner_run", "legal_basis": "mou"},
    "accountability": {"closure_percentile": 20, "intervention": "replace_operator", "consecutive_years": 2,
                       "contract_term": 3, "renewal_percentile": 45},
    "politics": {"scheduled_flip_year": 5, "budget_shock_probability": 0.3},
    "central_office": {"services": "a_la_carte", "autonomy_office": True},
    "talent": {"incubator": True, "leader_pipeline": 1.0},
    "implementation": {"startup_funding": 500},
    "choice": {"policy": "unified"},
    "run": {"years": 10},
}
CLOSING = {**BUSY, "accountability": {"closure_percentile": 25, "intervention": "close", "consecutive_years": 2},
           "governance": {"category": "district_run", "legal_basis": "district_policy"},
           "district": {**BUSY["district"], "cohort_change": -0.06, "min_viable_share": 0.75}}
RESTARTING = {**BUSY, "accountability": {"closure_percentile": 25, "intervention": "restart", "applies_to": "all",
                                         "consecutive_years": 1}}

# Model attributes that are not simulation state (the scenario, Mesa's bookkeeping, the mechanism list).
NOT_STATE = {"scenario", "seed", "mechanisms", "datacollector", "streams", "students", "schools", "operators",
             "families", "operator_agents", "central_office", "running", "random", "rng", "time", "steps",
             "space", "agents", "school_agents", "step"}


def _digest(value) -> str:
    h = hashlib.blake2b(digest_size=16)
    if isinstance(value, np.ndarray):
        h.update(str((value.dtype, value.shape)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for k, v in sorted(vars(value).items()):
            if k not in ("model",) and not k.startswith("_"):
                h.update(k.encode() + _digest(v).encode())
    else:
        h.update(pickle.dumps(value))
    return h.hexdigest()


def snapshot(model, rows: dict[str, int] | None = None) -> dict[str, str]:
    """A digest of every piece of simulation state, named as the contracts name it. With `rows` (a
    table's length before), a table that grew is digested over its old rows and reported as
    `<table>.rows` (rows appended)."""
    out = {}
    for table in ("students", "schools", "operators"):
        obj = getattr(model, table)
        n = len(obj)
        old = n if rows is None else rows[table]
        if old != n:
            out[f"{table}.rows"] = str(n)
        for name, value in vars(obj).items():
            out[f"{table}.{name}"] = _digest(value[:old])
    for name, value in vars(model).items():
        if name in NOT_STATE or name.startswith("_"):
            continue
        out[f"model.{name}"] = _digest(value)
    out["model.school_agents"] = str(len(model.school_agents))
    for name, rng in model.streams.items():
        out[f"stream.{name}"] = _digest(rng.bit_generator.state)
    return out


def lengths(model) -> dict[str, int]:
    return {table: len(getattr(model, table)) for table in ("students", "schools", "operators")}


def changes(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in after if before.get(k) != after[k]}


def observed_writes(spec: dict, seed: int, years: int, decisions: dict[int, Decisions] | None = None
                    ) -> dict[str, set[str]]:
    run = Run(Scenario.model_validate(spec), seed)
    seen: dict[str, set[str]] = {m.name: set() for m in mechanisms.year()}
    try:
        model = run.model
        for year in range(1, years + 1):
            model.decisions = (decisions or {}).get(year, RULES)
            model.year += 1          # what PortfolioModel.step does around the mechanisms
            model.year_stats = {k: 0 for k in model.year_stats}
            model.closed_this_year = []
            for m in model.mechanisms:
                before, n = snapshot(model), lengths(model)
                m.step(model)
                seen[m.name] |= changes(before, snapshot(model, n))
            model._collect()
    finally:
        run.release()
    return seen


@pytest.fixture(scope="module")
def observed() -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    workshop = {3: Decisions(intervention="spare", applications="approve"), 6: Decisions(board="reverse")}
    for spec, seed, decisions in ((BUSY, 1, None), (BUSY, 2, workshop), (CLOSING, 3, None), (RESTARTING, 4, None)):
        for name, keys in observed_writes(spec, seed, 9, decisions).items():
            seen.setdefault(name, set()).update(keys)
    return seen


def test_every_mechanism_changes_only_what_it_declares(observed):
    problems = {}
    for m in mechanisms.year():
        undeclared = observed[m.name] - m.all_writes
        if undeclared:
            problems[m.name] = sorted(undeclared)
    assert not problems, f"mechanisms changed state they do not declare: {problems}"


def test_the_busy_runs_exercise_the_declared_writes(observed):
    """The check above can only catch what the runs do: most declared writes must really happen."""
    declared = set().union(*(m.all_writes for m in mechanisms.year()))
    seen = set().union(*observed.values())
    assert len(seen) >= 0.85 * len(declared), sorted(declared - seen)
    for key in ("schools.sector", "schools.is_open", "schools.rollback", "model.funding_factor",
                "model.office_active", "model.pending", "students.displaced", "model.events"):
        assert key in seen, key


def _columns() -> dict[str, state.Column]:
    out = {}
    for table, cols in (("schools", state.SCHOOL_COLUMNS), ("students", state.STUDENT_COLUMNS),
                        ("operators", state.OPERATOR_COLUMNS), ("model", state.MODEL_STATE)):
        out.update({f"{table}.{c.name}": c for c in cols})
    for m in mechanisms.year():       # state a mechanism declares itself
        out.update({f"model.{c.name}": c for c in m.state})
    for table, owner in state.ROW_OWNERS.items():
        for pseudo in ("rows", "name"):
            out[f"{table}.{pseudo}"] = state.Column(pseudo, "", None, "rows appended", owner)
    return out


def test_declared_writes_agree_with_the_state_table():
    columns = _columns()
    problems = []
    writers = [(m.name, m.writes) for m in mechanisms.year()]
    actions = {name for m in mechanisms.year() for name in m.calls}
    while True:   # actions an action calls
        more = {c for name in actions for c in mechanisms.action(name).calls} - actions
        if not more:
            break
        actions |= more
    writers += [(mechanisms.action(name).module, mechanisms.action(name).writes) for name in sorted(actions)]
    for who, writes in writers:
        for key in writes:
            col = columns.get(key)
            if col is None:
                problems.append(f"{who} writes {key}, which is not in the state table")
            elif who not in (col.owner, *col.also):
                problems.append(f"{who} writes {key}, owned by {col.owner} (also: {col.also})")
    assert not problems, problems


# Model attributes set once when the model is built and never written by the year (district geometry,
# reference levels): MODEL_STATE lists only what the year writes.
SET_UP_CONSTANTS = {
    "model.band_structure", "model.n_bands", "model.band_of_grade", "model.entry_grade", "model.hh_xy",
    "model.hh_low_income", "model.nb_xy", "model.nb_low_income", "model.hh_nb", "model.kindergarten_cohort",
    "model.talent_pool_share", "model.reference_resources", "model.rating_reference",
    "model.initial_satisfaction",
}


def test_every_piece_of_state_is_declared():
    """Every array and model attribute a run holds is in the state table or a set-up constant."""
    with Run(Scenario.model_validate(BUSY), 1) as run:
        run.advance()
        names = {k for k in snapshot(run.model) if not k.startswith("stream.")}
    missing = sorted(names - set(_columns()) - SET_UP_CONSTANTS)
    assert not missing, f"state not in portfolio_sim.state's tables: {missing}"


def test_the_check_catches_an_undeclared_write(monkeypatch):
    """A mechanism that writes a column it does not declare is caught."""
    finance = next(m for m in mechanisms.year() if m.name == "finance")

    def sloppy(model):
        finance.step(model)
        model.schools.rating_pct[:] = 50.0     # accountability's column

    import dataclasses
    patched = tuple(dataclasses.replace(m, step=sloppy) if m.name == "finance" else m for m in mechanisms.year())
    monkeypatch.setattr(mechanisms, "year", lambda: patched)
    seen = observed_writes(BUSY, 1, 2)
    assert "schools.rating_pct" in seen["finance"] - finance.all_writes


def test_streams_derive_from_the_declarations():
    idx = mechanisms.stream_indexes()
    assert list(idx)[:3] == list(mechanisms.SETUP_STREAMS)
    assert len(set(idx.values())) == len(idx)
    own = {m.stream for m in mechanisms.year() if m.stream}
    assert own == set(idx) - set(mechanisms.SETUP_STREAMS)


def test_each_mechanism_declares_the_assumption_group_it_reads():
    """`Mechanism.assumptions` names a group of declared assumptions, and the module reads no other group."""
    import inspect
    import re

    from portfolio_sim.assumptions import ASSUMPTION_GROUPS
    for m in mechanisms.year():
        source = inspect.getsource(inspect.getmodule(m.step))
        read = set(re.findall(r"assumptions\.([a-z_]+)\b", source)) - {"py"}
        assert read <= ({m.assumptions} if m.assumptions else set()), (m.name, read)
        if m.assumptions is not None:
            assert m.assumptions in ASSUMPTION_GROUPS, m.name
            assert read == {m.assumptions}, (m.name, read)


# The worked example of CONTRIBUTING.md ("How to add a mechanism"): a mechanism declared in its own
# module runs in its place, draws from its own stream, keeps its own state and may add a metric, without
# touching the model, the kernel or any other mechanism; the other mechanisms' draws do not change.
def _facilities_step(model) -> None:
    rng = model.streams["facilities"]
    wear = 0.02 * int(model.schools.district.sum())
    model.maintenance_backlog = 0.9 * model.maintenance_backlog + wear * (1.0 + 0.1 * rng.standard_normal())


FACILITIES = mechanisms.Mechanism(
    name="facilities", order=6.5, step=_facilities_step, phase="finance", stream="facilities", stream_index=9,
    reads=("schools.is_open", "schools.sector"), writes=(),
    state=(state.Column("maintenance_backlog", "float", 0.0, "deferred maintenance (school-years)", "facilities"),))


def test_a_new_mechanism_needs_only_its_declaration(monkeypatch):
    spec = {**BUSY, "run": {"years": 4}}
    plain = Run(Scenario.model_validate(spec), 5)
    with plain:
        for _ in range(4):
            plain.advance()
        before = plain.result().yearly
    with_new = (*mechanisms.year(), FACILITIES)
    monkeypatch.setattr(mechanisms, "year", lambda: with_new)
    mechanisms.stream_indexes.cache_clear()
    try:
        assert mechanisms.stream_indexes()["facilities"] == 9
        with Run(Scenario.model_validate(spec), 5) as run:
            assert [m.name for m in run.model.mechanisms][-2:] == ["finance", "facilities"]
            for _ in range(4):
                run.advance()
            assert run.model.maintenance_backlog > 0
            after = run.result().yearly
        seen = observed_writes(spec, 5, 3)
        assert seen["facilities"] <= FACILITIES.all_writes
        assert "model.maintenance_backlog" in seen["facilities"]
    finally:
        mechanisms.stream_indexes.cache_clear()
    assert before.equals(after), "adding a mechanism changed the other mechanisms' results"
