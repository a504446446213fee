"""Self-contained HTML report of a run: leaderboard table, operating curves, reliability.

``bench.reports.page.write_report`` writes ``report.html``; ``bench.reports.plots``
draws the figures with matplotlib; ``bench.reports.assets`` holds the inline
CSS and JavaScript.
"""
