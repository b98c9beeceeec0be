"""The policymaker dashboard's reusable parts (Solara + plotly); the page itself is dashboards/app.py.

Modules, from the model outwards:

- :mod:`levers`      the schema as controls: one :class:`~levers.LeverSpec` per scenario field
- :mod:`simulation`  K replicate models of one scenario stepped year by year; a worker-thread controller
- :mod:`compare`     the comparison store: several scenarios run on the same seeds
- :mod:`figures`     dashboard figures (reusing :mod:`portfolio_sim.report`): charts, map, school history
- :mod:`exports`     CSV / TOML / HTML / zip exports and the validated, size-limited scenario upload
- :mod:`state`       one browser session's state and actions
- :mod:`components`  the Solara components of the page
- :mod:`assets`      the offline asset cache (standard library only)

Importing this package does not import Solara.
"""
