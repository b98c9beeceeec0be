"""Attendance zones and consideration sets on a fine grid of zone cells.

Households are binned into square zone cells (a few per school). For each cell and grade band we keep
(a) the zone school: the nearest open district school of that band, and (b) the consideration set:
the `choice.consideration_set` nearest open schools of that band (district schools and charters).
Both are recomputed only when a school opens or closes, so the yearly cost is independent of the
number of students. Zones drawn by blocks rather than by address are also how districts draw them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from portfolio_sim.state import CHARTER, Schools


class Geography:
    def __init__(self, hh_xy: np.ndarray, n_schools_hint: int, n_bands: int, consideration: int):
        self.n_bands = n_bands
        self.consideration = consideration
        self.grid = max(8, int(math.ceil(math.sqrt(max(n_schools_hint, 1)) * 3)))
        g = self.grid
        ix = np.minimum((hh_xy[:, 0] * g).astype(np.int64), g - 1)
        iy = np.minimum((hh_xy[:, 1] * g).astype(np.int64), g - 1)
        self.hh_cell = (ix * g + iy).astype(np.int32)
        cells = np.arange(g * g)
        self.cell_xy = np.column_stack([(cells // g + 0.5) / g, (cells % g + 0.5) / g])
        self.zone: list[np.ndarray] = []        # per band: (cells,) school index, -1 if none
        self.candidates: list[np.ndarray] = []  # per band: (cells, C) school indexes, -1 padded
        self.considered: list[np.ndarray] = []  # per band: the candidates, the zone school in the last
                                                # column if it is not among them
        self.spacing = np.ones(n_bands)         # typical distance between schools of a band

    def update(self, schools: Schools) -> None:
        self.zone, self.candidates, self.considered = [], [], []
        xy = np.column_stack([schools.x, schools.y])
        for b in range(self.n_bands):
            in_band = schools.is_open & (schools.band == b)
            district = np.flatnonzero(in_band & (schools.sector != CHARTER))
            every = np.flatnonzero(in_band)
            self.spacing[b] = 1.0 / math.sqrt(max(len(district), 1))
            if len(district):
                self.zone.append(district[cKDTree(xy[district]).query(self.cell_xy, k=1)[1]].astype(np.int32))
            else:
                self.zone.append(np.full(len(self.cell_xy), -1, dtype=np.int32))
            k = min(self.consideration, len(every))
            if k == 0:
                self.candidates.append(np.full((len(self.cell_xy), 1), -1, dtype=np.int32))
            else:
                idx = cKDTree(xy[every]).query(self.cell_xy, k=k)[1].reshape(len(self.cell_xy), k)
                self.candidates.append(every[idx].astype(np.int32))
            considered = self.candidates[-1].copy()
            zone = self.zone[-1]
            missing = ~(considered == zone[:, None]).any(1)
            considered[missing, -1] = zone[missing]
            self.considered.append(considered)
