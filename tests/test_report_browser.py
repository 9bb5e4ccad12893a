"""The HTML report in a real browser: headless Chromium opens index.html from disk (file://),
loads nothing from anywhere else, logs no error, shows every plot; the screenshot is kept under
tests/artifacts/ (gitignored) for a human to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from cdp import ensure_chromium, open_page
from emergence import Emergence
from report_checks import assert_png

import evalkit

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
TINY_CHAT = ROOT / "examples" / "checkpoints" / "tiny-chat"


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def report(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two fast runs, so the page has single-run and multi-run sections (forest, trajectory)."""
    tmp = tmp_path_factory.mktemp("report-browser")
    runs = [
        evalkit.score(
            ckpt,
            tasks=["smoke_arith_mc", "smoke_prose_bpb", "multilingual_number_words_mc"],
            limit=24,
            out=tmp / "runs" / name,
            cache_dir=tmp / "cache",
            progress=False,
            device="cpu",
        ).path
        for name, ckpt in (("base", tiny_base), ("chat", TINY_CHAT))
    ]
    files = evalkit.make_report(*runs, out=tmp / "report", resamples=200)
    assert len(files.plots) >= 5
    return Path(files.index)


def test_report_opens_offline_in_chromium_without_errors(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    page = open_page(
        chromium,
        report.resolve().as_uri(),
        tmp_path / "profile",
        expressions={
            "images": "document.images.length",
            "decoded": "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
            "sections": "document.querySelectorAll('section').length",
            "tables": "document.querySelectorAll('table').length",
            "title": "document.title",
        },
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_index.png"
    shot.write_bytes(page.screenshot)
    print(f"screenshot: {shot}")
    assert not page.problems, page.problems
    # Only the page itself and its embedded images: nothing over a network.
    assert page.requests and all(u.startswith(("file://", "data:")) for u in page.requests), (
        page.requests
    )
    html = report.read_text(encoding="utf-8")
    assert page.evaluated["images"] == html.count("<img ") >= 5
    assert page.evaluated["decoded"] is True
    assert page.evaluated["sections"] == html.count("<section ") >= 8
    assert page.evaluated["tables"] == html.count("<table>")
    assert page.evaluated["title"].startswith("evalkit report")
    width, height = assert_png(shot)
    assert width == 1200 and height > 2000  # the whole page, not just the first screen


def test_the_browser_check_catches_what_it_must(chromium: str, tmp_path: Path) -> None:
    """The driver is not blind: a missing file, a console error and an uncaught exception are
    all reported, and a non-file request is visible."""
    page_file = tmp_path / "bad.html"
    page_file.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="missing.png"><script>console.error("boom"); undefined_fn();</script>'
        "</body></html>"
    )
    page = open_page(chromium, page_file.as_uri(), tmp_path / "profile", expressions={})
    text = " ".join(page.problems)
    assert page.failed, page.problems
    assert "console.error: boom" in text
    assert page.exceptions
    assert any(u.endswith("missing.png") for u in page.requests)


def test_emergence_report_shows_the_change_in_chromium(
    chromium: str, emergence: Emergence, tmp_path: Path
) -> None:
    """The report over the induction-control sweep (tests/emergence.py): the task trajectory
    against tokens seen and the sentence placing the change are on the rendered page; the
    whole page and the section alone are kept as screenshots."""
    index = emergence.report / "index.html"
    page = open_page(
        chromium,
        index.resolve().as_uri(),
        tmp_path / "profile",
        expressions={
            "plot": "Array.from(document.querySelectorAll('#changes img')).filter(i => "
            "i.alt.includes('copy_acc trajectories against training tokens seen') && "
            "i.complete && i.naturalWidth > 0).length",
            "text": "document.querySelector('#changes').innerText",
        },
        clip="#changes",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_emergence.png"
    shot.write_bytes(page.screenshot)
    section = ARTIFACTS / "report_emergence_changes.png"
    section.write_bytes(page.clipped)
    print(f"screenshots: {shot}, {section}")
    assert not page.problems, page.problems
    assert page.evaluated["plot"] == 1
    text = page.evaluated["text"]
    assert "Largest change in icl_induction copy_acc: between step-00350" in text, text
    assert "and step-00450" in text and "are disjoint" in text, text
    # the few-shot lookup curve's slope appears at the same place (tests/test_controls_induction)
    assert any(
        "icl_fewshot_lookup" in row and "slope_log2k" in row and "step-00350 → step-00450" in row
        for row in text.splitlines()
    ), text
    assert assert_png(shot)[1] > 2000
    width, height = assert_png(section)
    assert width > 600 and height > 400  # the section with its plot, not an empty box
