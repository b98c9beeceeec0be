"""The results store: SQLAlchemy 2 tables and the single writer the sweep driver uses.

Tables (docs/SWEEPS.md, "Store schema"):

- ``experiments``  one row per experiment: the spec text, design, factors, SALib problem, fingerprint,
  root seed, replicates, years, outputs kept, package version and git commit at creation.
- ``points``       one row per design point: factor values, the sampled design row, the point's seed and
  the fully resolved scenario (JSON; ``portfolio-sim results DB --scenario N`` prints it as TOML).
- ``sessions``     one row per ``sweep`` invocation: when, which code (version, git commit, dirty tree),
  which executor and workers, the spec text used, and how many runs it stored.
- ``runs``         one row per completed or failed (point, replicate): parameters, seed, status, error,
  duration, worker, code version, attempts. Unique on (experiment, point, replicate).
- ``yearly``       tidy model-level metrics: one row per run and year, one column per metric.
- ``school_panel`` optional per-school yearly panel; ``events`` optional event log.
- ``claims``       runs a driver is working on now, with a lease (so concurrent drivers share the work).

Each run is written whole or not at all: :meth:`Store.write_results` writes a batch of runs (their ``runs``
rows and all their data rows) in one transaction, so a crash at any moment leaves each run either stored
whole or absent. SQLite runs in WAL mode with ``synchronous=NORMAL`` (a committed run survives the writer
being killed; readers do not block the writer); readers open it read-only. On PostgreSQL the schema is
created under an advisory lock (two drivers starting on a new database do not race) and large data rows go
in with COPY.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from itertools import repeat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from portfolio_sim.errors import ScenarioError
from portfolio_sim import outputs
from portfolio_sim.lifecycle import EVENT_COLUMNS
from portfolio_sim.metrics import METRIC_COLUMNS

SCHEMA_VERSION = 1
DONE, FAILED = "done", "failed"

# Integer-valued model-level metrics (the rest are floats): from the output registry.
INT_METRICS = outputs.INT_METRICS

# The per-school panel (portfolio_sim.metrics.school_panel); a test checks it against a real run.
PANEL_COLUMNS: dict[str, Any] = {
    "name": Text, "sector": String(32), "band": Integer, "x": Float, "y": Float, "open": Boolean,
    "operator": Text, "enrollment": Integer, "capacity": Integer, "low_income_share": Float,
    "mean_achievement": Float, "value_added": Float, "rating_percentile": Float, "years_below_bar": Integer,
    "autonomy_granted": Float, "autonomy_effective": Float, "effective_staffing": Float,
    "effective_academic": Float, "effective_budget": Float, "effective_operations": Float,
    "leader_quality": Float, "excellent_teacher_share": Float, "per_pupil_resources": Float,
    "years_in_status": Integer, "contract_years": Integer,
}


POINT_CHUNK = 500                       # design points built and inserted per statement at registration
ADVISORY_LOCK_KEY = 7_316_482_901       # pg_advisory_lock key for schema creation and registration
# SQLite waits this long for a lock before "database is locked"; the sweep driver then retries with
# backoff for --db-retry seconds (so a lock held for minutes by another program is survived too).
SQLITE_BUSY_TIMEOUT = 10.0
TRANSIENT_ERRORS = (OperationalError, InterfaceError)   # a lost connection, a restarting server, a lock


def is_transient(exc: BaseException) -> bool:
    """An error that says the database is unavailable now (retry), not that the data is wrong."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and bool(getattr(exc, "connection_invalidated", False))


