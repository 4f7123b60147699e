"""Shared base of tfprune's small serializable objects.

Schedules, strategies, criteria, granularities, allocations and penalties
are plain objects with a flat config: `_Config` gives them `from_config`, equality by config and a
readable repr; `lookup` normalizes an argument given as an instance, a name
or a serialized object.
"""

from __future__ import annotations

import keras

from tfprune._base.validation import received


class _Config:
    """Flat config, equality by config, and a readable repr."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def lookup(identifier, base: type, aliases: dict, name: str, what: str):
    """Normalizes an argument that is a `base` instance, one of the names in
    `aliases` (case-insensitive), or a serialized object (dict); `what`
    describes the type in the TypeError."""
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        cls = aliases.get(identifier.lower())
        if cls is None:
            raise ValueError(
                f"Unknown {name}; expected one of {sorted(aliases)}. "
                f"{received(name, identifier)}"
            )
        return cls()
    if isinstance(identifier, dict):
        obj = keras.saving.deserialize_keras_object(identifier)
        if isinstance(obj, base):
            return obj
    raise TypeError(f"`{name}` must be {what} or its name. {received(name, identifier)}")
