"""The Mesa agents: School, Operator, Family, CentralOffice and Board.

Agents are thin: School, Operator and Family are views onto rows of the model's numpy arrays
(`portfolio_sim.state`), so reading `school.enrollment` or `family.students` always shows the current
state while the mechanisms update whole arrays at once. The Board holds the political state itself;
the CentralOffice exposes the district's machinery (authorizer, accountability, services, office).
"""

from __future__ import annotations

import gc
import itertools
import weakref
from typing import TYPE_CHECKING

import mesa
import numpy as np

from portfolio_sim.scenario import DOMAINS
from portfolio_sim.state import SECTOR_NAMES

if TYPE_CHECKING:
    from portfolio_sim.model import PortfolioModel


class RowAgent(mesa.Agent):
    """A Mesa agent whose state is row `row` of one of the model's arrays."""

    model: PortfolioModel

    def __init__(self, model: PortfolioModel, row: int, _unique_id: int | None = None):
        if _unique_id is None:
            super().__init__(model)
        else:   # made by `create_rows`, which registers the agents with the model in bulk
            self.model = model
            self.unique_id = _unique_id
            self.pos = None
        self.row = row

    @classmethod
    def create_rows(cls, model: PortfolioModel, n: int) -> list:
        """Agents for rows 0..n-1: the same agents, unique ids and registration with the model as
        `[cls(model, row) for row in range(n)]`, several times faster.

        A Chicago-size district has ~280,000 households (Families). Mesa 3.3 registers agents one at a
        time (an id, a debug-log call and an insert into two weak-key sets each), and the cyclic garbage
        collector keeps re-scanning the growing heap meanwhile. Here the ids are reserved in one go,
        each registry is filled by one C-level update, and the collector is paused while the agents are
        built. Falls back to one-at-a-time creation if Mesa's registry is not laid out as in 3.3.
        """
        if not _bulk_registration_supported(model):
            return [cls(model, row) for row in range(n)]
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            first = next(mesa.Agent._ids[model])
            mesa.Agent._ids[model] = itertools.count(first + n)   # ids first .. first + n - 1 are taken
            agents = list(map(cls, itertools.repeat(model, n), range(n), range(first, first + n)))
            _register_all(model, cls, agents)
        finally:
            if was_enabled:
                gc.enable()
        return agents


def _bulk_registration_supported(model: mesa.Model) -> bool:
    """Mesa 3.3's registry: per-model id counters in `Agent._ids`, `model._agents` (a dict),
    `model._agents_by_type` (a dict of AgentSets) and `model._all_agents` (an AgentSet), every AgentSet
    over a WeakKeyDictionary."""
    sets = [getattr(model, "_all_agents", None), *getattr(model, "_agents_by_type", {}).values()]
    return (isinstance(getattr(mesa.Agent, "_ids", None), dict)
            and isinstance(getattr(model, "_agents", None), dict)
            and isinstance(getattr(model, "_agents_by_type", None), dict)
            and all(isinstance(getattr(s, "_agents", None), weakref.WeakKeyDictionary) for s in sets))


def _add_to_agentset(agentset: mesa.agent.AgentSet, agents: list[mesa.Agent]) -> None:
    """`agentset.add(a)` for each agent in order, as one dict update: what WeakKeyDictionary.__setitem__
    does for a key (a weak reference with the dictionary's removal callback, here mapped to None)."""
    table = agentset._agents
    table.data.update(zip(map(weakref.ref, agents, itertools.repeat(table._remove)), itertools.repeat(None)))


def _register_all(model: mesa.Model, cls: type, agents: list[mesa.Agent]) -> None:
    """`model.register_agent(a)` for each agent (all of class `cls`), in order (as in Mesa 3.3)."""
    model._agents.update(dict.fromkeys(agents))
    if cls not in model._agents_by_type:
        model._agents_by_type[cls] = mesa.agent.AgentSet([], random=model.random)
    _add_to_agentset(model._agents_by_type[cls], agents)
    _add_to_agentset(model._all_agents, agents)


class School(RowAgent):
    """A school (district or charter). Its state is row `row` of `model.schools`."""

    @property
    def name(self) -> str:
        return self.model.schools.name[self.row]

    @property
    def sector(self) -> str:
        """traditional, district_run, partner_led, partner_run (autonomous categories) or charter."""
        return SECTOR_NAMES[self.model.schools.sector[self.row]]

    @property
    def is_open(self) -> bool:
        return bool(self.model.schools.is_open[self.row])

    @property
    def autonomous(self) -> bool:
        return bool(self.model.schools.autonomous[self.row])

    @property
    def location(self) -> tuple[float, float]:
        return float(self.model.schools.x[self.row]), float(self.model.schools.y[self.row])

    @property
    def enrollment(self) -> int:
        return int(self.model.schools.enrollment[self.row])

    @property
    def capacity(self) -> int:
        return int(self.model.schools.capacity[self.row])

    @property
    def effectiveness(self) -> float:
        """True value-added this year (SD/yr); the rating is its noisy measurement."""
        return float(self.model.schools.value_added[self.row])

    @property
    def rating_percentile(self) -> float:
        return float(self.model.schools.rating_pct[self.row])

    @property
    def granted_autonomy(self) -> dict[str, float]:
        return dict(zip(DOMAINS, map(float, self.model.schools.granted[self.row])))

    @property
    def effective_autonomy(self) -> dict[str, float]:
        return dict(zip(DOMAINS, map(float, self.model.schools.effective[self.row])))

    @property
    def operator(self) -> Operator | None:
        o = int(self.model.schools.operator[self.row])
        return self.model.operator_agents[o] if o >= 0 else None

    @property
    def years_in_status(self) -> int:
        return int(self.model.year - self.model.schools.status_year[self.row])

    @property
    def accountability_status(self) -> str:
        acc = self.model.scenario.accountability
        below = int(self.model.schools.years_below[self.row])
        if below == 0:
            return "good standing"
        return "warning" if below < acc.consecutive_years else "intervention"

    def __repr__(self) -> str:
        return f"School({self.row}, {self.name!r}, {self.sector}, enrollment={self.enrollment})"


