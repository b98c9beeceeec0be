"""The comparison store: two or more scenarios run on the same seeds and read on the same axes.

Every entry is run with the store's shared settings (years, seeds, root seed and, optionally, one
forced board flip for all), so all entries see the same replicate seeds: the same district and the
same random draws wherever their mechanisms agree (common random numbers, see model.py). Differences
between entries are then differences the levers make, which :func:`paired_differences` shows per seed.

The store is immutable: every change returns a new store (easy to hold in one reactive value).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from portfolio_sim.dashboard.simulation import RunSnapshot
from portfolio_sim.kernel import QUANTILES, summarize
from portfolio_sim.dashboard.palette import OKABE_ITO as PALETTE
from portfolio_sim.scenario import Scenario

MAX_ENTRIES = 6


@dataclass(frozen=True)
class CompareSettings:
    years: int = 10
    seeds: int = 5
    seed: int = 1
    flip_year: int = 0           # with override_flip: every entry gets politics.scheduled_flip_year = this
    override_flip: bool = False


@dataclass(frozen=True)
class CompareEntry:
    key: int
    label: str
    scenario: Scenario
    source: str
    color: str
    result: RunSnapshot | None = None


@dataclass(frozen=True)
class ComparisonStore:
    entries: tuple[CompareEntry, ...] = ()
    settings: CompareSettings = field(default_factory=CompareSettings)
    reference: int | None = None      # entry key differences are taken from (default: the first)
    next_key: int = 1

    # -- changes (each returns a new store) ---------------------------------------------------------
    def add(self, label: str, scenario: Scenario, source: str, result: RunSnapshot | None = None
            ) -> ComparisonStore:
        if len(self.entries) >= MAX_ENTRIES:
            raise ValueError(f"At most {MAX_ENTRIES} scenarios can be compared at once; remove one first.")
        label = self.unique_label(label.strip() or scenario.name)
        used = {e.color for e in self.entries}
        color = next((c for c in PALETTE if c not in used), PALETTE[len(self.entries) % len(PALETTE)])
        entry = CompareEntry(self.next_key, label, scenario.model_copy(deep=True), source, color)
        store = replace(self, entries=(*self.entries, entry), next_key=self.next_key + 1)
        if result is not None and store.matches(entry, result):
            store = store.with_result(entry.key, result)
        return store

    def unique_label(self, label: str) -> str:
        labels = {e.label for e in self.entries}
        if label not in labels:
            return label
        n = 2
        while f"{label} ({n})" in labels:
            n += 1
        return f"{label} ({n})"

    def remove(self, key: int) -> ComparisonStore:
        entries = tuple(e for e in self.entries if e.key != key)
        return replace(self, entries=entries, reference=None if self.reference == key else self.reference)

    def rename(self, key: int, label: str) -> ComparisonStore:
        others = replace(self, entries=tuple(e for e in self.entries if e.key != key))
        label = others.unique_label(label.strip() or "unnamed")
        return replace(self, entries=tuple(replace(e, label=label) if e.key == key else e for e in self.entries))

    def clear(self) -> ComparisonStore:
        return replace(self, entries=(), reference=None)

    def with_settings(self, **changes) -> ComparisonStore:
        return replace(self, settings=replace(self.settings, **changes))

    def with_reference(self, key: int | None) -> ComparisonStore:
        return replace(self, reference=key)

    def with_result(self, key: int, result: RunSnapshot | None) -> ComparisonStore:
        return replace(self, entries=tuple(replace(e, result=result) if e.key == key else e for e in self.entries))

    # -- reading ------------------------------------------------------------------------------------
    def entry(self, key: int) -> CompareEntry:
        for e in self.entries:
            if e.key == key:
                return e
        raise KeyError(key)

    def run_scenario(self, entry: CompareEntry) -> Scenario:
        """The entry's scenario with the shared run settings (and the shared board flip) applied."""
        s = entry.scenario.model_copy(deep=True)
        st = self.settings
        s.run.years, s.run.seeds, s.run.seed = st.years, st.seeds, st.seed
        if st.override_flip:
            s.politics.scheduled_flip_year = st.flip_year
        return s

    def matches(self, entry: CompareEntry, result: RunSnapshot | None) -> bool:
        return (result is not None and result.complete
                and result.scenario.to_toml() == self.run_scenario(entry).to_toml())

    def is_current(self, entry: CompareEntry) -> bool:
        return self.matches(entry, entry.result)

    def pending(self) -> list[CompareEntry]:
        return [e for e in self.entries if not self.is_current(e)]

    def ready(self) -> list[CompareEntry]:
        return [e for e in self.entries if self.is_current(e)]

    def reference_entry(self) -> CompareEntry | None:
        ready = self.ready()
        for e in ready:
            if e.key == self.reference:
                return e
        return ready[0] if ready else None

    def _combined(self, table: str) -> pd.DataFrame:
        """One of the results' tables from every ready scenario, labelled by scenario."""
        frames = []
        for e in self.ready():
            f = getattr(e.result, table).copy()
            f.insert(0, "scenario", e.label)
            frames.append(f)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def combined_yearly(self) -> pd.DataFrame:
        return self._combined("yearly")

    def combined_summary(self) -> pd.DataFrame:
        return self._combined("summary")


