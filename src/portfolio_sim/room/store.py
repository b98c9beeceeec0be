"""Workshop rooms in SQLite: rooms, participants, motions, votes, outcomes and comments, and the round rules.

One process-wide :class:`RoomStore` (see :func:`default_store`) owns the room state: Solara gives every
browser page its own virtual kernel, so what a room shares cannot live in a page. Every action names the
room by its code and the actor by a secret (the facilitator's key, a participant's token); the store
checks both, so a code gives access to one room only and nobody can act as someone else.

A room runs one **round per simulated year**:

``waiting`` --open_round--> ``agenda`` --call_vote--> ``voting`` --(deadline | all voted | close_vote)-->
``decided`` --begin_step/finish_step--> ``waiting`` (the next year) ... ``done`` (every year stepped).

* In ``agenda`` the superintendent (or the facilitator, chairing) puts motions on the table: one choice
  of :mod:`portfolio_sim.decisions` per decision point, or per school.
* In ``voting`` every board member votes Yes, No or Abstain on every motion, once (votes are final).
* **Majority:** a motion carries when its Yes votes outnumber its No votes. Abstentions and members who
  did not vote count for neither side.
* **Tie:** Yes = No (also 0 = 0) and the motion fails: the scenario's rule applies to that decision, as a
  tied motion fails on a real board (the status quo is the rule).
* **Timeout:** voting closes at its deadline (the facilitator's time limit); members who had not voted
  are recorded as not voting and votes after the deadline are refused. Voting also closes as soon as
  every board member in the room has voted on every motion, or when the facilitator closes it.
* Stepping a year with no round open (or a round without motions) follows the rules for that year.

Rooms untouched for ``ttl_hours`` (default 72, ``PORTFOLIO_SIM_ROOM_TTL_HOURS``) expire and are deleted;
a closed room refuses every action but can still be read (debrief, export) until it expires.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portfolio_sim.decisions import CHOICES, PER_SCHOOL, QUESTIONS, SCHOOL_CHOICES, Decisions
from portfolio_sim.inputs import shown
from portfolio_sim.scenario import Scenario, loads_scenario

# -- codes -------------------------------------------------------------------------------------------
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"     # no 0/O, 1/I/L: read aloud and typed on phones
CODE_LENGTH = 8                                  # 31**8 ≈ 8.5e11 codes: not guessable in practice


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def pretty_code(code: str) -> str:
    """'K7QM2XPD' -> 'K7QM-2XPD' (how the code is shown and read aloud)."""
    return f"{code[:4]}-{code[4:]}"


def normalize_code(text: str) -> str:
    """A typed room code in canonical form; RoomError naming what is allowed if it cannot be one."""
    raw = str(text or "")
    code = re.sub(r"[\s\-]", "", raw).upper()
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        shown = raw.strip()[:20] or "(empty)"
        raise RoomError(f"'{shown}' is not a room code: a code is {CODE_LENGTH} letters and digits, such as "
                        "K7QM-2XPD (no 0, O, 1, I or L). Ask the facilitator for the code on the screen.")
    return code


# -- roles, votes, signals ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Role:
    key: str
    label: str
    does: str
    votes: bool = False
    proposes: bool = False


ROLES: dict[str, Role] = {r.key: r for r in (
    Role("board", "Board member", "votes on the superintendent's motions", votes=True),
    Role("superintendent", "Superintendent / central office",
         "proposes interventions, renewals and approvals to the board", proposes=True),
    Role("union", "Teachers' union", "comments and signals, no vote"),
    Role("parents", "Parents", "comments and signals, no vote"),
    Role("operator", "School operator", "comments and signals, no vote"),
    Role("observer", "Observer", "follows the room, comments and signals"),
)}
VOTES = {"yes": "Yes", "no": "No", "abstain": "Abstain"}
SIGNALS = {"support": "Support", "concern": "Concern", "question": "Question"}
MAX_NAME = 40
MAX_COMMENT = 280
MAX_SCHOOL_ID = 2**31 - 1                        # a school id fits a 32-bit integer (SQLite, numpy)
ALL_SCHOOLS = -1                                 # a motion for every school at its decision point
PHASES = ("waiting", "agenda", "voting", "decided", "done")


class RoomError(ValueError):
    """An action the room refuses; the message says why, in words a participant understands."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- values handed to the pages ----------------------------------------------------------------------

