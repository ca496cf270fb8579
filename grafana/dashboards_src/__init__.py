"""One module per dashboard; each exposes `build() -> Dashboard` (grafana_foundation_sdk model)."""