class StoreError(ScenarioError):
    """The store cannot be used as asked (bad URL, unreachable server, a different spec under the same
    experiment name): bad input, exit 2."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------------------------
# Schema
# ------------------------------------------------------------------------------------------------

class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"})


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    spec_text: Mapped[str] = mapped_column(Text)
    spec_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    base: Mapped[str] = mapped_column(Text)
    design: Mapped[str] = mapped_column(String(16))
    factors: Mapped[Any] = mapped_column(JSON)
    fixed: Mapped[Any] = mapped_column(JSON)
    problem: Mapped[Any] = mapped_column(JSON, nullable=True)
    design_options: Mapped[Any] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(64))
    root_seed: Mapped[int] = mapped_column(BigInteger)
    common_random_numbers: Mapped[bool] = mapped_column(Boolean)
    replicates: Mapped[int] = mapped_column(Integer)
    years: Mapped[int] = mapped_column(Integer)
    n_points: Mapped[int] = mapped_column(Integer)
    keep_schools: Mapped[bool] = mapped_column(Boolean)
    keep_events: Mapped[bool] = mapped_column(Boolean)
    package_version: Mapped[str] = mapped_column(String(50))
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PointRow(Base):
    __tablename__ = "points"
    __table_args__ = (UniqueConstraint("experiment_id", "point_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    point_index: Mapped[int] = mapped_column(Integer)
    params: Mapped[Any] = mapped_column(JSON)
    design_row: Mapped[Any] = mapped_column(JSON, nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    scenario: Mapped[Any] = mapped_column(JSON)


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    host: Mapped[str] = mapped_column(String(200))
    executor: Mapped[str] = mapped_column(String(200))
    workers: Mapped[int] = mapped_column(Integer)
    package_version: Mapped[str] = mapped_column(String(50))
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    spec_text: Mapped[str] = mapped_column(Text)
    retry_failed: Mapped[bool] = mapped_column(Boolean)
    planned: Mapped[int] = mapped_column(Integer)
    stored_done: Mapped[int] = mapped_column(Integer, default=0)
    stored_failed: Mapped[int] = mapped_column(Integer, default=0)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    # how the invocation ended: complete, runs failed, limit, interrupted, scheduler lost, database unavailable
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    skipped: Mapped[int | None] = mapped_column(Integer, nullable=True)      # runs left to another driver
    timed_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    workers_log: Mapped[Any] = mapped_column(JSON, nullable=True)           # [[seconds, worker threads], ...]


class ClaimRow(Base):
    """A run a driver is working on: other drivers leave it alone until the lease expires."""

    __tablename__ = "claims"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"),
                                               primary_key=True)
    point_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    replicate: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(Integer, index=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    expires: Mapped[float] = mapped_column(Float)           # epoch seconds


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("experiment_id", "point_index", "replicate"),
                      Index(None, "experiment_id", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), index=True)
    point_index: Mapped[int] = mapped_column(Integer)
    replicate: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str] = mapped_column(String(200), default="")
    code_version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"),
                                                  nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def _metric_type(name: str) -> Any:
    return Integer if name in INT_METRICS else Float


meta_table = Table("meta", Base.metadata, Column("key", String(64), primary_key=True), Column("value", Text))

yearly_table = Table(
    "yearly", Base.metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("year", Integer, primary_key=True),
    *[Column(name, _metric_type(name)) for name in METRIC_COLUMNS if name != "year"],
    Index(None, "year"))

panel_table = Table(
    "school_panel", Base.metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("school_id", Integer, primary_key=True),
    *[Column(name, typ) for name, typ in PANEL_COLUMNS.items()])

events_table = Table(
    "events", Base.metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), index=True),
    Column("seq", Integer),
    Column("year", Integer),
    Column("event", String(64), index=True),
    Column("school_id", Integer),
    Column("school", Text),
    Column("operator_id", Integer),
    Column("operator", Text),
    Column("cause", Text))

runs_table: Table = RunRow.__table__  # type: ignore[assignment]
points_table: Table = PointRow.__table__  # type: ignore[assignment]
experiments_table: Table = ExperimentRow.__table__  # type: ignore[assignment]
sessions_table: Table = SessionRow.__table__  # type: ignore[assignment]
claims_table: Table = ClaimRow.__table__  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------------
# URLs and engines
# ------------------------------------------------------------------------------------------------

def default_db_path(experiment: str) -> Path:
    return Path("results") / f"{experiment}.db"


def normalize_url(db: str | Path) -> str:
    """A SQLAlchemy URL from `--db`: a URL as given (``postgresql://`` and ``postgres://`` use psycopg 3),
    or a file path for SQLite."""
    raw = str(db)
    if "://" not in raw:
        return f"sqlite:///{Path(raw).expanduser().resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def friendly_db(url: str) -> str:
    """A SQLite database as its file path; any other as its URL with the password hidden."""
    path = sqlite_path(url)
    return str(path) if path is not None else display_url(url)


def sqlite_path(url: str) -> Path | None:
    try:
        u = make_url(url)
    except ArgumentError:
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str, writer: bool = False) -> Engine:
    """An engine for `url`. SQLite: WAL, synchronous=NORMAL, foreign keys, a busy timeout, and real
    transactions (BEGIN IMMEDIATE for the writer, so a write never fails half-way on a lock upgrade)."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"--db {url!r}: not a database URL or file path ({exc})") from None
    try:
        if u.get_backend_name() == "sqlite":
            path = sqlite_path(url)
            if path is not None and path.exists() and not path.is_file():
                # /dev/null, a FIFO, a directory: SQLite would write a -journal next to it
                raise StoreError(f"--db {path}: not a regular file; allowed: a SQLite database file (existing "
                                 "or to be created) or a database URL")
            if path is not None and writer:
                check_store_place(path)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"--db {path}: cannot create the directory ({exc.strerror or exc})") from None
            if path is not None and not writer:
                # Reading never changes the file: read-only (no journal-mode switch, no -journal file).
                from urllib.parse import quote
                engine = create_engine(f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true",
                                       connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
            else:
                engine = create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None      # transactions are begun explicitly below
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
                if writer:
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

            return engine
        return create_engine(u, pool_pre_ping=True)
    except StoreError:
        raise
    except (ImportError, SQLAlchemyError) as exc:
        raise StoreError(f"--db {display_url(url)}: cannot use this database ({exc})") from None


def refuse_foreign(engine: Engine, shown: str) -> None:
    """A table of our names lacking its columns (an `experiments` table of another program) means the
    database belongs to something else: refused before a table is created in it. Unrelated tables are
    left alone (a shared PostgreSQL database has others)."""
    insp = inspect(engine)
    existing = set(insp.get_table_names())
    if not existing:
        return
    migrated = {yearly_table.name, panel_table.name, sessions_table.name}   # columns added on open
    refuse_missing_columns(insp, [t for t in Base.metadata.sorted_tables
                                  if t.name in existing and t.name not in migrated], shown)


def refuse_missing_columns(insp: Any, tables: Iterable[Table], shown: str) -> None:
    for table in tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            raise StoreError(f"--db {shown}: not a portfolio_sim results database (table "
                             f"{table.name!r} lacks column(s) {', '.join(missing[:5])}); use another --db")


def check_store_place(path: Path) -> None:
    """A SQLite store the sweep writes obeys the rules of every other output (portfolio_sim.outdir): never
    in the file-system root, a system folder (/etc, /usr, ...) or the package source."""
    from portfolio_sim.outdir import OutputError, check_out_file

    try:
        check_out_file(path, replace_in_project=True)   # an existing file is resumed or refused as foreign
    except OutputError as exc:
        raise StoreError(str(exc).replace("--out ", "--db ", 1)) from None


def check_store(url: str) -> None:
    """What a sweep would refuse about its store, checked without writing anything (for --dry-run): a
    URL that does not parse, a path that is not a regular file, a system folder, and a SQLite file that
    belongs to another program or is damaged. A server is not contacted."""
    engine = make_engine(url, writer=False)      # parses the URL; refuses /dev/null, a FIFO, a directory
    try:
        path = sqlite_path(url)
        if path is None:
            return
        check_store_place(path)
        if path.is_file() and path.stat().st_size:
            try:
                refuse_foreign(engine, friendly_db(url))       # read-only, as a sweep checks first
            except DBAPIError as exc:
                raise StoreError(f"--db {friendly_db(url)}: cannot open the database "
                                 f"({str(exc.orig).strip() if exc.orig else exc})") from None
    finally:
        engine.dispose()


def git_info() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout the package runs from, or (None, None) outside one."""
    import portfolio_sim

    pkg = Path(portfolio_sim.__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", *args], cwd=pkg, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None

    tracked = git("ls-files", "--error-unmatch", "__init__.py")
    head = git("rev-parse", "HEAD")
    if not tracked or tracked.returncode != 0 or not head or head.returncode != 0:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = None if not status or status.returncode != 0 else bool(status.stdout.strip())
    return head.stdout.strip() or None, dirty


def package_version() -> str:
    import portfolio_sim
    return portfolio_sim.__version__


# ------------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------------

@dataclass
class Registered:
    """An experiment as registered in a store."""

    id: int
    name: str
    point_ids: dict[int, int]        # point index -> points.id
    created: bool                    # registered just now
    replicates_before: int           # replicates stored before (equal to the spec's unless it grew)


class RunStates:
    """Every stored run's status as one byte per (point, replicate) of the design: a resumed sweep of a
    million runs holds 1 MB, where a dict keyed by (point, replicate) held about 200 MB. Runs outside the
    design (none, for a matching fingerprint) are ignored."""

    NOT_STORED, DONE_CODE, FAILED_CODE = 0, 1, 2
    CHUNK = 50_000

    def __init__(self, n_points: int, replicates: int):
        self.codes = np.zeros((n_points, replicates), dtype=np.int8)

    @classmethod
    def of(cls, states: dict[tuple[int, int], str], n_points: int, replicates: int) -> RunStates:
        """From a {(point, replicate): status} mapping (tests, callers with a handful of runs)."""
        out = cls(n_points, replicates)
        out.add([(p, r, st) for (p, r), st in states.items()])
        return out

    def add(self, rows: Any) -> None:
        """Record (point index, replicate, status) rows."""
        if not len(rows):
            return
        points = np.fromiter((int(row[0]) for row in rows), dtype=np.int64, count=len(rows))
        reps = np.fromiter((int(row[1]) for row in rows), dtype=np.int64, count=len(rows))
        codes = np.fromiter((self.DONE_CODE if row[2] == DONE else self.FAILED_CODE if row[2] == FAILED
                             else self.NOT_STORED for row in rows), dtype=np.int8, count=len(rows))
        n, r = self.codes.shape
        inside = (points >= 0) & (points < n) & (reps >= 0) & (reps < r)
        self.codes[points[inside], reps[inside]] = codes[inside]

    @property
    def done(self) -> int:
        return int(np.count_nonzero(self.codes == self.DONE_CODE))

    @property
    def failed(self) -> int:
        return int(np.count_nonzero(self.codes == self.FAILED_CODE))

    def settled(self, retry_failed: bool = False) -> np.ndarray:
        """A (points x replicates) mask of the runs a sweep does not run again: done ones, and failed ones
        unless ``retry_failed``."""
        if retry_failed:
            return self.codes == self.DONE_CODE
        return self.codes != self.NOT_STORED


class Store:
    """A results database the sweep driver writes to (the only writer; workers never connect)."""

    def __init__(self, url: str, create: bool = True):
        self.url = normalize_url(url)
        path = sqlite_path(self.url)
        if create and path is not None and path.is_file() and path.stat().st_size:
            # Another program's SQLite file is refused before a writer opens it (which would switch it to WAL).
            reader = make_engine(self.url, writer=False)
            try:
                self._check_foreign(reader)
            except DBAPIError as exc:
                raise StoreError(f"--db {friendly_db(self.url)}: cannot open the database "
                                 f"({str(exc.orig).strip() if exc.orig else exc})") from None
            finally:
                reader.dispose()
        self.engine = make_engine(self.url, writer=True)
        self.dialect = self.engine.dialect.name
        try:
            if create:
                with self._schema_lock():
                    self._check_foreign(self.engine)   # before creating anything in another program's db
                    Base.metadata.create_all(self.engine)
                    self._check_schema_version()
                    self._add_missing_columns()
                    self._check_tables()
            else:
                with self.engine.connect():
                    pass
        except DBAPIError as exc:
            self.engine.dispose()
            raise StoreError(f"--db {friendly_db(self.url)}: cannot open the database "
                             f"({str(exc.orig).strip() if exc.orig else exc})") from None
        except StoreError:
            self.engine.dispose()
            raise
        except (ValueError, TypeError) as exc:     # e.g. a meta table whose schema_version is not a number
            self.engine.dispose()
            raise StoreError(f"--db {friendly_db(self.url)}: not a portfolio_sim results database ({exc})") from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @property
    def display_url(self) -> str:
        return friendly_db(self.url)

    # -- schema ---------------------------------------------------------------------------------
    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """Serialize schema creation and experiment registration between drivers. PostgreSQL: a
        session-level advisory lock (CREATE TABLE IF NOT EXISTS is not safe against a concurrent creator);
        SQLite's writer transactions (BEGIN IMMEDIATE) are serialized already."""
        if self.dialect != "postgresql":
            yield
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})")
            conn.commit()
            try:
                yield
            finally:
                try:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})")
                    conn.commit()
                except Exception:
                    pass

    def _check_foreign(self, engine: Engine) -> None:
        refuse_foreign(engine, self.display_url)

    def _check_tables(self) -> None:
        """Every table has the columns this version writes (a database that has an `experiments` table of
        some other program is refused, not written into)."""
        self._refuse_missing_columns(inspect(self.engine), Base.metadata.sorted_tables)

    def _refuse_missing_columns(self, insp: Any, tables: Iterable[Table]) -> None:
        refuse_missing_columns(insp, tables, self.display_url)

    def _check_schema_version(self) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
            if row is None:
                try:
                    conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
                except IntegrityError:
                    pass
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"--db {self.display_url}: written by a newer portfolio_sim (schema "
                                 f"{row[0]}, this version reads {SCHEMA_VERSION})")

    def _add_missing_columns(self) -> None:
        """A database created before the model gained a metric (or panel column) gets the new column."""
        insp = inspect(self.engine)
        for table in (yearly_table, panel_table, sessions_table):
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have:
                    self._alter_add(table.name, col.name, col.type)

    def _alter_add(self, table: str, column: str, typ: Any) -> None:
        prep = self.engine.dialect.identifier_preparer
        ddl = (f"ALTER TABLE {prep.quote(table)} ADD COLUMN {prep.quote(column)} "
               f"{typ.compile(dialect=self.engine.dialect)}")
        with self.engine.begin() as conn:
            conn.exec_driver_sql(ddl)

    def _ensure_columns(self, table: Table, columns: dict[str, list[Any]]) -> None:
        """New output columns (a model newer than this store's schema) become new nullable columns."""
        for name, values in columns.items():
            if name in table.c:
                continue
            sample = next((v for v in values if v is not None), None)
            typ = (Boolean() if isinstance(sample, bool) else BigInteger() if isinstance(sample, int)
                   else Float() if isinstance(sample, float) else Text())
            insp = inspect(self.engine)
            if name not in {c["name"] for c in insp.get_columns(table.name)}:
                self._alter_add(table.name, name, typ)
            table.append_column(Column(name, typ))

    # -- experiments ------------------------------------------------------------------------------
    def register(self, exp: Any) -> Registered:
        """Register an experiment (spec, points) or check that the stored one is the same experiment.

        The same name with a different fingerprint (other points, seeds, scenarios, years or outputs) is
        an error: resuming would mix two experiments. More replicates than stored is fine (existing runs
        keep their seeds); fewer is an error."""
        from portfolio_sim.sweep.spec import Experiment
        assert isinstance(exp, Experiment)
        fingerprint = exp.fingerprint()
        with self._schema_lock(), self.engine.begin() as conn:
            row = conn.execute(select(experiments_table).where(experiments_table.c.name == exp.name)).first()
            if row is None:
                commit, dirty = git_info()
                try:
                    exp_id = conn.execute(insert(experiments_table).values(
                        name=exp.name, description=exp.description, spec_text=exp.text,
                        spec_path=str(exp.path) if exp.path else None, base=str(exp.base_path), design=exp.design,
                        factors=[f.to_json() for f in exp.factors], fixed=exp.fixed, problem=exp.problem,
                        design_options=exp.design_options(),
                        fingerprint=fingerprint, root_seed=exp.seed,
                        common_random_numbers=exp.common_random_numbers, replicates=exp.replicates,
                        years=exp.years, n_points=len(exp.points), keep_schools=exp.keep_schools,
                        keep_events=exp.keep_events, package_version=package_version(), git_commit=commit,
                        git_dirty=dirty, created_at=_utcnow())).inserted_primary_key[0]
                except IntegrityError:
                    raise StoreError(f"experiment {exp.name!r} was registered concurrently by another "
                                     "sweep; run again") from None
                # The points a chunk at a time (a design is generated from its index, never held whole).
                for start in range(0, len(exp.points), POINT_CHUNK):
                    conn.execute(insert(points_table), [
                        {"experiment_id": exp_id, "point_index": p.index, "params": p.params, "design_row": p.row,
                         "seed": p.seed, "scenario": p.scenario}
                        for p in exp.points[start:start + POINT_CHUNK]])
                created, before = True, exp.replicates
            else:
                exp_id, before, created = row.id, row.replicates, False
                if row.fingerprint != fingerprint:
                    raise StoreError(self._mismatch(row, exp))
                if exp.replicates < before:
                    raise StoreError(
                        f"experiment {exp.name!r} in {self.display_url} already has {before} replicates per "
                        f"point; the spec asks for {exp.replicates}. Replicates can only grow (use --limit to "
                        "run fewer now, or a new experiment name)")
                if exp.replicates > before:
                    conn.execute(update(experiments_table).where(experiments_table.c.id == exp_id)
                                 .values(replicates=exp.replicates))
                    for p in exp.points:
                        conn.execute(update(points_table).where(
                            (points_table.c.experiment_id == exp_id) & (points_table.c.point_index == p.index))
                            .values(scenario=p.scenario))
            ids = dict(conn.execute(select(points_table.c.point_index, points_table.c.id)
                                    .where(points_table.c.experiment_id == exp_id)).all())
        return Registered(id=exp_id, name=exp.name, point_ids=ids, created=created, replicates_before=before)

    def _mismatch(self, row: Any, exp: Any) -> str:
        diffs = []
        if row.years != exp.years:
            diffs.append(f"years {row.years} -> {exp.years}")
        if row.n_points != len(exp.points):
            diffs.append(f"{row.n_points} -> {len(exp.points)} points")
        if row.design != exp.design:
            diffs.append(f"design {row.design} -> {exp.design}")
        if (row.keep_schools, row.keep_events) != (exp.keep_schools, exp.keep_events):
            diffs.append("outputs kept")
        if row.root_seed != exp.seed or bool(row.common_random_numbers) != exp.common_random_numbers:
            diffs.append("seeds")
        if not diffs:
            diffs.append("the points' factor values or resolved scenarios (the base scenario, [set] or a "
                         "preset may have changed)")
        return (f"experiment {exp.name!r} in {self.display_url} was created from a different spec "
                f"({'; '.join(diffs)}). Resuming would mix two experiments: give the spec a new name, or "
                "use another --db")

    # -- sessions ---------------------------------------------------------------------------------
    def start_session(self, exp_id: int, *, host: str, executor: str, workers: int, spec_text: str,
                      retry_failed: bool, planned: int) -> int:
        commit, dirty = git_info()
        with self.engine.begin() as conn:
            return int(conn.execute(insert(sessions_table).values(
                experiment_id=exp_id, started_at=_utcnow(), host=host, executor=executor, workers=workers,
                package_version=package_version(), git_commit=commit, git_dirty=dirty, spec_text=spec_text,
                retry_failed=retry_failed, planned=planned, stored_done=0, stored_failed=0,
                interrupted=False)).inserted_primary_key[0])

    def finish_session(self, session_id: int, done: int, failed: int, interrupted: bool, *,
                       outcome: str | None = None, skipped: int | None = None, timed_out: int | None = None,
                       workers_log: list[list[float]] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(sessions_table).where(sessions_table.c.id == session_id).values(
                finished_at=_utcnow(), stored_done=done, stored_failed=failed, interrupted=interrupted,
                outcome=outcome, skipped=skipped, timed_out=timed_out, workers_log=workers_log))

    # -- claims (leases) --------------------------------------------------------------------------
    def claim(self, exp_id: int, session_id: int, keys: list[tuple[int, int]], lease: float,
              retry_failed: bool = False) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Claim runs for this session for ``lease`` seconds: (claimed, skipped). Skipped are runs another
        live driver holds (an unexpired lease) or that are stored by now (done; failed unless
        ``retry_failed``). A lease of a driver on this host whose process is gone is taken over at once."""
        if not keys:
            return [], []
        host, pid = socket.gethostname()[:200], os.getpid()
        for attempt in range(5):
            try:
                return self._claim_once(exp_id, session_id, keys, lease, retry_failed, host, pid)
            except IntegrityError:       # another driver inserted a claim for one of these keys just now
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _claim_once(self, exp_id: int, session_id: int, keys: list[tuple[int, int]], lease: float,
                    retry_failed: bool, host: str, pid: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        now = time.time()
        c, r = claims_table, runs_table
        claimed: list[tuple[int, int]] = []
        skipped: list[tuple[int, int]] = []
        with self.engine.begin() as conn:
            states = {(int(a), int(b)): st for a, b, st in conn.execute(
                select(r.c.point_index, r.c.replicate, r.c.status).where(
                    (r.c.experiment_id == exp_id) & tuple_(r.c.point_index, r.c.replicate).in_(keys)))}
            held = {(int(row.point_index), int(row.replicate)): row for row in conn.execute(
                select(c).where((c.c.experiment_id == exp_id) & tuple_(c.c.point_index, c.c.replicate).in_(keys)))}
            new = []
            for key in keys:
                state = states.get(key)
                if state == DONE or (state == FAILED and not retry_failed):
                    skipped.append(key)
                    continue
                row = held.get(key)
                if row is None:
                    new.append(key)
                    continue
                if row.session_id != session_id and row.expires > now and not _gone(row.host, row.pid, host):
                    skipped.append(key)
                    continue
                res = conn.execute(update(c).where(
                    (c.c.experiment_id == exp_id) & (c.c.point_index == key[0]) & (c.c.replicate == key[1])
                    & (c.c.session_id == row.session_id) & (c.c.expires == row.expires))
                    .values(session_id=session_id, host=host, pid=pid, expires=now + lease))
                (claimed if res.rowcount == 1 else skipped).append(key)
            if new:
                conn.execute(insert(c), [{"experiment_id": exp_id, "point_index": k[0], "replicate": k[1],
                                          "session_id": session_id, "host": host, "pid": pid,
                                          "expires": now + lease} for k in new])
                claimed.extend(new)
        order = {k: i for i, k in enumerate(keys)}
        return sorted(claimed, key=order.__getitem__), sorted(skipped, key=order.__getitem__)

    def renew_claims(self, session_id: int, lease: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(claims_table).where(claims_table.c.session_id == session_id)
                         .values(expires=time.time() + lease))

    def release_claims(self, session_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(claims_table).where(claims_table.c.session_id == session_id))

    # -- runs -------------------------------------------------------------------------------------
    def run_states(self, exp_id: int, n_points: int, replicates: int) -> RunStates:
        """The status of every stored run of an experiment, read a chunk of rows at a time."""
        states = RunStates(n_points, replicates)
        query = (select(runs_table.c.point_index, runs_table.c.replicate, runs_table.c.status)
                 .where(runs_table.c.experiment_id == exp_id))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=RunStates.CHUNK).execute(query)
            for rows in result.partitions():
                states.add(rows)
        return states

    def write_results(self, exp_id: int, items: list[tuple[int, dict[str, Any], dict[str, Any]]],
                      session_id: int | None = None) -> list[str]:
        """Store several runs ((point id, params, result) each) in ONE transaction: all of them or none,
        each whole. Returns what :meth:`write_result` returns for each. If the batch breaks a constraint
        (another writer stored one of them meanwhile, or one result's rows clash), each run is written on
        its own so the others are not held back."""
        if len(items) == 1:
            return [self._write_one(exp_id, items[0], session_id)]
        for _, _, result in items:
            self._ensure_result_columns(result)
        try:
            with self.engine.begin() as conn:
                return self._write_batch(conn, exp_id, items, session_id)
        except (IntegrityError, DataError):
            return [self._write_one(exp_id, item, session_id) for item in items]

    def _write_one(self, exp_id: int, item: tuple[int, dict[str, Any], dict[str, Any]],
                   session_id: int | None) -> Any:
        """One run; a completed run whose rows break a constraint comes back as the exception (the caller
        records the run as failed with it)."""
        try:
            return self.write_result(exp_id, *item, session_id=session_id)
        except (IntegrityError, DataError) as exc:
            if item[2].get("status") != DONE:
                raise
            return exc

    def _write_batch(self, conn: Any, exp_id: int, items: list[tuple[int, dict[str, Any], dict[str, Any]]],
                     session_id: int | None) -> list[str]:
        r = runs_table
        keys = [(res["point"], res["replicate"]) for _, _, res in items]
        existing = {(int(a), int(b)): (i, st) for a, b, i, st in conn.execute(
            select(r.c.point_index, r.c.replicate, r.c.id, r.c.status).where(
                (r.c.experiment_id == exp_id) & tuple_(r.c.point_index, r.c.replicate).in_(keys)))}
        statuses: list[str] = []
        yearly_rows: list[tuple[int, dict[str, list[Any]]]] = []
        panel_rows: list[tuple[int, dict[str, list[Any]]]] = []
        event_rows: list[dict[str, Any]] = []
        written: set[tuple[int, int]] = set()
        for (point_id, params, result), key in zip(items, keys, strict=True):
            if key in written or existing.get(key, (None, None))[1] == DONE:
                statuses.append("duplicate")
                continue
            status = result["status"]
            values = _run_values(exp_id, point_id, params, result, session_id)
            if key in existing:
                run_id = existing[key][0]
                conn.execute(update(r).where(r.c.id == run_id).values(**values, attempts=r.c.attempts + 1))
            else:
                run_id = conn.execute(insert(r).values(**values, attempts=1)).inserted_primary_key[0]
            written.add(key)
            statuses.append(status)
            if status != DONE:
                continue
            if result.get("yearly"):
                yearly_rows.append((run_id, result["yearly"]))
            if result.get("schools") and _nrows(result["schools"]):
                panel_rows.append((run_id, result["schools"]))
            if result.get("events") and _nrows(result["events"]):
                rows = _rows(result["events"], run_id)
                for i, row in enumerate(rows):
                    row["seq"] = i
                event_rows.extend(rows)
        self._bulk_insert(conn, yearly_table, yearly_rows)
        self._bulk_insert(conn, panel_table, panel_rows)
        if event_rows:
            conn.execute(insert(events_table), event_rows)
        self._drop_claims(conn, exp_id, keys)
        return statuses

    def _bulk_insert(self, conn: Any, table: Table, runs: list[tuple[int, dict[str, list[Any]]]]) -> None:
        """Data rows of several runs straight through the driver (SQLAlchemy's per-row parameter handling
        cost more than the database): COPY on PostgreSQL, one executemany of tuples elsewhere."""
        if not runs:
            return
        prep = self.engine.dialect.identifier_preparer
        by_columns: dict[tuple[str, ...], list[tuple[int, dict[str, list[Any]]]]] = {}
        for run_id, columns in runs:
            by_columns.setdefault(tuple(columns), []).append((run_id, columns))
        raw = conn.connection.driver_connection
        try:
            self._bulk_insert_raw(raw, prep, table, by_columns)
        except self.engine.dialect.loaded_dbapi.Error as exc:
            # The driver's own exception, raised as SQLAlchemy's (IntegrityError, OperationalError, ...)
            raise DBAPIError.instance(f"bulk insert into {table.name}", None, exc,
                                      self.engine.dialect.loaded_dbapi.Error) from exc

    def _bulk_insert_raw(self, raw: Any, prep: Any, table: Table,
                         by_columns: dict[tuple[str, ...], list[tuple[int, dict[str, list[Any]]]]]) -> None:
        for names, group in by_columns.items():
            cols = ", ".join(prep.quote(n) for n in ("run_id", *names))
            rows = (row for run_id, columns in group
                    for row in zip(repeat(run_id), *(columns[n] for n in names)))
            if self.dialect == "postgresql":
                # COPY ... CSV written by pyarrow's C++ writer (psycopg's write_row costs ~6 µs a row in
                # Python): every value quoted, NULLs unquoted empty (an empty string stays an empty string);
                # floats in shortest round-trip form (exact).
                import pyarrow as pa
                import pyarrow.csv as pacsv

                arrow = pa.concat_tables([pa.table({"run_id": [run_id] * _nrows(columns),
                                                    **{n: columns[n] for n in names}})
                                          for run_id, columns in group], promote_options="permissive")
                buf = pa.BufferOutputStream()
                pacsv.write_csv(arrow, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
                with raw.cursor() as cur, cur.copy(f"COPY {prep.quote(table.name)} ({cols}) FROM STDIN "
                                                   "WITH (FORMAT csv)") as copy:
                    copy.write(buf.getvalue().to_pybytes())
            else:
                marks = ", ".join(["?"] * (len(names) + 1)) if self.dialect == "sqlite" else \
                    ", ".join(["%s"] * (len(names) + 1))
                cur = raw.cursor()
                try:
                    cur.executemany(f"INSERT INTO {prep.quote(table.name)} ({cols}) VALUES ({marks})", list(rows))
                finally:
                    cur.close()

    def _ensure_result_columns(self, result: dict[str, Any]) -> None:
        if result["status"] == DONE:
            if result.get("yearly"):
                self._ensure_columns(yearly_table, result["yearly"])
            if result.get("schools"):
                self._ensure_columns(panel_table, result["schools"])

    def _drop_claims(self, conn: Any, exp_id: int, keys: list[tuple[int, int]]) -> None:
        c = claims_table
        conn.execute(delete(c).where((c.c.experiment_id == exp_id) & tuple_(c.c.point_index, c.c.replicate).in_(keys)))

    def write_result(self, exp_id: int, point_id: int, params: dict[str, Any], result: dict[str, Any],
                     session_id: int | None = None) -> str:
        """Store one run's result in ONE transaction. Returns "done" or "failed" (what was stored), or
        "duplicate" when a completed run with this key is already stored (nothing is written)."""
        self._ensure_result_columns(result)
        try:
            with self.engine.begin() as conn:
                return self._write_batch(conn, exp_id, [(point_id, params, result)], session_id)[0]
        except IntegrityError:
            # Another writer may have stored this run between our check and insert: then keep theirs.
            # Anything else (the result's own rows clash) is a real error; the transaction was rolled back.
            key = ((runs_table.c.experiment_id == exp_id) & (runs_table.c.point_index == result["point"])
                   & (runs_table.c.replicate == result["replicate"]))
            with self.engine.connect() as conn:
                existing = conn.execute(select(runs_table.c.status).where(key)).first()
            if existing is not None and existing.status == DONE:
                return "duplicate"
            raise

    # -- reading helpers (the analysis module has the pandas API) ---------------------------------
    def counts(self, exp_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs_table.c.status, func.count()).where(runs_table.c.experiment_id == exp_id)
                                .group_by(runs_table.c.status)).all()
        return {s: int(n) for s, n in rows}


def _run_values(exp_id: int, point_id: int, params: dict[str, Any], result: dict[str, Any],
                session_id: int | None) -> dict[str, Any]:
    return dict(experiment_id=exp_id, point_id=point_id, point_index=result["point"],
                replicate=result["replicate"], seed=result["seed"], params=params, status=result["status"],
                error=result.get("error"), duration_s=result.get("duration"),
                worker=(result.get("worker") or "")[:200], code_version=result.get("version"),
                session_id=session_id, finished_at=_utcnow())


def _gone(claim_host: str, claim_pid: int, host: str) -> bool:
    """A claim made on this host by a process that no longer exists (a driver killed before it expired)."""
    if claim_host != host or claim_pid == os.getpid():
        return False
    try:
        os.kill(int(claim_pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, ValueError):
        return False
    return False


def _nrows(columns: dict[str, list[Any]]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _rows(columns: dict[str, list[Any]], run_id: int) -> list[dict[str, Any]]:
    names = list(columns)
    n = _nrows(columns)
    return [{"run_id": run_id, **{c: columns[c][i] for c in names}} for i in range(n)]


def dumps_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


__all__ = ["Store", "StoreError", "Base", "ExperimentRow", "PointRow", "RunRow", "SessionRow", "yearly_table",
           "panel_table", "events_table", "runs_table", "points_table", "experiments_table", "sessions_table",
           "claims_table", "is_transient", "ClaimRow",
           "normalize_url", "display_url", "default_db_path", "make_engine", "git_info", "text"]
