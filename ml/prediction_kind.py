"""What a model's predictions are, by task, for everyone who reads them: the server's answers,
its prediction counters and live samples, the training profile they are compared against, and
the smoke test. Travels with the model in its MLmodel file (`metadata.modelyard`).

Imports NumPy only: the serving image has no pandas."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np
import orjson
from modelyard.contracts.tasks import TASKS, Task

METADATA_KEY = "modelyard"  # under the MLmodel file's `metadata`
TENTHS = tuple(round(i / 10, 1) for i in range(1, 10))  # a binary model's probability bins
_OBJECTIVE = re.compile(rb"^objective=(\w+)", re.MULTILINE)


@dataclass(frozen=True)
class PredictionKind:
    task: Task = "binary"
    classes: tuple[str, ...] = ()  # classification: the label of class code 0, 1, ...
    # Bin edges of the prediction counters and the drift profile: tenths of [0, 1] for a
    # binary model, the training target's deciles for a regression model; none for classes.
    edges: tuple[float, ...] = TENTHS

    def to_metadata(self) -> dict[str, Any]:
        return {"task": self.task, "classes": list(self.classes), "edges": list(self.edges)}

    @classmethod
    def from_metadata(cls, found: Any) -> PredictionKind | None:
        if not isinstance(found, dict) or found.get("task") not in TASKS:
            return None
        return cls(
            cast(Task, found["task"]),
            tuple(str(c) for c in found.get("classes") or ()),
            tuple(float(e) for e in found.get("edges") or ()),
        )

    @classmethod
    def of_booster_file(cls, head: bytes, outputs: int) -> PredictionKind:
        """For a model logged without the kit's metadata: LightGBM's `objective=` line."""
        found = _OBJECTIVE.search(head)
        objective = found[1].decode() if found else "binary"
        if outputs > 1 or objective in ("multiclass", "multiclassova", "softmax"):
            return cls("multiclass", tuple(str(i) for i in range(outputs)), ())
        if objective in ("binary", "cross_entropy", "xentropy"):
            return cls()
        return cls("regression", (), ())

    @cached_property
    def bin_labels(self) -> list[str]:
        """Each bin's name: its class, or its lower edge."""
        if self.task == "multiclass":
            return list(self.classes)
        if self.task == "binary":
            return [f"{edge:.1f}" for edge in (0.0, *self.edges)]
        return [f"{edge:g}" for edge in (-math.inf, *self.edges)]

    def bin_counts(self, scores: np.ndarray) -> dict[str, int]:
        """How many predictions fall in each bin (named by its lower edge, or the class)."""
        if self.task == "multiclass":
            index = np.asarray(scores).reshape(len(scores), -1).argmax(axis=1)
        else:
            index = np.searchsorted(np.asarray(self.edges), np.asarray(scores).ravel(), "right")
        counts = np.bincount(index, minlength=len(self.bin_labels))
        return {
            label: int(n) for label, n in zip(self.bin_labels, counts.tolist(), strict=True) if n
        }

    def sample_value(self, row: np.ndarray) -> float | str:
        """A live sample's prediction: the predicted class for a multiclass model."""
        if self.task == "multiclass":
            return self.classes[int(np.argmax(row))]
        return float(row)

    def extra_answer(self, scores: np.ndarray) -> bytes:
        """What a scoring answer carries beside `predictions` (the booster's own output, as
        MLflow's scoring protocol answers): a multiclass model's class names and the class
        each row is given."""
        if self.task != "multiclass":
            return b""
        labels = [self.classes[i] for i in np.asarray(scores).argmax(axis=1).tolist()]
        return (
            b',"classes":' + orjson.dumps(list(self.classes)) + b',"labels":' + orjson.dumps(labels)
        )

    def answer_problem(self, body: Any, rows: int) -> str | None:
        """What is wrong with a scoring answer for `rows` rows, or None (the smoke test)."""
        predictions = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(predictions, list) or len(predictions) != rows:
            return f"expected {rows} predictions, got {str(predictions)[:80]}"
        values = np.asarray(predictions, dtype=float)
        if not np.isfinite(values).all():
            return f"a prediction is not a finite number: {predictions[:3]}"
        if self.task == "binary" and not ((values >= 0) & (values <= 1)).all():
            return f"a probability outside [0, 1]: {predictions[:3]}"
        if self.task == "multiclass":
            if values.shape != (rows, len(self.classes)):
                return (
                    f"expected {len(self.classes)} class probabilities per row, got {values.shape}"
                )
            if not np.allclose(values.sum(axis=1), 1.0, atol=1e-6):
                return "class probabilities that do not sum to 1"
            if body.get("classes") != list(self.classes):
                return f"classes {body.get('classes')}, expected {list(self.classes)}"
        return None
