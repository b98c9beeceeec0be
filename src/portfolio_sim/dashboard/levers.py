"""The scenario schema as dashboard controls.

Every control on the page is generated from :mod:`portfolio_sim.scenario`: its group (`GROUPS`, in
schema order, with the group's design question), its type (number, whole number, choice, yes/no), its
bounds (`describe_bounds`), its unit and its plain-language description. Nothing here repeats a
default or a bound; only the wording of labels ("Per-pupil funding" for `per_pupil_funding`) and of
choice values ("MOU" for `mou`) is added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from portfolio_sim.assumptions import ASSUMPTION_GROUPS, GROUP_DOCS
from portfolio_sim.scenario import GROUPS, Scenario, describe_bounds, field_bounds

Kind = Literal["float", "int", "bool", "choice", "path"]
Widget = Literal["slider", "number", "select", "switch", "readonly"]

GROUP_TITLES = {
    "district": "District", "autonomy": "Autonomy", "governance": "Governance", "eligibility": "Eligibility",
    "central_office": "Central office", "accountability": "Accountability", "choice": "School choice",
    "talent": "Talent", "implementation": "Implementation", "politics": "Politics", "run": "Run",
}

# Words that should not be sentence-cased.
_WORDS = {"cba": "CBA", "sd": "SD", "mou": "MOU", "k5": "K-5", "k8": "K-8", "csv": "CSV"}
_LABELS = {
    "per_pupil_funding": "Per-pupil funding", "cba_staffing_cap": "Staffing cap under the CBA",
    "students_per_household": "Students per household", "initial_quality_sd": "Spread of school quality",
    "quality_income_correlation": "Quality-income correlation", "operator_quality_sd": "Spread of operator quality",
    "operator_quality_mean": "Mean operator quality", "closure_percentile": "Below-the-bar percentile",
    "scheduled_flip_year": "Forced board flip in year", "weight_autonomous": "Extra appeal of autonomous schools",
    "schools": "Schools",
}
_CHOICE_LABELS = {
    "k5-68-912": "K-5 / 6-8 / 9-12", "k8-912": "K-8 / 9-12", "a_la_carte": "À la carte",
    "district_run": "District-run", "partner_led": "Partner-led", "partner_run": "Partner-run",
    "state_law": "State law", "mou": "MOU", "district_policy": "District policy", "contract": "Contract",
    "district_cba": "District CBA", "elect_to_work": "Elect-to-work agreements",
    "separate_agreement": "Separate agreement", "none": "None (traditional district)",
    "turnaround": "Turnaround (low performers)", "all": "All schools", "new_only": "New schools only",
    "high_performers": "High performers", "public_enterprise": "Public enterprises",
    "growth": "Growth (value-added)", "status": "Status (mean achievement)", "replace_operator": "Replace the operator",
    "autonomous": "Autonomous schools only", "zones": "Attendance zones", "zone_plus_open": "Zone + open seats",
    "unified": "Unified choice (lottery)",
}


def choice_label(value: Any) -> str:
    text = str(value)
    return _CHOICE_LABELS.get(text, text.replace("_", " ").capitalize())


def field_label(name: str) -> str:
    if name in _LABELS:
        return _LABELS[name]
    words = [_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class LeverSpec:
    """One scenario field as a control."""

    group: str
    name: str
    kind: Kind
    widget: Widget
    label: str
    description: str
    unit: str
    default: Any
    lo: float | None
    hi: float | None
    step: float | None
    choices: tuple[Any, ...]
    allowed: str                   # from describe_bounds, e.g. "a number from 0.0 to 1.0"

    @property
    def path(self) -> str:
        return f"{self.group}.{self.name}"

    def matches(self, text: str) -> bool:
        """Does a search for `text` find this lever (label, name, description, choices)?"""
        text = text.strip().lower()
        if not text:
            return True
        hay = " ".join([self.path, self.label, self.description, self.unit,
                        *(choice_label(c) for c in self.choices)]).lower()
        return all(word in hay for word in text.split())

    def format(self, value: Any) -> str:
        """A value as a person reads it: 0.35, 11,000, 'Partner-run', 'yes'."""
        if value is None:
            return "(none)"
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "choice":
            return choice_label(value)
        if self.kind == "int":
            return f"{int(value):,}"
        if self.kind == "float":
            v = float(value)
            if abs(v) >= 1000:
                return f"{v:,.0f}"
            return f"{v:.3f}".rstrip("0").rstrip(".") if v != 0 else "0"
        return str(value)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    title: str
    question: str
    doc: str
    levers: tuple[LeverSpec, ...]


_bounds = field_bounds


def nice_step(span: float, max_steps: int = 100) -> float:
    """The smallest of 1, 2, 5 x 10^k that divides `span` into at most `max_steps` steps."""
    if span <= 0:
        return 1.0
    k = math.floor(math.log10(span / max_steps))
    for m in (1, 2, 5, 10):
        step = m * 10.0 ** k
        if span / step <= max_steps + 1e-9:
            return float(f"{step:.10g}")
    return 10.0 ** (k + 1)


def _spec(group: str, name: str, field: Any) -> LeverSpec:
    ann = field.annotation
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    unit = str(extra.get("unit", ""))
    lo, hi = _bounds(field)
    allowed = describe_bounds(field).removeprefix("allowed: ")
    choices: tuple[Any, ...] = ()
    step = None
    if get_origin(ann) is Literal:
        kind, widget, choices = "choice", "select", tuple(get_args(ann))
    elif ann is bool:
        kind, widget = "bool", "switch"
    elif ann is int:
        kind = "int"
        span = (hi - lo) if lo is not None and hi is not None else math.inf
        widget = "slider" if span <= 100 else "number"
        step = 1
    elif ann is float:
        kind = "float"
        span = (hi - lo) if lo is not None and hi is not None else math.inf
        widget = "slider" if span <= 100 else "number"
        step = nice_step(span) if span != math.inf else None
    else:   # optional file paths (district CSVs): shown, not edited in a browser
        kind, widget = "path", "readonly"
    return LeverSpec(group=group, name=name, kind=kind, widget=widget, label=field_label(name),
                     description=field.description or "", unit=unit, default=field.default, lo=lo, hi=hi,
                     step=step, choices=choices, allowed=allowed)


def group_specs(include_run: bool = False) -> list[GroupSpec]:
    """Every lever group in schema order (the `run` group only if asked: the page shows it apart)."""
    out = []
    for gname, cls in GROUPS.items():
        if gname == "run" and not include_run:
            continue
        levers = tuple(_spec(gname, n, f) for n, f in cls.model_fields.items())
        out.append(GroupSpec(gname, GROUP_TITLES.get(gname, field_label(gname)), cls.question,
                             " ".join((cls.__doc__ or "").split()), levers))
    return out


def assumption_group_specs() -> list[GroupSpec]:
    """The declared assumptions (`portfolio_sim.assumptions`), one group per mechanism, as controls with the
    paths `assumptions.<group>.<name>` (shown apart from the levers, collapsed)."""
    out = []
    for gname, cls in ASSUMPTION_GROUPS.items():
        group = f"assumptions.{gname}"
        items = tuple(_spec(group, n, f) for n, f in cls.model_fields.items())
        title = f"{GROUP_TITLES.get(gname, field_label(gname))} coefficients"
        out.append(GroupSpec(group, title, GROUP_DOCS[gname], GROUP_DOCS[gname], items))
    return out


def all_specs(include_run: bool = True, include_assumptions: bool = True) -> dict[str, LeverSpec]:
    groups = group_specs(include_run) + (assumption_group_specs() if include_assumptions else [])
    return {s.path: s for g in groups for s in g.levers}


def spec(path: str) -> LeverSpec:
    specs = all_specs()
    if path not in specs:
        raise KeyError(f"unknown lever {path!r}")
    return specs[path]


def _node(scenario: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        scenario = getattr(scenario, part)
    return scenario


def get_value(scenario: Scenario, path: str) -> Any:
    return _node(scenario, path)


class LeverError(ValueError):
    """A value the schema does not allow; the message says what is allowed."""


def coerce(s: LeverSpec, value: Any) -> Any:
    """A control's raw value as the field's type (sliders send 3.0 for an int; text boxes send text)."""
    if value is None:
        raise LeverError(f"{s.label}: a value is needed ({s.allowed})")
    try:
        if s.kind == "int":
            if isinstance(value, str):
                value = float(value.replace(",", "").strip())
            if float(value) != int(float(value)):
                raise LeverError(f"{s.label}: {value} is not a whole number ({s.allowed})")
            return int(float(value))
        if s.kind == "float":
            if isinstance(value, str):
                value = value.replace(",", "").replace("$", "").strip()
            v = float(value)
            if math.isnan(v) or math.isinf(v):
                raise LeverError(f"{s.label}: {value} is not a number ({s.allowed})")
            return v
        if s.kind == "bool":
            return bool(value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, LeverError):
            raise
        raise LeverError(f"{s.label}: {value!r} is not a number ({s.allowed})") from None
    return value


def set_value(scenario: Scenario, path: str, value: Any) -> Scenario:
    """A copy of `scenario` with one lever changed; LeverError (saying what is allowed) if invalid."""
    s = spec(path)
    if s.kind == "path":
        raise LeverError(f"{s.label}: district CSV files are set in a scenario file, not in the browser")
    value = coerce(s, value)
    new = scenario.model_copy(deep=True)
    try:
        setattr(_node(new, s.group), s.name, value)   # validate_assignment: bounds, choices
    except ValidationError as exc:
        msg = exc.errors()[0].get("msg", "invalid value") if exc.errors() else "invalid value"
        raise LeverError(f"{s.label}: {s.format(value) if s.kind != 'choice' else value!r} is not allowed "
                         f"({msg.lower()}); allowed: {s.allowed}") from None
    return new


def changed(scenario: Scenario, base: Scenario, include_run: bool = False) -> list[str]:
    """Lever (and assumption) paths whose value differs between `scenario` and `base`."""
    return [p for p in all_specs(include_run) if get_value(scenario, p) != get_value(base, p)]