class Operator(RowAgent):
    """A CMO, nonprofit partner or incubated operator. Its state is row `row` of `model.operators`."""

    @property
    def name(self) -> str:
        return self.model.operators.name[self.row]

    @property
    def quality(self) -> float:
        return float(self.model.operators.quality[self.row])

    @property
    def capacity(self) -> int:
        return int(self.model.operators.capacity[self.row])

    @property
    def active(self) -> bool:
        return bool(self.model.operators.active[self.row])

    @property
    def schools(self) -> list[School]:
        sc = self.model.schools
        return [self.model.school_agents[s] for s in np.flatnonzero(sc.is_open & (sc.operator == self.row))]


class Family(RowAgent):
    """A household with one or more student slots. Its state is row `row` of the household arrays and
    the student slots `model.household_slots(row)`."""

    @property
    def location(self) -> tuple[float, float]:
        return float(self.model.hh_xy[self.row, 0]), float(self.model.hh_xy[self.row, 1])

    @property
    def low_income(self) -> bool:
        return bool(self.model.hh_low_income[self.row])

    @property
    def students(self) -> np.ndarray:
        """Indexes of this household's current students (active slots)."""
        slots = self.model.household_slots(self.row)
        return slots[self.model.students.grade[slots] >= 0]

    @property
    def grades(self) -> list[int]:
        return [int(g) for g in self.model.students.grade[self.students]]

    @property
    def schools(self) -> list[int]:
        """School index of each current student (-1: outside the district)."""
        return [int(s) for s in self.model.students.school[self.students]]

    @property
    def satisfaction(self) -> float:
        """Mean perceived quality (rating z-score) of the family's district schools; 0 if none."""
        s = np.array([x for x in self.schools if x >= 0], dtype=int)
        return float(self.model.perceived_z[s].mean()) if len(s) else 0.0


class CentralOffice(mesa.Agent):
    """The district: authorizer, accountability, services provider and (maybe) an autonomy office."""

    model: PortfolioModel

    @property
    def autonomy_office(self) -> bool:
        return bool(self.model.office_active)

    @property
    def services(self) -> str:
        return self.model.scenario.central_office.services

    @property
    def buy_in(self) -> float:
        return self.model.scenario.central_office.buy_in

    @property
    def per_pupil_funding(self) -> float:
        return self.model.scenario.district.per_pupil_funding * self.model.funding_factor


class Board(mesa.Agent):
    """The school board (seats, each held by a pro-autonomy or a skeptical member) and public opinion.

    `support` is the share of opinion favouring the autonomy agenda; `climate` (log-odds) is the wider
    political climate opinion reverts to, which itself drifts. Seats are split into two classes elected
    in alternate elections (staggered terms). The majority decides (mechanisms/politics.py)."""

    model: PortfolioModel

    def __init__(self, model: PortfolioModel, support: float, seats: int = 7):
        super().__init__(model)
        self.support = support
        s = float(np.clip(support, 0.02, 0.98))
        self.climate = float(np.log(s / (1.0 - s)))
        pro = int(np.floor(seats * support + 0.5))
        self.seats = np.arange(seats) < pro            # True: the seat's member is pro-autonomy
        self.seat_class = np.arange(seats) % 2          # which alternate election fills the seat
        self.elections_held = 0
        self.term_start = 0
        self.reversed_this_term = False
        self.results_history: list[float | None] = []   # relative results each year, before publication
        self.published_results: float | None = None     # what the public saw this year (lagged, noisy)
        self.declined: set[int] = set()                 # schools whose term the board declines to renew

    @property
    def pro_seats(self) -> int:
        return int(self.seats.sum())

    @property
    def stance(self) -> str:
        """"pro" with a protective majority, "skeptical" with a hostile one, "split" on a tie."""
        pro, n = self.pro_seats, len(self.seats)
        return "pro" if 2 * pro > n else ("skeptical" if 2 * pro < n else "split")

    def elect(self, year: int) -> None:
        self.reversed_this_term = False
        self.term_start = year
        self.elections_held += 1
