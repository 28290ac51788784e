"""The drift report: one HTML file, a table of every feature and a plot per drifted feature."""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

from modelyard.ml.monitoring.drift import DriftResult, FeatureDrift


def _plot(feature: FeatureDrift) -> str:
    """Reference vs live shares over the feature's bins (or categories), as an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(feature.labels))
    figure, axis = plt.subplots(figsize=(7.5, 3.2))
    axis.bar(x - 0.2, feature.reference, width=0.4, label="training reference", color="#4c78a8")
    axis.bar(x + 0.2, feature.live, width=0.4, label="live traffic", color="#e45756")
    axis.set_xticks(x, feature.labels, rotation=35, ha="right", fontsize=7)
    axis.set_ylabel("share of rows")
    axis.set_title(f"{feature.name}: PSI {feature.psi:.3f}, {feature.test} p={feature.p_value:.2g}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(result: DriftResult, path: Path, title: str) -> Path:
    rows = []
    every = [*result.features, *([result.prediction] if result.prediction else [])]
    for f in sorted(every, key=lambda f: -f.psi):
        mark = "DRIFT" if f.drifted else "ok"
        rows.append(
            f"<tr class='{mark.lower()}'><td>{html.escape(f.name)}</td><td>{f.kind}</td>"
            f"<td>{f.psi:.4f}</td><td>{f.test}</td><td>{f.statistic:.4g}</td>"
            f"<td>{f.p_value:.3g}</td><td>{mark}</td></tr>"
        )
    plots = "".join(
        f"<h3>{html.escape(f.name)}</h3><img alt='{html.escape(f.name)} drift' "
        f"src='data:image/png;base64,{_plot(f)}'>"
        for f in every
        if f.drifted
    )
    verdict = (
        f"{len(result.drifted_features)} of {len(result.features)} features drifted"
        + (", and the predictions" if result.prediction and result.prediction.drifted else "")
        if result.drifted
        else "no drift"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:3px 10px;text-align:left}}
tr.drift{{background:#fde2e1}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{datetime.now(UTC):%Y-%m-%d %H:%M UTC}: {result.rows} live rows against the training
reference. A feature drifts when its PSI is at least {result.psi_threshold:g} and its
KS / chi-square test gives p &lt; {result.p_value:g}. <b>Verdict: {verdict}</b>
(largest PSI {result.max_psi:.3f}).</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>test</th><th>statistic</th>
<th>p-value</th><th></th></tr>{"".join(rows)}</table>
<h2>Drifted features</h2>{plots or "<p>none</p>"}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
