"""Load a user's own district from CSV files: schools (required) and neighbourhoods (optional).

Full reference with examples: docs/DISTRICT_CSV.md. Files are UTF-8 (a byte-order mark is fine),
comma-separated, one header row. Header names are case-insensitive (spaces count as underscores);
columns not listed here are ignored; their order does not matter.

Schools CSV (`district.schools_csv`), one row per school:

    column      required  type / allowed values
    id          yes       text, unique in the file
    name        yes       text (a blank name falls back to the id)
    x, y        yes       finite numbers in any projected units (km, m, ...). Columns named
                          lon/longitude and lat/latitude may be given instead of x and y: they are
                          read as degrees and east-west distances are corrected for latitude.
    grades      yes       one band range of the scenario's `band_structure`: K-5, 6-8, 9-12 for
                          "k5-68-912"; K-8, 9-12 for "k8-912" (KG or 0 mean K)
    capacity    yes       whole number > 0 (seats)
    enrollment  yes       whole number >= 0 and <= 1.5 x capacity
    rating      no        percentile 0-100; blank = no rating yet
    sector      no        district (default when blank or absent) or charter

Neighbourhoods CSV (`district.neighbourhoods_csv`), one row per neighbourhood:

    id                   yes  text, unique in the file
    x, y                 yes  finite numbers, same units as the schools CSV (or lon/lat, as above)
    students_low_income  yes  whole number >= 0: resident K-12 students from low-income households
    students_other       yes  whole number >= 0: all other resident K-12 students

Locations of schools and neighbourhoods are mapped together onto the unit square: centred on their
common bounding box and scaled so its longer side spans 0.05-0.95 (aspect ratio kept). Without a
neighbourhoods CSV, a square grid of `district.neighbourhoods` cells covers the schools' bounding box,
its income mix comes from `neighbourhood_income` and its students (the total enrollment of all schools
in the file) are spread where the schools' enrollment is. Starting quality of a rated school is
`initial_quality_sd * Phi^-1(rating / 100)` with the rating clipped to 1-99; an unrated school gets a
random draw with the same spread (around `charter_quality` for charters).

Every problem is a `ScenarioError` naming the file, the 1-based line, the column, the value and what is
allowed; up to 10 problems are listed at once. Nothing in the files is evaluated.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtri

from portfolio_sim.district import (
    BAND_NAMES,
    BAND_STRUCTURES,
    GRADES,
    DistrictData,
    neighbourhood_income,
    slot_headroom,
)
from portfolio_sim.errors import ScenarioError
from portfolio_sim.inputs import read_user_file
from portfolio_sim.scenario import District

__all__ = ["load_district_csv", "SCHOOL_COLUMNS", "SCHOOL_OPTIONAL_COLUMNS", "NEIGHBOURHOOD_COLUMNS"]

SCHOOL_COLUMNS = ("id", "name", "x", "y", "grades", "capacity", "enrollment")
SCHOOL_OPTIONAL_COLUMNS = ("rating", "sector")
NEIGHBOURHOOD_COLUMNS = ("id", "x", "y", "students_low_income", "students_other")

MAX_ERRORS_SHOWN = 10
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_CAPACITY = 100_000                # seats in one school
MAX_STUDENTS = 2_000_000              # same bound as district.students
ENROLLMENT_OVER_CAPACITY = 1.5
MARGIN = 0.05                         # unit-square margin around the bounding box
RATING_CLIP = (1.0, 99.0)             # percentiles; keeps Phi^-1 finite and tails plausible

_COORD_ALIASES = {"x": ("lon", "longitude", "lng", "long"), "y": ("lat", "latitude")}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+$")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


# ------------------------------------------------------------------------------------------------
# Error collection
# ------------------------------------------------------------------------------------------------

class _Bad(Exception):
    """A cell value is not allowed; the message says what was given and what is allowed."""


class _Problems:
    """Row errors for one file; raised together so the user can fix them in one pass."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[tuple[int, str | None, str]] = []

    def add(self, line: int, column: str | None, message: str) -> None:
        self.items.append((line, column, message))

    def _format(self, item: tuple[int, str | None, str], file: str) -> str:
        line, column, message = item
        return f"{file} line {line}" + (f", column {column}" if column else "") + f": {message}"

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            # One problem: one line, naming the file by its full path.
            raise ScenarioError(self._format(self.items[0], str(self.path)))
        shown = self.items[:MAX_ERRORS_SHOWN]
        lines = [f"{self.path}: {len(self.items)} problems (fix them and run again):"]
        lines += [f"  {self._format(item, self.path.name)}" for item in shown]
        if len(self.items) > len(shown):
            lines.append(f"  ... and {len(self.items) - len(shown)} more not shown")
        raise ScenarioError("\n".join(lines))


