"""A small client of the scoring protocol, for the demo, smoke tests and scripts."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from typing import Any

import orjson
from modelyard.ml.errors import ModelyardMlError


class ScoringError(ModelyardMlError):
    """The server refused or could not be reached; the message is the server's own."""


def score_records(
    url: str, rows: list[dict[str, Any]], timeout: float = 30.0
) -> tuple[list[float], str]:
    """POST `rows` as dataframe_records; returns (predictions, answering model version)."""
    clean = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in rows
    ]
    request = urllib.request.Request(
        f"{url.rstrip('/')}/invocations",
        data=orjson.dumps({"dataframe_records": clean}, option=orjson.OPT_SERIALIZE_NUMPY),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ScoringError(f"{url}: {exc.code} {exc.read().decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ScoringError(f"{url}: cannot reach the model server ({exc})") from None
    return list(body["predictions"]), str(body.get("model_version", ""))


def score_frame(url: str, frame: Any, batch: int = 200) -> tuple[list[float], str]:
    """Score a pandas DataFrame (e.g. ml.data.sample.generate_churn without its target) in batches."""
    predictions: list[float] = []
    version = ""
    records = frame.astype(object).to_dict(orient="records")
    for start in range(0, len(records), batch):
        scores, version = score_records(url, records[start : start + batch])
        predictions.extend(scores)
    return predictions, version
