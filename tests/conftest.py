"""Suite-wide configuration. Shared fixtures live in tests/fixtures/ (one module per real part)."""

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.exporter",
    "tests.fixtures.prom",
    "tests.fixtures.stack",
]
