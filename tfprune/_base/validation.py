"""Argument checks shared by the public API.

Every check raises a `ValueError` or `TypeError` whose message names the
argument, states the rule and ends with `Received: name=value`.
"""

from __future__ import annotations

import math
import numbers


def received(name: str, value) -> str:
    """Formats the closing `Received: name=value` part of an error message."""
    return f"Received: {name}={value!r}"


def check_sparsity(name: str, value) -> float:
    """Returns `value` as a float in [0, 1), or raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a number in [0, 1). {received(name, value)}"
        )
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1): 0 keeps every weight and 1 would "
            f"remove them all. {received(name, value)}"
        )
    return value


def check_step(name: str, value, allow_none: bool = False):
    """Returns `value` as a non-negative int, or raises."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a non-negative integer step. "
            f"{received(name, value)}"
        )
    if value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative integer step. "
            f"{received(name, value)}"
        )
    return int(value)


def check_positive_int(name: str, value) -> int:
    """Returns `value` as a positive int, or raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a positive integer. {received(name, value)}"
        )
    if value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer. {received(name, value)}"
        )
    return int(value)
