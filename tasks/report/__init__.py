"""The nightly report: the window's history, drift statistics, charts and the HTML page."""
