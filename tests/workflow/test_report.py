"""`snakemake --report` on the tiny config: the report opens in headless Chromium and lists every figure."""

import re
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from report_check import SHOW_ALL_RESULTS, find_chromium, rendered_dom, report_data, screenshot, visible_text
from snakerun import snakemake

REPO = Path(__file__).resolve().parents[2]


def registered_patterns() -> list[str]:
    """Output paths wrapped in report(...) in the rules, wildcards as glob stars (results/models/*/*/seed*/loss.png)."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")) + [REPO / "Snakefile"]:
        found += re.findall(r"""\breport\(\s*f?["']([^"']+)["']""", smk.read_text())
    return [re.sub(r"\{+[^{}]+\}+", "*", p) for p in found]


def expected_results(workdir: Path) -> set[str]:
    """What the report must list: every figure the run made, everything under results/summary/, and every file
    matching a report() registration. Independent of the registrations for the first two, so that a figure
    whose rule forgets report() fails the test."""
    results = workdir / "results"
    files = {p for p in results.rglob("*.png")} | {p for p in (results / "summary").rglob("*") if p.is_file()}
    for pattern in registered_patterns():
        files |= set(workdir.glob(pattern))
    return {p.relative_to(workdir).as_posix() for p in files}


@pytest.mark.e2e
def test_report_renders_in_chromium_and_lists_every_figure(tiny_run, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); the report cannot be rendered")
    workdir, config = tiny_run
    res = snakemake(workdir, "--report", str(tmp_path / "report.html"), config=config)
    assert res.returncode == 0, res.stderr[-5000:]
    check_report(workdir, tmp_path / "report.html", tmp_path / "report.png", chromium)


def check_report(workdir: Path, html: Path, png_path: Path, chromium: str):
    """The asserts, on a finished run in `workdir` and its report `html`; saves a screenshot to `png_path`."""
    # the embedded data lists exactly the files the run made for the report
    expected = expected_results(workdir)
    data = report_data(html)
    listed = set(data["results"])
    assert {"results/summary/reconstruction_accuracy.png", "results/summary/reconstruction_accuracy.tsv",
            "results/models/ldvae/blood_only/seed0/loss.png", "results/qc/blood.qc.png"} <= expected  # fmt: skip
    assert not expected - listed, f"made by the run but missing from the report: {sorted(expected - listed)}"
    assert not listed - expected, f"in the report but not made by the run: {sorted(listed - expected)}"
    categories = data["categories"]
    assert {"Training", "Reconstruction accuracy", "QC"} <= set(categories)
    assert {"ldvae", "cvae"} <= set(categories["Training"])  # subcategory="{model}"
    assert {p for subs in categories.values() for paths in subs.values() for p in paths} == listed

    # at load the app has mounted and its sidebar lists the categories (results only appear after a click)
    text = visible_text(rendered_dom(html, chromium))
    assert text.startswith("Snakemake Report") and "Workflow" in text
    for category in categories:
        assert category in text, f"category {category!r} not rendered: {text[:500]}"

    # the rendered list of all results names every file
    text = visible_text(rendered_dom(html, chromium, script=SHOW_ALL_RESULTS))
    assert "Search results" in text, f"the results list did not open: {text[:500]}"
    missing = sorted(p for p in listed if p not in text)
    assert not missing, f"not rendered in the results list: {missing}"

    # a screenshot of the results list with the heatmap open: a real picture, not a blank page
    shown = "results/summary/reconstruction_accuracy.png"
    png = screenshot(html, png_path, chromium, script=f"var SHOW = {shown!r};" + SHOW_ALL_RESULTS)
    assert png.stat().st_size > 30_000
    img = mpimg.imread(png)
    assert img.shape[:2] == (1000, 1400) and img[..., :3].std() > 0.1
    # the heatmap is shown right of the sidebar: many saturated pixels (the page at load has a few coloured dots)
    content = img[200:800, 600:, :3]
    assert ((content.max(axis=-1) - content.min(axis=-1)) > 0.3).mean() > 0.05
