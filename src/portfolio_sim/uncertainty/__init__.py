"""Decisions under uncertainty (issue 12): ensembles over plausible worlds and robustness of a design.

A *world* is one draw of the declared assumptions (portfolio_sim.assumptions) from their plausible
ranges; a run over `--worlds N --seeds K` gives N x K runs, so its bands carry parametric as well as
stochastic (lottery-seed) uncertainty. See docs/UNCERTAINTY.md.
"""
