"""A room's shared simulation, its debrief and its export.

The store holds what the room decided; the simulation is a pure function of it: the room's scenario
(years, seeds and root seed in its run group), stepped year by year with the decisions the board adopted
(years nobody decided follow the rules). A process-wide cache keeps each room's stepped models so a year
costs one step; after a server restart, or if the cache disagrees with the store, the room is rebuilt
by replaying the adopted decisions — the same numbers, since the same scenario, seeds and decisions give
identical results. Every device reads the same cached snapshot, so everyone sees the same numbers.

Stepping lives in one function, :func:`advance` (the kernel's stepping object can replace it).

The debrief runs the room's path, the rules-only path and one other path on the **same seeds** (common
random numbers, `kernel.single_run`), compares them year by year and tells what followed each decision
taken school by school ("you spared X in year 2; it closed in year 4 anyway").
"""

from __future__ import annotations

import html
import io
import threading
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_sim.dashboard.simulation import RunSnapshot, Simulation
from portfolio_sim.decisions import RULES, WORKSHOP, Decisions, decisions_toml
from portfolio_sim.kernel import RunResult, derive_seeds, single_run, summarize, yearly_table
from portfolio_sim.room.store import ALL_SCHOOLS, ROLES, VOTES, RoomError, RoomStore, pretty_code

