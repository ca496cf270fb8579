"""`top`'s histogram quantile equals PromQL's: the real promtool evaluates `histogram_quantile` over the
same buckets (interpolation inside a bucket, the first bucket from 0, the +Inf bucket, empty buckets)."""

from __future__ import annotations

import math
import subprocess

import yaml

from exporter.top.stats import quantile
from tests.helpers import find_binary

CASES: list[tuple[float, list[tuple[float, float]]]] = [
    (0.5, [(0.1, 3), (0.2, 9), (0.5, 10), (math.inf, 10)]),
    (0.9, [(0.1, 3), (0.2, 9), (0.5, 10), (math.inf, 10)]),
    (0.99, [(0.1, 3), (0.2, 9), (0.5, 10), (math.inf, 12)]),  # falls in +Inf: the highest finite bound
    (0.25, [(0.005, 40), (0.01, 40), (0.02, 41), (math.inf, 41)]),  # first bucket: from 0
    (0.999, [(0.005, 0), (0.01, 0), (0.02, 7), (0.05, 7), (math.inf, 7)]),  # empty buckets around it
    (0.5, [(1.0, 1), (2.0, 2), (4.0, 3), (8.0, 4), (math.inf, 4)]),
]


def test_quantile_equals_promtools_histogram_quantile(tmp_path):
    series, tests = [], []
    for i, (q, buckets) in enumerate(CASES):
        for upper, count in buckets:
            le = "+Inf" if math.isinf(upper) else repr(upper)
            series.append({"series": f'h_bucket{{case="{i}",le="{le}"}}', "values": f"{count:g}"})
        expected = quantile(q, buckets)
        assert expected is not None
        tests.append(
            {
                "expr": f'histogram_quantile({q}, h_bucket{{case="{i}"}})',
                "eval_time": "0m",
                "exp_samples": [{"labels": f'{{case="{i}"}}', "value": expected}],
            }
        )
    path = tmp_path / "quantiles.test.yml"
    doc = {"rule_files": [], "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    done = subprocess.run(
        [find_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
