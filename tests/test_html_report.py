"""The self-contained HTML report: structure and escaping without a browser, then rendering
in headless Chromium.

The browser tests use ``chromium`` from PATH. If it is missing they install the Debian
packages ``chromium`` and ``chromium-driver`` with apt-get (about 110 MB, ~20 s on the
project's machine; needs root), unless ``ARBENCH_NO_BROWSER_INSTALL=1``. When that is
impossible they skip with the reason, or fail under ``ARBENCH_REQUIRE_BROWSER=1``
(set by ``tox -e report``).
"""
from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.cli import main
from bench.leaderboard import DEFAULT_METRICS
from bench.reports.page import render_report, write_report
from bench.reports.plots import top_estimators
from tests.report_fixtures import synthetic_metrics, without_plots_data

LEADERBOARD_ORDER = ["gate_a", "gate_b", "gate_c", "flare", "never", "always", "ideal"]


class PageParser(HTMLParser):
    """Collects images, the leaderboard's body rows, text, and the <body> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.leaderboard_rows: list[dict] = []
        self.body: dict = {}
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self._in_leaderboard = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(attributes)
        elif tag == "body":
            self.body = attributes
        elif tag == "table":
            self._in_leaderboard = attributes.get("id") == "leaderboard"
        elif tag == "tr" and self._in_leaderboard and "data-method" in attributes:
            self.leaderboard_rows.append(attributes)

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_leaderboard = False

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def png_size(data_uri: str) -> tuple[int, int]:
    """Width and height from the PNG header of a base64 data URI."""
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    raw = base64.b64decode(data_uri[len(prefix):], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_page_is_self_contained_with_one_figure_pair_per_dataset():
    from bench.reports.plots import matplotlib_available

    assert matplotlib_available(), "the report's figures need matplotlib installed"
    page = render_report(synthetic_metrics(), {"run_name": "fixture", "model": "smollm2"})
    parsed = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert parsed.tags["style"] == 1 and parsed.tags["script"] == 1
    # Nothing to fetch: no external scripts, styles, links or URLs.
    for needle in ("http://", "https://", "<link", "@import", "src=\"//"):
        assert needle not in page, needle
    # Two datasets x (operating curve + reliability diagram), datasets by name (the fixture
    # lists nq first: the order a run visited them must not matter).
    assert [image["alt"] for image in parsed.images] == [
        "hotpotqa operating curves", "hotpotqa reliability diagram",
        "nq operating curves", "nq reliability diagram"]
    # 7.6 x 4.2 and 6.6 x 4.2 inches at 100 dpi.
    assert [png_size(image["src"]) for image in parsed.images] == [(760, 420), (660, 420)] * 2
    assert [row["data-method"] for row in parsed.leaderboard_rows] == LEADERBOARD_ORDER
    assert [row["class"] for row in parsed.leaderboard_rows] == ["gate"] * 3 + ["pipeline"] + [
        "reference"] * 3
    # The unrounded RRF is the sort key; the cell shows 5 decimals. gate_a: 1/61 + 1/63.
    assert f'<td data-value="{1 / 61 + 1 / 63!r}">0.03227</td>' in page
    assert "arbench report: fixture" in page and "model smollm2" in page
    assert "no curve" not in page


def test_old_run_without_curves_renders_and_says_so():
    page = render_report(without_plots_data(synthetic_metrics()))
    parsed = parse(page)
    assert parsed.images == []
    text = " ".join(parsed.text)
    assert "nq: no curve" in text and "hotpotqa: no curve" in text
    assert "nq: no reliability diagram" in text
    assert len(parsed.leaderboard_rows) == 7


def test_without_matplotlib_the_page_says_so(monkeypatch):
    from bench.reports import plots

    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)
    parsed = parse(render_report(synthetic_metrics()))
    assert parsed.images == [] and len(parsed.leaderboard_rows) == 7
    assert "Plots need matplotlib (pip install matplotlib)." in parsed.text


def test_every_name_is_escaped():
    metrics = synthetic_metrics()
    for result in metrics["datasets"].values():
        result["rows"]["<b>flare&co</b>"] = result["rows"].pop("flare")
    metrics["datasets"]['n"q<x>'] = metrics["datasets"].pop("nq")
    page = render_report(metrics, {"run_name": "<script>alert(1)</script>"})
    assert "<b>flare" not in page and "<script>alert" not in page and 'n"q<x>' not in page
    assert "&lt;b&gt;flare&amp;co&lt;/b&gt;" in page
    assert "n&quot;q&lt;x&gt; operating curves" in page
    parsed = parse(page)
    assert parsed.tags["script"] == 1
    assert "<b>flare&co</b>" in [row["data-method"] for row in parsed.leaderboard_rows]


def test_top_estimators_by_roc_auc_undefined_last():
    result = {"rows": {"a": {"roc_auc": 0.6}, "b": {"roc_auc": 0.9}, "c": {"roc_auc": None},
                       "d": {"roc_auc": 0.7}, "e": {}}}
    assert top_estimators(result, ["a", "b", "c", "d", "e"], limit=3) == ["b", "d", "a"]
    assert top_estimators(result, ["c", "e", "a"], limit=8) == ["a", "c", "e"]


def test_same_input_same_bytes(tmp_path):
    first = write_report(tmp_path / "one", synthetic_metrics()).read_bytes()
    assert write_report(tmp_path / "two", synthetic_metrics()).read_bytes() == first


def test_leaderboard_command_writes_all_four_files(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(__import__("json").dumps(synthetic_metrics()))
    out = tmp_path / "out"
    assert main(["leaderboard", str(run), "--out", str(out), "--metric", "roc_auc", "lmc"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "leaderboard.csv", "leaderboard.json", "leaderboard.md", "report.html"]
    # Ordered by ROC-AUC RRF now: gate_a 2/61 > gate_b 1/62 + 1/61 > gate_c 2/63 > flare 1/64.
    assert [row["data-method"] for row in parse(
        (out / "report.html").read_text()).leaderboard_rows][:4] == [
        "gate_a", "gate_b", "gate_c", "flare"]
    assert "Ordered by RRF of ROC-AUC" in printed


# --- headless Chromium -------------------------------------------------------------------

def _unavailable(reason: str):
    if os.environ.get("ARBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _install_chromium() -> None:
    command = ["apt-get", "install", "-y", "--no-install-recommends", "chromium",
               "chromium-driver"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:  # a fresh container may have no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        _unavailable(f"apt-get install chromium failed: {tail[0]}")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("ARBENCH_NO_BROWSER_INSTALL") == "1":
        _unavailable("chromium not on PATH and ARBENCH_NO_BROWSER_INSTALL=1")
    if not shutil.which("apt-get") or os.geteuid() != 0:
        _unavailable("chromium not on PATH; installing it needs root and apt-get "
                     "(tox -e report does it)")
    _install_chromium()
    found = shutil.which("chromium")
    if not found:
        _unavailable("chromium installed but not on PATH")
    return found


def dump_dom(chromium: str, page: Path, query: str, profile: Path) -> dict:
    """Load the page headless, let its scripts run, and return <body>'s attributes."""
    command = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
               page.resolve().as_uri() + query]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return parse(done.stdout).body


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    # generate_calls joins the metrics so a column holds numbers of different widths.
    folder = tmp_path_factory.mktemp("report")
    return write_report(folder, synthetic_metrics(),
                        metric_names=(*DEFAULT_METRICS, "generate_calls"))


