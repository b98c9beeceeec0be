"""Experiment specs: TOML files under `experiments/` that say what to sweep, and their validation.

A spec names a base scenario, the factors to vary (dotted scenario paths such as
``accountability.closure_percentile``), the design that turns factors into points (a full grid, an
explicit list, or a Latin hypercube, Sobol or Morris sample drawn with SALib), the number of replicates
per point, the years to simulate, the root seed and which outputs to keep. See docs/SWEEPS.md for the
format; a minimal spec::

    name = "closure_by_category"
    base = "baseline"                  # a preset name, or a scenario file relative to this spec
    years = 10
    replicates = 5
    seed = 2025

    [set]                              # fixed for every point
    "eligibility.schools" = "turnaround"

    [factors]
    "accountability.closure_percentile" = [0, 5, 10, 20]
    "governance.category" = ["district_run", "partner_led", "partner_run"]

Errors name the file, the field, the value and what is allowed, like scenario errors, and are raised as
:class:`SpecError` (a :class:`~portfolio_sim.errors.ScenarioError`, so the CLI exits 2 without a
traceback). Every factor path must be a scenario field, and every point of the design must be a valid
scenario: :func:`load_spec` builds and validates them all before anything runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import types
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portfolio_sim.assumptions import ASSUMPTION_GROUPS
from portfolio_sim.errors import ScenarioError
from portfolio_sim.scenario import (
    GROUPS,
    Scenario,
    describe_bounds,
    field_bounds,
    format_errors,
    format_validation_error,
    load_raw,
    resolve_scenario_path,
    shown_path,
)
from portfolio_sim.inputs import parse_toml, read_text

DESIGN_KINDS = ("grid", "list", "lhs", "sobol", "morris")
SAMPLED = ("lhs", "sobol", "morris")
FACTOR_KEYS = ("values", "levels", "bounds", "num")
# Scenario fields the sweep itself sets: a spec may not set or vary them.
RESERVED = {
    "run.seed": "the sweep derives every run's seed from the spec's `seed` (see docs/SWEEPS.md, Seeds)",
    "run.seeds": "use the spec's `replicates`",
    "run.years": "use the spec's `years`",
}
# Scenario fields holding file paths: relative values in a spec are relative to the spec file.
PATH_FIELDS = ("district.schools_csv", "district.neighbourhoods_csv")
MAX_SEED = 2**32 - 1
DEFAULT_MAX_POINTS = 100_000      # design points per spec; each is validated and stored before runs start
MAX_POINTS_ENV = "PORTFOLIO_SIM_MAX_POINTS"


class SpecError(ScenarioError):
    """An invalid experiment spec; the message names the file, the field, the value and what is allowed."""


# ------------------------------------------------------------------------------------------------
# The file format (pydantic, unknown keys are errors)
# ------------------------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FactorSpec(_Strict):
    """One factor: `values` (grid/list), `levels` (choices; any design), `bounds` (+ `num` for a grid)."""

    values: list[Any] | None = Field(None, min_length=1, description="explicit values (grid)")
    levels: list[Any] | None = Field(None, min_length=1,
                                     description="choices; a sampled design draws them uniformly")
    bounds: list[float] | None = Field(None, min_length=2, max_length=2,
                                       description="[low, high] of a number field (sampled designs; grid with num)")
    num: int | None = Field(None, ge=2, le=10_000, description="grid only: evenly spaced values within bounds")


class DesignSpec(_Strict):
    kind: Literal["grid", "list", "lhs", "sobol", "morris"] = Field(
        "grid", description="full grid, explicit list of points, or a SALib sample")
    samples: int | None = Field(
        None, ge=1, le=1_000_000,
        description="lhs: points; sobol: base sample N (a power of 2; N*(D+2) points, N*(2D+2) with "
                    "second_order); morris: trajectories (N*(D+1) points)")
    second_order: bool = Field(False, description="sobol only: also estimate second-order indices")
    num_levels: int = Field(4, ge=2, le=100, description="morris only: grid levels")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="seed of the sampled design (default: the spec's seed)")
    points: list[dict[str, Any]] | None = Field(None, min_length=1,
                                                description="list only: the points, each a table of factor values")


class OutputsSpec(_Strict):
    yearly: Literal[True] = Field(True, description="yearly model-level metrics are always kept")
    schools: bool = Field(False, description="the per-school yearly panel")
    events: bool = Field(False, description="the event log")


class SpecFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
                      description="experiment name: letters, digits, '_', '.', '-' (up to 100)")
    description: str = ""
    base: str = Field("baseline", description="a preset name or a scenario file (relative to the spec)")
    years: int | None = Field(None, ge=1, le=60, description="simulated years (default: the base scenario's)")
    replicates: int | None = Field(None, ge=1, le=100_000,
                                   description="runs per point (default: the base scenario's run.seeds)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="root seed of the experiment (default: the base scenario's run.seed)")
    common_random_numbers: bool = Field(
        False, description="every point uses the same replicate seeds (differences come from the levers)")
    set: dict[str, Any] = Field(default_factory=dict, description="fixed scenario values, by dotted path")
    factors: dict[str, FactorSpec] = Field(default_factory=dict, description="what varies, by dotted path")
    design: DesignSpec = Field(default_factory=DesignSpec)
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)


# ------------------------------------------------------------------------------------------------
# The resolved experiment
# ------------------------------------------------------------------------------------------------

@dataclass
class Factor:
    """A validated factor: its scenario path and how it is specified."""

    path: str
    kind: Literal["values", "levels", "bounds"]
    values: list[Any] | None = None        # grid/list values, or the levels of a categorical factor
    bounds: tuple[float, float] | None = None
    integer: bool = False                  # an integer field: sampled values are rounded

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "integer": self.integer}
        if self.values is not None:
            out["values"] = self.values
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        return out


@dataclass
class Point:
    """One point of the design: factor values, the SALib design row, its seed and resolved scenario."""

    index: int
    params: dict[str, Any]
    seed: int                               # the point's root seed; replicate r runs with run_seed(seed, r)
    scenario: dict[str, Any]                # the resolved scenario (JSON-ready); `portfolio-sim run` repeats it
    row: list[float] | None = None          # the sampled design row (problem units), sampled designs only


@dataclass
class Experiment:
    """A validated experiment: the spec, its resolved base, factors and every point."""

    name: str
    description: str
    spec: SpecFile
    text: str                               # the spec file as written
    path: Path | None
    base_path: Path
    years: int
    replicates: int
    seed: int
    common_random_numbers: bool
    design: str
    fixed: dict[str, Any]
    factors: list[Factor]
    points: Sequence[Point]                 # DesignPoints: built from the index on demand, never all at once
    problem: dict[str, Any] | None = None   # SALib problem (sampled designs)
    keep_schools: bool = False
    keep_events: bool = False
    design_seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_students: int = 0                   # the largest district of any point (the run-time estimate)
    # (schools_csv, neighbourhoods_csv, band_structure) -> the first point using them
    district_files: dict[tuple[Any, ...], int] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False)

    def design_options(self) -> dict[str, Any]:
        """The design's settings as stored with the experiment (what SALib's analyze needs)."""
        d = self.spec.design
        out: dict[str, Any] = {"kind": self.design}
        if self.design in SAMPLED:
            out.update(samples=d.samples, seed=self.design_seed)
        if self.design == "sobol":
            out["second_order"] = d.second_order
        if self.design == "morris":
            out["num_levels"] = d.num_levels
        return out

    @property
    def n_runs(self) -> int:
        return len(self.points) * self.replicates

    @property
    def factor_paths(self) -> list[str]:
        return [f.path for f in self.factors]

    def fingerprint(self) -> str:
        """A hash of everything that determines the stored values of each (point, replicate) run:
        years, outputs, the points' factor values, seeds and resolved scenarios. Not the replicate count
        (an experiment may grow more replicates: existing runs keep their seeds) and not names or
        descriptions. Computed a point at a time while :func:`load_spec` validates them."""
        if self._fingerprint is None:
            fp = Fingerprint(self)
            for p in self.points:
                fp.add(p)
            self._fingerprint = fp.hexdigest()
        return self._fingerprint

    def summary(self) -> str:
        factors = ", ".join(self.factor_paths) or "none"
        return (f"{self.name}: {self.design} design, {len(self.points)} point(s) x {self.replicates} "
                f"replicate(s) = {self.n_runs} runs of {self.years} years; factors: {factors}")


# ------------------------------------------------------------------------------------------------
# Seeds
# ------------------------------------------------------------------------------------------------

def point_seed(root: int, index: int, common_random_numbers: bool = False) -> int:
    """The root seed of point `index`: child `index` of the experiment's root SeedSequence (or the root
    itself with common random numbers)."""
    if common_random_numbers:
        return int(root)
    return int(np.random.SeedSequence(int(root), spawn_key=(int(index),)).generate_state(1, dtype=np.uint32)[0])


def run_seed(point_root: int, replicate: int) -> int:
    """The seed of replicate `replicate` of a point: child `replicate` of the point's SeedSequence. The
    same as ``portfolio_sim.kernel.derive_seeds(point_root, n)[replicate]`` for any n > replicate, so
    ``portfolio-sim run`` on a point's stored scenario repeats its replicates exactly."""
    ss = np.random.SeedSequence(int(point_root), spawn_key=(int(replicate),))
    return int(ss.generate_state(1, dtype=np.uint32)[0])