# ------------------------------------------------------------------------------------------------
# Cell parsers: return the value or raise _Bad with "<value> is not ...; allowed ..."
# ------------------------------------------------------------------------------------------------

def _blank(what: str) -> _Bad:
    return _Bad(f"blank, expected {what}")


def _parse_number(raw: str, what: str = "a number") -> float:
    s = raw.strip()
    if not s:
        raise _blank(what)
    if s.lower() in _NON_FINITE:
        raise _Bad(f"{raw!r} is not a finite number; expected {what}")
    if not _NUMBER.match(s):
        hint = ""
        if re.match(r"^[+-]?\d+,\d+$", s):
            hint = " (use a point, not a comma, as the decimal separator)"
        raise _Bad(f"{raw!r} is not {what}{hint}")
    value = float(s)
    if not math.isfinite(value):
        raise _Bad(f"{raw!r} is not a finite number; expected {what}")
    return value


def _parse_whole(raw: str, lo: int, hi: int, what: str) -> int:
    """A whole number in [lo, hi]. Accepts `1,200` (thousands) and `450.0` (spreadsheet export)."""
    s = raw.strip()
    if not s:
        raise _blank(what)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if s.lower() in _NON_FINITE or not _NUMBER.match(s):
        raise _Bad(f"{raw!r} is not {what}")
    value = float(s)
    if not math.isfinite(value) or not value.is_integer():
        raise _Bad(f"{raw!r} is not {what}")
    n = int(value)
    if n < lo:
        raise _Bad(f"{raw!r} is not {what}")
    if n > hi:
        raise _Bad(f"{raw!r} is too large: expected {what}, at most {hi:,}")
    return n


def _grade_token(tok: str) -> int | None:
    t = tok.strip().upper()
    if t in ("K", "KG", "0", "00"):
        return 0
    if t.isdigit() and 1 <= int(t) <= 12:
        return int(t)
    return None


def _band_label(lo: int, hi: int) -> str:
    return f"{'K' if lo == 0 else lo}-{hi}"


def _allowed_grades(structure: str) -> str:
    return ", ".join(_band_label(lo, hi) for lo, hi in BAND_STRUCTURES[structure])


def _parse_grades(raw: str, structure: str) -> int:
    """The band index of a grade range such as `K-5`, `KG-5`, `0-5`, `6-8`, `9-12`."""
    allowed = f"one of {_allowed_grades(structure)} (band_structure {structure!r})"
    s = raw.strip()
    if not s:
        raise _blank(allowed)
    parts = re.split(r"\s*(?:-|–|—|to)\s*", s, flags=re.IGNORECASE)
    rng = None
    if len(parts) == 2:
        lo, hi = _grade_token(parts[0]), _grade_token(parts[1])
        if lo is not None and hi is not None:
            rng = (lo, hi)
    if rng is not None:
        for b, band in enumerate(BAND_STRUCTURES[structure]):
            if band == rng:
                return b
    hint = ""
    if rng is not None:
        for other, bands in BAND_STRUCTURES.items():
            if other != structure and rng in bands:
                hint = (f"; {_band_label(*rng)} is a band of band_structure {other!r}: set "
                        f"district.band_structure = \"{other}\" if your district is organised that way")
                break
        else:
            hint = ("; a school spanning several bands can be listed as one row per band, splitting its "
                    "capacity and enrollment")
    elif any(m in s.lower() for m in _MONTHS):
        hint = "; a spreadsheet may have turned the range into a date: format the column as text"
    raise _Bad(f"{raw!r} is not a grade range of this district; allowed: {allowed}{hint}")


