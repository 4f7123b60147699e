"""Real data sets for the tfprune examples, tests and benchmarks.

Three loaders, each returning a `Dataset` with train/validation/test arrays
ready for Keras, the feature names and the scaler of the target:

- `load_housing`: California housing prices (regression, 20,640 rows).
- `load_pm25`: next-hour PM2.5 in Beijing (sequence regression, 2010-2014).
- `load_digits`: 8x8 handwritten digits (10-class classification).

The CSVs ship gzipped in `examples/data/` (provenance in its README) and the
digits with scikit-learn, so nothing is downloaded. Every statistic used for
preprocessing (medians, means, standard deviations) is fitted on the
training split only and then applied to all splits.
"""

from __future__ import annotations

import numpy as np

if __package__:
    from examples import _datasets as base
else:  # imported by an example run as a script
    import _datasets as base

Dataset = base.Dataset
TargetScaler = base.TargetScaler
DATA_DIR = base.DATA_DIR

__all__ = ["Dataset", "TargetScaler", "load_digits", "load_housing", "load_pm25", "to_dollars"]

HOUSING_CATEGORIES = ("<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN")
WIND_DIRECTIONS = ("NE", "NW", "SE", "cv")
PM25_YEARS = {"train": (2010, 2012), "val": (2013, 2013), "test": (2014, 2014)}


# --------------------------------------------------------------- housing
def load_housing(
    seed: int = 0,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    data_dir: str | None = None,
) -> Dataset:
    """California housing: predict a block group's median house value.

    Preprocessing, in order (statistics fitted on the training split only):

    1. Random split (seeded): 70% train, 15% validation, 15% test.
    2. `total_bedrooms` (207 missing): filled with the training median.
    3. Engineered ratios: rooms per household, bedrooms per room, population
       per household.
    4. The heavy-tailed counts and ratios get `log1p`.
    5. Numeric features standardized (training mean and std); the five
       `ocean_proximity` categories one-hot encoded (left as 0/1).

    The model is trained on the standardized log of the price, a scale on
    which MSE treats a 10% error alike for cheap and dear houses. Convert
    predictions back to dollars with `to_dollars` (or
    `data.to_target_units`). Prices are capped at $500,001 in the source.

    Args:
        seed: seed of the random split. Defaults to 0.
        val_fraction: validation share, in (0, 0.5). Defaults to 0.15.
        test_fraction: test share, in (0, 0.5). Defaults to 0.15.
        data_dir: folder holding `california_housing.csv.gz`. Defaults to
            `examples/data`.

    Returns:
        A `Dataset` with `x_*` of shape (n, 16) and `y_*` of shape (n, 1).
        `info` holds `standardized` (indices of the standardized
        features), `bedrooms_median` and `indices` (source rows per split).

    Example:

    ```python
    data = load_housing()
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val))
    dollars = to_dollars(model.predict(data.x_test), data)   # (3096, 1)
    ```
    """
    val_fraction = base.check_fraction("val_fraction", val_fraction)
    test_fraction = base.check_fraction("test_fraction", test_fraction)
    header, rows = base.read_csv("california_housing.csv.gz", data_dir)
    col = {name: base.column(header, rows, name) for name in header if name != "ocean_proximity"}
    n = len(rows)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    idx = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }

    bedrooms_median = float(np.nanmedian(col["total_bedrooms"][idx["train"]]))
    bedrooms = np.where(np.isnan(col["total_bedrooms"]), bedrooms_median, col["total_bedrooms"])
    numeric = {
        "longitude": col["longitude"],
        "latitude": col["latitude"],
        "housing_median_age": col["housing_median_age"],
        "median_income": col["median_income"],
        "log_total_rooms": np.log1p(col["total_rooms"]),
        "log_total_bedrooms": np.log1p(bedrooms),
        "log_population": np.log1p(col["population"]),
        "log_households": np.log1p(col["households"]),
        "log_rooms_per_household": np.log1p(col["total_rooms"] / col["households"]),
        "log_bedrooms_per_room": np.log1p(bedrooms / col["total_rooms"]),
        "log_population_per_household": np.log1p(col["population"] / col["households"]),
    }
    x_num = np.stack(list(numeric.values()), axis=1)
    scaler = base.Standardizer(x_num[idx["train"]])
    onehot = base.one_hot(
        base.column(header, rows, "ocean_proximity", str), HOUSING_CATEGORIES, "ocean_proximity"
    )
    x = np.concatenate([scaler(x_num), onehot], axis=1).astype(np.float32)

    price = col["median_house_value"]
    log_train = np.log(price[idx["train"]])
    target = TargetScaler(float(log_train.mean()), float(log_train.std()), log=True)
    y = target.transform(price)[:, None].astype(np.float32)
    names = tuple(numeric) + tuple(f"ocean_proximity={c}" for c in HOUSING_CATEGORIES)
    return Dataset(
        name="california_housing",
        **{f"{a}_{s}": arr[idx[s]] for s in idx for a, arr in (("x", x), ("y", y))},
        feature_names=names,
        target_name="median_house_value (USD)",
        target_scaler=target,
        info={
            "standardized": list(range(len(numeric))),
            "bedrooms_median": bedrooms_median,
            "indices": idx,
        },
    )


