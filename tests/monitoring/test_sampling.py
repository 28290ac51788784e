"""The live sample store stays bounded and keeps only feature values."""

from __future__ import annotations

from pathlib import Path

from modelyard.ml.monitoring.sampling import SampleWriter, read_samples


def test_store_rotates_and_stays_bounded(tmp_path: Path) -> None:
    writer = SampleWriter(tmp_path, rate=1.0, max_rows=100, max_files=4)
    for i in range(1000):
        writer.add("3", {"age": i, "region": "north"}, 0.5)
        if i % 30 == 0:
            writer.flush()
    writer.flush()
    rows = list(read_samples(tmp_path))
    assert 75 <= len(rows) <= 100  # at most max_files files of max_rows / max_files rows
    assert len(list(tmp_path.glob("samples-*.jsonl"))) <= 4
    assert rows[-1]["x"] == {"age": 999, "region": "north"} and rows[-1]["v"] == "3"
    assert set(rows[0]) == {"t", "v", "x", "p"}


def test_rate_zero_samples_nothing_and_batches_are_subsampled(tmp_path: Path) -> None:
    assert not SampleWriter(tmp_path, rate=0.0, max_rows=100).wants()
    writer = SampleWriter(tmp_path, rate=1.0, max_rows=1000, rows_per_request=50)
    assert writer.wants()
    picked = writer.pick(1000)
    assert len(picked) == 50 and picked == sorted(set(picked))
    assert writer.pick(7) == list(range(7))


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "samples-1-1-000000.jsonl").write_bytes(
        b'{"t":1,"v":"1","x":{},"p":0.1}\n{"t":2,"v"'
    )
    assert len(list(read_samples(tmp_path))) == 1