def _parse_rating(raw: str) -> float:
    s = raw.strip()
    if not s:
        return math.nan
    s = s[:-1].strip() if s.endswith("%") else s
    what = "a percentile from 0 to 100, or blank for no rating yet"
    try:
        value = _parse_number(s, what)
    except _Bad:
        raise _Bad(f"{raw!r} is not {what}") from None
    if not 0.0 <= value <= 100.0:
        raise _Bad(f"{raw!r} is outside 0-100; expected {what}")
    return value


def _parse_sector(raw: str) -> bool:
    """True for a charter school."""
    s = raw.strip().lower()
    if s in ("", "district"):
        return False
    if s == "charter":
        return True
    raise _Bad(f"{raw!r} is not a sector; allowed: district (the default when blank) or charter")


# ------------------------------------------------------------------------------------------------
# Reading a file into (line, {column: text}) rows
# ------------------------------------------------------------------------------------------------

@dataclass
class _Table:
    path: Path
    rows: list[tuple[int, dict[str, str]]]
    degrees: bool           # coordinates are longitude/latitude
    labels: dict[str, str]  # canonical column -> its name in the file's header (for messages)
    long_lines: set[int]    # rows with more (blank) values than the header: maybe shifted by a comma

    def hint_if_shifted(self, line: int, errors_before: int, problems: _Problems) -> None:
        """A row with extra values that also has bad cells was probably shifted by an unquoted comma."""
        if line in self.long_lines and len(problems.items) > errors_before:
            problems.add(line, None, "this row has more values than the header has columns: a value "
                                     "containing a comma must be in double quotes")