def with_cumulative(yearly: pd.DataFrame, metrics: tuple[str, ...] = ("closures", "restarts", "conversions",
                                                                        "openings", "reversals", "exits_outside")
                    ) -> pd.DataFrame:
    """Add `cum_<metric>`: each seed's running total from year 0 (for counts that are noisy per year)."""
    out = yearly.copy()
    for m in metrics:
        if m in out:
            out[f"cum_{m}"] = out.sort_values("year").groupby("seed")[m].cumsum()
    return out


def summary_for(result: RunSnapshot, metric: str) -> pd.DataFrame:
    """p10/median/p90 per year of one metric (including the derived cumulative ones)."""
    if metric.startswith("cum_"):
        y = with_cumulative(result.yearly)
        if metric not in y:
            return pd.DataFrame(columns=["metric", "year", *QUANTILES])
        s = summarize(y[["seed", "year", metric]])
        return s
    return result.summary[result.summary["metric"] == metric]


def paired_differences(store: ComparisonStore, metric: str) -> dict[str, pd.DataFrame]:
    """For each ready entry except the reference: per year, the p10/median/p90 across seeds of
    (entry - reference) on the same seed. Same seeds = same district and draws, so the spread shows how
    robust a difference is, without the luck that separate draws would add."""
    ref = store.reference_entry()
    if ref is None:
        return {}
    def values(e: CompareEntry) -> pd.DataFrame:
        y = with_cumulative(e.result.yearly) if metric.startswith("cum_") else e.result.yearly
        return y[["seed", "year", metric]] if metric in y else pd.DataFrame(columns=["seed", "year", metric])
    base = values(ref)
    out = {}
    for e in store.ready():
        if e.key == ref.key:
            continue
        m = values(e).merge(base, on=["seed", "year"], suffixes=("", "_ref"))
        if m.empty:
            continue
        m["diff"] = m[metric].astype(float) - m[f"{metric}_ref"].astype(float)
        g = m.groupby("year")["diff"]
        out[e.label] = pd.DataFrame({name: g.quantile(q) for name, q in QUANTILES.items()}).reset_index()
        out[e.label]["n"] = g.size().to_numpy()
    return out


@dataclass(frozen=True)
class PairedDifference:
    """A scenario minus the reference on the same seeds: the median and mean of the per-seed differences
    and a 95% t-interval of their mean. `clear` when that interval excludes 0 (the difference is larger
    than what seed noise alone makes); with one seed nothing can be said."""

    median: float
    mean: float
    low: float
    high: float
    n: int

    @property
    def clear(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "one seed: cannot tell"
        if self.low == self.high == 0:
            return "no difference"
        return "clear of seed noise" if self.clear else "within seed noise"


def paired_difference(values: pd.Series, reference: pd.Series) -> PairedDifference | None:
    """`values` and `reference` per seed (index = seed): the paired difference on the seeds both have."""
    d = (values - reference).dropna().to_numpy(dtype=float)
    if d.size == 0:
        return None
    mean = float(d.mean())
    if d.size < 2:
        return PairedDifference(float(np.median(d)), mean, mean, mean, int(d.size))
    from scipy import stats
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, d.size - 1)) * sd / np.sqrt(d.size) if sd > 0 else 0.0
    return PairedDifference(float(np.median(d)), mean, mean - half, mean + half, int(d.size))


def final_by_seed(result: RunSnapshot, metric: str, cumulative: bool = False) -> pd.Series:
    """The metric in the last year (or its total over all years), indexed by seed."""
    y = result.yearly
    if metric not in y:
        return pd.Series(dtype=float)
    if cumulative:
        return y.groupby("seed")[metric].sum().astype(float)
    last = y["year"].max()
    return y.loc[y["year"] == last].set_index("seed")[metric].astype(float)


def final_values(result: RunSnapshot, metric: str, cumulative: bool = False) -> np.ndarray:
    """Per seed: the metric in the last year (or its total over all years)."""
    y = result.yearly
    if metric not in y:
        return np.array([])
    if cumulative:
        return y.groupby("seed")[metric].sum().to_numpy(dtype=float)
    last = y["year"].max()
    return y.loc[y["year"] == last, metric].to_numpy(dtype=float)