# ------------------------------------------------------------------------------------------------
# Helpers: paths, field metadata, error formatting
# ------------------------------------------------------------------------------------------------

def scenario_field(path: str, where: str) -> Any:
    """The pydantic FieldInfo of a dotted scenario path (`group.field`, or `assumptions.group.name` for a
    declared assumption), or a SpecError naming `where`."""
    parts = path.split(".")
    groups = ", ".join(GROUPS)
    if parts[0] == "assumptions":
        agroups = ", ".join(ASSUMPTION_GROUPS)
        acls = ASSUMPTION_GROUPS.get(parts[1]) if len(parts) == 3 and all(parts) else None
        if acls is None:
            raise SpecError(f"{where}: {path!r} is not an assumption; use assumptions.group.name, e.g. "
                            f"assumptions.politics.incumbency (groups: {agroups}; see `portfolio-sim assumptions`)")
        info = acls.model_fields.get(parts[2])
        if info is None:
            raise SpecError(f"{where}: {path!r} is not an assumption; known in assumptions.{parts[1]}: "
                            + ", ".join(acls.model_fields))
        return info
    if len(parts) != 2 or not all(parts):
        raise SpecError(f"{where}: {path!r} is not a scenario field; use group.field, e.g. "
                        f"accountability.closure_percentile (groups: {groups})")
    group, name = parts
    cls = GROUPS.get(group)
    if cls is None:
        raise SpecError(f"{where}: {path!r} is not a scenario field: no group {group!r}; groups: {groups}")
    info = cls.model_fields.get(name)
    if info is None:
        raise SpecError(f"{where}: {path!r} is not a scenario field; known fields in {group}: "
                        + ", ".join(cls.model_fields))
    if path in RESERVED:
        raise SpecError(f"{where}: {path!r} cannot be set or varied by a spec: {RESERVED[path]}")
    return info


