"""A small synchronous Prometheus HTTP API client, and dashboard variables resolved the way Grafana does.

Synchronous on purpose: the renderer is a command line tool; async callers run it in a thread.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from grafana.queries import (
    TimeContext,
    format_value,
    parse_label_values,
    substitute,
    variable_definitions,
    variable_query,
)


class PrometheusError(RuntimeError):
    pass


class PrometheusAPI:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Sequence[tuple[str, str]]) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise PrometheusError(
                f"{path} {dict(params).get('query', '')!r}: HTTP {exc.code}: {detail}"
            ) from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body}")
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Matrix result: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        data = self._get(
            "/api/v1/query_range",
            [("query", expr), ("start", f"{start:.3f}"), ("end", f"{end:.3f}"), ("step", f"{step:g}")],
        )
        return list(data["result"])

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """Instant vector result: [{"metric": {...}, "value": [t, "v"]}, ...] (scalars as one sample)."""
        data = self._get("/api/v1/query", [("query", expr), ("time", f"{at:.3f}")])
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def label_values(self, label: str, match: str | None, start: float, end: float) -> list[str]:
        params = [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        if match:
            params.append(("match[]", match))
        return sorted(self._get(f"/api/v1/label/{urllib.parse.quote(label)}/values", params))


def resolve_variables(
    api: PrometheusAPI,
    model: Mapping[str, Any],
    time: TimeContext,
    start: float,
    end: float,
    chosen: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """Each template variable's value as Grafana would write it into a query.

    Like a freshly opened dashboard: a variable that includes All starts on All (its allValue); one that
    does not starts on its first value in sort order (empty when there is none). `chosen` picks explicit
    values instead.
    """
    chosen = chosen or {}
    values: dict[str, str] = {}
    for variable in variable_definitions(model):
        name = variable["name"]
        kind = variable.get("type")
        if kind == "datasource":
            continue
        if kind == "constant":
            values[name] = str(variable.get("query", ""))
            continue
        if kind != "query":
            raise ValueError(f"variable {name}: type {kind!r} is not supported by the renderer")
        if name in chosen:
            values[name] = format_value(list(chosen[name]))
            continue
        if variable.get("includeAll"):
            values[name] = format_value([], all_value=variable.get("allValue") or ".*")
            continue
        selector, label = parse_label_values(variable_query(variable))
        match = substitute(selector, values, time) if selector else None
        options = api.label_values(label, match, start, end)
        # With no options Grafana leaves the variable empty: the panels then show no data, as here.
        values[name] = format_value(options[:1]) if options else ""
    return values
