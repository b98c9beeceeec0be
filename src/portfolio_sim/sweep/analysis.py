"""Reading a results database into pandas: tidy tables with the factors as columns, summaries and
sensitivity indices.

    from portfolio_sim.sweep import Results

    res = Results("results/closure_governance_choice.db")
    res.experiments()                         # what the database holds, with run counts
    df = res.yearly()                         # one row per run x year; factor values as columns
    final = res.final(["mean_achievement"])   # the last year only
    res.summary("mean_achievement")           # per design point: n, mean, sd, median, p10, p90
    res.sensitivity("mean_achievement")       # Sobol / Morris / RBD-FAST indices (sampled designs)
    res.scenario(3).to_toml()                 # the resolved scenario of point 3

Column names: ``run_id``, ``point`` (index in the design), ``replicate``, ``seed``, then one column per
factor named by its dotted path (``accountability.closure_percentile``), then ``year`` and the metrics of
docs/METRICS.md. Only completed runs appear in ``yearly``; ``runs(status="failed")`` lists failures with
their errors. A database may be read while a sweep is writing it (SQLite WAL).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sqlalchemy import MetaData, Table, func, inspect, select
from sqlalchemy.exc import DBAPIError, NoSuchTableError

from portfolio_sim.sweep.store import (
    DONE,
    FAILED,
    SCHEMA_VERSION,
    StoreError,
    experiments_table,
    friendly_db,
    make_engine,
    meta_table,
    normalize_url,
    points_table,
    runs_table,
    sessions_table,
    sqlite_path,
)

ID_COLUMNS = ["run_id", "point", "replicate", "seed"]
TABLES = ("yearly", "runs", "points", "schools", "events", "sessions")
REQUIRED_TABLES = ("experiments", "points", "runs", "yearly", "sessions")
DATA_TABLES = {"yearly": "yearly", "schools": "school_panel", "events": "events"}   # streamed in chunks


class Results:
    """A results database (SQLite file path or SQLAlchemy URL), opened read-only in spirit.

    ``experiment`` picks the default experiment for every method; without it a database holding exactly
    one experiment needs no name, and one holding several asks for it.
    """

    def __init__(self, db: str | Path, experiment: str | None = None):
        self.url = normalize_url(db)
        path = sqlite_path(self.url)
        if path is not None and path.exists() and not path.is_file():
            raise StoreError(f"{path}: not a regular file (a folder, device or pipe); allowed: a SQLite file "
                             "written by `portfolio-sim sweep` or a database URL")
        if path is not None and not path.is_file():
            raise StoreError(f"{path}: no such results database")
        self.engine = make_engine(self.url, writer=False)
        self.experiment = experiment
        self._tables: dict[str, Table] = {}
        try:
            self.engine.connect().close()
        except DBAPIError as exc:        # a server that is down or refuses us: not a question of contents
            first = (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0][:300]
            raise StoreError(f"{friendly_db(self.url)}: cannot connect to the database ({first})") from None
        try:
            names = self.experiment_names()
        except (DBAPIError, NoSuchTableError) as exc:
            raise StoreError(f"{friendly_db(self.url)}: not a portfolio_sim results database "
                             f"({str(getattr(exc, 'orig', exc)).strip()})") from None
        try:
            have = set(inspect(self.engine).get_table_names())
        except DBAPIError:
            have = set()
        missing = [t for t in REQUIRED_TABLES if t not in have]
        if missing:
            raise StoreError(f"{friendly_db(self.url)}: not a complete portfolio_sim results database (missing "
                             f"table(s): {', '.join(missing)})")
        self._check_schema_version(have)
        if experiment is not None and experiment not in names:
            raise StoreError(f"{friendly_db(self.url)}: no experiment {experiment!r}; experiments: "
                             + (", ".join(names) or "none"))

    def _check_schema_version(self, tables: set[str]) -> None:
        """A store laid out by a newer portfolio_sim may not read as this version expects: refuse it."""
        if "meta" not in tables:
            return
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
        except DBAPIError:
            return
        try:
            version = int(row[0]) if row is not None else SCHEMA_VERSION
        except (TypeError, ValueError):
            raise StoreError(f"{friendly_db(self.url)}: its schema_version {str(row[0])[:40]!r} is not a number; "
                             "not a portfolio_sim results database") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"{friendly_db(self.url)}: written by a newer portfolio_sim (store schema {version}; "
                             f"this version reads schema {SCHEMA_VERSION} and older): upgrade portfolio_sim to read it")

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing -------------------------------------------------------------------------------
    def _table(self, name: str) -> Table:
        """A table as it is in this database (reflected: includes columns added by newer versions)."""
        if name not in self._tables:
            self._tables[name] = Table(name, MetaData(), autoload_with=self.engine)
        return self._tables[name]

    def _read(self, query: Any, table: Table | None = None) -> pd.DataFrame:
        with self.engine.connect() as conn:
            df = pd.read_sql(query, conn)
        return _floats(df, table) if table is not None else df

    def experiment_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(experiments_table.c.name).order_by(experiments_table.c.id))]

    def _exp(self, experiment: str | None) -> Any:
        name = experiment or self.experiment
        with self.engine.connect() as conn:
            if name is None:
                rows = conn.execute(select(experiments_table)).all()
                if len(rows) == 1:
                    return rows[0]
                names = ", ".join(r.name for r in rows) or "none"
                raise StoreError(f"{friendly_db(self.url)} holds {len(rows)} experiments ({names}); "
                                 "name one (--experiment NAME)")
            row = conn.execute(select(experiments_table).where(experiments_table.c.name == name)).first()
        if row is None:
            raise StoreError(f"{friendly_db(self.url)}: no experiment {name!r}; experiments: "
                             + (", ".join(self.experiment_names()) or "none"))
        return row

    def info(self, experiment: str | None = None) -> dict[str, Any]:
        """The stored experiment row as a dict (spec text, design, factors, problem, provenance)."""
        return dict(self._exp(experiment)._mapping)

    def factors(self, experiment: str | None = None) -> list[str]:
        return [f["path"] for f in self._exp(experiment).factors]

    def _params_frame(self, exp: Any) -> pd.DataFrame:
        """point -> factor columns."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(points_table.c.point_index, points_table.c.params)
                                .where(points_table.c.experiment_id == exp.id)
                                .order_by(points_table.c.point_index)).all()
        factors = [f["path"] for f in exp.factors]
        data: dict[str, list[Any]] = {"point": [int(r[0]) for r in rows]}
        for f in factors:
            data[f] = [r[1].get(f) for r in rows]
        return pd.DataFrame(data)

    # -- tables -----------------------------------------------------------------------------------
    def experiments(self) -> pd.DataFrame:
        """One row per experiment: design, size, runs done/failed/pending, provenance."""
        e, r = experiments_table, runs_table
        counts = (select(r.c.experiment_id,
                         func.sum((r.c.status == DONE).cast(_int())).label("done"),
                         func.sum((r.c.status == FAILED).cast(_int())).label("failed"))
                  .group_by(r.c.experiment_id).subquery())
        q = (select(e.c.name, e.c.design, e.c.n_points.label("points"), e.c.replicates, e.c.years,
                    (e.c.n_points * e.c.replicates).label("runs"),
                    func.coalesce(counts.c.done, 0).label("done"), func.coalesce(counts.c.failed, 0).label("failed"),
                    e.c.created_at, e.c.package_version, e.c.git_commit, e.c.description)
             .select_from(e.outerjoin(counts, counts.c.experiment_id == e.c.id)).order_by(e.c.id))
        df = self._read(q)
        df["pending"] = df["runs"] - df["done"] - df["failed"]
        cols = ["name", "design", "points", "replicates", "years", "runs", "done", "failed", "pending",
                "created_at", "package_version", "git_commit", "description"]
        return df[cols]

    def points(self, experiment: str | None = None) -> pd.DataFrame:
        """One row per design point: its seed, factor values and (sampled designs) the design row."""
        exp = self._exp(experiment)
        with self.engine.connect() as conn:
            rows = conn.execute(select(points_table.c.point_index, points_table.c.seed, points_table.c.params,
                                       points_table.c.design_row)
                                .where(points_table.c.experiment_id == exp.id)
                                .order_by(points_table.c.point_index)).all()
        df = pd.DataFrame({"point": [int(r[0]) for r in rows], "point_seed": [int(r[1]) for r in rows]})
        for f in (f["path"] for f in exp.factors):
            df[f] = [r[2].get(f) for r in rows]
        if exp.problem:
            df["design_row"] = [r[3] for r in rows]
        return df

    def sessions(self, experiment: str | None = None) -> pd.DataFrame:
        """One row per `sweep` invocation: when, where, which code (version, git commit, dirty tree), which
        executor, how many runs it planned and stored, whether it was interrupted, how it ended (``outcome``:
        complete, interrupted, scheduler lost, database unavailable, could not continue), runs left to
        another driver (``skipped``), runs stopped by --run-timeout, and ``workers_log``: [[seconds since
        start, worker threads in the cluster], ...] at each change."""
        exp = self._exp(experiment)
        s = self._table("sessions")        # reflected: a store from before a column was added reads too
        names = ("started_at", "finished_at", "host", "executor", "workers", "package_version", "git_commit",
                 "git_dirty", "retry_failed", "planned", "stored_done", "stored_failed", "interrupted", "outcome",
                 "skipped", "timed_out", "workers_log")
        q = (select(s.c.id.label("session_id"), *(s.c[n] for n in names if n in s.c))
             .where(s.c.experiment_id == exp.id).order_by(s.c.id))
        return self._read(q)

    def runs(self, experiment: str | None = None, status: str | None = None) -> pd.DataFrame:
        """One row per stored run (done or failed) with its factor values, seed, error, duration, worker."""
        exp = self._exp(experiment)
        r = runs_table
        q = (select(r.c.id.label("run_id"), r.c.point_index.label("point"), r.c.replicate, r.c.seed, r.c.status,
                    r.c.error, r.c.duration_s, r.c.worker, r.c.code_version, r.c.attempts, r.c.session_id,
                    r.c.finished_at)
             .where(r.c.experiment_id == exp.id).order_by(r.c.point_index, r.c.replicate))
        if status is not None:
            q = q.where(r.c.status == status)
        df = self._read(q)
        return _with_params(df, self._params_frame(exp), after="seed")

    def yearly(self, experiment: str | None = None, metrics: list[str] | None = None,
               years: list[int] | int | None = None, where: dict[str, Any] | None = None) -> pd.DataFrame:
        """Completed runs' yearly metrics: one row per run x year, factor values as columns. ``metrics``,
        ``years`` and ``where`` ({factor path: value or list of values}) narrow what is read."""
        return self._whole("yearly", experiment, metrics, years, where)

    def final(self, metrics: list[str] | None = None, experiment: str | None = None) -> pd.DataFrame:
        """Yearly rows of the last simulated year only (one row per completed run)."""
        exp = self._exp(experiment)
        return self.yearly(experiment=exp.name, metrics=metrics, years=int(exp.years))

    def schools(self, experiment: str | None = None, years: list[int] | int | None = None,
                columns: list[str] | None = None, where: dict[str, Any] | None = None) -> pd.DataFrame:
        """The per-school yearly panel of completed runs (if the spec kept it)."""
        return self._whole("schools", experiment, columns, years, where)

    def events(self, experiment: str | None = None, years: list[int] | int | None = None,
               columns: list[str] | None = None, where: dict[str, Any] | None = None) -> pd.DataFrame:
        """The event log of completed runs (if the spec kept it)."""
        return self._whole("events", experiment, columns, years, where)

    def _whole(self, name: str, experiment: str | None, columns: list[str] | None, years: Any,
               where: dict[str, Any] | None) -> pd.DataFrame:
        exp = self._exp(experiment)
        q, t = self._data_query(name, exp, columns, years, where)
        return _with_params(self._read(q, t), self._params_frame(exp), after="seed")

    def iter_table(self, name: str, experiment: str | None = None, *, chunk_rows: int = 100_000,
                   columns: list[str] | None = None, years: list[int] | int | None = None,
                   where: dict[str, Any] | None = None) -> Iterator[pd.DataFrame]:
        """A table in chunks of at most ``chunk_rows`` rows, in the order of :meth:`table` (so a store
        larger than memory can be exported or reduced chunk by chunk). ``yearly``, ``schools`` and
        ``events`` are streamed from the database (a server-side cursor on PostgreSQL) and can be narrowed
        by ``columns``, ``years`` and ``where`` ({factor path: value or list}); the small tables (runs,
        points, sessions) come as one chunk."""
        if name not in TABLES:
            raise StoreError(f"--table {name!r}: allowed: one of " + ", ".join(TABLES))
        if chunk_rows < 1:
            raise StoreError(f"chunk_rows {chunk_rows}: allowed: an integer >= 1")
        if name not in DATA_TABLES:
            yield self.table(name, experiment)
            return
        exp = self._exp(experiment)
        q, t = self._data_query(name, exp, columns, years, where)
        params = self._params_frame(exp)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(q)
            keys = list(result.keys())
            for rows in result.partitions(chunk_rows):
                df = pd.DataFrame.from_records(rows, columns=keys)
                yield _with_params(_floats(df, t), params, after="seed")

    def arrow_schema(self, name: str, experiment: str | None = None, columns: list[str] | None = None) -> Any:
        """The pyarrow schema of :meth:`iter_table` chunks, from the column types in the database (so
        chunks whose values happen to be all NULL still write as the right type)."""
        import pyarrow as pa

        exp = self._exp(experiment)
        q, _ = self._data_query(name, exp, columns, None, None)
        params = self._params_frame(exp)
        fields = []
        factor_fields = [f for f in pa.Table.from_pandas(params, preserve_index=False).schema if f.name != "point"]
        for col in q.selected_columns:
            fields.append(pa.field(col.name, _arrow_type(col.type)))
            if col.name == "seed":
                fields.extend(pa.field(f.name, pa.string() if f.type == pa.null() else f.type)
                              for f in factor_fields)
        return pa.schema(fields)

    def _data_query(self, name: str, exp: Any, columns: list[str] | None, years: Any,
                    where: dict[str, Any] | None) -> tuple[Any, Table]:
        t = self._table(DATA_TABLES[name])
        r = runs_table
        cols = [c for c in t.columns if c.name not in ("run_id", "id", "seq")]
        if columns is not None:
            keys = ["year"] + (["school_id"] if name == "schools" else [])
            unknown = [c for c in columns if c not in t.c or c in ("run_id", "id", "seq")]
            if unknown:
                what = "metric" if name == "yearly" else "column"
                raise StoreError(f"unknown {what}(s) {', '.join(unknown)}; {what}s: "
                                 + ", ".join(c.name for c in cols if c.name not in keys))
            cols = [t.c[k] for k in keys] + [t.c[c] for c in columns if c not in keys]
        q = (select(r.c.id.label("run_id"), r.c.point_index.label("point"), r.c.replicate, r.c.seed, *cols)
             .select_from(t.join(r, r.c.id == t.c.run_id))
             .where((r.c.experiment_id == exp.id) & (r.c.status == DONE)))
        order = [r.c.point_index, r.c.replicate, t.c.year]
        order.append(t.c.school_id if name == "schools" else t.c.seq if name == "events" else t.c.year)
        q = q.order_by(*order)
        if years is not None:
            q = q.where(t.c.year.in_([years] if isinstance(years, int) else list(years)))
        if where:
            q = q.where(r.c.point_index.in_(self._points_where(exp, where)))
        return q, t

    def _points_where(self, exp: Any, where: dict[str, Any]) -> list[int]:
        params = self._params_frame(exp)
        mask = pd.Series(True, index=params.index)
        for path, value in where.items():
            if path not in params.columns or path == "point":
                raise StoreError(f"where: {path!r} is not a factor of experiment {exp.name!r}; factors: "
                                 + (", ".join(c for c in params.columns if c != "point") or "none"))
            wanted = value if isinstance(value, (list, tuple, set)) else [value]
            mask &= params[path].isin(list(wanted))
        return [int(p) for p in params.loc[mask, "point"]]

    def table(self, name: str, experiment: str | None = None) -> pd.DataFrame:
        """Any of the exportable tables by name: yearly, runs, points, schools, events, sessions."""
        if name not in TABLES:
            raise StoreError(f"--table {name!r}: allowed: one of " + ", ".join(TABLES))
        return getattr(self, name)(experiment=experiment)

    def scenario(self, point: int, experiment: str | None = None) -> Any:
        """The resolved scenario of a design point (``.to_toml()`` for a file ``portfolio-sim run`` takes;
        its ``run.seed`` and ``run.seeds`` repeat the point's replicates exactly)."""
        from portfolio_sim.scenario import Scenario

        exp = self._exp(experiment)
        if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point < max(exp.n_points, 1):
            # checked before the query: 10**30 does not fit an SQL integer (OverflowError)
            raise StoreError(f"experiment {exp.name!r} has no point {str(point)[:40]} (points 0 to {exp.n_points - 1})")
        with self.engine.connect() as conn:
            row = conn.execute(select(points_table.c.scenario).where(
                (points_table.c.experiment_id == exp.id) & (points_table.c.point_index == point))).first()
        if row is None:
            raise StoreError(f"experiment {exp.name!r} has no point {point} (points 0 to {exp.n_points - 1})")
        try:
            return Scenario.model_validate(row[0])
        except ValidationError as exc:      # a damaged or hand-edited store
            raise StoreError(f"{friendly_db(self.url)}: point {point} holds no valid scenario "
                             f"({exc.error_count()} problem(s), first: {exc.errors()[0].get('msg', '')})") from None

    # -- summaries ----------------------------------------------------------------------------------
    def summary(self, metric: str, year: int | None = None, by: list[str] | None = None,
                experiment: str | None = None) -> pd.DataFrame:
        """Across replicates: n, mean, sd, median, p10 and p90 of `metric` in `year` (default: the last),
        grouped by `by` (default: every factor, i.e. one row per design point)."""
        exp = self._exp(experiment)
        df = self.yearly(experiment=exp.name, metrics=[metric], years=int(year if year is not None else exp.years))
        return summarize(df, metric, by if by is not None else [f["path"] for f in exp.factors])

    def sensitivity(self, metric: str, year: int | None = None, experiment: str | None = None,
                    stat: str = "mean", num_resamples: int = 200) -> pd.DataFrame:
        """Global sensitivity indices of `metric` in `year` (default: the last) for a sampled design.

        The output of each point is the `stat` ("mean" or "median") of its replicates. Sobol designs get
        first-order and total indices (``S1``, ``ST`` with confidence half-widths; ``S2`` in
        ``df.attrs["S2"]`` with second_order); Morris designs ``mu``, ``mu_star``, ``sigma``,
        ``mu_star_conf``; Latin hypercube designs RBD-FAST first-order indices ``S1``. Every point needs
        at least one completed run.
        """
        exp = self._exp(experiment)
        kind = exp.design
        if not exp.problem or kind not in ("sobol", "morris", "lhs"):
            raise StoreError(f"experiment {exp.name!r} has a {kind} design; sensitivity indices need a sampled "
                             "design (sobol, morris or lhs)")
        if stat not in ("mean", "median"):
            raise StoreError(f"stat {stat!r}: allowed: 'mean' or 'median'")
        df = self.yearly(experiment=exp.name, metrics=[metric], years=int(year if year is not None else exp.years))
        per_point = df.groupby("point")[metric].agg(stat)
        n_points = int(exp.n_points)
        missing = sorted(set(range(n_points)) - set(per_point.index))
        if missing:
            raise StoreError(f"sensitivity needs every point of the design: {len(missing)} of {n_points} points "
                             f"have no completed run (e.g. {missing[:5]}); finish the sweep first")
        Y = per_point.reindex(range(n_points)).to_numpy(dtype=float)
        if np.isnan(Y).any():
            raise StoreError(f"{metric} is undefined (NaN) at {int(np.isnan(Y).sum())} points; pick another "
                             "metric or year")
        problem = {k: exp.problem[k] for k in ("num_vars", "names", "bounds")}
        opts = exp.design_options or {}
        seed = int(exp.root_seed)
        X = np.array(self.points(exp.name)["design_row"].tolist(), dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "sobol":
                from SALib.analyze import sobol
                second = bool(opts.get("second_order", False))
                res = sobol.analyze(problem, Y, calc_second_order=second, num_resamples=num_resamples, seed=seed)
                out = pd.DataFrame({"S1": res["S1"], "S1_conf": res["S1_conf"], "ST": res["ST"],
                                    "ST_conf": res["ST_conf"]}, index=problem["names"])
                if second:
                    out.attrs["S2"] = pd.DataFrame(res["S2"], index=problem["names"], columns=problem["names"])
            elif kind == "morris":
                from SALib.analyze import morris
                res = morris.analyze(problem, X, Y, num_resamples=num_resamples,
                                     num_levels=int(opts.get("num_levels", 4)), seed=seed)
                out = pd.DataFrame({"mu": res["mu"], "mu_star": res["mu_star"], "sigma": res["sigma"],
                                    "mu_star_conf": res["mu_star_conf"]}, index=problem["names"])
            else:
                from SALib.analyze import rbd_fast
                res = rbd_fast.analyze(problem, X, Y, num_resamples=num_resamples, seed=seed)
                out = pd.DataFrame({"S1": res["S1"], "S1_conf": res["S1_conf"]}, index=problem["names"])
        out.index.name = "factor"
        out.attrs.update(method={"sobol": "sobol", "morris": "morris", "lhs": "rbd_fast"}[kind], metric=metric,
                         year=int(year if year is not None else exp.years), experiment=exp.name)
        return out


def _floats(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """A float column that is NULL (NaN) in every row comes back as None objects: make it float."""
    for col in table.columns:
        if col.name in df.columns and _is_float(col.type) and df[col.name].dtype == object:
            df[col.name] = pd.to_numeric(df[col.name], errors="coerce").astype(float)
    return df


def _arrow_type(typ: Any) -> Any:
    import pyarrow as pa
    try:
        py = typ.python_type
    except NotImplementedError:
        return pa.string()
    return {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}.get(py, pa.string())


def _is_float(typ: Any) -> bool:
    try:
        return typ.python_type is float
    except NotImplementedError:
        return False


def _int() -> Any:
    from sqlalchemy import Integer
    return Integer()


def _with_params(df: pd.DataFrame, params: pd.DataFrame, after: str) -> pd.DataFrame:
    """Insert the factor columns of each row's point after column `after`."""
    factors = [c for c in params.columns if c != "point"]
    if not factors:
        return df
    merged = df.merge(params, on="point", how="left", sort=False)
    cols = list(df.columns)
    at = cols.index(after) + 1
    return merged[cols[:at] + factors + cols[at:]]


def summarize(df: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """n, mean, sd, median, p10, p90 of `metric` per group of `by` (all rows when `by` is empty)."""
    g = df.groupby(by, sort=True, dropna=False)[metric] if by else df.assign(_all=0).groupby("_all")[metric]
    out = pd.DataFrame({"n": g.count(), "mean": g.mean(), "sd": g.std(), "median": g.median(),
                        "p10": g.quantile(0.1), "p90": g.quantile(0.9)}).reset_index()
    return out.drop(columns=["_all"], errors="ignore")


def load_yearly(db: str | Path, experiment: str | None = None, **kwargs: Any) -> pd.DataFrame:
    """Shortcut: ``Results(db).yearly(experiment, ...)``."""
    with Results(db, experiment) as res:
        return res.yearly(**kwargs)
