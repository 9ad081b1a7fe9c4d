"""Labelled datasets for audits, and the input normalisation a model expects.

Layouts (documented in docs/audit.md):

- `.npz` with arrays `x` (float, shape (N, *input_shape) or (N, n_inputs)) and `y` (int, shape (N,));
- a `.npy` pair: `x.npy` as above plus a labels file `y.npy` (int, (N,)) given separately;
- `.csv`: one sample per row, the label in a column named `label` when the first row is a header that has
  one, else in the first column; every other column is a feature, in C order of the model's input.

Samples are kept in raw input units; `Normalization` maps them (and ε-boxes around them) to the units
the model consumes: `(raw - mean) / std`, after clipping to the valid raw range.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verikit.core import limits
from verikit.core.errors import DataError

Vector = float | tuple[float, ...]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples `x` float64 (N, n_features) flattened in C order, labels `y` int64 (N,), raw units.

    `sha256` covers the bytes of every file the dataset was read from (data, then labels).
    """

    x: np.ndarray
    y: np.ndarray
    source: str = ""
    sha256: str = ""
    sample_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"x has shape {self.x.shape} but y has shape {self.y.shape}; "
                            "expected x (N, features) and y (N,)", where=self.source or None)

    def __len__(self) -> int:
        return int(self.y.size)

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    def head(self, limit: int | None) -> "Dataset":
        """The first `limit` samples (all when limit is None)."""
        if limit is None or limit >= len(self):
            return self
        return Dataset(self.x[:limit], self.y[:limit], self.source, self.sha256, self.sample_shape)

    def check_fits(self, n_inputs: int, n_classes: int) -> None:
        """Raise DataError unless samples have `n_inputs` features and labels lie in [0, n_classes)."""
        where = self.source or None
        if self.n_features != n_inputs:
            raise DataError(f"samples have {self.n_features} features (shape {self.sample_shape}) but the "
                            f"model takes {n_inputs} inputs", where=where)
        if len(self) and (self.y.min() < 0 or self.y.max() >= n_classes):
            raise DataError(f"labels must lie in [0, {n_classes}) for a model with {n_classes} outputs; "
                            f"found {int(self.y.min())}..{int(self.y.max())}", where=where)


def _hash(*contents: bytes) -> str:
    digest = hashlib.sha256()
    for data in contents:
        digest.update(data)
    return digest.hexdigest()


