"""`dydx-exporter top`: a live terminal view of one exporter, read from its /metrics and /readyz.

`client` reaches the exporter, `stats` turns scrapes into rates and quantiles (the only place that does),
`frame` decides what one refresh shows, `layout` draws it with Rich, `app` is the command and its loop.
"""