def _field_kind(info: Any) -> str:
    """'int', 'float', 'bool', 'choice' (Literal), 'text' (str / optional path)."""
    ann = info.annotation
    if get_origin(ann) is Literal:
        return "choice"
    if ann is bool:
        return "bool"
    if ann is int:
        return "int"
    if ann is float:
        return "float"
    return "text"


_field_range = field_bounds


def _flatten_paths(table: Any, where: str, is_leaf: Any = None) -> dict[str, Any]:
    """`{"a.b": 1}` or `{"a": {"b": 1}}` (TOML dotted keys) -> `{"a.b": 1}`: group.field keys only."""
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table of group.field = value, got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if "." in key:
            out[key] = value
        elif key == "assumptions" and isinstance(value, dict):   # assumptions.group.name: one level deeper
            for sub, v in _flatten_paths(value, where, is_leaf).items():
                out[f"{key}.{sub}"] = v
        elif isinstance(value, dict) and not (is_leaf and is_leaf(value)):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[key] = value   # reported by scenario_field as "not a scenario field"
    return out


def _get_path(scn: Any, path: str) -> Any:
    """The value at a dotted path of a validated scenario."""
    for part in path.split("."):
        scn = getattr(scn, part)
    return scn


def _is_factor_table(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in FACTOR_KEYS)


def _allowed_in_spec(loc: tuple[Any, ...]) -> str:
    """What is allowed at a location of the spec file (bounds, choices, known keys)."""
    model: Any = SpecFile
    i = 0
    while i < len(loc) - 1:
        info = model.model_fields.get(str(loc[i])) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return ""
        ann = info.annotation
        # unwrap Optional / containers down to a model
        args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) is not None else []
        if get_origin(ann) is dict:
            model = args[1] if len(args) == 2 else None
            i += 2
            continue
        if get_origin(ann) is list:
            model = args[0] if args else None
            i += 2
            continue
        if args and get_origin(ann) is not Literal:
            ann = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), ann)
        model = ann
        i += 1
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or not loc:
        return ""
    info = model.model_fields.get(str(loc[-1]))
    if info is None:
        return "known keys here: " + ", ".join(model.model_fields)
    return describe_spec_field(info)


