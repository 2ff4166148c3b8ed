"""Turnout's API, dashboard and ping: internal services answered by Turnout itself."""
