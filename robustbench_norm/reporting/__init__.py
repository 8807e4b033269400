"""Reporting: everything that reads a finished store — leaderboards, claims, plots, the HTML
page, and the regression gate (``check``) that compares two runs."""
