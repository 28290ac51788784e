"""Request bodies (MLflow scoring formats and CSV) into a float64 matrix in signature order.

No pandas on the hot path: orjson gives Python lists, numpy turns them into one matrix, and
category strings become the training codes through a dict (unknown categories -> missing).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import orjson
from modelyard.ml.serving.model import LoadedModel

_NUMBER_TYPES = (int, float, type(None))
NAN = float("nan")
SMALL_BATCH = 16


class RequestError(Exception):
    """The request cannot be scored as sent: `status` is the 4xx to answer, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_body(body: bytes, content_type: str, model: LoadedModel, max_rows: int) -> np.ndarray:
    if not body:
        raise RequestError(
            400,
            "empty request body: send JSON (dataframe_split, dataframe_records, "
            "instances or inputs) or CSV with a header row",
        )
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return _from_csv(body, model, max_rows)
    if kind not in ("application/json", ""):
        raise RequestError(
            415, f"unsupported content type {kind!r}: use application/json or text/csv"
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RequestError(
            400,
            "the JSON body must be an object with one of the keys "
            "dataframe_split, dataframe_records, instances or inputs",
        )
    keys = [
        k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in document
    ]
    if len(keys) != 1:
        raise RequestError(
            400,
            "the JSON body must have exactly one of dataframe_split, "
            f"dataframe_records, instances or inputs (got {sorted(document)})",
        )
    payload = document[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(payload, dict) or "columns" not in payload or "data" not in payload:
            raise RequestError(400, "dataframe_split must be an object with `columns` and `data`")
        return _from_split(payload["columns"], payload["data"], model, max_rows)
    return _from_records_or_columns(payload, keys[0], model, max_rows)


def _from_records_or_columns(
    payload: Any, key: str, model: LoadedModel, max_rows: int
) -> np.ndarray:
    if isinstance(payload, dict):  # columnar: {"col": [values...]} (or one row of scalars)
        columns = list(payload)
        values = list(payload.values())
        if all(isinstance(v, list) for v in values):
            lengths = {len(v) for v in values}
            if len(lengths) > 1:
                raise RequestError(400, f"{key}: columns have different lengths {sorted(lengths)}")
            return _from_split(
                columns, [list(r) for r in zip(*values, strict=True)], model, max_rows
            )
        return _from_split(columns, [values], model, max_rows)
    if not isinstance(payload, list) or not payload:
        raise RequestError(
            400, f"{key} must be a non-empty list of records or an object of columns"
        )
    if len(payload) > max_rows:
        raise RequestError(
            413, f"{len(payload)} rows is more than this server's limit of {max_rows}"
        )
    if not all(isinstance(r, dict) for r in payload):
        if key != "dataframe_records" and all(isinstance(r, list) for r in payload):
            # instances/inputs as positional rows, in signature order
            return _from_split([c.name for c in model.columns], payload, model, max_rows)
        raise RequestError(400, f"{key} must be a list of objects, one per row")
    expected = model.index
    names = list(payload[0])
    if set(names) != set(expected) or any(len(r) != len(names) for r in payload):
        for number, record in enumerate(payload):
            _check_names(list(record), model, f"{key}[{number}]")
    names = [c.name for c in model.columns] if set(names) == set(expected) else names
    return _from_split(names, [[r.get(n) for n in names] for r in payload], model, max_rows)


def _check_names(names: list[Any], model: LoadedModel, where: str) -> None:
    known = model.index
    extra = [n for n in names if n not in known]
    if extra:
        raise RequestError(
            400,
            f"{where}: unknown column(s) {extra[:5]}; the model expects "
            f"{[c.name for c in model.columns]}",
        )
    given = set(names)
    missing = [c.name for c in model.columns if c.required and c.name not in given]
    if missing:
        raise RequestError(400, f"{where}: missing required column(s) {missing}")
    if len(given) != len(names):
        raise RequestError(400, f"{where}: duplicate column names")


def _from_split(columns: Any, data: Any, model: LoadedModel, max_rows: int) -> np.ndarray:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError(400, "`columns` must be a list of column names")
    if not isinstance(data, list) or not data:
        raise RequestError(400, "`data` must be a non-empty list of rows")
    if len(data) > max_rows:
        raise RequestError(413, f"{len(data)} rows is more than this server's limit of {max_rows}")
    _check_names(columns, model, "columns")
    width = len(columns)
    if not all(isinstance(r, list) and len(r) == width for r in data):
        bad = next(i for i, r in enumerate(data) if not isinstance(r, list) or len(r) != width)
        raise RequestError(400, f"row {bad} does not have one value per column ({width} columns)")
    n = len(data)
    positions = [model.index[c] for c in columns]
    if n <= SMALL_BATCH:
        return _small_batch(positions, data, model)
    block = np.empty((n, width), dtype=object)
    try:
        block[:] = data
    except ValueError:
        raise RequestError(400, "every value must be a number, a string or null") from None
    matrix = np.full((n, model.n_features), NAN)
    numeric = [j for j, p in enumerate(positions) if not model.columns[p].categorical]
    if numeric:
        part = block[:, numeric]
        if not set(map(type, part.ravel().tolist())) <= set(_NUMBER_TYPES):
            _raise_mistyped(part, [columns[j] for j in numeric])
        part[part == None] = NAN  # noqa: E711 (elementwise comparison on an object array)
        matrix[:, [positions[j] for j in numeric]] = part.astype(np.float64)
    for j, p in enumerate(positions):
        column = model.columns[p]
        if column.categorical:
            codes = column.codes
            values = block[:, j].tolist()
            if not all(v is None or isinstance(v, str) for v in values):
                bad = next(v for v in values if not (v is None or isinstance(v, str)))
                raise RequestError(
                    400, f"column {column.name!r} holds categories (strings); got {bad!r}"
                )
            matrix[:, p] = [codes.get(v, NAN) for v in values]
    return matrix


def _small_batch(positions: list[int], data: list[list[Any]], model: LoadedModel) -> np.ndarray:
    """A few rows: plain loops beat numpy's object-array set-up by an order of magnitude."""
    kinds = model.kinds
    plan = [(p, kinds[p]) for p in positions]
    out = []
    for row in data:
        values = [NAN] * model.n_features
        for (p, codes), value in zip(plan, row, strict=True):
            if value is None:
                continue
            kind = type(value)
            if codes is None:
                if kind is not float and kind is not int:
                    raise RequestError(
                        400, f"column {model.columns[p].name!r} is numeric; got {value!r}"
                    )
                values[p] = value
            elif kind is str:
                values[p] = codes.get(value, NAN)
            else:
                raise RequestError(
                    400,
                    f"column {model.columns[p].name!r} holds categories (strings); got {value!r}",
                )
        out.append(values)
    try:
        return np.array(out, dtype=np.float64)
    except OverflowError:
        raise RequestError(400, "a number is too large for a float") from None


def _raise_mistyped(part: np.ndarray, names: list[str]) -> None:
    for j, name in enumerate(names):
        for value in part[:, j].tolist():
            if not isinstance(value, _NUMBER_TYPES) or isinstance(value, bool):
                raise RequestError(400, f"column {name!r} is numeric; got {value!r}")
    raise RequestError(400, "non-numeric value in a numeric column")


def _from_csv(body: bytes, model: LoadedModel, max_rows: int) -> np.ndarray:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "CSV body is not UTF-8") from None
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise RequestError(400, "CSV needs a header row and at least one data row")
    header, body_rows = rows[0], [r for r in rows[1:] if r]
    data: list[list[Any]] = []
    categorical = [
        model.index.get(h) is not None and model.columns[model.index[h]].categorical for h in header
    ]
    for number, row in enumerate(body_rows, start=1):
        if len(row) != len(header):
            raise RequestError(
                400, f"CSV row {number} has {len(row)} fields, the header {len(header)}"
            )
        converted: list[Any] = []
        for name, is_cat, cell in zip(header, categorical, row, strict=True):
            if cell == "":
                converted.append(None)
            elif is_cat:
                converted.append(cell)
            else:
                try:
                    converted.append(float(cell))
                except ValueError:
                    raise RequestError(
                        400, f"CSV row {number}: column {name!r} is numeric; got {cell!r}"
                    ) from None
        data.append(converted)
    return _from_split(header, data, model, max_rows)
