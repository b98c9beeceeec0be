"""Designs: turn validated factors into points (dicts of dotted path -> value).

- ``grid``: the full factorial product, first factor slowest (row-major, like nested loops).
- ``list``: the points exactly as written in ``[[design.points]]``.
- ``lhs``, ``sobol``, ``morris``: samples drawn with SALib (``SALib.sample.latin``, ``.sobol`` — Saltelli's
  scheme with scrambled Sobol' sequences — and ``.morris``), seeded by the design seed so the same spec
  always gives the same points. Number factors are sampled within their bounds (integer fields: uniformly
  over the integers, by sampling ``[low - 0.5, high + 0.5]`` and rounding); choice factors (``levels``)
  are sampled on ``[0, k]`` and mapped to level ``floor(x)``. The raw design row (in the units of the
  SALib ``problem``) is kept with each point so :func:`portfolio_sim.sweep.analysis.Results.sensitivity`
  can hand SALib exactly the sample it drew.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from portfolio_sim.sweep.spec import Experiment, Factor


def problem_for(factors: list[Factor]) -> dict[str, Any]:
    """The SALib problem of a sampled design: names are the factor paths."""
    bounds = []
    for f in factors:
        if f.kind == "levels":
            assert f.values is not None
            bounds.append([0.0, float(len(f.values))])
        elif f.integer:
            assert f.bounds is not None
            bounds.append([f.bounds[0] - 0.5, f.bounds[1] + 0.5])
        else:
            assert f.bounds is not None
            bounds.append([f.bounds[0], f.bounds[1]])
    return {"num_vars": len(factors), "names": [f.path for f in factors], "bounds": bounds}


def value_from_row(f: Factor, x: float) -> Any:
    """The factor value of one design coordinate (see the module docstring)."""
    if f.kind == "levels":
        assert f.values is not None
        k = len(f.values)
        return f.values[min(max(int(math.floor(x)), 0), k - 1)]
    assert f.bounds is not None
    if f.integer:
        return int(min(max(round(x), f.bounds[0]), f.bounds[1]))
    return float(min(max(x, f.bounds[0]), f.bounds[1]))


def sample(kind: str, problem: dict[str, Any], samples: int, seed: int, second_order: bool = False,
           num_levels: int = 4) -> np.ndarray:
    """The raw SALib sample matrix (rows = points) for a sampled design."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # SALib's convergence chatter; sizes are checked by the spec
        if kind == "lhs":
            from SALib.sample import latin
            return np.asarray(latin.sample(problem, samples, seed=seed))
        if kind == "sobol":
            from SALib.sample import sobol
            return np.asarray(sobol.sample(problem, samples, calc_second_order=second_order, scramble=True,
                                           seed=seed))
        if kind == "morris":
            from SALib.sample import morris
            return np.asarray(morris.sample(problem, samples, num_levels=num_levels, seed=seed))
    raise ValueError(f"not a sampled design: {kind!r}")


def n_points(kind: str, n_factors: int, samples: int, second_order: bool = False) -> int:
    """Points a sampled design of this size has (for messages and docs)."""
    if kind == "lhs":
        return samples
    if kind == "sobol":
        return samples * (2 * n_factors + 2 if second_order else n_factors + 2)
    if kind == "morris":
        return samples * (n_factors + 1)
    raise ValueError(kind)


class Design:
    """The points of a design as a deterministic function of their index: ``params(i)`` and ``row(i)``
    compute point ``i`` on demand, so a design of any size (up to the cap) is never held as a list.

    Grid: index -> one value per factor by mixed radix, the last factor fastest (the order of
    ``itertools.product``, i.e. nested loops with the first factor outermost). List: the points as written.
    Sampled: the SALib matrix, kept as one float64 array (8 bytes x factors per point; the same numbers
    :func:`sample` always drew)."""

    def __init__(self, factors: list[Factor], n: int, problem: dict[str, Any] | None = None,
                 matrix: np.ndarray | None = None, listed: list[dict[str, Any]] | None = None):
        self.factors = factors
        self.paths = [f.path for f in factors]
        self.n = n
        self.problem = problem
        self._matrix = matrix
        self._listed = listed
        self._radix = [len(f.values or []) for f in factors]

    def __len__(self) -> int:
        return self.n

    def params(self, i: int) -> dict[str, Any]:
        """The factor values of point ``i`` (before validation)."""
        if not 0 <= i < self.n:
            raise IndexError(f"point {i} of a design of {self.n}")
        if self._listed is not None:
            pt = self._listed[i]
            return {path: pt[path] for path in self.paths}
        if self._matrix is not None:
            return {f.path: value_from_row(f, float(x)) for f, x in zip(self.factors, self._matrix[i], strict=True)}
        digits = []
        rest = i
        for k in reversed(self._radix):        # the last factor varies fastest, as in itertools.product
            rest, d = divmod(rest, k)
            digits.append(d)
        digits.reverse()
        return {f.path: (f.values or [])[d] for f, d in zip(self.factors, digits, strict=True)}

    def row(self, i: int) -> list[float] | None:
        """The raw SALib design row of point ``i`` (sampled designs), else None."""
        if self._matrix is None:
            return None
        return [float(v) for v in self._matrix[i]]


def generate(exp: Experiment) -> Design:
    """The design of a validated experiment (its points computed on demand; see :class:`Design`)."""
    kind, factors = exp.design, exp.factors
    if kind == "grid":
        n = math.prod(len(f.values or []) for f in factors) if factors else 1
        return Design(factors, n)
    if kind == "list":
        points = exp.spec.design.points or []
        return Design(factors, len(points), listed=points)
    problem = problem_for(factors)
    d = exp.spec.design
    assert d.samples is not None and exp.design_seed is not None
    X = np.ascontiguousarray(sample(kind, problem, d.samples, exp.design_seed, d.second_order, d.num_levels),
                             dtype=np.float64)
    return Design(factors, int(X.shape[0]), problem=problem, matrix=X)
