"""Checked settings: each field of a settings dataclass is checked against its annotated type
and its range on construction, so bad input fails early with a ValueError that names the
field, e.g. ``optim.epochs must be positive, got 0``. Used by training/config.py."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from typing import ClassVar, get_type_hints


@dataclass(frozen=True)
class Range:
    """Allowed numbers: low..high, each end open or closed."""
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __call__(self, label: str, value) -> None:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        if not (above and below):
            raise ValueError(f"{label} must be {self.describe()}, got {_show(value)}")

    def describe(self) -> str:
        if self.high == math.inf:
            if self.low == 0:
                return "positive" if self.low_open else "zero or more"
            return f"above {self.low}" if self.low_open else f"at least {self.low}"
        return (f"within {'(' if self.low_open else '['}{self.low}, "
                f"{self.high}{')' if self.high_open else ']'}")


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, low_open=True)  # (0, 1]


def one_of(*options: str):
    def check(label: str, value) -> None:
        if value not in options:
            raise ValueError(f"{label} must be one of {', '.join(options)}, got {_show(value)}")
    return check


def non_empty(label: str, value) -> None:
    if not value:
        raise ValueError(f"{label} must not be empty")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_bool(label: str, value):
    if not isinstance(value, bool):
        raise ValueError(f"{label} must be true or false, got {_show(value)}")
    return value


def _as_int(label: str, value):
    """An integer; an integral float (3.0, e.g. from JSON) becomes an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{label} must be a whole number, got {_show(value)}")
    return int(value)


def _as_float(label: str, value):
    """A finite number; ints are kept as they are."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{label} must be a number, got {_show(value)}")
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number, got {_show(value)}")
    return value


def _as_str(label: str, value):
    if not isinstance(value, str):
        raise ValueError(f"{label} must be a string, got {_show(value)}")
    return value


def _as_str_list(label: str, value):
    if not isinstance(value, (list, tuple)) \
            or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{label} must be a list of non-empty strings, got {_show(value)}")
    return list(value)


_TYPE_CHECKS = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str,
                list[str]: _as_str_list}


def _as_section(label: str, kind: type, value):
    """A section: an instance of its class, or a dict of its settings."""
    if isinstance(value, kind):
        return value
    value = settings_dict(label, value)
    reject_unknown(label, value, kind)
    return kind(**value)


def settings_dict(label: str, data, optional: bool = False) -> dict:
    """A copy of data, a dict of settings; None stands for none where optional."""
    if data is None and optional:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{label} must be a dict, got {_show(data)}")
    return dict(data)


def reject_unknown(label: str, data: dict, kind: type) -> None:
    allowed = [f.name for f in fields(kind)]
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise ValueError(f"unknown {label} settings: {', '.join(unknown)} "
                         f"(allowed: {', '.join(allowed)})")


@cache
def _hints(kind: type) -> dict:
    return get_type_hints(kind)


class Checked:
    """Mixin for the settings dataclasses: type and range checks after __init__."""
    _section: ClassVar[str] = ""  # label prefix in messages, e.g. "optim"
    _rules: ClassVar[dict] = {}  # field -> check(label, value) raising ValueError

    def __post_init__(self) -> None:
        for f in fields(self):
            label = f"{self._section}.{f.name}" if self._section else f.name
            value = self._typed(label, _hints(type(self))[f.name], getattr(self, f.name))
            setattr(self, f.name, value)
            if f.name in self._rules:
                self._rules[f.name](label, value)

    @staticmethod
    def _typed(label: str, hint, value):
        if is_dataclass(hint):
            return _as_section(label, hint, value)
        return _TYPE_CHECKS[hint](label, value)
