"""The district at the start of a run: neighbourhoods, households, students and schools.

`generate_district` builds a synthetic district sized by the scenario; `portfolio_sim.district_csv`
loads schools (and optionally neighbourhood populations) from a user's CSV files into the same
`DistrictData`. Both return plain numpy arrays; the model turns them into its state and agents.

Geography is the unit square. Neighbourhoods form a square grid; their low-income share is a smooth
random spatial field whose contrast grows with `district.income_segregation`, so poorer and richer
areas cluster as in real cities. Starting school quality is correlated with neighbourhood income by
`district.quality_income_correlation` (DOMAIN.md "District").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from portfolio_sim.scenario import District

GRADES = 13  # K (0) to 12

# Grade bands: the grades each band serves. A school serves one band.
BAND_STRUCTURES: dict[str, list[tuple[int, int]]] = {
    "k5-68-912": [(0, 5), (6, 8), (9, 12)],
    "k8-912": [(0, 8), (9, 12)],
}
BAND_NAMES: dict[str, list[str]] = {
    "k5-68-912": ["elementary", "middle", "high"],
    "k8-912": ["k8", "high"],
}
# Typical school size relative to an elementary school (high schools are bigger).
_BAND_RELATIVE_SIZE = {"elementary": 1.0, "k8": 1.3, "middle": 1.5, "high": 2.5}


def band_of_grade(structure: str) -> np.ndarray:
    """int8 array (13,): the band index that serves each grade."""
    out = np.empty(GRADES, dtype=np.int8)
    for b, (lo, hi) in enumerate(BAND_STRUCTURES[structure]):
        out[lo:hi + 1] = b
    return out


def entry_grades(structure: str) -> np.ndarray:
    """bool array (13,): grades at which students enter a new band and so choose a school."""
    out = np.zeros(GRADES, dtype=bool)
    for lo, _ in BAND_STRUCTURES[structure]:
        out[lo] = True
    return out


@dataclass
class DistrictData:
    """Everything the model needs to start. Arrays are indexed by neighbourhood, household, student
    slot or school. Student slots beyond the starting population are inactive (grade -1) and are used
    when entering cohorts grow."""

    band_structure: str
    # neighbourhoods (N)
    nb_xy: np.ndarray            # float64 (N, 2) centroids in the unit square
    nb_low_income: np.ndarray    # float64 (N,) share of households that are low-income
    # households (H)
    hh_xy: np.ndarray            # float64 (H, 2)
    hh_nb: np.ndarray            # int32 (H,)
    hh_low_income: np.ndarray    # bool (H,)
    # student slots (n)
    st_household: np.ndarray     # int32 (n,)
    st_grade: np.ndarray         # int8 (n,), -1 for an inactive slot
    # schools (S): district schools first, then charters
    sc_xy: np.ndarray            # float64 (S, 2)
    sc_band: np.ndarray          # int8 (S,)
    sc_capacity: np.ndarray      # int32 (S,)
    sc_quality: np.ndarray       # float64 (S,) starting value-added (SD/yr)
    sc_charter: np.ndarray       # bool (S,)
    sc_name: list[str] = field(default_factory=list)
    sc_enrollment: np.ndarray | None = None   # int32 (S,) known starting enrollment (CSV), else None
    sc_rating: np.ndarray | None = None       # float64 (S,) known rating percentile 0-100 (CSV), else NaN

    @property
    def n_bands(self) -> int:
        return len(BAND_STRUCTURES[self.band_structure])

    def validate(self) -> None:
        """Internal consistency (a bug guard, not user-input validation)."""
        n_hh, n_sc = len(self.hh_nb), len(self.sc_band)
        assert self.hh_xy.shape == (n_hh, 2) and self.hh_low_income.shape == (n_hh,)
        assert self.st_household.shape == self.st_grade.shape
        assert self.st_household.max(initial=0) < n_hh
        assert self.sc_xy.shape == (n_sc, 2) and self.sc_capacity.shape == (n_sc,)
        assert len(self.sc_name) == n_sc
        for b in range(self.n_bands):
            assert ((self.sc_band == b) & ~self.sc_charter).any(), f"no district school serves band {b}"


def _smooth_field(rng: np.random.Generator, grid: int) -> np.ndarray:
    """A standardized spatially-correlated random field on a grid (cheap Gaussian blur of noise)."""
    z = rng.standard_normal((grid, grid))
    for _ in range(max(1, grid // 3)):
        z = (z + np.roll(z, 1, 0) + np.roll(z, -1, 0) + np.roll(z, 1, 1) + np.roll(z, -1, 1)) / 5.0
    # A gentle east-west gradient makes the sorting visible at any grid size.
    z = z / (z.std() + 1e-12) + np.linspace(-1.0, 1.0, grid)[:, None]
    return ((z - z.mean()) / (z.std() + 1e-12)).ravel()


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def neighbourhood_income(rng: np.random.Generator, grid: int, low_share: float,
                         segregation: float) -> np.ndarray:
    """Low-income share per neighbourhood with mean ~`low_share` and contrast set by `segregation`."""
    z = _smooth_field(rng, grid)
    shares = 1.0 / (1.0 + np.exp(-(_logit(low_share) + 4.0 * segregation * z)))
    # Re-centre so the district-wide share stays what the scenario asked for.
    for _ in range(20):
        shares = np.clip(shares + (low_share - shares.mean()), 0.0, 1.0)
    return shares


def place_households(rng: np.random.Generator, n_households: int, nb_pop: np.ndarray,
                     nb_low: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Household neighbourhood, location and income group, neighbourhoods weighted by population."""
    nb = rng.choice(len(nb_pop), size=n_households, p=nb_pop / nb_pop.sum()).astype(np.int32)
    cell = 1.0 / grid
    xy = np.column_stack([(nb // grid) * cell, (nb % grid) * cell]) + rng.random((n_households, 2)) * cell
    low = rng.random(n_households) < nb_low[nb]
    return nb, xy, low


def student_slots(rng: np.random.Generator, n_students: int, n_households: int, headroom: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Student slots: household of each slot and grade (-1 = inactive slot kept for cohort growth).

    Every household gets at least one slot; the rest are spread at random, which gives a household
    size distribution with the requested mean. Grades of active students are uniform over K-12.
    """
    n_slots = max(n_students, int(math.ceil(n_students * (1.0 + headroom))))
    household = np.concatenate([np.arange(n_households), rng.integers(0, n_households, n_slots - n_households)])
    household = np.sort(household).astype(np.int32)          # siblings sit together
    grade = np.full(n_slots, -1, dtype=np.int8)
    active = rng.permutation(n_slots)[:n_students]
    grade[active] = rng.integers(0, GRADES, n_students)
    return household, grade


MIN_HEADROOM = 0.25


def slot_headroom(cohort_change: float, years: int) -> float:
    """Spare student slots for growing cohorts. At least MIN_HEADROOM, so that run length and modest
    growth do not change the generated district (common random numbers across scenarios)."""
    return max(MIN_HEADROOM, (1.0 + cohort_change) ** years - 1.0 + 0.02)


def generate_district(spec: District, rng: np.random.Generator, years: int) -> DistrictData:
    """A synthetic district sized by the scenario's `[district]` group."""
    grid = max(1, round(math.sqrt(spec.neighbourhoods)))
    n_nb = grid * grid
    nb_xy = np.column_stack([(np.arange(n_nb) // grid + 0.5) / grid, (np.arange(n_nb) % grid + 0.5) / grid])
    nb_low = neighbourhood_income(rng, grid, spec.low_income_share, spec.income_segregation)
    nb_pop = rng.uniform(0.6, 1.4, n_nb)

    headroom = slot_headroom(spec.cohort_change, years)
    n_households = max(1, int(round(spec.students * (1 + headroom) / spec.students_per_household)))
    hh_nb, hh_xy, hh_low = place_households(rng, n_households, nb_pop, nb_low, grid)
    st_household, st_grade = student_slots(rng, spec.students, n_households, headroom)

    # Schools per band in proportion to students per band over typical school size.
    bands = BAND_STRUCTURES[spec.band_structure]
    names = BAND_NAMES[spec.band_structure]
    grades_in = np.array([hi - lo + 1 for lo, hi in bands], dtype=float)
    weight = grades_in / np.array([_BAND_RELATIVE_SIZE[n] for n in names])
    counts = np.maximum(1, np.floor(spec.schools * weight / weight.sum()).astype(int))
    while counts.sum() < spec.schools:
        counts[np.argmax(spec.schools * weight / weight.sum() - counts)] += 1
    while counts.sum() > spec.schools and counts.max() > 1:
        counts[np.argmax(counts)] -= 1

    sc_xy, sc_band, sc_name = [], [], []
    cell = 1.0 / grid
    for b, n in enumerate(counts):
        # Spread schools over populated neighbourhoods (without replacement while possible).
        p = nb_pop / nb_pop.sum()
        nbs = rng.choice(n_nb, size=n, replace=n > n_nb, p=p)
        xy = np.column_stack([(nbs // grid) * cell, (nbs % grid) * cell]) + rng.uniform(0.15, 0.85, (n, 2)) * cell
        sc_xy.append(xy)
        sc_band.append(np.full(n, b, dtype=np.int8))
        sc_name += [f"{names[b].title()} {i + 1}" for i in range(n)]
    sc_xy = np.vstack(sc_xy)
    sc_band = np.concatenate(sc_band)

    # Capacity from the students each school would serve as the nearest school of its band.
    band_of = band_of_grade(spec.band_structure)
    active = st_grade >= 0
    st_hh = st_household[active]
    st_band = band_of[st_grade[active]]
    sc_capacity = np.zeros(len(sc_band), dtype=np.int32)
    local_low = np.zeros(len(sc_band))
    for b in range(len(bands)):
        idx = np.flatnonzero(sc_band == b)
        # Siblings live at the same point: look each household up once (slots are sorted by household).
        hh = st_hh[st_band == b]
        first = np.ones(len(hh), dtype=bool)
        first[1:] = hh[1:] != hh[:-1]
        nearest = _nearest(hh_xy[hh[first]], sc_xy[idx])[np.cumsum(first) - 1]
        served = np.bincount(nearest, minlength=len(idx))
        # Buildings are sized to the students they serve, plus the slack.
        sc_capacity[idx] = np.maximum(20, np.ceil(served * (1.0 + spec.capacity_slack))).astype(np.int32)
        low_pts = hh_low[st_household[active]][st_band == b]
        local_low[idx] = np.bincount(nearest, weights=low_pts, minlength=len(idx)) / np.maximum(served, 1)

    # Starting quality: correlated with local poverty as the scenario says (negative: schools serving
    # poorer neighbourhoods are weaker). (Until session 4 the sign was reversed: a negative setting gave
    # poorer areas the stronger schools, against the lever's description.)
    rho = spec.quality_income_correlation
    z_poverty = (local_low - local_low.mean()) / (local_low.std() + 1e-9)   # high = poorer
    z = rho * z_poverty + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal(len(sc_band))
    sc_quality = spec.initial_quality_sd * z

    # Charter schools (outside district control), placed where the district schools are weakest.
    n_ch = spec.charter_schools
    sc_charter = np.zeros(len(sc_band), dtype=bool)
    if n_ch:
        low_rank = np.argsort(-nb_low)[: max(1, n_nb // 2)]
        nbs = rng.choice(low_rank, size=n_ch)
        ch_xy = np.column_stack([(nbs // grid) * cell, (nbs % grid) * cell]) + rng.uniform(0.1, 0.9, (n_ch, 2)) * cell
        ch_band = rng.choice(len(bands), size=n_ch, p=counts / counts.sum()).astype(np.int8)
        typical = np.array([sc_capacity[sc_band == b].mean() for b in range(len(bands))])
        ch_cap = np.ceil(typical[ch_band] * 0.7).astype(np.int32)
        ch_q = spec.charter_quality + spec.initial_quality_sd * rng.standard_normal(n_ch)
        sc_xy = np.vstack([sc_xy, ch_xy])
        sc_band = np.concatenate([sc_band, ch_band])
        sc_capacity = np.concatenate([sc_capacity, ch_cap])
        sc_quality = np.concatenate([sc_quality, ch_q])
        sc_charter = np.concatenate([sc_charter, np.ones(n_ch, dtype=bool)])
        sc_name += [f"Charter {i + 1}" for i in range(n_ch)]

    data = DistrictData(
        band_structure=spec.band_structure, nb_xy=nb_xy, nb_low_income=nb_low,
        hh_xy=hh_xy, hh_nb=hh_nb, hh_low_income=hh_low,
        st_household=st_household, st_grade=st_grade,
        sc_xy=sc_xy, sc_band=sc_band, sc_capacity=sc_capacity, sc_quality=sc_quality,
        sc_charter=sc_charter, sc_name=sc_name,
    )
    data.validate()
    return data


def _nearest(points: np.ndarray, sites: np.ndarray) -> np.ndarray:
    """Index of the nearest site for each point (k-d tree: fast and memory-light at city scale)."""
    return cKDTree(sites).query(points, k=1)[1].astype(np.int64)


def build_district(spec: District, rng: np.random.Generator, years: int) -> DistrictData:
    """The synthetic generator, or the CSV loader when the scenario names a schools CSV."""
    if spec.schools_csv:
        from portfolio_sim.district_csv import load_district_csv
        return load_district_csv(spec, rng, years)
    return generate_district(spec, rng, years)


class DistrictCache:
    """Generated districts by (district levers, seed, years), for runs that share them: paired runs of two
    designs on the same seed, and the plausible worlds of an ensemble (the generator reads only the
    `[district]` levers and the seed's own "district" stream, never an assumption or another lever).

    Exact: a hit hands out copies of the arrays (the model may change them in place) and puts the
    "district" stream where generating would have left it, so a run is bit-identical with or without the
    cache. Bounded: at most `max_bytes` of arrays, least recently used first out. Districts read from CSV
    files are not cached (a file may change between runs)."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = int(max_bytes)
        self._entries: dict[tuple, tuple[DistrictData, dict, int]] = {}   # key -> (data, stream state, bytes)
        self.hits = self.misses = 0

    @staticmethod
    def _nbytes(data: DistrictData) -> int:
        return sum(v.nbytes for v in vars(data).values() if isinstance(v, np.ndarray))

    @staticmethod
    def _copy(data: DistrictData) -> DistrictData:
        return DistrictData(**{k: (v.copy() if isinstance(v, np.ndarray) else list(v) if isinstance(v, list) else v)
                               for k, v in vars(data).items()})

    def build(self, spec: District, seed: int, rng: np.random.Generator, years: int) -> DistrictData:
        """`build_district(spec, rng, years)`, from the cache when this (spec, seed, years) was built before."""
        if spec.schools_csv or spec.neighbourhoods_csv:
            return build_district(spec, rng, years)
        key = (spec.model_dump_json(), int(seed), int(years))
        if key in self._entries:
            data, state, size = self._entries.pop(key)
            self._entries[key] = (data, state, size)          # most recently used last
            rng.bit_generator.state = state
            self.hits += 1
            return self._copy(data)
        data = build_district(spec, rng, years)
        self.misses += 1
        size = self._nbytes(data)
        if size <= self.max_bytes:
            self._entries[key] = (self._copy(data), rng.bit_generator.state, size)
            while sum(e[2] for e in self._entries.values()) > self.max_bytes:
                self._entries.pop(next(iter(self._entries)))
        return data

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