def describe_spec_field(info: Any) -> str:
    """'allowed: an integer from 1 to 100000 (or leave it out)' for a key of the spec format."""
    ann = info.annotation
    optional = False
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        optional = len(args) < len(get_args(ann))
        ann = args[0] if len(args) == 1 else ann
    lo, hi = _field_range(info)
    rng = f" from {lo} to {hi}" if lo is not None and hi is not None else f" >= {lo}" if lo is not None else ""
    if get_origin(ann) is Literal and len(get_args(ann)) == 1:
        only = get_args(ann)[0]
        text = "only " + (str(only).lower() if isinstance(only, bool) else repr(only)) + (
            f" ({info.description})" if info.description else "")
    elif get_origin(ann) is Literal:
        text = "one of " + ", ".join(repr(c) for c in get_args(ann))
    elif ann is bool:
        text = "true or false"
    elif ann is int:
        text = "an integer" + rng
    elif ann is float:
        text = "a number" + rng
    elif ann is str:
        text = "text" + (f" ({info.description})" if info.description else "")
    else:
        text = info.description or ""
    if not text:
        return ""
    return "allowed: " + text + (" (or leave it out)" if optional else "")


def format_spec_error(exc: ValidationError, source: str) -> str:
    return format_errors(exc, f"{source}: invalid experiment spec", _allowed_in_spec, unknown="unknown key")


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *groups, name = path.split(".")
    node = data
    for group in groups:
        child = node.get(group)
        child = dict(child) if isinstance(child, dict) else {}
        node[group] = child
        node = child
    node[name] = value


def _resolve_path_value(path: str, value: Any, relative_to: Path) -> Any:
    if path in PATH_FIELDS and isinstance(value, str) and value and not Path(value).is_absolute():
        return str((relative_to / value).resolve())
    return value


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

def load_spec(path_or_name: str | Path) -> Experiment:
    """Read, validate and resolve an experiment spec: a path, or a name under `experiments/`."""
    path = resolve_spec_path(path_or_name)
    try:
        text = read_text(path, "experiment spec")
    except ScenarioError as exc:
        raise SpecError(str(exc)) from None
    return loads_spec(text, source=str(path), base_dir=path.parent, path=path)


def resolve_spec_path(path_or_name: str | Path) -> Path:
    p = Path(path_or_name)
    try:
        regular, special = p.is_file(), p.exists() and not p.is_dir()
    except (OSError, ValueError):       # a name too long for the file system, a NUL byte
        regular = special = False
    if regular:
        return p
    if special:
        raise SpecError(f"{shown_path(p)}: not a regular file (a device, pipe or socket); allowed: an "
                        "experiment spec (TOML file)")
    name = str(path_or_name)
    stem = name[:-5] if name.endswith(".toml") else name
    for folder in (Path.cwd() / "experiments", Path(__file__).resolve().parents[3] / "experiments"):
        candidate = folder / f"{Path(stem).name}.toml"
        if candidate.is_file() and "/" not in name and "\\" not in name:
            return candidate
    raise SpecError(f"{shown_path(name)}: no such experiment spec file (give a path to a TOML file, or the name of one "
                    f"in experiments/)")


def loads_spec(text: str, source: str = "experiment spec", base_dir: Path | None = None,
               path: Path | None = None) -> Experiment:
    """Validate a spec from TOML text. `base_dir` resolves `base` and CSV paths (default: cwd)."""
    base_dir = (base_dir or Path.cwd()).resolve()
    try:
        raw = parse_toml(text, source)
    except ScenarioError as exc:
        raise SpecError(str(exc)) from None

    # TOML dotted keys (`set.district.students = 1`) become nested tables: accept both spellings.
    if isinstance(raw.get("set"), dict):
        raw["set"] = _flatten_paths(raw["set"], f"{source}: set")
    if isinstance(raw.get("factors"), dict):
        factors = _flatten_paths(raw["factors"], f"{source}: factors", is_leaf=_is_factor_table)
        raw["factors"] = {k: ({"values": v} if isinstance(v, list) else v) for k, v in factors.items()}
    design = raw.get("design")
    if isinstance(design, dict) and isinstance(design.get("points"), list):
        design["points"] = [_flatten_paths(p, f"{source}: design.points[{i}]") if isinstance(p, dict) else p
                            for i, p in enumerate(design["points"])]
    try:
        spec = SpecFile.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_spec_error(exc, source)) from None
    return _resolve(spec, text, source, base_dir, path)


