"""Gradient checks for hand-written backward passes, on any Array API backend.

Two checks (see the Notes of each):

- :func:`check_adjoint`, the dot-product test ``Re <ct, J t> == Re <vjp(ct), t>`` for
  each argument alone, in float64 (on float64 copies of the arguments) and in the
  arguments' own dtype, where it also follows the gradient's own direction, with a
  tolerance measured from the rounding of the user's own computation at the point;
- :func:`check_vjp`, central finite differences in float64 on the arrays' own backend
  and device, element by element (``mode="full"``) or along random directions
  (``mode="fast"``), each element stepped in proportion to its own size.

Both also hold the backward's results in the caller's dtype to its float64 results: the
same dtype, shape and device as the arguments, and no infinity or NaN where the float64
result is finite and within the dtype's range. docs/testing.md tables which wrong backward
passes each check catches, in each dtype.

Probe vectors and cotangents come from a private NumPy generator seeded with `seed`,
drawn on the host and moved to the backend, so every backend sees the same numbers and
a failure reproduces. On Dask only the scalars compared are computed, in one go; under
JAX nothing is mutated. The user's functions are handed the checks' own copies of what
they get, and a function that writes into one fails the check, naming the array (looked
for at each function's first call in each dtype).

The modules: ``_common`` (the checks' options, draws, float64 copies and the user's
calls), ``_sums`` (the checks' own arithmetic), ``_results`` (what a backward returned,
held to its arguments), and one module per check.

Examples
--------
A user's own layer, ``y = tanh(x) * s``, checked with its hand-written backward:

>>> import numpy as np
>>> from xaffine.testing import check_vjp
>>> def f(x, s):
...     return np.tanh(x) * s
>>> def vjp(ct, x, s):
...     return ct * s * (1 - np.tanh(x) ** 2), np.sum(ct * np.tanh(x))
>>> check_vjp(f, vjp, (np.linspace(-1.0, 1.0, 5), 2.0), mode="full")
"""

from ._adjoint import check_adjoint
from ._vjp import check_vjp

__all__ = ["check_adjoint", "check_vjp"]