def to_dollars(predictions, data: Dataset) -> np.ndarray:
    """House-price model outputs (standardized log price) to dollars."""
    if data.name != "california_housing":
        raise ValueError(f"`data` must come from `load_housing`. Received: data={data.name!r}")
    return data.to_target_units(predictions)


# ------------------------------------------------------------------ pm2.5
def _interpolate_short_gaps(values, max_gap):
    """Linear interpolation over runs of NaN of at most `max_gap` values."""
    values = values.copy()
    missing = np.isnan(values)
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    filled = 0
    for a, b in zip(starts, ends):
        if b - a <= max_gap and a > 0 and b < len(values):
            values[a:b] = np.interp(np.arange(a, b), [a - 1, b], [values[a - 1], values[b]])
            filled += b - a
    return values, filled


def load_pm25(
    window: int = 24,
    horizon: int = 1,
    seed: int = 0,
    *,
    stride: int = 1,
    max_samples: int | None = None,
    max_gap: int = 6,
    data_dir: str | None = None,
) -> Dataset:
    """Beijing PM2.5: forecast the PM2.5 `horizon` hours after a window.

    Preprocessing (statistics fitted on the training years only):

    1. The first day (2010-01-01, no PM2.5 at all) is dropped.
    2. Missing PM2.5: gaps of at most `max_gap` hours are linearly
       interpolated; longer gaps stay missing and every window that touches
       them (inputs or target) is left out. Nothing is forward-filled.
    3. Features per hour: PM2.5, dew point, temperature, pressure,
       cumulated wind speed, hours of snow and of rain (standardized), the
       wind direction `cbwd` one-hot (NE/NW/SE/cv), and the hour of day and
       month as sine/cosine pairs.
    4. Chronological split: windows whose every hour (inputs and target)
       lies in 2010-2012 train, in 2013 validation, in 2014 test; windows
       straddling a new year are left out, so the splits share no hour.
    5. Sliding windows `(n, window, 15)` -> next PM2.5 `(n, 1)`, float32.

    The target is PM2.5 standardized with the training mean and std; use
    `data.to_target_units` for µg/m³.

    Args:
        window: hours of history per sample, >= 1. Defaults to 24.
        horizon: hours from the last input hour to the target, >= 1.
            Defaults to 1 (next hour).
        seed: seed of the subsampling done by `max_samples`. Defaults to 0.
        stride: keep every `stride`-th window, >= 1. Defaults to 1.
        max_samples: optional cap per split; a seeded random subset of the
            windows is kept, in time order. Defaults to None (all).
        max_gap: longest PM2.5 gap (hours) that is interpolated. Defaults
            to 6.
        data_dir: folder holding `beijing_pm25.csv.gz`. Defaults to
            `examples/data`.

    Returns:
        A `Dataset`. `info` holds `target_time` and `input_start` (dicts
        split -> datetime64[h] arrays), `interpolated_hours`,
        `missing_hours` (left missing after interpolation) and `feature_mean`
        / `feature_std` of the standardized features.

    Raises:
        ValueError: if an argument is out of range.

    Example:

    ```python
    data = load_pm25(window=24, max_samples=2000)
    data.x_train.shape, data.y_train.shape     # (2000, 24, 15), (2000, 1)
    ug_m3 = data.to_target_units(model.predict(data.x_test))
    ```
    """
    for name, value, low in (
        ("window", window, 1),
        ("horizon", horizon, 1),
        ("stride", stride, 1),
        ("max_gap", max_gap, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise ValueError(
            f"`max_samples` must be None or an integer >= 1. Received: max_samples={max_samples!r}"
        )
    header, rows = base.read_csv("beijing_pm25.csv.gz", data_dir)
    ymdh = np.stack(
        [base.column(header, rows, c) for c in ("year", "month", "day", "hour")], axis=1
    ).astype(int)
    times = np.array(
        [f"{y:04d}-{m:02d}-{d:02d}T{h:02d}" for y, m, d, h in ymdh], dtype="datetime64[h]"
    )
    if np.any(np.diff(times) != np.timedelta64(1, "h")):
        raise ValueError("beijing_pm25.csv.gz must hold consecutive hours.")
    pm = base.column(header, rows, "pm2.5")
    keep = slice(24, None)  # 2010-01-01 has no PM2.5 reading at all
    ymdh, times, pm, rows = ymdh[keep], times[keep], pm[keep], rows[keep]
    pm, interpolated = _interpolate_short_gaps(pm, max_gap)

    weather = ["DEWP", "TEMP", "PRES", "Iws", "Is", "Ir"]
    x_num = np.stack([pm] + [base.column(header, rows, c) for c in weather], axis=1)
    year = ymdh[:, 0]
    in_train = (year >= PM25_YEARS["train"][0]) & (year <= PM25_YEARS["train"][1])
    scaler = base.Standardizer(x_num[in_train])
    hour_angle = 2 * np.pi * ymdh[:, 3] / 24
    month_angle = 2 * np.pi * (ymdh[:, 1] - 1) / 12
    cyclic = np.stack(
        [np.sin(hour_angle), np.cos(hour_angle), np.sin(month_angle), np.cos(month_angle)], axis=1
    )
    wind = base.one_hot(base.column(header, rows, "cbwd", str), WIND_DIRECTIONS, "cbwd")
    features = np.concatenate([scaler(x_num), wind, cyclic], axis=1).astype(np.float32)
    names = (
        "pm2.5",
        "dew_point",
        "temperature",
        "pressure",
        "wind_speed_cum",
        "snow_hours_cum",
        "rain_hours_cum",
    )
    names += tuple(f"cbwd={c}" for c in WIND_DIRECTIONS) + (
        "hour_sin",
        "hour_cos",
        "month_sin",
        "month_cos",
    )

    # Window k covers hours [k, k + window) as inputs and k + window - 1 + horizon as target.
    span = window + horizon
    n_windows = len(pm) - span + 1
    bad = np.concatenate([[0], np.cumsum(np.isnan(pm))])
    clean = bad[span : span + n_windows] - bad[:n_windows] == 0
    first_year, last_year = year[:n_windows], year[span - 1 : span - 1 + n_windows]
    rng = np.random.default_rng(seed)
    target = TargetScaler(float(scaler.mean[0]), float(scaler.std[0]))
    arrays, target_time, input_start = {}, {}, {}
    for split, (lo, hi) in PM25_YEARS.items():
        starts = np.flatnonzero(clean & (first_year >= lo) & (last_year <= hi))[::stride]
        if max_samples is not None and len(starts) > max_samples:
            starts = np.sort(rng.choice(starts, size=max_samples, replace=False))
        ends = starts + window - 1 + horizon
        arrays[f"x_{split}"] = features[starts[:, None] + np.arange(window)[None, :]]
        arrays[f"y_{split}"] = features[ends, :1].copy()
        target_time[split], input_start[split] = times[ends], times[starts]
    return Dataset(
        name="beijing_pm25",
        **arrays,
        feature_names=names,
        target_name=f"pm2.5 {horizon} h ahead (ug/m3)",
        target_scaler=target,
        info={
            "target_time": target_time,
            "input_start": input_start,
            "interpolated_hours": int(interpolated),
            "missing_hours": int(np.isnan(pm).sum()),
            "feature_mean": scaler.mean,
            "feature_std": scaler.std,
            "window": window,
            "horizon": horizon,
        },
    )


# ----------------------------------------------------------------- digits
def load_digits(
    seed: int = 0, *, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Dataset:
    """Handwritten digits (8x8, scikit-learn's copy of the UCI set).

    A stratified split (seeded) into 70% train, 15% validation and 15% test;
    the 64 pixel intensities are standardized with the training mean and
    std (pixels that are constant in training are only centred).

    Args:
        seed: seed of the split. Defaults to 0.
        val_fraction: validation share, in (0, 0.5). Defaults to 0.15.
        test_fraction: test share, in (0, 0.5). Defaults to 0.15.

    Returns:
        A `Dataset` with float32 `x_*` of shape (n, 64) and int32 labels
        `y_*` of shape (n,) in 0..9. `info["num_classes"]` is 10.

    Example:

    ```python
    data = load_digits()
    data.x_train.shape, data.y_train[:5]       # (1257, 64), int32 labels
    ```
    """
    from sklearn import datasets as sk_datasets
    from sklearn.model_selection import train_test_split

    val_fraction = base.check_fraction("val_fraction", val_fraction)
    test_fraction = base.check_fraction("test_fraction", test_fraction)
    x, y = sk_datasets.load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1 - test_fraction),
        stratify=y_rest,
        random_state=seed,
    )
    scaler = base.Standardizer(x_train)
    return Dataset(
        name="digits",
        x_train=scaler(x_train).astype(np.float32),
        y_train=y_train.astype(np.int32),
        x_val=scaler(x_val).astype(np.float32),
        y_val=y_val.astype(np.int32),
        x_test=scaler(x_test).astype(np.float32),
        y_test=y_test.astype(np.int32),
        feature_names=tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)),
        target_name="digit (0-9)",
        info={"num_classes": 10},
    )