def _resolve(spec: SpecFile, text: str, source: str, base_dir: Path, path: Path | None) -> Experiment:
    from portfolio_sim.sweep import design as designs

    # The base scenario, merged (`extends`), its CSV paths relative to its own file (as load_scenario).
    try:
        base_path = resolve_scenario_path(spec.base, relative_to=base_dir)
        base_raw = load_raw(base_path)
    except ScenarioError as exc:
        raise SpecError(f"{source}: base: {exc}") from None
    for p in PATH_FIELDS:
        group, name = p.split(".")
        value = base_raw.get(group, {}).get(name) if isinstance(base_raw.get(group), dict) else None
        if isinstance(value, str) and value and not Path(value).is_absolute():
            _set_path(base_raw, p, str((base_path.parent / value).resolve()))

    for table, keys in (("set", spec.set), ("factors", spec.factors)):
        misplaced = [k for k in keys if k in SpecFile.model_fields]
        if misplaced:
            raise SpecError(f"{source}: {table}.{misplaced[0]}: `{misplaced[0]}` is a top-level key of the spec; "
                            f"in TOML a key written after [{table}] belongs to [{table}]: move it above the first "
                            "[table] header")
    fixed: dict[str, Any] = {}
    for key, value in spec.set.items():
        scenario_field(key, f"{source}: set.{key}")
        fixed[key] = _resolve_path_value(key, value, base_dir)
    base_data = copy.deepcopy(base_raw)
    for key, value in fixed.items():
        _set_path(base_data, key, value)
    try:
        base_scn = Scenario.model_validate(base_data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, f"{source}: base {spec.base!r} with [set]")) from None

    years = spec.years if spec.years is not None else base_scn.run.years
    replicates = spec.replicates if spec.replicates is not None else base_scn.run.seeds
    root = spec.seed if spec.seed is not None else base_scn.run.seed
    kind = spec.design.kind
    _check_design_keys(spec, source)

    check_design_size(spec, source)

    # Factors: real fields, valid specification for the design, every value valid on its own.
    def check_value(fpath: str, value: Any, where: str) -> Any:
        data = copy.deepcopy(base_data)
        _set_path(data, fpath, _resolve_path_value(fpath, value, base_dir))
        try:
            scn = Scenario.model_validate(data)
        except ValidationError as exc:
            detail = format_validation_error(exc, where).split("\n", 1)[-1]
            raise SpecError(f"{where}: value {value!r} is not valid for {fpath}:\n{detail}") from None
        return _get_path(scn, fpath)

    factors: list[Factor] = []
    if kind == "list":
        if spec.factors:
            raise SpecError(f"{source}: factors: a list design takes its factors from design.points; "
                            "leave [factors] out")
        assert spec.design.points is not None
        order: list[str] = []
        for pt in spec.design.points:
            for key in pt:
                if key not in order:
                    order.append(key)
        for key in order:
            scenario_field(key, f"{source}: design.points")
            if key in fixed:
                raise SpecError(f"{source}: design.points: {key!r} is also in [set]; a path is either fixed or varied")
        for i, pt in enumerate(spec.design.points):
            missing = [k for k in order if k not in pt]
            if missing:
                raise SpecError(f"{source}: design.points[{i}]: missing {', '.join(missing)}; every point of a "
                                f"list design gives every factor ({', '.join(order)})")
        for key in order:
            seen: list[Any] = []
            for i, pt in enumerate(spec.design.points):
                v = check_value(key, pt[key], f"{source}: design.points[{i}].{key}")
                pt[key] = v
                if v not in seen:
                    seen.append(v)
            factors.append(Factor(key, "values", values=seen))
    else:
        for fpath, fs in spec.factors.items():
            where = f"{source}: factors.{fpath}"
            info = scenario_field(fpath, where)
            if fpath in fixed:
                raise SpecError(f"{where}: also in [set]; a path is either fixed or varied")
            factors.append(_make_factor(fpath, fs, info, kind, where, check_value))
        if kind in SAMPLED and not factors:
            raise SpecError(f"{source}: factors: a {kind} design needs at least one factor with bounds or levels")

    exp = Experiment(
        name=spec.name, description=spec.description, spec=spec, text=text, path=path.resolve() if path else None,
        base_path=base_path.resolve(), years=years, replicates=replicates, seed=root,
        common_random_numbers=spec.common_random_numbers, design=kind, fixed=fixed, factors=factors, points=[],
        keep_schools=spec.outputs.schools, keep_events=spec.outputs.events,
        design_seed=spec.design.seed if spec.design.seed is not None else root)

    design = designs.generate(exp)
    exp.problem = design.problem
    points = DesignPoints(design, base_data=base_data, base_dir=base_dir, name=spec.name, years=years,
                          replicates=replicates, root=root, crn=spec.common_random_numbers)
    exp.points = points

    # Every point a valid scenario, checked one at a time (nothing kept but a few aggregates): the
    # fingerprint, the largest district, the distinct district CSVs.
    bad: list[str] = []
    fp = Fingerprint(exp)
    for i in range(len(points)):
        try:
            pt = points.build(i)
        except _InvalidPoint as exc:
            if len(bad) < 5:
                bad.append(f"  point {i} ({_fmt_params(exc.params)}):\n  {exc.detail}")
            else:
                bad.append("")
            continue
        if bad:
            continue
        fp.add(pt)
        district = pt.scenario.get("district") or {}
        exp.max_students = max(exp.max_students, int(district.get("students") or 0))
        if district.get("schools_csv"):
            key = (district.get("schools_csv"), district.get("neighbourhoods_csv"), district.get("band_structure"))
            exp.district_files.setdefault(key, i)
    if bad:
        shown = "\n".join(b for b in bad if b)
        raise SpecError(f"{source}: {len(bad)} of {len(points)} design points are not valid scenarios:\n{shown}")
    exp._fingerprint = fp.hexdigest()
    return exp


