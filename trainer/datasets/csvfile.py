"""Reading a dataset from a user's CSV table: :func:`load_csv` and the limits it enforces."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import IO, Any, Literal, Union

import numpy as np

from .dataset import MAX_SAMPLES, Dataset, DatasetError

__all__ = ["AUTO_MAX_CLASSES", "MAX_CLASSES", "MAX_FEATURES", "CsvSource", "load_csv"]

MAX_FEATURES = 10_000
"""Largest number of feature columns accepted by :func:`load_csv`."""
MAX_CLASSES = 1_000
"""Largest number of distinct classes of a classification target."""
AUTO_MAX_CLASSES = 50
"""``task="auto"``: an all-integer target with at most this many distinct values is a class label."""

CsvSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[str], IO[bytes]]

_MAX_EXACT_INT = 2.0**53


def _number(cell: str) -> float | None:
    """The value of a stripped numeric cell (may be nan/inf), or None if not a number."""
    if not cell or "_" in cell or not cell.isascii():
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _bad_feature(cell: str, where: str, line: int, column: str) -> DatasetError:
    at = f"CSV {where}: line {line}, column {column!r}"
    if cell == "":
        return DatasetError(f"{at}: empty cell")
    if _number(cell) is not None:  # parsed, so it is NaN or infinite
        return DatasetError(f"{at}: {cell!r} is not a finite number (NaN/inf are refused)")
    return DatasetError(f"{at}: {cell!r} is not a number")


def _read_source(source: Any) -> tuple[str, str, str]:
    """Return (text, where, default name) for a CSV source."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = f"file {path!r}"
        try:
            with open(path, "rb") as fh:
                data: Any = fh.read()
        except OSError as exc:
            raise DatasetError(f"cannot read CSV {where}: {exc.strerror or exc}") from exc
        default_name = os.path.splitext(os.path.basename(path))[0]
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, where, default_name = bytes(source), "data", ""
    elif hasattr(source, "read"):
        where = "stream"
        file_name = getattr(source, "name", None)
        default_name = ""
        if isinstance(file_name, str):
            where = f"file {file_name!r}"
            default_name = os.path.splitext(os.path.basename(file_name))[0]
        try:
            data = source.read()
        except UnicodeDecodeError as exc:
            raise DatasetError(f"CSV {where} is not valid UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise DatasetError(f"cannot read CSV {where}: {exc}") from exc
    else:
        raise DatasetError(
            f"CSV source must be a path, bytes or a file object, not {type(source).__name__}"
        )
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DatasetError(
                f"CSV {where} is not valid UTF-8: undecodable byte 0x{data[exc.start]:02x} "
                f"at line {line} (byte offset {exc.start})"
            ) from exc
    elif isinstance(data, str):
        text = data[1:] if data.startswith("\ufeff") else data
    else:
        raise DatasetError(f"reading the CSV {where} returned {type(data).__name__}, not text or bytes")
    return text, where, default_name


def load_csv(
    source: CsvSource,
    *,
    target: str | None = None,
    task: Literal["auto", "classification", "regression"] = "auto",
    name: str = "",
) -> Dataset:
    """Read a dataset from a CSV table with a header row.

    Parameters
    ----------
    source : str, os.PathLike, bytes or file object
        A path to a file (a ``str`` is always a path, never CSV text), the
        file's bytes, or an open text or binary file.  Bytes must be UTF-8; a
        UTF-8 byte-order mark is accepted.
    target : str, optional
        Name of the target column; default: the last column.  Every other
        column is a feature, in header order.
    task : {"auto", "classification", "regression"}, default "auto"
        With ``"auto"`` the target is a **regression** target if every
        target cell is a number and either some value is not an integer or
        there are more than :data:`AUTO_MAX_CLASSES` (50) distinct values;
        otherwise (some cell is not a number, or all cells are integers --
        ``"3"`` and ``"3.0"`` alike -- with at most 50 distinct values) it is
        a **classification** target.
    name : str, optional
        Dataset name; default: the file's stem for paths/named files, else "".

    Returns
    -------
    Dataset
        ``X`` float64 of shape (n_rows, n_columns - 1).  Classification:
        ``classes`` are the distinct target labels sorted numerically if all
        are numbers (named canonically, e.g. ``"3"`` for ``3.0``) else as
        strings (stripped of surrounding whitespace), and ``y`` (int64,
        shape (n_rows,)) indexes them.  Regression: ``y`` float64 of shape
        (n_rows, 1).

    Raises
    ------
    DatasetError
        With the line (1-based, as in a text editor) and column name where it
        applies: empty input or no data rows; empty or duplicate column
        names; fewer than 2 columns; more than :data:`MAX_FEATURES` feature
        columns or :data:`MAX_SAMPLES` data rows; unknown ``target``; a row
        whose cell count differs from the header; an empty, non-numeric, NaN
        or infinite feature cell; an empty or NaN/inf target cell; a
        non-numeric regression target; a classification target with fewer
        than 2 or more than :data:`MAX_CLASSES` classes; bytes that are not
        UTF-8; malformed CSV.

    Notes
    -----
    Cells may carry surrounding whitespace.  Rows whose cells are all blank
    (e.g. an empty line) are skipped.  Numbers are decimal ASCII literals as
    accepted by ``float`` (e.g. ``-1``, ``2.5``, ``1e-3``), without
    underscores.
    """
    if task not in ("auto", "classification", "regression"):
        raise DatasetError(f"task must be 'auto', 'classification' or 'regression', not {task!r}")
    if target is not None and not isinstance(target, str):
        raise DatasetError(f"target must be a column name (str), not {target!r}")
    text, where, default_name = _read_source(source)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)

    def next_row() -> list[str] | None:
        try:
            for row in reader:
                if "".join(row).strip():  # skip rows whose cells are all blank
                    return row
            return None
        except csv.Error as exc:
            raise DatasetError(f"CSV {where}, line {max(reader.line_num, 1)}: malformed CSV: {exc}") from exc

    header = next_row()
    if header is None:
        raise DatasetError(f"CSV {where} is empty: it has no header row and no data rows")
    header_line = reader.line_num
    columns = [cell.strip() for cell in header]
    seen: dict[str, int] = {}
    for i, col in enumerate(columns):
        if not col:
            raise DatasetError(f"CSV {where}, line {header_line}: header column {i + 1} has an empty name")
        if col in seen:
            raise DatasetError(
                f"CSV {where}, line {header_line}: duplicate column name {col!r} "
                f"(columns {seen[col] + 1} and {i + 1})"
            )
        seen[col] = i
    n_cols = len(columns)
    if n_cols < 2:
        raise DatasetError(
            f"CSV {where} has only one column ({columns[0]!r}); it needs at least one feature "
            "column and a target column"
        )
    if n_cols - 1 > MAX_FEATURES:
        raise DatasetError(f"CSV {where} has {n_cols - 1} feature columns; at most {MAX_FEATURES} are allowed")
    if target is None:
        t_idx = n_cols - 1
    else:
        if target.strip() not in seen:
            raise DatasetError(
                f"target column {target!r} is not among the columns of CSV {where}: "
                + ", ".join(repr(c) for c in columns)
            )
        t_idx = seen[target.strip()]
    target_name = columns[t_idx]
    feature_idx = [i for i in range(n_cols) if i != t_idx]
    last_is_target = t_idx == n_cols - 1
    feature_names = tuple(columns[i] for i in feature_idx)

    rows: list[list[float]] = []
    lines: list[int] = []
    targets: list[str] = []
    while True:
        row = next_row()
        if row is None:
            break
        line = reader.line_num
        if len(row) != n_cols:
            raise DatasetError(f"CSV {where}: line {line} has {len(row)} cells, the header has {n_cols}")
        if len(rows) >= MAX_SAMPLES:
            raise DatasetError(f"CSV {where} has more than {MAX_SAMPLES} data rows")
        cells = row[:-1] if last_is_target else [row[i] for i in feature_idx]
        values = None
        joined = "".join(cells)
        if "_" not in joined and joined.isascii():
            try:
                values = [float(c) for c in cells]  # float() ignores surrounding whitespace
            except ValueError:
                values = None
        if values is None or not math.isfinite(math.fsum(values)):
            # locate the first bad cell (fsum may also overflow on finite values)
            for c, col in zip(cells, feature_names):
                v = _number(c.strip())
                if v is None or not math.isfinite(v):
                    raise _bad_feature(c.strip(), where, line, col)
            if values is None:  # e.g. non-ASCII whitespace around valid numbers
                values = [float(c.strip()) for c in cells]
        rows.append(values)
        lines.append(line)
        targets.append(row[t_idx].strip())
    if not rows:
        raise DatasetError(f"CSV {where} has a header but no data rows")

    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(feature_idx))
    del rows

    numbers_: list[float | None] = []
    for cell, line in zip(targets, lines):
        if cell == "":
            raise DatasetError(f"CSV {where}: line {line}, column {target_name!r}: empty target cell")
        value = _number(cell)
        if value is not None and not math.isfinite(value):
            raise DatasetError(
                f"CSV {where}: line {line}, column {target_name!r}: {cell!r} is not a finite "
                "number (NaN/inf are refused)"
            )
        numbers_.append(value)
    all_numeric = all(v is not None for v in numbers_)

    if task == "auto":
        if not all_numeric:
            task = "classification"
        else:
            integral = all(v.is_integer() and abs(v) <= _MAX_EXACT_INT for v in numbers_)  # type: ignore[union-attr]
            task = (
                "classification"
                if integral and len(set(numbers_)) <= AUTO_MAX_CLASSES
                else "regression"
            )

    ds_name = name or default_name
    if task == "regression":
        if not all_numeric:
            i = next(i for i, v in enumerate(numbers_) if v is None)
            raise DatasetError(
                f"CSV {where}: line {lines[i]}, column {target_name!r}: {targets[i]!r} is not a "
                "number (a regression target must be numeric)"
            )
        y = np.array(numbers_, dtype=np.float64).reshape(-1, 1)
        return Dataset(X=X, y=y, task="regression", feature_names=feature_names, name=ds_name)

    keys: list[Any] = numbers_ if all_numeric else targets
    distinct = sorted(set(keys))
    if len(distinct) > MAX_CLASSES:
        raise DatasetError(
            f"CSV {where}: target column {target_name!r} has {len(distinct)} distinct values; "
            f"a classification target may have at most {MAX_CLASSES} classes"
        )
    if all_numeric:
        classes = tuple(
            str(int(v)) if v.is_integer() and abs(v) <= _MAX_EXACT_INT else repr(v) for v in distinct
        )
    else:
        classes = tuple(distinct)
    if len(distinct) < 2:
        raise DatasetError(
            f"CSV {where}: target column {target_name!r} has only one class ({classes[0]!r}); "
            "classification needs at least 2"
        )
    index = {k: i for i, k in enumerate(distinct)}
    y = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    return Dataset(
        X=X, y=y, task="classification", feature_names=feature_names, classes=classes, name=ds_name
    )
