"""Building blocks of `examples/datasets.py`: containers and CSV helpers."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import os

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@dataclasses.dataclass(frozen=True)
class TargetScaler:
    """Maps a target to the scale the model is trained on, and back.

    `transform(y) = (f(y) - mean) / std` with `f = log` if `log` else the
    identity; `inverse_transform` undoes it (in float64).
    """

    mean: float
    std: float
    log: bool = False

    def transform(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return ((np.log(y) if self.log else y) - self.mean) / self.std

    def inverse_transform(self, z) -> np.ndarray:
        y = np.asarray(z, dtype=np.float64) * self.std + self.mean
        return np.exp(y) if self.log else y


@dataclasses.dataclass(frozen=True, repr=False)
class Dataset:
    """Train/validation/test arrays of one data set, with its metadata.

    Attributes:
        name: data set name.
        x_train, y_train, x_val, y_val, x_test, y_test: float32 inputs and
            targets (targets on the model's scale, see `target_scaler`;
            integer class labels for classification).
        feature_names: one name per input feature (last axis of `x_*`).
        target_name: what the target is, with its unit.
        target_scaler: a `TargetScaler` from model scale to target units,
            or None for class labels.
        info: loader-specific metadata (see each loader).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple
    target_name: str
    target_scaler: TargetScaler | None = None
    info: dict = dataclasses.field(default_factory=dict)

    def split(self, name: str) -> tuple:
        """`(x, y)` of split `name`: "train", "val" or "test"."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"`name` must be 'train', 'val' or 'test'. Received: name={name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def to_target_units(self, predictions) -> np.ndarray:
        """Model outputs (or `y_*`) converted back to the target's units."""
        if self.target_scaler is None:
            raise ValueError(f"Data set '{self.name}' has class labels, not a scaled target.")
        return self.target_scaler.inverse_transform(predictions)

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{s}={getattr(self, 'x_' + s).shape}->{getattr(self, 'y_' + s).shape}"
            for s in ("train", "val", "test")
        )
        return f"Dataset({self.name!r}, {shapes}, features={len(self.feature_names)})"


class Standardizer:
    """Per-column mean/std fitted on one array (NaN ignored); std 0 -> 1."""

    def __init__(self, x):
        self.mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, x):
        return (x - self.mean) / self.std


def read_csv(filename, data_dir=None):
    """Header and rows (lists of strings) of a gzipped CSV of `data_dir`."""
    path = os.path.join(data_dir or DATA_DIR, filename)
    if not os.path.exists(path):
        raise ValueError(
            f"Data file not found (it ships with the repository). Received: path={path!r}"
        )
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    return header, rows


def column(header, rows, name, dtype=float):
    i = header.index(name)
    if dtype is str:
        return np.array([r[i] for r in rows])
    return np.array(
        [float(r[i]) if r[i] not in ("", "NA") else math.nan for r in rows], dtype=np.float64
    )


def check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
        raise ValueError(f"`{name}` must be a number in (0, 0.5). Received: {name}={value!r}")
    return float(value)


def one_hot(values, categories, name):
    unknown = sorted(set(values.tolist()) - set(categories))
    if unknown:
        raise ValueError(f"Unknown {name} categories {unknown}; expected {list(categories)}.")
    return (values[:, None] == np.array(categories)[None, :]).astype(np.float64)