_cache: dict[str, tuple[Simulation, tuple, RunSnapshot | None]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()

# Rooms are played live: keep them small enough that a year steps in about a second.
MAX_ROOM_SEEDS = 5
MAX_ROOM_YEARS = 15


def check_room_scenario(scenario) -> None:
    """Refuse scenarios a live room cannot step quickly; the message says what is allowed."""
    if scenario.run.seeds > MAX_ROOM_SEEDS:
        raise RoomError(f"{scenario.run.seeds} seeds: a room steps all of them live; allowed 1 to {MAX_ROOM_SEEDS}")
    if scenario.run.years > MAX_ROOM_YEARS:
        raise RoomError(f"{scenario.run.years} years: allowed 1 to {MAX_ROOM_YEARS} for a room")
    if scenario.district.students > 200_000:
        raise RoomError(f"{scenario.district.students:,} students: scale the district to at most 200,000 "
                        "students for a room (District: students and schools)")


def _lock(code: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(code, threading.Lock())


def advance(sim: Simulation, decisions: Decisions) -> None:
    """Step the room's simulation one year with `decisions` (every seed). The one stepping function."""
    sim.step_year(decisions=decisions)


def _key(adopted: dict[int, Decisions], year: int) -> tuple:
    return year, tuple(sorted((y, d) for y, d in adopted.items() if y <= year))


def _build(store: RoomStore, code: str) -> tuple[Simulation, tuple, RunSnapshot | None]:
    room = store.room(code)
    adopted = store.adopted(code, room.year)
    cached = _cache.get(code)
    if cached is not None and cached[1] == _key(adopted, room.year):
        return cached
    sim = Simulation(room.scenario(), label=room.name)
    for year in range(1, room.year + 1):
        advance(sim, adopted.get(year, RULES))
    entry = (sim, _key(adopted, room.year), sim.snapshot())
    _cache[code] = entry
    return entry


def snapshot(store: RoomStore, code: str) -> RunSnapshot | None:
    """What every device of the room shows: the shared simulation at the room's year (None at year 0)."""
    code = store.room(code).code
    with _lock(code):
        return _build(store, code)[2]


def step(store: RoomStore, code: str, key: str) -> int:
    """Apply the round's outcome and simulate the next year for everyone; returns the year reached."""
    code = store.room(code).code
    with _lock(code):
        sim, _, _ = _build(store, code)
        year, decisions = store.begin_step(code, key)
        advance(sim, decisions)
        store.finish_step(code, key, year)
        adopted = store.adopted(code, year)
        _cache[code] = (sim, _key(adopted, year), sim.snapshot())
    return year


def forget(code: str) -> None:
    """Drop a room's cached models (tests: as after a server restart)."""
    entry = _cache.pop(code, None)
    if entry is not None:
        entry[0].discard()


# ------------------------------------------------------------------------------------------------
# Debrief
# ------------------------------------------------------------------------------------------------

def other_paths(store: RoomStore, code: str) -> dict[str, tuple[str, dict[int, Decisions]]]:
    """Paths the facilitator can set beside the room's: key -> (label, decisions by year)."""
    room = store.room(code)
    years = range(1, room.year + 1)
    proposed: dict[int, Decisions] = {}
    for y in years:
        d = RULES
        for m in store.motions(code, y):
            d = (d.with_school_choice(m.school, m.point, m.choice) if m.school != ALL_SCHOOLS
                 else Decisions(**{**d.as_dict(), m.point: m.choice}, schools=d.schools))
        if not d.by_rule:
            proposed[y] = d
    fixed = {
        "proposals": ("Every motion adopted (the superintendent's path)", proposed),
        "spare": ("Spare every failing school, every year", {y: Decisions(intervention="spare") for y in years}),
        "close": ("Close every failing school, every year", {y: Decisions(intervention="close") for y in years}),
        "approve": ("Approve every application, every year", {y: Decisions(applications="approve") for y in years}),
        "protect": ("The board protects autonomy, every year", {y: Decisions(board="protect") for y in years}),
    }
    return fixed


DEBRIEF_METRICS = (("mean_achievement", "Mean achievement (SD)", "{:+.3f}"),
                   ("share_below_bar", "Students below the bar", "{:.1%}"),
                   ("autonomous_schools", "Autonomous schools", "{:.1f}"),
                   ("closures", "Closures that year", "{:.1f}"),
                   ("restarts", "Restarts that year", "{:.1f}"),
                   ("enrollment_outside", "Students outside the district", "{:,.0f}"),
                   ("political_support", "Political support", "{:.2f}"))


@dataclass(frozen=True)
class Debrief:
    room_label: str
    other_label: str
    years: int
    start_year: int
    seeds: tuple[int, ...]
    paths: dict[str, pd.DataFrame]         # label -> yearly table (seed, year, metrics)
    table: pd.DataFrame                     # year, decisions, metric columns per path and differences
    stories: tuple[str, ...]
    room_results: tuple[RunResult, ...]


def _run_path(scenario, seeds, years, decisions) -> list[RunResult]:
    return [single_run(scenario, s, years=years, decisions=decisions) for s in seeds]


def debrief(store: RoomStore, code: str, other: str = "proposals") -> Debrief:
    """The room's path beside the rules-only path and `other` (a key of `other_paths`), same seeds."""
    room = store.room(code)
    scenario = room.scenario()
    seeds = tuple(derive_seeds(scenario.run.seed, scenario.run.seeds))
    years = max(room.year, 1)
    adopted = store.adopted(code, room.year)
    others = other_paths(store, code)
    if other not in others:
        raise RoomError(f"'{other}' is not a path to compare; allowed: {', '.join(others)}")
    other_label, other_decisions = others[other]
    ours = _run_path(scenario, seeds, years, adopted)
    rules = _run_path(scenario, seeds, years, {})
    alt = _run_path(scenario, seeds, years, other_decisions)
    paths = {"This room": yearly_table(ours), "Rules only": yearly_table(rules), other_label: yearly_table(alt)}

    names = {}
    for r in ours:
        names.update(dict(zip(r.schools["school_id"], r.schools["name"])))
    rows = []
    for year in range(1, years + 1):
        row: dict = {"year": year, "calendar": scenario.run.start_year + year,
                     "decided": adopted[year].describe(names) if year in adopted else "by the rules"}
        for metric, label, _ in DEBRIEF_METRICS:
            vals = {name: frame.loc[frame["year"] == year].set_index("seed")[metric].astype(float)
                    for name, frame in paths.items()}
            row[f"{label} | room"] = float(vals["This room"].median())
            row[f"{label} | rules"] = float(vals["Rules only"].median())
            # paired by seed: the difference each decision made in the same district and draws
            row[f"{label} | room - rules"] = float((vals["This room"] - vals["Rules only"]).median())
            row[f"{label} | other - rules"] = float((vals[other_label] - vals["Rules only"]).median())
        rows.append(row)
    return Debrief(room_label=room.name, other_label=other_label, years=years, start_year=scenario.run.start_year,
                   seeds=seeds, paths=paths, table=pd.DataFrame(rows), stories=tuple(stories(ours, rules)),
                   room_results=tuple(ours))


PAST = {"spared": "spared", "closure": "closed", "restart": "restarted", "operator_replaced": "replaced the operator of",
        "renewal": "renewed the contract of", "non_renewal": "did not renew the contract of"}
FOLLOW = {"closure": "it closed", "restart": "it was restarted", "operator_replaced": "its operator was replaced",
          "non_renewal": "its contract was not renewed", "renewal": "its contract was renewed",
          "spared": "it was spared again", "conversion": "it converted"}
QUIET = {"warning", "election", "budget_shock"}


def stories(ours: list[RunResult], rules: list[RunResult]) -> list[str]:
    """What followed each decision the room took school by school (and what the rules would have done),
    seed by seed; at most 12."""
    out: list[str] = []
    many = len(ours) > 1
    for i, (r_ours, r_rules) in enumerate(zip(ours, rules), 1):
        ev, ev_rules = r_ours.events, r_rules.events
        start = r_ours.scenario.run.start_year
        if ev.empty:
            continue
        decided = ev[ev["cause"].astype(str).str.contains(WORKSHOP, regex=False) & ev["school_id"].notna()
                     & ev["event"].isin(list(PAST))]
        for _, e in decided.iterrows():
            s, y = int(e["school_id"]), int(e["year"])
            where = f" (in future {i} of {len(ours)})" if many else ""
            text = f"You {PAST[e['event']]} {e['school']} in year {y} ({start + y}){where}"
            later = ev[(ev["school_id"] == s) & (ev["year"] > y) & ~ev["event"].isin(list(QUIET))]
            if not later.empty:
                f = later.iloc[0]
                anyway = " anyway" if e["event"] == "spared" and f["event"] in ("closure", "restart") else ""
                text += f"; {FOLLOW.get(f['event'], f['event'].replace('_', ' '))} in year {int(f['year'])} " \
                        f"({start + int(f['year'])}){anyway}"
            elif y >= int(r_ours.yearly["year"].max()):
                text += "; the room stopped that year"
            else:
                text += f"; nothing else happened to it through year {int(r_ours.yearly['year'].max())}"
            same = ev_rules[(ev_rules["school_id"] == s) & (ev_rules["year"] == y) & ~ev_rules["event"].isin(list(QUIET))]
            if not same.empty:
                text += f". By the rules: {FOLLOW.get(same.iloc[0]['event'], same.iloc[0]['event'])} in year {y}."
            else:
                text += ". By the rules nothing would have happened to it that year."
            out.append(text)
            if len(out) >= 12:
                return out
    return out


def fmt(metric: str, value: float) -> str:
    spec = next(f for m, _, f in DEBRIEF_METRICS if m == metric)
    return "n/a" if value != value else spec.format(value)


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------

def votes_csv(store: RoomStore, code: str) -> str:
    """One row per motion: year, decision point, school, motion, yes/no/abstain/not voted, verdict and
    who voted what (a board's minutes)."""
    rows = []
    for o in store.outcomes(code):
        for t in o.tallies:
            rows.append({"year": o.year, "closed_by": o.closed_by, "point": t["point"],
                         "school_id": "" if t["school"] == ALL_SCHOOLS else t["school"],
                         "motion": t["text"], "yes": t["yes"], "no": t["no"], "abstain": t["abstain"],
                         "not_voted": t["not_voted"], "verdict": t["verdict"],
                         "votes": "; ".join(f"{n}: {VOTES[v]}" for n, v in t["votes"])})
    cols = ["year", "closed_by", "point", "school_id", "motion", "yes", "no", "abstain", "not_voted", "verdict", "votes"]
    return pd.DataFrame(rows, columns=cols).to_csv(index=False)


def session_zip(store: RoomStore, code: str) -> bytes:
    """The session: scenario.toml (its run group names years, seeds and root seed), decisions.toml (what
    the board adopted), votes.csv, the results `portfolio-sim run` writes, summary.html, and how to
    replay: `portfolio-sim run scenario.toml --decisions decisions.toml` gives the same results (the
    exported scenario's run.years is the years the room simulated)."""
    room = store.room(code)
    snap = snapshot(store, code)
    scenario = room.scenario()
    if room.year:
        scenario.run.years = room.year      # the years the room simulated: the CLI replays exactly those
    adopted = store.adopted(code, room.year)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("scenario.toml", scenario.to_toml())
        z.writestr("decisions.toml", decisions_toml(adopted))
        z.writestr("votes.csv", votes_csv(store, code))
        z.writestr("comments.csv", pd.DataFrame(
            [{"year": c.year, "name": c.name, "role": ROLES[c.role].label, "kind": c.kind, "text": c.text}
             for c in reversed(store.comments(code, limit=10_000))],
            columns=["year", "name", "role", "kind", "text"]).to_csv(index=False))
        if snap is not None:
            z.writestr("yearly.csv", snap.yearly.to_csv(index=False))
            z.writestr("summary.csv", summarize(snap.yearly).to_csv(index=False))
            z.writestr("events.csv", snap.events.to_csv(index=False))
        z.writestr("summary.html", summary_html(store, code))
        z.writestr("REPLAY.txt", replay_text(room.pretty))
    return buf.getvalue()


def replay_text(pretty: str) -> str:
    return (f"Workshop room {pretty}: replay the room's run exactly (same seeds, same decisions):\n\n"
            "    portfolio-sim run scenario.toml --decisions decisions.toml --out replay\n\n"
            "replay/yearly.csv then equals yearly.csv here.\n")


def summary_html(store: RoomStore, code: str, other: str = "proposals") -> str:
    """A printable one-page summary of the session: decisions and votes by year, the paths compared,
    what followed the decisions."""
    room = store.room(code)
    d = debrief(store, code, other) if room.year else None
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Workshop {e(room.pretty)}</title>",
             "<style>body{font:14px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#111}"
             "table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}td,th{border:1px solid #999;"
             "padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee}"
             "@media print{body{margin:0;font-size:11px}h2{break-after:avoid}}</style></head><body>",
             f"<h1>Workshop room {e(room.pretty)}: {e(room.name)}</h1>",
             f"<p>{room.year} of {room.years} years simulated; {len(store.participants(code))} participants. "
             "Board rules: a motion carries when Yes outnumbers No; a tie fails (the scenario's rule applies); "
             "when time runs out, members who have not voted count as not voting.</p>",
             "<h2>Decisions and votes, year by year</h2><table><tr><th>Year</th><th>Motion</th><th>Yes</th>"
             "<th>No</th><th>Abstain</th><th>Not voted</th><th>Result</th></tr>"]
    for o in store.outcomes(code):
        if not o.tallies:
            parts.append(f"<tr><td>{o.year}</td><td colspan=6>no motion: by the rules</td></tr>")
        for t in o.tallies:
            parts.append(f"<tr><td>{o.year}</td><td>{e(t['text'])}</td><td>{t['yes']}</td><td>{t['no']}</td>"
                         f"<td>{t['abstain']}</td><td>{t['not_voted']}</td><td>{e(t['verdict'])}</td></tr>")
    parts.append("</table>")
    if d is not None:
        parts.append(f"<h2>The room's path against the rules and against: {e(d.other_label)}</h2>"
                     f"<p>Same seeds ({len(d.seeds)}), medians across seeds; differences are paired seed by seed.</p>")
        parts.append(debrief_table_html(d))
        if d.stories:
            parts.append("<h2>What followed</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in d.stories) + "</ul>")
    parts.append(f"<h2>Replay</h2><pre>{e(replay_text(room.pretty))}</pre></body></html>")
    return "".join(parts)


def debrief_table_html(d: Debrief, metrics: tuple[str, ...] = ("mean_achievement", "share_below_bar", "closures",
                                                                 "restarts", "political_support")) -> str:
    e = html.escape
    head = "<tr><th>Year</th><th>Decided</th>" + "".join(
        f"<th>{e(label)}: room / rules (room − rules; other − rules)</th>"
        for m, label, _ in DEBRIEF_METRICS if m in metrics) + "</tr>"
    body = []
    for _, r in d.table.iterrows():
        cells = [f"<td>{int(r['year'])} ({int(r['calendar'])})</td><td>{e(str(r['decided']))}</td>"]
        for m, label, _ in DEBRIEF_METRICS:
            if m not in metrics:
                continue
            cells.append(f"<td>{fmt(m, r[f'{label} | room'])} / {fmt(m, r[f'{label} | rules'])} "
                         f"({_signed(m, r[f'{label} | room - rules'])}; {_signed(m, r[f'{label} | other - rules'])})</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='pz-table room-debrief-table'>{head}{''.join(body)}</table>"


def _signed(metric: str, value: float) -> str:
    if value != value:
        return "n/a"
    if abs(value) < 1e-12:
        return "0"
    text = fmt(metric, abs(value))
    return ("+" if value > 0 else "−") + text.lstrip("+")


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """True when two yearly tables hold identical numbers (for the replay checks)."""
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        return False
    return all(np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True) if a[c].dtype.kind == "f"
               else (a[c].to_numpy() == b[c].to_numpy()).all() for c in a.columns)


__all__ = ["advance", "snapshot", "step", "debrief", "session_zip", "summary_html", "votes_csv",
           "other_paths", "pretty_code", "check_room_scenario", "forget"]