def _labels(values: np.ndarray, where: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(f"labels must have shape (N,), got {values.shape}", where=where)
    if values.dtype.kind == "f":
        if (not np.all(np.isfinite(values)) or not np.all(values == np.round(values))
                or (values.size and np.abs(values).max() > 2**31)):
            raise DataError("labels must be integers", where=where)
    elif values.dtype.kind not in "iu":
        raise DataError(f"labels must be integers, got dtype {values.dtype}", where=where)
    return values.astype(np.int64)


def _samples(values: np.ndarray, where: str) -> tuple[np.ndarray, tuple[int, ...]]:
    values = np.asarray(values)
    if values.dtype.kind not in "fiub" or values.ndim < 2:
        raise DataError(f"x must be a numeric array of shape (N, ...), got {values.dtype} {values.shape}",
                        where=where)
    if values.size == 0:
        raise DataError(f"x holds no values (shape {values.shape}): the dataset holds no samples", where=where)
    flat = np.ascontiguousarray(values.reshape(values.shape[0], -1), dtype=np.float64)
    if not np.all(np.isfinite(flat)):
        raise DataError("x contains NaN or infinite values", where=where)
    return flat, tuple(int(d) for d in values.shape[1:])


def _read_npz(path: Path) -> Dataset:
    where = str(path)
    data = limits.read_file(path, "data", DataError)
    arrays, found = limits.load_npz(data, ("x", "y"), "data", DataError, where)
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(f"the .npz needs arrays 'x' and 'y'; missing {', '.join(missing)} "
                        f"(found {', '.join(found) or 'none'})", where=where)
    flat, shape = _samples(arrays["x"], where)
    return Dataset(flat, _labels(arrays["y"], where), where, _hash(data), shape)


def _read_npy_pair(path: Path, labels: Path) -> Dataset:
    x_data, y_data = limits.read_file(path, "data", DataError), limits.read_file(labels, "data", DataError)
    flat, shape = _samples(limits.load_npy(x_data, "data", DataError, str(path)), str(path))
    y = _labels(limits.load_npy(y_data, "data", DataError, str(labels)), str(labels))
    return Dataset(flat, y, str(path), _hash(x_data, y_data), shape)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> Dataset:
    where = str(path)
    data = limits.read_file(path, "data", DataError)
    text = limits.decode(data, "data", DataError, where)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise DataError(f"not a readable CSV file: {error}", where=where) from None
    if not rows:
        raise DataError("the CSV file has no rows", where=where)
    label_column, first_data_row = 0, 0
    if not all(_is_number(cell) for cell in rows[0]):
        header = [cell.strip().lower() for cell in rows[0]]
        label_column = header.index("label") if "label" in header else 0
        first_data_row = 1
    width = len(rows[first_data_row]) if len(rows) > first_data_row else 0
    if width < 2:
        raise DataError("a CSV row needs a label and at least one feature", where=where)
    values = np.zeros((len(rows) - first_data_row, width))
    for number, row in enumerate(rows[first_data_row:], start=first_data_row + 1):
        if len(row) != width:
            raise DataError(f"line {number}: {len(row)} columns, expected {width}", where=where)
        try:
            values[number - first_data_row - 1] = [float(cell) for cell in row]
        except ValueError as error:
            raise DataError(f"line {number}: {str(error)[:200]}", where=where) from None
    labels = _labels(values[:, label_column], where)
    features, shape = _samples(np.delete(values, label_column, axis=1), where)
    return Dataset(features, labels, where, _hash(data), shape)


def load_dataset(path: str | Path, labels: str | Path | None = None) -> Dataset:
    """Read a dataset (.npz, .npy with a labels .npy, or .csv); DataError names the file and the problem."""
    path = Path(path)
    for file in (path, Path(labels) if labels is not None else None):
        if file is not None:
            limits.check_regular(file, "data", DataError)
    dataset = _read(path, labels)
    if not len(dataset):
        raise DataError("the dataset holds no samples", where=str(path))
    return dataset


def _read(path: Path, labels: str | Path | None) -> Dataset:
    suffix = path.suffix.lower()
    if labels is not None and suffix != ".npy":
        raise DataError("a separate labels file goes only with an x .npy file", where=str(labels))
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".npy":
        if labels is None:
            raise DataError("a .npy file holds only samples: give the labels .npy too (--labels)",
                            where=str(path))
        return _read_npy_pair(path, Path(labels))
    if suffix == ".csv":
        return _read_csv(path)
    raise DataError(f"unknown dataset format {suffix or '(no suffix)'}; use .npz, .npy (+ labels) or .csv",
                    where=str(path))


def _broadcast(value: Vector, name: str, n_inputs: int, input_shape: tuple) -> np.ndarray:
    """A scalar, one value per input, or one per channel (dim 1 of an (N, C, ...) input) → (n_inputs,)."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 1:
        return np.full(n_inputs, float(array[0]))
    if array.size == n_inputs:
        return array.copy()
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in input_shape]
    if len(dims) >= 3 and array.size == dims[1] and n_inputs % dims[1] == 0:
        return np.repeat(array, n_inputs // dims[1])
    raise DataError(f"{name} has {array.size} values; give 1, one per input ({n_inputs}) or one per channel")


@dataclass(frozen=True)
class Normalization:
    """Model input = (clip(raw, clip_min, clip_max) - mean) / std; values are scalars or per input/channel."""

    mean: Vector = 0.0
    std: Vector = 1.0
    clip_min: Vector | None = None
    clip_max: Vector | None = None

    def vectors(self, n_inputs: int, input_shape: tuple = ()) -> tuple[np.ndarray, ...]:
        """(mean, std, low, high), each float64 (n_inputs,); low/high are ±inf where unclipped."""
        mean = _broadcast(self.mean, "mean", n_inputs, input_shape)
        std = _broadcast(self.std, "std", n_inputs, input_shape)
        if not (np.all(std > 0) and np.all(np.isfinite(std))):
            raise DataError("std must be positive and finite")
        if not np.all(np.isfinite(mean)):
            raise DataError("mean must be finite")
        low = (np.full(n_inputs, -np.inf) if self.clip_min is None
               else _broadcast(self.clip_min, "clip_min", n_inputs, input_shape))
        high = (np.full(n_inputs, np.inf) if self.clip_max is None
                else _broadcast(self.clip_max, "clip_max", n_inputs, input_shape))
        if np.any(low > high):
            raise DataError("clip_min must not exceed clip_max")
        return mean, std, low, high

    def as_dict(self) -> dict:
        def plain(value):
            return list(value) if isinstance(value, (tuple, list)) else value

        return {"mean": plain(self.mean), "std": plain(self.std), "clip_min": plain(self.clip_min),
                "clip_max": plain(self.clip_max)}