@dataclass(frozen=True)
class Room:
    code: str
    name: str
    scenario_toml: str
    years: int
    year: int                # years simulated so far (0: the district not yet set up)
    phase: str
    round_year: int          # the year the open (or last) round decides
    vote_seconds: int
    deadline: float          # when voting closes (0: not voting)
    created: float
    touched: float
    closed: float            # 0: open
    version: int

    @property
    def pretty(self) -> str:
        return pretty_code(self.code)

    @property
    def is_closed(self) -> bool:
        return self.closed > 0

    def scenario(self) -> Scenario:
        return loads_scenario(self.scenario_toml, f"room {self.pretty}")

    def seconds_left(self, now: float | None = None) -> int:
        if self.phase != "voting":
            return 0
        return max(0, int(round(self.deadline - (time.time() if now is None else now))))


@dataclass(frozen=True)
class Participant:
    token: str | None        # only known right after joining (the store keeps a hash)
    pid: int
    code: str
    name: str
    role: str
    joined: float

    @property
    def role_label(self) -> str:
        return ROLES[self.role].label


@dataclass(frozen=True)
class Motion:
    year: int
    point: str
    school: int              # ALL_SCHOOLS or a school id
    choice: str
    school_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.point}:{self.school}"

    @property
    def text(self) -> str:
        if self.school == ALL_SCHOOLS:
            return f"{QUESTIONS[self.point]} Motion: {CHOICES[self.point][self.choice]}."
        return f"{self.school_name or f'School {self.school}'}: {SCHOOL_CHOICES[self.point][self.choice]}."


@dataclass(frozen=True)
class Tally:
    motion: Motion
    yes: int
    no: int
    abstain: int
    not_voted: int
    voters: tuple[tuple[str, str], ...]      # (name, vote) of those who voted

    @property
    def carried(self) -> bool:
        return self.yes > self.no

    @property
    def tied(self) -> bool:
        return self.yes == self.no

    @property
    def verdict(self) -> str:
        if self.carried:
            return "carried"
        return "tied: fails, the rule applies" if self.tied else "fails: the rule applies"


@dataclass(frozen=True)
class Outcome:
    year: int
    decisions: Decisions
    closed_by: str           # deadline | all voted | facilitator | no round
    tallies: tuple[dict, ...]


@dataclass(frozen=True)
class Comment:
    year: int
    name: str
    role: str
    kind: str                # comment | signal
    text: str
    at: float


SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
  code TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL, scenario TEXT NOT NULL,
  years INTEGER NOT NULL, year INTEGER NOT NULL DEFAULT 0, phase TEXT NOT NULL DEFAULT 'waiting',
  round_year INTEGER NOT NULL DEFAULT 0, vote_seconds INTEGER NOT NULL, deadline REAL NOT NULL DEFAULT 0,
  created REAL NOT NULL, touched REAL NOT NULL, closed REAL NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS participants (
  pid INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE,
  token_hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, name_key TEXT NOT NULL, role TEXT NOT NULL,
  joined REAL NOT NULL, UNIQUE (code, name_key));
CREATE TABLE IF NOT EXISTS motions (
  code TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE, year INTEGER NOT NULL, point TEXT NOT NULL,
  school INTEGER NOT NULL, choice TEXT NOT NULL, school_name TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (code, year, point, school));
CREATE TABLE IF NOT EXISTS votes (
  code TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE, year INTEGER NOT NULL, point TEXT NOT NULL,
  school INTEGER NOT NULL, pid INTEGER NOT NULL, vote TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (code, year, point, school, pid));
CREATE TABLE IF NOT EXISTS outcomes (
  code TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE, year INTEGER NOT NULL,
  decisions TEXT NOT NULL, closed_by TEXT NOT NULL, tallies TEXT NOT NULL, PRIMARY KEY (code, year));
CREATE TABLE IF NOT EXISTS comments (
  id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE,
  year INTEGER NOT NULL, pid INTEGER NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, at REAL NOT NULL);