@pytest.mark.parametrize("query, sorted_by, first", [
    ("", "none", "gate_a"),
    ("?sort=rrf_lmc", "rrf_lmc desc", "gate_b"),            # 2/61, the highest LMC RRF
    # Numeric, not text order: mean generate calls gate_b 11.7 > flare 6.25 (text: "6.25").
    ("?sort=mean_generate_calls&dir=desc", "mean_generate_calls desc", "gate_b"),
    ("?sort=method&dir=asc", "method asc", "always"),
])
def test_report_renders_in_headless_chromium(chromium, report_file, tmp_path, query, sorted_by,
                                             first):
    images = report_file.read_text().count("<img ")
    assert images == 4
    body = dump_dom(chromium, report_file, query, tmp_path / "profile")
    assert body.get("data-render-check") == f"ok images={images}/{images} rows=7"
    assert body.get("data-sorted") == sorted_by
    assert body.get("data-first-row") == first


def test_chromium_check_reports_a_broken_image_and_a_page_without_plots(chromium, tmp_path):
    page = render_report(synthetic_metrics()).replace(
        "<script>", '<img src="data:image/png;base64,AAAA" alt="broken"><script>', 1)
    broken = tmp_path / "broken.html"
    broken.write_text(page)
    body = dump_dom(chromium, broken, "", tmp_path / "profile")
    assert body.get("data-render-check") == "fail images=4/5 rows=7"

    older = write_report(tmp_path / "older", without_plots_data(synthetic_metrics()))
    body = dump_dom(chromium, older, "", tmp_path / "profile2")
    assert body.get("data-render-check") == "ok images=0/0 rows=7"
