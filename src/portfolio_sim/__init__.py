"""portfolio_sim: an agent-based model of school districts that grow autonomous district schools.

The verbs: :func:`load_scenario` reads a scenario; :func:`single_run` runs one (scenario, seed) and
returns a :class:`RunResult`; :func:`run_many` runs replicates with derived seeds; :func:`compare`
runs several scenarios on the same seeds.
"""

from portfolio_sim.errors import ScenarioError
from portfolio_sim.scenario import Scenario, load_scenario, loads_scenario

__version__ = "0.1.0"

__all__ = ["Scenario", "ScenarioError", "load_scenario", "loads_scenario", "__version__"]