class _InvalidPoint(Exception):
    def __init__(self, params: dict[str, Any], detail: str):
        super().__init__(detail)
        self.params, self.detail = params, detail


class DesignPoints(Sequence[Point]):
    """The points of an experiment, each built from its index when asked for (see
    :class:`portfolio_sim.sweep.design.Design`): ``len``, ``points[i]``, slicing and iteration work as on
    a list, but a design of 100,000 points never holds 100,000 resolved scenarios. Point ``i`` is the same
    on every call (same factor values, design row, seed and scenario); the last few are cached."""

    CACHE = 512

    def __init__(self, design: Any, *, base_data: dict[str, Any], base_dir: Path, name: str, years: int,
                 replicates: int, root: int, crn: bool):
        self.design = design
        self._base = base_data
        self._base_dir = base_dir
        self._name, self._years, self._root, self._crn = name, years, root, crn
        self.replicates = replicates
        self._cache: OrderedDict[int, Point] = OrderedDict()

    def __len__(self) -> int:
        return len(self.design)

    @overload
    def __getitem__(self, i: int) -> Point: ...
    @overload
    def __getitem__(self, i: slice) -> list[Point]: ...

    def __getitem__(self, i: int | slice) -> Point | list[Point]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"point {i}: the design has {n} points")
        pt = self._cache.get(i)
        if pt is not None:
            self._cache.move_to_end(i)
            return pt
        try:
            pt = self.build(i)
        except _InvalidPoint as exc:    # validated at load: only if the base changed underneath
            raise SpecError(f"point {i} ({_fmt_params(exc.params)}): {exc.detail}") from None
        self._cache[i] = pt
        if len(self._cache) > self.CACHE:
            self._cache.popitem(last=False)
        return pt

    def __iter__(self) -> Iterator[Point]:
        for i in range(len(self)):
            yield self[i]

    def build(self, i: int) -> Point:
        """Point ``i``, validated (an _InvalidPoint if the schema rejects it)."""
        params = self.design.params(i)
        pseed = point_seed(self._root, i, self._crn)
        data = dict(self._base)      # _set_path copies each table it writes into: the base is never changed
        for k, v in params.items():
            _set_path(data, k, _resolve_path_value(k, v, self._base_dir))
        run = dict(data.get("run") or {})
        run.update(years=self._years, seeds=self.replicates, seed=pseed)
        data["run"] = run
        data["name"] = f"{self._name}_p{i}"
        data["description"] = (f"Point {i} of experiment {self._name}" + (f": {_fmt_params(params)}" if params else ""))
        try:
            scn = Scenario.model_validate(data)
        except ValidationError as exc:
            raise _InvalidPoint(params, format_validation_error(exc, "").split("\n", 1)[-1]) from None
        canonical = {k: _get_path(scn, k) for k in params}
        return Point(index=i, params=canonical, seed=pseed, scenario=scn.model_dump(mode="json"),
                     row=self.design.row(i))


