"""A failing dataset is rejected before any training, with every offending column named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modelyard.ml.data.sample import generate_churn

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    return generate_churn(2000, seed=3)


def _validate(
    frame: pd.DataFrame, tmp_path: Path, *extra: str, suffix: str = ".csv"
) -> tuple[int, dict]:
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    result = run_cli("data", "validate", "local", "--data", str(path), "--json", *extra)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def _problems(report: dict) -> dict[str, str]:
    found: dict[str, str] = {}
    for p in report["problems"]:
        found[p["column"]] = f"{found.get(p['column'], '')} {p['problem']}".strip()
    return found


def test_sample_data_passes_the_schema_and_has_a_content_version(
    good: pd.DataFrame, tmp_path: Path
) -> None:
    code, report = _validate(good, tmp_path)
    assert code == 0 and report["passed"] and report["schema_checked"]
    assert report["rows"] == 2000 and len(report["digest"]) == 64
    _, again = _validate(good, tmp_path)
    assert again["digest"] == report["digest"]  # same content, same version
    changed = good.copy()
    changed.loc[0, "age"] = 19 if changed.loc[0, "age"] != 19 else 20
    _, other = _validate(changed, tmp_path)
    assert other["digest"] != report["digest"]


def test_parquet_is_read_like_csv(good: pd.DataFrame, tmp_path: Path) -> None:
    code, report = _validate(good, tmp_path, suffix=".parquet")
    assert code == 0 and report["passed"]


def test_schema_violations_name_each_column_and_why(good: pd.DataFrame, tmp_path: Path) -> None:
    bad = good.drop(columns=["age"]).copy()
    bad.loc[:9, "tenure_months"] = -5
    bad.loc[:4, "contract"] = "lifetime"
    bad.loc[:800, "total_charges"] = np.nan
    bad["monthly_charges"] = bad["monthly_charges"].astype(object)
    bad.loc[:3, "monthly_charges"] = "unknown"
    bad["coupon"] = "x"
    code, report = _validate(bad, tmp_path)
    assert code == 1 and not report["passed"]
    problems = _problems(report)
    assert "missing from the file" in problems["age"]
    assert "10 values below the minimum 0" in problems["tenure_months"]
    assert (
        "'lifetime'" in problems["contract"] and "allowed: month-to-month" in problems["contract"]
    )
    assert "missing values, at most 5.0% allowed" in problems["total_charges"]
    assert "expected float values, found text" in problems["monthly_charges"]
    assert "not in the schema" in problems["coupon"] or "constant" in problems["coupon"]


def test_too_few_rows_and_single_class_target(good: pd.DataFrame, tmp_path: Path) -> None:
    tiny = good.head(50).copy()
    tiny["churned"] = 0
    code, report = _validate(tiny, tmp_path)
    assert code == 1
    problems = _problems(report)
    assert "50 rows, at least 1000 needed" in problems["(dataset)"]
    assert "1 class(es)" in problems["churned"]


def test_any_csv_gets_generic_checks_with_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "score": rng.normal(size=300),
            "empty": np.nan,
            "always": 7,
            "mixed": [str(i) if i % 3 else "abc" for i in range(300)],
            "outcome": rng.choice(["stayed", "left"], size=300),
        }
    )
    code, report = _validate(frame, tmp_path, "--target", "outcome")
    assert code == 1 and not report["schema_checked"]
    problems = _problems(report)
    assert set(problems) == {"empty", "always", "mixed"}
    assert "empty" in problems["empty"] and "constant" in problems["always"]
    assert "mixed types" in problems["mixed"] and "'abc'" in problems["mixed"]


def test_missing_target_and_duplicate_columns(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    rows = "\n".join(f"{i},{i * 2},{i % 2}" for i in range(200))
    path.write_text("a,a,label\n" + rows + "\n")
    result = run_cli(
        "data", "validate", "local", "--data", str(path), "--target", "churn", "--json"
    )
    problems = _problems(json.loads(result.stdout))
    assert result.returncode == 1
    assert "more than once" in problems["a"]
    assert "target column is missing" in problems["churn"]


def test_unreadable_or_unsupported_file_is_one_clear_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    result = run_cli("data", "validate", "local", "--data", str(broken))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot be read as PARQUET" in result.stderr
    other = tmp_path / "data.xlsx"
    other.write_text("x")
    result = run_cli("data", "validate", "local", "--data", str(other))
    assert result.returncode == 2 and "Use a .csv or .parquet file" in result.stderr