"""


def default_db_path() -> Path:
    """PORTFOLIO_SIM_ROOMS_DB, else the user's data directory ($XDG_DATA_HOME or ~/.local/share) —
    never the repository."""
    env = os.environ.get("PORTFOLIO_SIM_ROOMS_DB")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "portfolio_sim" / "rooms.sqlite"


def _decisions_json(d: Decisions) -> str:
    return json.dumps({**d.as_dict(), "schools": [list(x) for x in d.schools]})


def decisions_from_json(text: str) -> Decisions:
    data = json.loads(text)
    return Decisions(**{k: v for k, v in data.items() if k != "schools"},
                     schools=tuple((int(s), p, c) for s, p, c in data.get("schools", [])))


class RoomStore:
    """Every room of this server, in one SQLite file (WAL; one connection guarded by a lock)."""

    def __init__(self, path: str | Path, ttl_hours: float | None = None, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl = 3600.0 * (ttl_hours if ttl_hours is not None
                             else float(os.environ.get("PORTFOLIO_SIM_ROOM_TTL_HOURS", "72") or 72))
        self.clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(SCHEMA)
        self.expire()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing -----------------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self)

    def _row(self, code: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM rooms WHERE code = ?", (code,)).fetchone()
        if row is None:
            raise RoomError(f"No room has the code {pretty_code(code)}: check the code with the facilitator "
                            "(a room also ends when it expires).")
        return row

    def _room(self, row: sqlite3.Row) -> Room:
        return Room(code=row["code"], name=row["name"], scenario_toml=row["scenario"], years=row["years"],
                    year=row["year"], phase=row["phase"], round_year=row["round_year"],
                    vote_seconds=row["vote_seconds"], deadline=row["deadline"], created=row["created"],
                    touched=row["touched"], closed=row["closed"], version=row["version"])

    def _bump(self, code: str, **fields) -> None:
        sets = "".join(f", {k} = ?" for k in fields)
        self._db.execute(f"UPDATE rooms SET version = version + 1, touched = ?{sets} WHERE code = ?",
                         (self.clock(), *fields.values(), code))

    def _open_room(self, code: str) -> sqlite3.Row:
        row = self._row(normalize_code(code))
        if row["closed"]:
            raise RoomError(f"Room {pretty_code(row['code'])} has been closed by its facilitator.")
        return row

    def _facilitator(self, code: str, key: str) -> sqlite3.Row:
        row = self._open_room(code)
        if not key or not secrets.compare_digest(_hash(key), row["key_hash"]):
            raise RoomError("Only this room's facilitator can do that (the console's address holds the key).")
        return row

    def _participant_row(self, code: str, token: str) -> sqlite3.Row:
        p = self._db.execute("SELECT * FROM participants WHERE token_hash = ?", (_hash(token or ""),)).fetchone()
        if p is None or p["code"] != code:
            raise RoomError("This device is not a participant of this room: join it with its code.")
        return p

    # -- rooms --------------------------------------------------------------------------------------
    def create_room(self, scenario: Scenario, name: str = "", vote_seconds: int = 90) -> tuple[Room, str]:
        """A new room for `scenario` (its run group: years, seeds, root seed); returns it and the
        facilitator's key (shown once, in the console's address)."""
        if not 10 <= int(vote_seconds) <= 900:
            raise RoomError(f"vote time {vote_seconds} s: allowed 10 to 900 seconds")
        key = secrets.token_urlsafe(18)
        now = self.clock()
        with self._tx():
            self.expire()
            while True:
                code = new_code()
                if self._db.execute("SELECT 1 FROM rooms WHERE code = ?", (code,)).fetchone() is None:
                    break
            self._db.execute(
                "INSERT INTO rooms (code, name, key_hash, scenario, years, vote_seconds, created, touched) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (code, (name or scenario.name)[:80], _hash(key), scenario.to_toml(), scenario.run.years,
                 int(vote_seconds), now, now))
        return self.room(code), key

    def room(self, code: str) -> Room:
        """The room now (a vote past its deadline is closed first). Closed rooms are returned too."""
        code = normalize_code(code)
        with self._tx():
            row = self._row(code)
            if row["phase"] == "voting" and not row["closed"] and self._vote_is_over(row):
                self._close_vote(row, "deadline" if self.clock() >= row["deadline"] else "all voted")
                row = self._row(code)
            return self._room(row)

    def version(self, code: str) -> tuple[int, str, float]:
        """(version, phase, deadline): what a page polls to know whether to re-read the room."""
        with self._lock:
            row = self._db.execute("SELECT version, phase, deadline FROM rooms WHERE code = ?", (code,)).fetchone()
        if row is None:
            return -1, "", 0.0
        return row[0], row[1], row[2]

    def is_facilitator(self, code: str, key: str) -> bool:
        try:
            with self._lock:
                self._facilitator(code, key)
            return True
        except RoomError:
            return False

    def close_room(self, code: str, key: str) -> None:
        with self._tx():
            row = self._facilitator(code, key)
            self._bump(row["code"], closed=self.clock())

    def expire(self) -> int:
        """Delete rooms untouched for longer than the time to live; returns how many."""
        with self._tx():
            cur = self._db.execute("DELETE FROM rooms WHERE touched < ?", (self.clock() - self.ttl,))
            return cur.rowcount

    # -- participants ---------------------------------------------------------------------------------
    def join(self, code: str, name: str, role: str) -> Participant:
        """A new participant; the returned token (kept by the device, in its address) identifies it."""
        clean = " ".join(str(name or "").split())
        if not clean:
            raise RoomError("Enter your name (as the room should see it).")
        if len(clean) > MAX_NAME:
            raise RoomError(f"Names are at most {MAX_NAME} characters.")
        if not clean.isprintable():      # control characters (terminal escapes, NUL) shown on every screen
            raise RoomError("Names are letters, digits, spaces and punctuation (no control characters).")
        if role not in ROLES:
            raise RoomError(f"'{role}' is not a role; allowed: {', '.join(ROLES)}")
        token = secrets.token_urlsafe(18)
        with self._tx():
            row = self._open_room(code)
            try:
                cur = self._db.execute(
                    "INSERT INTO participants (code, token_hash, name, name_key, role, joined) VALUES (?,?,?,?,?,?)",
                    (row["code"], _hash(token), clean, clean.casefold(), role, self.clock()))
            except sqlite3.IntegrityError:
                raise RoomError(f"Someone in this room is already called '{clean}'. If that is you on another "
                                "device, open the link you got when you joined; otherwise add an initial.") from None
            self._bump(row["code"])
            return Participant(token, int(cur.lastrowid), row["code"], clean, role, self.clock())

    def participant(self, code: str, token: str) -> Participant:
        with self._lock:
            p = self._participant_row(normalize_code(code), token)
        return Participant(None, p["pid"], p["code"], p["name"], p["role"], p["joined"])

    def participants(self, code: str) -> list[Participant]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM participants WHERE code = ? ORDER BY pid",
                                    (normalize_code(code),)).fetchall()
        return [Participant(None, p["pid"], p["code"], p["name"], p["role"], p["joined"]) for p in rows]

    def set_role(self, code: str, key: str, pid: int, role: str) -> None:
        """The facilitator gives a participant another role (votes already cast stay)."""
        if role not in ROLES:
            raise RoomError(f"'{role}' is not a role; allowed: {', '.join(ROLES)}")
        with self._tx():
            row = self._facilitator(code, key)
            cur = self._db.execute("UPDATE participants SET role = ? WHERE code = ? AND pid = ?",
                                   (role, row["code"], int(pid)))
            if cur.rowcount != 1:
                raise RoomError("No such participant in this room.")
            self._bump(row["code"])

    # -- rounds ---------------------------------------------------------------------------------------
    def open_round(self, code: str, key: str) -> Room:
        """Open the agenda for the next year (the room's year + 1)."""
        with self._tx():
            row = self._facilitator(code, key)
            if row["phase"] == "done":
                raise RoomError(f"All {row['years']} years are done: the debrief is next.")
            if row["phase"] != "waiting":
                raise RoomError(f"The round for year {row['round_year']} is still open ({row['phase']}).")
            self._bump(row["code"], phase="agenda", round_year=row["year"] + 1, deadline=0)
        return self.room(code)

    def _proposer(self, row: sqlite3.Row, actor: str) -> None:
        """The superintendent (participant token) or the facilitator (key) may move motions."""
        if secrets.compare_digest(_hash(actor or ""), row["key_hash"]):
            return
        p = self._participant_row(row["code"], actor)
        if not ROLES[p["role"]].proposes:
            raise RoomError(f"{ROLES[p['role']].label}s do not propose motions; the superintendent does.")

    def propose(self, code: str, actor: str, point: str, choice: str, school: int = ALL_SCHOOLS,
                school_name: str = "") -> None:
        """Put a motion on this round's agenda (or change it; choice "rule" withdraws it)."""
        if point not in QUESTIONS:
            raise RoomError(f"'{point}' is not a decision point; allowed: {', '.join(QUESTIONS)}")
        if isinstance(school, bool) or not isinstance(school, numbers.Integral) or not (
                school == ALL_SCHOOLS or 0 <= school <= MAX_SCHOOL_ID):
            # an id the store could not hold (10**30 overflows SQLite) or that no school has
            raise RoomError(f"{str(school)[:20]!r} is not a school; allowed: a school id from 0 "
                            f"(or {ALL_SCHOOLS} for every school)")
        options = CHOICES[point] if school == ALL_SCHOOLS else SCHOOL_CHOICES.get(point)
        if school != ALL_SCHOOLS and point not in PER_SCHOOL:
            raise RoomError(f"'{point}' cannot be decided school by school; allowed: {', '.join(PER_SCHOOL)}")
        if options is None or choice not in options:
            raise RoomError(f"{shown(choice, 40)} is not a choice for {point}; allowed: {', '.join(options or {})}")
        with self._tx():
            row = self._open_room(code)
            self._proposer(row, actor)
            if row["phase"] != "agenda":
                raise RoomError("Motions can be moved only while the agenda is open (before the vote).")
            year = row["round_year"]
            if choice == "rule":
                self._db.execute("DELETE FROM motions WHERE code=? AND year=? AND point=? AND school=?",
                                 (row["code"], year, point, int(school)))
            else:
                self._db.execute("INSERT OR REPLACE INTO motions VALUES (?,?,?,?,?,?)",
                                 (row["code"], year, point, int(school), choice, school_name[:80]))
            self._bump(row["code"])

    def motions(self, code: str, year: int | None = None) -> list[Motion]:
        with self._lock:
            code = normalize_code(code)
            if year is None:
                year = self._row(code)["round_year"]
            rows = self._db.execute("SELECT * FROM motions WHERE code = ? AND year = ? ORDER BY point, school",
                                    (code, year)).fetchall()
        order = list(QUESTIONS)
        return sorted((Motion(r["year"], r["point"], r["school"], r["choice"], r["school_name"]) for r in rows),
                      key=lambda m: (order.index(m.point), m.school))

    def call_vote(self, code: str, key: str, seconds: int | None = None) -> Room:
        """Close the agenda and open the board's vote for `seconds` (default: the room's vote time)."""
        with self._tx():
            row = self._facilitator(code, key)
            if row["phase"] != "agenda":
                raise RoomError("Open the agenda first: the vote follows the superintendent's motions.")
            if not self.motions(row["code"], row["round_year"]):
                raise RoomError("No motion is on the table: step the year by the rules, or let the "
                                "superintendent move a motion.")
            secs = int(seconds or row["vote_seconds"])
            if not 10 <= secs <= 900:
                raise RoomError(f"vote time {secs} s: allowed 10 to 900 seconds")
            self._bump(row["code"], phase="voting", deadline=self.clock() + secs)
        return self.room(code)

    def vote(self, code: str, token: str, motion_key: str, vote: str) -> None:
        """One board member's vote on one motion ("point:school"); once, before the deadline."""
        if vote not in VOTES:
            raise RoomError(f"'{vote}' is not a vote; allowed: {', '.join(VOTES)}")
        with self._tx():
            row = self._open_room(code)
            p = self._participant_row(row["code"], token)
            if not ROLES[p["role"]].votes:
                raise RoomError(f"Only board members vote; you joined as {ROLES[p['role']].label} (other roles do not vote).")
            if row["phase"] == "voting" and self.clock() >= row["deadline"]:
                self._close_vote(row, "deadline")
                raise RoomError("Too late: the vote closed when its time ran out.")
            if row["phase"] != "voting":
                raise RoomError("No vote is open right now.")
            point, _, school = str(motion_key).partition(":")
            year = row["round_year"]
            if not school.lstrip("-").isdigit() or self._db.execute(
                    "SELECT 1 FROM motions WHERE code=? AND year=? AND point=? AND school=?",
                    (row["code"], year, point, int(school))).fetchone() is None:
                raise RoomError("That motion is not on this round's agenda.")
            try:
                self._db.execute("INSERT INTO votes VALUES (?,?,?,?,?,?,?)",
                                 (row["code"], year, point, int(school), p["pid"], vote, self.clock()))
            except sqlite3.IntegrityError:
                raise RoomError("You have already voted on this motion; votes are final.") from None
            self._bump(row["code"])
            row = self._row(row["code"])
            if self._vote_is_over(row):
                self._close_vote(row, "all voted")

    def my_votes(self, code: str, token: str) -> dict[str, str]:
        """This participant's votes in the current round, by motion key."""
        with self._lock:
            row = self._row(normalize_code(code))
            p = self._participant_row(row["code"], token)
            rows = self._db.execute("SELECT point, school, vote FROM votes WHERE code=? AND year=? AND pid=?",
                                    (row["code"], row["round_year"], p["pid"])).fetchall()
        return {f"{r[0]}:{r[1]}": r[2] for r in rows}

    def tally(self, code: str, year: int | None = None) -> list[Tally]:
        with self._lock:
            code = normalize_code(code)
            if year is None:
                year = self._row(code)["round_year"]
            board = self._db.execute("SELECT COUNT(*) FROM participants WHERE code=? AND role='board'",
                                     (code,)).fetchone()[0]
            out = []
            for m in self.motions(code, year):
                rows = self._db.execute(
                    "SELECT p.name, v.vote FROM votes v JOIN participants p ON p.pid = v.pid WHERE v.code=? "
                    "AND v.year=? AND v.point=? AND v.school=? ORDER BY v.at", (code, year, m.point, m.school)
                ).fetchall()
                counts = {k: sum(1 for r in rows if r[1] == k) for k in VOTES}
                out.append(Tally(m, counts["yes"], counts["no"], counts["abstain"], max(0, board - len(rows)),
                                 tuple((r[0], r[1]) for r in rows)))
        return out

    def _vote_is_over(self, row: sqlite3.Row) -> bool:
        if self.clock() >= row["deadline"]:
            return True
        board = [r[0] for r in self._db.execute(
            "SELECT pid FROM participants WHERE code=? AND role='board'", (row["code"],))]
        n_motions = len(self.motions(row["code"], row["round_year"]))
        if not board or not n_motions:
            return False
        cast = self._db.execute(
            "SELECT COUNT(*) FROM votes v JOIN participants p ON p.pid = v.pid WHERE v.code=? AND v.year=? "
            "AND p.role='board'", (row["code"], row["round_year"])).fetchone()[0]
        return cast >= len(board) * n_motions

    def _close_vote(self, row: sqlite3.Row, closed_by: str) -> None:
        code, year = row["code"], row["round_year"]
        tallies = self.tally(code, year)
        adopted = Decisions()
        for t in tallies:
            if not t.carried:
                continue
            m = t.motion
            adopted = (adopted.with_school_choice(m.school, m.point, m.choice) if m.school != ALL_SCHOOLS
                       else Decisions(**{**adopted.as_dict(), m.point: m.choice}, schools=adopted.schools))
        record = tuple({"point": t.motion.point, "school": t.motion.school, "school_name": t.motion.school_name,
                        "choice": t.motion.choice, "text": t.motion.text, "yes": t.yes, "no": t.no,
                        "abstain": t.abstain, "not_voted": t.not_voted, "carried": t.carried,
                        "verdict": t.verdict, "votes": [list(v) for v in t.voters]} for t in tallies)
        self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?)",
                         (code, year, _decisions_json(adopted), closed_by, json.dumps(record)))
        self._bump(code, phase="decided", deadline=0)

    def close_vote(self, code: str, key: str) -> Outcome:
        """The facilitator closes the vote now (votes not cast count as not voting)."""
        with self._tx():
            row = self._facilitator(code, key)
            if row["phase"] != "voting":
                raise RoomError("No vote is open.")
            self._close_vote(row, "facilitator")
            return self.outcome(row["code"], row["round_year"])

    def outcome(self, code: str, year: int) -> Outcome | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM outcomes WHERE code=? AND year=?",
                                 (normalize_code(code), year)).fetchone()
        if r is None:
            return None
        return Outcome(r["year"], decisions_from_json(r["decisions"]), r["closed_by"], tuple(json.loads(r["tallies"])))

    def outcomes(self, code: str) -> list[Outcome]:
        with self._lock:
            years = [r[0] for r in self._db.execute("SELECT year FROM outcomes WHERE code=? ORDER BY year",
                                                    (normalize_code(code),))]
        return [o for y in years if (o := self.outcome(code, y)) is not None]

    def adopted(self, code: str, through: int | None = None) -> dict[int, Decisions]:
        """The decisions the room adopted, by year (years by the rules left out): what the simulation applies."""
        return {o.year: o.decisions for o in self.outcomes(code)
                if not o.decisions.by_rule and (through is None or o.year <= through)}

    def begin_step(self, code: str, key: str) -> tuple[int, Decisions]:
        """Check the facilitator may step now; returns (the year to simulate, its adopted decisions). A
        round without a vote closes as "by the rules" (a no-round outcome is recorded)."""
        with self._tx():
            row = self._facilitator(code, key)
            year = row["year"] + 1
            if row["phase"] == "done" or year > row["years"]:
                raise RoomError(f"All {row['years']} years are done.")
            if row["phase"] == "voting":
                raise RoomError("The vote is still open: close it (or wait for its time to run out) first.")
            if row["phase"] in ("waiting", "agenda"):
                self._db.execute("DELETE FROM motions WHERE code=? AND year=?", (row["code"], year))
                self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?)",
                                 (row["code"], year, _decisions_json(Decisions()), "no round", "[]"))
                self._bump(row["code"], phase="decided", round_year=year)
            o = self.outcome(row["code"], year)
            return year, (o.decisions if o else Decisions())

    def finish_step(self, code: str, key: str, year: int) -> Room:
        """Record that the room's simulation reached `year` (after `begin_step`)."""
        with self._tx():
            row = self._facilitator(code, key)
            if year != row["year"] + 1 or row["phase"] != "decided":
                raise RoomError(f"Year {year} cannot be recorded now (the room is at year {row['year']}).")
            self._bump(row["code"], year=year, phase="done" if year >= row["years"] else "waiting", deadline=0)
        return self.room(code)

    # -- comments and signals ---------------------------------------------------------------------------
    def comment(self, code: str, token: str, text: str, kind: str = "comment") -> None:
        if kind == "signal":
            if text not in SIGNALS:
                raise RoomError(f"'{text}' is not a signal; allowed: {', '.join(SIGNALS)}")
        elif kind == "comment":
            text = " ".join(str(text or "").split())
            if not text:
                raise RoomError("Write something first.")
            if len(text) > MAX_COMMENT:
                raise RoomError(f"Comments are at most {MAX_COMMENT} characters.")
        else:
            raise RoomError(f"'{kind}' is not a kind of comment; allowed: comment, signal")
        with self._tx():
            row = self._open_room(code)
            p = self._participant_row(row["code"], token)
            self._db.execute("INSERT INTO comments (code, year, pid, kind, text, at) VALUES (?,?,?,?,?,?)",
                             (row["code"], max(row["round_year"], row["year"]), p["pid"], kind, text, self.clock()))
            self._bump(row["code"])

    def comments(self, code: str, limit: int = 200) -> list[Comment]:
        with self._lock:
            rows = self._db.execute(
                "SELECT c.year, p.name, p.role, c.kind, c.text, c.at FROM comments c JOIN participants p "
                "ON p.pid = c.pid WHERE c.code = ? ORDER BY c.id DESC LIMIT ?",
                (normalize_code(code), limit)).fetchall()
        return [Comment(*r) for r in rows]


class _Tx:
    """The store's lock plus one SQLite transaction (nested uses join the outer one)."""

    def __init__(self, store: RoomStore):
        self.store = store
        self.outer = False

    def __enter__(self):
        self.store._lock.acquire()
        self.outer = not self.store._db.in_transaction
        if self.outer:
            self.store._db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.outer:
                self.store._db.execute("COMMIT" if exc is None or _keeps(exc) else "ROLLBACK")
        finally:
            self.store._lock.release()
        return False


def _keeps(exc: BaseException | None) -> bool:
    """A RoomError after a vote closed by its deadline keeps that closing (see `RoomStore.vote`)."""
    return isinstance(exc, RoomError) and str(exc).startswith("Too late")


_default: RoomStore | None = None
_default_lock = threading.Lock()


def default_store() -> RoomStore:
    """This server's store (PORTFOLIO_SIM_ROOMS_DB or the user's data directory), opened once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RoomStore(default_db_path())
        return _default
