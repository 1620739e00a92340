"""`q3cn-doctor report FILE.html`: one self-contained page, rendered in a real headless
Chromium (Debian's package) and checked for what a person sees: the ledger at the top,
painted, and the problems, the plan and the facts below it."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from conftest import run_cli
from headless_chromium import Chromium, find_chromium
from launch_fixtures import guide_machine_as_found

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium to render with: `apt-get install -y chromium` "
                             "(Debian; .ci/run installs it where apt-get can)")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[str, dict]:
    """The guide machine's page, and its JSON document for comparison."""
    folder = tmp_path_factory.mktemp("html")
    guide = str(guide_machine_as_found(folder / "snapshot"))
    path = folder / "report.html"
    done = run_cli("report", str(path), "--snapshot", guide)
    assert done.returncode == 0 and f"Report written to {path}." in done.stderr, done.stderr
    document = json.loads(run_cli("check", "--snapshot", guide, "--json").stdout)
    return str(path), document


def test_the_page_is_self_contained(page):
    html = Path(page[0]).read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for external in ("<script", "<link", "<img", "<iframe", "src=", "url(", "@import",
                     "http://", "https://"):
        assert external not in html, external
    assert "<style>" in html


def test_check_html_writes_the_same_page_beside_the_text(page, tmp_path):
    guide = str(guide_machine_as_found(tmp_path / "snapshot"))
    path = tmp_path / "check.html"
    done = run_cli("check", "--snapshot", guide, "--html", str(path))
    assert done.returncode == 1 and " here: ~" in done.stdout  # the text report as ever
    assert 'id="ledger"' in path.read_text()


def test_an_unwritable_path_is_a_clear_error(tmp_path):
    guide = str(guide_machine_as_found(tmp_path / "snapshot"))
    done = run_cli("report", str(tmp_path / "no" / "such" / "r.html"), "--snapshot", guide)
    assert done.returncode == 1 and "cannot write" in done.stderr
    assert "Traceback" not in done.stderr


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@needs_chromium
@pytest.mark.slow  # starts a real headless Chromium
def test_chromium_renders_the_ledger_first(page, tmp_path):
    path, document = page
    with Chromium(CHROMIUM) as browser:
        browser.open("file://" + path)
        seen = browser.evaluate("""(() => {
            const ledger = document.getElementById('ledger');
            const box = ledger.getBoundingClientRect();
            const style = getComputedStyle(ledger);
            return {ledger: ledger.innerText, top: box.top, left: box.left,
                    width: box.width, height: box.height, viewport: innerHeight,
                    hidden: style.visibility !== 'visible' || style.display === 'none',
                    headings: [...document.querySelectorAll('h2')].map(h => h.innerText),
                    problems: [...document.querySelectorAll('article code')]
                        .map(c => c.innerText),
                    text: document.body.innerText};
        })()""")
        full = browser.screenshot()
        clip = {key: seen[key] for key in ("left", "top", "width", "height")}
        clip = {"x": clip["left"], "y": clip["top"], "width": clip["width"],
                "height": clip["height"]}
        painted = browser.screenshot(clip)
        browser.evaluate("document.getElementById('ledger').style.color = 'transparent'")
        blank = browser.screenshot(clip)
    (tmp_path / "report.png").write_bytes(full)  # to look at when it fails
    # What a person sees: the ledger's words, at the top of the first screen, painted.
    assert seen["ledger"] == document["ledger"]["text"]
    assert re.match(r"Qwen3-Coder-Next \(80B-A3B\) MXFP4 here: ~\d+ tok/s now -> ", seen["ledger"])
    assert not seen["hidden"] and seen["height"] > 10 and seen["width"] > 300
    assert seen["top"] + seen["height"] < seen["viewport"] / 2  # no scrolling to find it
    assert painted != blank  # its text is drawn: hiding the glyphs changes the pixels
    width, height = png_size(full)
    assert width == 1280 and height >= seen["viewport"] > 500
    # Below it: the problems by cost, the plan with the steps by hand, the facts.
    problems = [f["id"] for f in document["findings"] if f["status"] in ("fail", "warn")]
    assert seen["problems"][:2] == ["gpu.cuda", "memory.speed"]
    assert set(problems) <= set(seen["problems"])
    assert any(h.startswith("Problems, costliest first") for h in seen["headings"])
    assert "The fix plan" in seen["headings"] and "Facts" in seen["headings"]
    assert "Steps by hand:" in seen["text"] and "NVIDIA driver 580 or newer" in seen["text"]