class Fingerprint:
    """The experiment's fingerprint built a point at a time: the SHA-256 of exactly the JSON text
    ``json.dumps({"crn", "outputs", "points": [...], "years"}, sort_keys=True)`` that a list of every point
    gives (so stores created before points were streamed still match)."""

    def __init__(self, exp: Experiment):
        self._h = hashlib.sha256()
        self._first = True
        self._tail = f"],{_dumps('years')}:{_dumps(exp.years)}}}"
        self._h.update((f"{{{_dumps('crn')}:{_dumps(exp.common_random_numbers)},{_dumps('outputs')}:"
                        f"{_dumps([exp.keep_schools, exp.keep_events])},{_dumps('points')}:[").encode("utf-8"))

    def add(self, p: Point) -> None:
        scn = {k: v for k, v in p.scenario.items() if k not in ("name", "description", "sources")}
        if isinstance(scn.get("run"), dict):
            scn["run"] = {k: v for k, v in scn["run"].items() if k != "seeds"}
        self._h.update((("" if self._first else ",") + _dumps([p.index, p.params, p.seed, scn])).encode("utf-8"))
        self._first = False

    def hexdigest(self) -> str:
        h = self._h.copy()
        h.update(self._tail.encode("utf-8"))
        return h.hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def max_points() -> int:
    """The design cap: DEFAULT_MAX_POINTS, or the PORTFOLIO_SIM_MAX_POINTS environment variable."""
    raw = os.environ.get(MAX_POINTS_ENV, "")
    if not raw:
        return DEFAULT_MAX_POINTS
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise SpecError(f"{MAX_POINTS_ENV}={raw[:40]!r}: allowed: a whole number >= 1")
    return int(raw)


def design_size(spec: SpecFile) -> int:
    """Points the spec's design will have, counted from the spec alone (before anything is built)."""
    d, kind = spec.design, spec.design.kind
    if kind == "list":
        return len(d.points or [])
    if kind == "grid":
        total = 1
        for fs in spec.factors.values():
            n = len(fs.values) if fs.values is not None else len(fs.levels) if fs.levels is not None else (fs.num or 1)
            total *= max(n, 1)
        return total
    from portfolio_sim.sweep.design import n_points
    return n_points(kind, len(spec.factors), d.samples or 0, d.second_order)


def check_design_size(spec: SpecFile, source: str) -> None:
    """Refuse a design above the cap before building it (a 10,000^3 grid would fill memory)."""
    n, cap = design_size(spec), max_points()
    if n > cap:
        raise SpecError(f"{source}: the {spec.design.kind} design has {n:,} points; at most {cap:,} "
                        f"(set {MAX_POINTS_ENV}=N to allow more; docs/SWEEPS.md, Limits)")
    reps = spec.replicates or 1
    runs = n * reps
    if runs > cap * 100:
        raise SpecError(f"{source}: {n:,} points x {reps:,} replicates = {runs:,} runs; at most "
                        f"{cap * 100:,} ({MAX_POINTS_ENV} x 100)")


def check_point_files(exp: Experiment) -> None:
    """Read and validate every distinct pair of district CSVs the points use (a SpecError naming a point)."""
    from portfolio_sim.district_csv import check_district_csv

    for index in exp.district_files.values():
        p = exp.points[index]
        try:
            check_district_csv(Scenario.model_validate(p.scenario).district, exp.years)
        except ScenarioError as exc:
            raise SpecError(f"{exp.path or exp.name}: point {p.index}: {exc}") from None


