"""Checks on single plain values, shared by configurations, metric records, reports and figures."""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_finite_number(value: Any) -> bool:
    """A real number (Python or numpy, not a bool) that is neither NaN nor infinite."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and type(value).__name__ != "bool_"
        and math.isfinite(value)
    )
