"""Local `evaluate` metric scripts for GLUE and SuperGLUE, shipped inside the package.

`evaluate.load("glue")` needs the Hub; these scripts compute the same metrics offline
(with tunesmith's implementations) and compose with the `evaluate` API:

>>> import evaluate
>>> cola = evaluate.load(metric_path("glue"), "cola")
>>> cola.compute(predictions=[1, 0, 1], references=[1, 0, 0])
{'matthews_correlation': 0.5}
"""
from __future__ import annotations

from pathlib import Path

from ...core.errors import UserError

_SCRIPTS = {"glue": "tunesmith_glue.py", "superglue": "tunesmith_super_glue.py",
            "super_glue": "tunesmith_super_glue.py"}


def metric_path(benchmark: str) -> str:
    """Path of the local `evaluate` script for `benchmark` ("glue" or "superglue").

    >>> metric_path("glue").endswith("tunesmith_glue.py")
    True
    """
    if benchmark not in _SCRIPTS:
        raise UserError(f'no evaluate module for "{benchmark}"', fix="use glue or superglue")
    return str(Path(__file__).with_name(_SCRIPTS[benchmark]))