def _check_design_keys(spec: SpecFile, source: str) -> None:
    d, kind = spec.design, spec.design.kind
    given = d.model_fields_set
    only = {"samples": SAMPLED, "second_order": ("sobol",), "num_levels": ("morris",), "points": ("list",)}
    for key, kinds in only.items():
        if key in given and kind not in kinds:
            raise SpecError(f"{source}: design.{key}: only for {' / '.join(kinds)} designs, not {kind!r}")
    if kind in SAMPLED and d.samples is None:
        raise SpecError(f"{source}: design.samples: required for a {kind} design; "
                        f"allowed: {DesignSpec.model_fields['samples'].description}")
    if kind == "list" and not d.points:
        raise SpecError(f"{source}: design.points: required for a list design: [[design.points]] tables of "
                        "group.field = value")
    if kind == "sobol" and d.samples is not None and d.samples & (d.samples - 1):
        lo = 1 << (d.samples.bit_length() - 1)
        raise SpecError(f"{source}: design.samples: a Sobol' design needs a power of 2; got {d.samples}; "
                        f"allowed: e.g. {lo} or {lo * 2}")


def _make_factor(fpath: str, fs: FactorSpec, info: Any, kind: str, where: str, check_value: Any) -> Factor:
    ftype = _field_kind(info)
    given = [k for k in FACTOR_KEYS if getattr(fs, k) is not None]
    numeric = ftype in ("int", "float")
    if kind == "grid":
        if fs.values is not None or fs.levels is not None:
            if fs.bounds is not None or fs.num is not None or (fs.values is not None and fs.levels is not None):
                raise SpecError(f"{where}: give values = [...] alone, or bounds = [low, high] with num = N; got "
                                + ", ".join(given))
            raw_values = fs.values if fs.values is not None else fs.levels
        elif fs.bounds is not None:
            if fs.num is None:
                raise SpecError(f"{where}: a grid over bounds needs num = N (evenly spaced values); or give "
                                "values = [...]")
            _check_bounds(fpath, fs.bounds, info, where)
            grid = np.linspace(fs.bounds[0], fs.bounds[1], fs.num)
            raw_values = (sorted({int(round(v)) for v in grid}) if ftype == "int"
                          else [float(round(v, 10)) for v in grid])
        else:
            raise SpecError(f"{where}: give values = [...], or bounds = [low, high] with num = N")
        values = [check_value(fpath, v, where) for v in raw_values]
        dup = [v for i, v in enumerate(values) if v in values[:i]]
        if dup:
            raise SpecError(f"{where}: value {dup[0]!r} appears twice; each grid value once")
        return Factor(fpath, "values", values=values, integer=ftype == "int")
    # sampled designs
    if fs.values is not None or fs.num is not None:
        raise SpecError(f"{where}: a {kind} design samples each factor: give bounds = [low, high] (numbers) or "
                        f"levels = [...] (choices), not " + " / ".join(k for k in ("values", "num") if getattr(fs, k) is not None))
    if (fs.bounds is None) == (fs.levels is None):
        raise SpecError(f"{where}: give exactly one of bounds = [low, high] (numbers) or levels = [...] (choices)")
    if fs.bounds is not None:
        if not numeric:
            allowed = describe_bounds(info)
            raise SpecError(f"{where}: bounds: {fpath} is not a number field; use levels = [...]; {allowed}")
        _check_bounds(fpath, fs.bounds, info, where)
        lo, hi = fs.bounds
        check_value(fpath, int(lo) if ftype == "int" else lo, where)
        check_value(fpath, int(hi) if ftype == "int" else hi, where)
        return Factor(fpath, "bounds", bounds=(float(lo), float(hi)), integer=ftype == "int")
    assert fs.levels is not None
    levels = [check_value(fpath, v, where) for v in fs.levels]
    dup = [v for i, v in enumerate(levels) if v in levels[:i]]
    if dup:
        raise SpecError(f"{where}: level {dup[0]!r} appears twice; each level once")
    if len(levels) < 2:
        raise SpecError(f"{where}: levels: give at least two levels to sample, got {levels!r}")
    return Factor(fpath, "levels", values=levels, integer=ftype == "int")


def _check_bounds(fpath: str, bounds: list[float], info: Any, where: str) -> None:
    lo, hi = bounds
    flo, fhi = _field_range(info)
    allowed = describe_bounds(info)
    if not lo < hi:
        raise SpecError(f"{where}: bounds: low must be below high; got {list(bounds)!r}")
    if _field_kind(info) == "int" and (lo != int(lo) or hi != int(hi)):
        raise SpecError(f"{where}: bounds: {fpath} is an integer field; got {list(bounds)!r}; {allowed}")
    if (flo is not None and lo < flo) or (fhi is not None and hi > fhi):
        raise SpecError(f"{where}: bounds: {list(bounds)!r} is outside what {fpath} allows; {allowed}")
