"""Grafana dashboards as code: `make dashboards` (python -m grafana.build)."""
