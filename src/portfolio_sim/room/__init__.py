"""The workshop room: one shared simulation that a facilitator runs and participants join from their devices.

* :mod:`portfolio_sim.room.store` — rooms, participants, rounds, motions and votes in SQLite (a
  process-wide store, outside any browser session), with the round rules (who may do what, ties,
  timeouts) in one place.
* :mod:`portfolio_sim.room.sim` — the room's simulation: the scenario stepped year by year with the
  decisions the room adopted (one stepping function), cached per room and rebuilt from the store after
  a restart; the debrief's other paths on the same seeds; the session export.

Nothing here imports Solara: the pages (portfolio_sim.dashboard.room_pages) only call these functions.
"""