def _read_text(path: Path, what: str) -> str:
    """The file as text: a regular file (no FIFO or device) of at most MAX_FILE_BYTES, UTF-8."""
    try:
        data = read_user_file(path, what, MAX_FILE_BYTES)
    except ScenarioError as exc:
        if "no such" in str(exc):
            raise ScenarioError(f"{path}: {what} not found (a relative path in a scenario file is resolved "
                                "against the scenario file's folder)") from None
        raise
    if b"\x00" in data:     # binary, or a /proc file such as environ: never quote its content
        raise ScenarioError(f"{path}: the {what} is not a CSV text file (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start: exc.start + 1].hex()
        raise ScenarioError(
            f"{path} line {line}: not UTF-8 text (byte 0x{bad}). Save the file as UTF-8 "
            "(in Excel: 'CSV UTF-8 (Comma delimited)').") from None


def _normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _read_table(path: Path, required: tuple[str, ...], optional: tuple[str, ...], what: str,
                rows_name: str) -> _Table:
    text = _read_text(path, what)
    required_text = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
    if not text.strip():
        raise ScenarioError(f"{path}: the {what} is empty; expected a header row with the columns "
                            f"{required_text}, then one row per {rows_name}")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems = _Problems(path)
    prev_end = 0
    try:
        header: list[str] = []
        header_line = 0
        for row in reader:
            if any(cell.strip() for cell in row):
                header, header_line = row, reader.line_num
                break
        names = [_normalise_header(h) for h in header]

        # Longitude/latitude columns may stand in for x/y.
        degrees = False
        labels: dict[str, str] = {}
        if "x" not in names and "y" not in names:
            for axis, aliases in _COORD_ALIASES.items():
                for alias in aliases:
                    if alias in names:
                        i = names.index(alias)
                        names[i], labels[axis] = axis, header[i].strip()
                        break
            degrees = "x" in names and "y" in names

        known = set(required) | set(optional)
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            if n in known and n in seen:
                raise ScenarioError(f"{path} line {header_line}: column {n!r} appears twice in the header "
                                    f"(columns {seen[n] + 1} and {i + 1})")
            seen.setdefault(n, i)
        missing = [c for c in required if c not in seen]
        if missing:
            hint = ""
            if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
                hint = " The header looks like it uses another separator: save the file comma-separated."
            if any(n in known for n in names):
                # a header of this format, with columns missing or misspelt: quote it (shortened)
                cells = [h.strip()[:40] for h in header if h.strip()][:30]
                found = f" The header has: {', '.join(cells) or '(nothing)'}."
            else:
                # nothing on the first line is one of our columns: maybe not a CSV at all (/etc/passwd,
                # /proc/self/environ); never echo what such a file holds
                found = " No column of the first line is one of these: is this the right file?"
            raise ScenarioError(
                f"{path} line {header_line}: missing required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}. Required columns: {required_text}.{found}{hint}")

        index = {c: seen[c] for c in (*required, *optional) if c in seen}
        last_required = max(index[c] for c in required)
        rows: list[tuple[int, dict[str, str]]] = []
        long_lines: set[int] = set()
        prev_end = reader.line_num
        for row in reader:
            line, prev_end = prev_end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue                      # blank line or a row of empty cells
            if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
                problems.add(line, None, f"has {len(row)} values but the header has {len(header)} columns "
                                         "(a value containing a comma must be in double quotes)")
                continue
            if len(row) > len(header):
                long_lines.add(line)          # only blank extra values (trailing commas): allowed
            if len(row) <= last_required:
                problems.add(line, None, f"has {len(row)} values but the header has {len(header)} columns")
                continue
            rows.append((line, {c: (row[i] if i < len(row) else "") for c, i in index.items()}))
    except csv.Error as exc:
        raise ScenarioError(f"{path} line {prev_end + 1}: not a valid CSV row ({exc}); check for a double "
                            "quote that is not closed") from None
    problems.raise_if_any()
    if not rows:
        raise ScenarioError(f"{path}: the {what} has a header but no {rows_name} rows")
    return _Table(path, rows, degrees, labels, long_lines)


def _coords(table: _Table, line: int, row: dict[str, str], problems: _Problems) -> tuple[float, float]:
    out = []
    for axis in ("x", "y"):
        column, limit = axis, math.inf
        what = "a number (a projected coordinate such as km east/north)"
        if table.degrees:
            kind, limit = ("longitude", 180.0) if axis == "x" else ("latitude", 90.0)
            column = table.labels.get(axis, kind)
            what = f"a {kind} in degrees from -{limit:g} to {limit:g}"
        try:
            v = _parse_number(row[axis], what)
            if abs(v) > limit:
                raise _Bad(f"{row[axis]!r} is out of range; expected {what}")
            out.append(v)
        except _Bad as exc:
            problems.add(line, column, str(exc))
            out.append(math.nan)
    return out[0], out[1]


def _check_id(raw: str, line: int, first_line: dict[str, int], problems: _Problems, rows_name: str
              ) -> str:
    ident = raw.strip()
    if not ident:
        problems.add(line, "id", f"blank, expected an id (any text, unique in the file) for every {rows_name}")
    elif ident in first_line:
        problems.add(line, "id", f"{ident!r} is a duplicate: already used on line {first_line[ident]}; "
                                 "ids must be unique")
    else:
        first_line[ident] = line
    return ident


# ------------------------------------------------------------------------------------------------
# Schools and neighbourhoods
# ------------------------------------------------------------------------------------------------

@dataclass
class _Schools:
    xy: np.ndarray            # raw coordinates (S, 2)
    band: np.ndarray
    capacity: np.ndarray
    enrollment: np.ndarray
    rating: np.ndarray
    charter: np.ndarray
    name: list[str]
    degrees: bool


def _read_schools(path: Path, structure: str) -> _Schools:
    table = _read_table(path, SCHOOL_COLUMNS, SCHOOL_OPTIONAL_COLUMNS, "schools CSV", "school")
    problems = _Problems(path)
    first_line: dict[str, int] = {}
    xy, band, cap, enr, rating, charter, names = [], [], [], [], [], [], []
    for line, row in table.rows:
        errors_before = len(problems.items)
        ident = _check_id(row["id"], line, first_line, problems, "school")
        names.append(row["name"].strip() or ident)
        xy.append(_coords(table, line, row, problems))
        try:
            band.append(_parse_grades(row["grades"], structure))
        except _Bad as exc:
            problems.add(line, "grades", str(exc))
            band.append(-1)
        c = None
        try:
            c = _parse_whole(row["capacity"], 1, MAX_CAPACITY, "a whole number > 0")
        except _Bad as exc:
            problems.add(line, "capacity", str(exc))
        cap.append(c or 0)
        e = 0
        try:
            e = _parse_whole(row["enrollment"], 0, MAX_STUDENTS, "a whole number >= 0")
            if c is not None and e > ENROLLMENT_OVER_CAPACITY * c:
                problems.add(line, "enrollment",
                             f"{row['enrollment']!r} is more than {ENROLLMENT_OVER_CAPACITY:g} x capacity "
                             f"({c}); allowed: a whole number from 0 to "
                             f"{math.floor(ENROLLMENT_OVER_CAPACITY * c)}")
        except _Bad as exc:
            problems.add(line, "enrollment", str(exc))
        enr.append(e)
        try:
            rating.append(_parse_rating(row.get("rating", "")))
        except _Bad as exc:
            problems.add(line, "rating", str(exc))
            rating.append(math.nan)
        try:
            charter.append(_parse_sector(row.get("sector", "")))
        except _Bad as exc:
            problems.add(line, "sector", str(exc))
            charter.append(False)
        table.hint_if_shifted(line, errors_before, problems)
    problems.raise_if_any()

    s = _Schools(xy=np.array(xy, dtype=float), band=np.array(band, dtype=np.int8),
                 capacity=np.array(cap, dtype=np.int32), enrollment=np.array(enr, dtype=np.int64),
                 rating=np.array(rating, dtype=float), charter=np.array(charter, dtype=bool),
                 name=names, degrees=table.degrees)

    # Each band needs a district school (charters are outside district control).
    bands = BAND_STRUCTURES[structure]
    for b, (lo, hi) in enumerate(bands):
        if not ((s.band == b) & ~s.charter).any():
            n_ch = int(((s.band == b) & s.charter).sum())
            label = _band_label(lo, hi)
            extra = f" (the file has {n_ch} charter school{'s' if n_ch != 1 else ''} with {label}; " \
                    "charters do not count)" if n_ch else ""
            raise ScenarioError(
                f"{path}: no district school serves the {BAND_NAMES[structure][b]} band (grades {label}){extra}. "
                f"band_structure {structure!r} needs at least one district school for each of "
                f"{_allowed_grades(structure)}: add a row with grades {label} and sector district.")
    return s


@dataclass
class _Neighbourhoods:
    xy: np.ndarray            # raw coordinates (N, 2)
    low: np.ndarray           # int64 (N,)
    other: np.ndarray         # int64 (N,)
    degrees: bool


def _read_neighbourhoods(path: Path) -> _Neighbourhoods:
    table = _read_table(path, NEIGHBOURHOOD_COLUMNS, (), "neighbourhoods CSV", "neighbourhood")
    problems = _Problems(path)
    first_line: dict[str, int] = {}
    xy, low, other = [], [], []
    for line, row in table.rows:
        errors_before = len(problems.items)
        _check_id(row["id"], line, first_line, problems, "neighbourhood")
        xy.append(_coords(table, line, row, problems))
        for col, out in (("students_low_income", low), ("students_other", other)):
            try:
                out.append(_parse_whole(row[col], 0, MAX_STUDENTS, "a whole number >= 0 (students)"))
            except _Bad as exc:
                problems.add(line, col, str(exc))
                out.append(0)
        table.hint_if_shifted(line, errors_before, problems)
    problems.raise_if_any()
    nb = _Neighbourhoods(np.array(xy, dtype=float), np.array(low, dtype=np.int64),
                         np.array(other, dtype=np.int64), table.degrees)
    total = int(nb.low.sum() + nb.other.sum())
    if total == 0:
        raise ScenarioError(f"{path}: the neighbourhoods hold no students; students_low_income and "
                            "students_other must add up to more than 0")
    if total > MAX_STUDENTS:
        raise ScenarioError(f"{path}: the neighbourhoods hold {total:,} students; at most {MAX_STUDENTS:,} "
                            "are supported (the limit of district.students)")
    return nb


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------

def _to_plane(xy: np.ndarray, degrees: bool, mid_lat: float) -> np.ndarray:
    if not degrees:
        return xy
    return np.column_stack([xy[:, 0] * math.cos(math.radians(mid_lat)), xy[:, 1]])


def _unit_square(points: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Map into the unit square: centred on the bounding box, longer side over [MARGIN, 1-MARGIN]."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = float((hi - lo).max())
    scale = (1.0 - 2.0 * MARGIN) / span if span > 0 else 1.0
    centre = (lo + hi) / 2.0
    return lambda p: 0.5 + (p - centre) * scale


def _boxes_apart(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two point sets' bounding boxes (padded by 10% of their span) do not overlap."""
    def box(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = p.min(axis=0), p.max(axis=0)
        pad = 0.1 * max(float((hi - lo).max()), 1e-9)
        return lo - pad, hi + pad
    (alo, ahi), (blo, bhi) = box(a), box(b)
    return bool(((ahi < blo) | (bhi < alo)).any())


def _nearest_spacing(xy: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest other point (inf when alone)."""
    if len(xy) < 2:
        return np.full(len(xy), np.inf)
    d, _ = cKDTree(xy).query(xy, k=2)
    return d[:, 1]


# ------------------------------------------------------------------------------------------------
# Households and students
# ------------------------------------------------------------------------------------------------

def _populate(rng: np.random.Generator, low: np.ndarray, other: np.ndarray, headroom: float,
              per_household: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Households and student slots with exactly `low[i]` / `other[i]` active students in neighbourhood i.

    Groups are (neighbourhood, income group). Spare slots for cohort growth (the same headroom as
    `generate_district`) are spread over groups in proportion to students; a group has one household per
    `per_household` slots (at least one). Every household gets one slot, the rest go to random households
    of the group, as in `student_slots`; active slots get grades uniform over K-12.

    Returns hh_nb (int32), hh_low (bool), st_household (int32, sorted) and st_grade (int8, -1 inactive).
    """
    counts = np.column_stack([low, other]).reshape(-1).astype(np.int64)   # group k = 2*nb + (0 low, 1 other)
    total = int(counts.sum())
    spare = max(0, int(math.ceil(total * (1.0 + headroom))) - total)
    slots = counts + (rng.multinomial(spare, counts / total) if spare else 0)
    hh = np.where(counts > 0, np.clip(np.rint(slots / per_household), 1, slots), 0).astype(np.int64)

    n_hh, n_slots = int(hh.sum()), int(slots.sum())
    groups = np.arange(len(counts))
    hh_group = np.repeat(groups, hh)
    hh_start = np.cumsum(hh) - hh
    extra_group = np.repeat(groups, slots - hh)
    extra_hh = hh_start[extra_group] + (rng.random(len(extra_group)) * hh[extra_group]).astype(np.int64)
    st_household = np.sort(np.concatenate([np.arange(n_hh), extra_hh]))    # siblings sit together
    slot_group = hh_group[st_household]                                    # non-decreasing

    # Choose counts[k] active slots at random within each group.
    order = np.lexsort((rng.random(n_slots), slot_group))
    slot_start = np.cumsum(slots) - slots
    rank = np.empty(n_slots, dtype=np.int64)
    rank[order] = np.arange(n_slots) - slot_start[slot_group[order]]
    active = rank < counts[slot_group]
    st_grade = np.full(n_slots, -1, dtype=np.int8)
    st_grade[active] = rng.integers(0, GRADES, int(active.sum()))

    hh_nb = (hh_group // 2).astype(np.int32)
    hh_low = hh_group % 2 == 0
    return hh_nb, hh_low, st_household.astype(np.int32), st_grade


def _enrollment_density(cells: np.ndarray, schools: np.ndarray, weight: np.ndarray, bandwidth: float
                        ) -> np.ndarray:
    """Gaussian-kernel density of school enrollment at each cell centre (chunked to bound memory)."""
    out = np.zeros(len(cells))
    step = max(1, 2_000_000 // max(1, len(schools)))
    for a in range(0, len(cells), step):
        d2 = ((cells[a:a + step, None, :] - schools[None, :, :]) ** 2).sum(axis=2)
        out[a:a + step] = np.exp(-d2 / (2.0 * bandwidth ** 2)) @ weight
    return out


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------

def load_district_csv(spec: District, rng: np.random.Generator, years: int) -> DistrictData:
    """A district from the scenario's schools CSV (and neighbourhoods CSV, if given).

    `spec.students` and `spec.schools` are not used: the files give the schools and the students.
    Raises `ScenarioError` for any problem in the files.
    """
    if not spec.schools_csv:
        raise ScenarioError("district.schools_csv is not set")
    structure = spec.band_structure
    sch = _read_schools(Path(spec.schools_csv), structure)
    nbf = _read_neighbourhoods(Path(spec.neighbourhoods_csv)) if spec.neighbourhoods_csv else None

    # District schools first, then charters (the order DistrictData expects), CSV order within each.
    order = np.concatenate([np.flatnonzero(~sch.charter), np.flatnonzero(sch.charter)])
    sch = _Schools(xy=sch.xy[order], band=sch.band[order], capacity=sch.capacity[order],
                   enrollment=sch.enrollment[order], rating=sch.rating[order], charter=sch.charter[order],
                   name=[sch.name[i] for i in order], degrees=sch.degrees)
    n_sc = len(order)

    # --- locations ----------------------------------------------------------------------------------
    if nbf is not None and nbf.degrees != sch.degrees:
        kinds = {True: "longitude/latitude", False: "x/y"}
        raise ScenarioError(
            f"{spec.neighbourhoods_csv}: locations are given as {kinds[nbf.degrees]} but {spec.schools_csv} "
            f"uses {kinds[sch.degrees]}; both files must use the same kind of coordinates")
    raw_all = sch.xy if nbf is None else np.vstack([sch.xy, nbf.xy])
    mid_lat = float((raw_all[:, 1].min() + raw_all[:, 1].max()) / 2.0)
    sc_plane = _to_plane(sch.xy, sch.degrees, mid_lat)
    if nbf is not None:
        nb_plane = _to_plane(nbf.xy, nbf.degrees, mid_lat)
        if _boxes_apart(sc_plane, nb_plane):
            raise ScenarioError(
                f"{spec.neighbourhoods_csv}: the neighbourhoods (x {nb_plane[:, 0].min():g} to "
                f"{nb_plane[:, 0].max():g}, y {nb_plane[:, 1].min():g} to {nb_plane[:, 1].max():g}) lie away "
                f"from the schools in {spec.schools_csv} (x {sc_plane[:, 0].min():g} to "
                f"{sc_plane[:, 0].max():g}, y {sc_plane[:, 1].min():g} to {sc_plane[:, 1].max():g}); "
                "are both files in the same coordinate units?")
        to_unit = _unit_square(np.vstack([sc_plane, nb_plane]))
    else:
        to_unit = _unit_square(sc_plane)
    sc_xy = to_unit(sc_plane)

    # --- starting quality (drawn first so it does not depend on the population) -----------------------
    z_clip = float(ndtri(RATING_CLIP[1] / 100.0))
    z_rated = ndtri(np.clip(np.nan_to_num(sch.rating, nan=50.0), *RATING_CLIP) / 100.0)
    z_draw = np.clip(rng.standard_normal(n_sc), -z_clip, z_clip)
    rated = ~np.isnan(sch.rating)
    sc_quality = spec.initial_quality_sd * np.where(rated, z_rated, z_draw)
    sc_quality = sc_quality + np.where(~rated & sch.charter, spec.charter_quality, 0.0)

    # --- neighbourhoods ------------------------------------------------------------------------------
    if nbf is not None:
        nb_xy = to_unit(nb_plane)
        low, other = nbf.low, nbf.other
        radius = np.clip(0.5 * _nearest_spacing(nb_xy), 0.005, 0.1)

        def place(nb: np.ndarray) -> np.ndarray:
            r = radius[nb] * np.sqrt(rng.random(len(nb)))
            theta = 2.0 * math.pi * rng.random(len(nb))
            return nb_xy[nb] + np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    else:
        total = int(sch.enrollment.sum())
        if total == 0:
            raise ScenarioError(f"{spec.schools_csv}: every school has enrollment 0, so there are no "
                                "students; give enrollments or a neighbourhoods CSV (district.neighbourhoods_csv)")
        if total > MAX_STUDENTS:
            raise ScenarioError(f"{spec.schools_csv}: total enrollment is {total:,}; at most {MAX_STUDENTS:,} "
                                "students are supported (the limit of district.students)")
        grid = max(1, round(math.sqrt(spec.neighbourhoods)))
        lo = sc_xy.min(axis=0) - MARGIN
        hi = sc_xy.max(axis=0) + MARGIN
        short = (hi - lo) < 0.2                  # schools (nearly) on a line: give the grid some depth
        mid = (lo + hi) / 2.0
        lo, hi = np.where(short, mid - 0.1, lo), np.where(short, mid + 0.1, hi)
        lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
        cell = (hi - lo) / grid
        k = np.arange(grid * grid)
        nb_xy = lo + np.column_stack([k // grid + 0.5, k % grid + 0.5]) * cell
        nb_low_share = neighbourhood_income(rng, grid, spec.low_income_share, spec.income_segregation)
        # People live where the schools' students are: a kernel density of enrollment, plus a floor.
        spacing = _nearest_spacing(sc_xy)
        typical = float(np.median(spacing)) if np.isfinite(spacing).any() else 0.0
        bandwidth = max(0.5 * float(cell.max()), typical, 1e-3)
        pop = _enrollment_density(nb_xy, sc_xy, sch.enrollment.astype(float), bandwidth)
        pop = pop + 0.05 * pop.mean() + 1e-12
        students = rng.multinomial(total, pop / pop.sum())
        low = rng.binomial(students, nb_low_share)
        other = students - low

        def place(nb: np.ndarray) -> np.ndarray:
            return nb_xy[nb] + (rng.random((len(nb), 2)) - 0.5) * cell

    headroom = slot_headroom(spec.cohort_change, years)
    hh_nb, hh_low, st_household, st_grade = _populate(rng, low, other, headroom, spec.students_per_household)
    hh_xy = np.clip(place(hh_nb), 0.0, 1.0)

    # Share of each neighbourhood's households that are low-income (district mean where empty).
    n_nb = len(nb_xy)
    hh_per_nb = np.bincount(hh_nb, minlength=n_nb)
    low_per_nb = np.bincount(hh_nb, weights=hh_low, minlength=n_nb)
    mean_low = float(hh_low.mean()) if len(hh_low) else spec.low_income_share
    nb_low_income = np.where(hh_per_nb > 0, low_per_nb / np.maximum(hh_per_nb, 1), mean_low)

    data = DistrictData(
        band_structure=structure, nb_xy=nb_xy, nb_low_income=nb_low_income,
        hh_xy=hh_xy, hh_nb=hh_nb, hh_low_income=hh_low,
        st_household=st_household, st_grade=st_grade,
        sc_xy=sc_xy, sc_band=sch.band, sc_capacity=sch.capacity, sc_quality=sc_quality,
        sc_charter=sch.charter, sc_name=sch.name,
        sc_enrollment=sch.enrollment.astype(np.int32), sc_rating=sch.rating,
    )
    data.validate()
    return data


def check_district_csv(spec: District, years: int) -> None:
    """Read and fully validate the scenario's CSVs, as a run would (for `validate`, `sweep --dry-run`)."""
    if spec.schools_csv:
        load_district_csv(spec, np.random.default_rng(0), years)
