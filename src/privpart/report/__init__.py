"""The audit report: HTML (Jinja2) + figures (matplotlib), rendered from results.json only."""

from privpart.report.render import render_report

__all__ = ["render_report"]
