"""The one-file HTML report opened in a real headless browser (Debian's Chromium, installed by
``.ci/run``): its script runs offline (nothing is fetched: ``file://`` and a closed network), every
table becomes sortable, the plotly charts are drawn, a filter in the address's fragment hides the
other tasks' rows, and a screenshot of the page is kept as a test artefact
(``$EQUIBENCH_ARTIFACTS``, default ``test-artifacts/``) for a reviewer to look at.

Chromium is located at ``$CHROMIUM`` or ``/usr/bin/chromium``; without it the test fails (it is no
optional extra: CI installs it), unless ``EQUIBENCH_NO_BROWSER=1`` says on purpose that this machine
has no browser.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.cli import main as cli_main
from tests.support.report_stores import build_store

REPO = Path(__file__).resolve().parents[1]
#: flags a root, sandboxed, offline machine needs (see the module docstring): no GPU, no sandbox,
#: none of Chromium's background connections
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=8000")


def _chromium() -> str:
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        if os.environ.get("EQUIBENCH_NO_BROWSER") == "1":
            pytest.skip("EQUIBENCH_NO_BROWSER=1: this machine has no browser")
        pytest.fail(f"Chromium not found at {exe}: install Debian's chromium (.ci/run does) or set $CHROMIUM")
    return exe


def _browse(exe: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    store_dir = build_store(root / "store")
    out = root / "out"
    assert cli_main(["report", "--store", str(store_dir), "--format", "html", "--figures", "--out", str(out)]) == 0
    return out / "report.html"


def test_report_runs_in_headless_chromium(page, tmp_path):
    exe = _chromium()
    dom = _browse(exe, tmp_path / "p1", page.as_uri(), "--dump-dom").stdout
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-eb-ready="1"' in root, root  # the page's script ran to its end
    charts = int(re.search(r'data-eb-charts="(\d+)"', root).group(1))
    assert charts >= 1 and dom.count('class="main-svg"') >= charts  # plotly (embedded) drew its charts
    tables = dom.count('class="eb-table')
    assert tables >= 1 and dom.count('data-eb-sortable="1"') == tables
    assert "<img" in dom and "data:image/png;base64," in dom  # the figures are embedded, not linked


def test_fragment_filter_hides_other_tasks(page, tmp_path):
    exe = _chromium()
    dom = _browse(exe, tmp_path / "p2", page.as_uri() + "#task=Gaussian%20deblur", "--dump-dom").stdout
    rows = re.findall(r'<tr[^>]*data-task="([^"]+)"[^>]*>', dom)
    tags = re.findall(r'<tr[^>]*data-task="[^"]+"[^>]*>', dom)
    assert {"Box inpainting", "Gaussian deblur"} <= set(rows)
    for task, tag in zip(rows, tags):
        assert ("f-hide" in tag) == (task != "Gaussian deblur"), tag


def test_screenshot_is_kept_as_an_artefact(page, tmp_path):
    exe = _chromium()
    artefacts = Path(os.environ.get("EQUIBENCH_ARTIFACTS", REPO / "test-artifacts"))
    artefacts.mkdir(parents=True, exist_ok=True)
    shot = artefacts / "report-html.png"
    shot.unlink(missing_ok=True)
    _browse(exe, tmp_path / "p3", page.as_uri(), f"--screenshot={shot}", "--window-size=1400,1000")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
