"""Render a `snakemake --report` HTML file in headless Chromium: its DOM after the scripts ran, and a screenshot.

The report is a React single-page app. At load its sidebar lists only the result *categories* (and the
rule graph); the results appear after a click, and a labelled category lists label values (model, mix, ...),
not file names. The report has no URL navigation, so to render an inner page we append a script to a copy of
the file that calls the app's own `app.setView(...)` once it has mounted (see `SHOW_ALL_RESULTS`).
The list of every result is also embedded as JSON (`var results = {...}`): `report_data` reads it without a
browser. Standard library only; Chromium is found on PATH (Debian: `apt-get install chromium`).
"""

import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", "--mute-audio"]  # fmt: skip

# Lists every result by its path in the sidebar (a search matching everything; labels are dropped so that the
# rows show paths, and no toggle hides half of them). Prepend `var SHOW = "<result path>";` to also display it.
SHOW_ALL_RESULTS = """
for (const p in results) { results[p].labels = null; }
const view = {navbarMode: "searchresults", searchTerm: "re:."};
if (typeof SHOW !== "undefined") {
  Object.assign(view, {content: "img", contentPath: results[SHOW].data_uri, resultPath: SHOW});
}
app.setView(view);
"""


def find_chromium() -> str | None:
    """The first Chromium/Chrome executable on PATH, or None."""
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def report_data(html_path) -> dict:
    """The report's embedded `results` ({path: {labels, mime_type, data_uri, ...}}) and `categories`
    ({category: {subcategory: [path, ...]}}), parsed from the HTML without a browser."""
    text = Path(html_path).read_text(encoding="utf-8")
    data = {}
    for name in ("results", "categories"):
        m = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', text, flags=re.S)
        if m is None:
            raise ValueError(f"{html_path}: no embedded `{name}` (not a Snakemake report?)")
        data[name] = json.loads(m[1])
    return data


def visible_text(dom: str) -> str:
    """The text of the app (`<div id="app">`) in a dumped DOM, whitespace collapsed, entities decoded."""
    app = dom[dom.find('<div id="app"') :]
    app = re.sub(r"<(script|style)\b.*?</\1>", " ", app, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", app))).strip()


def _with_script(html_path, script: str, tmpdir: str) -> Path:
    """A copy of the report that runs `script` once the app has mounted (global `app` is set)."""
    text = Path(html_path).read_text(encoding="utf-8")
    hook = ('<script>window.addEventListener("load", function () { (function go() {\n'
            'if (typeof app === "undefined" || !app) { return setTimeout(go, 20); }\n'
            f"{script}\n}})(); }});</script>\n")  # fmt: skip
    end = text.rfind("</body>")
    copy = Path(tmpdir) / "report.html"
    copy.write_text(text[:end] + hook + text[end:], encoding="utf-8")
    return copy


def _chromium(html_path, args, chromium, script, budget_ms, timeout) -> str:
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(f"no Chromium on PATH (looked for {', '.join(NAMES)})")
    with tempfile.TemporaryDirectory(prefix="report_check_") as tmp:
        page = _with_script(html_path, script, tmp) if script else Path(html_path)
        cmd = [chromium, *FLAGS, f"--user-data-dir={tmp}/profile", f"--virtual-time-budget={budget_ms}", *args,
               page.resolve().as_uri()]  # fmt: skip
        # own session, so that a timeout kills Chromium's helper processes too
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
        return out


def rendered_dom(html_path, chromium=None, *, script=None, budget_ms=10_000, timeout=120) -> str:
    """The report's DOM after its scripts ran (`--dump-dom`); `script` (JS) runs first, e.g. SHOW_ALL_RESULTS."""
    return _chromium(html_path, ["--dump-dom"], chromium, script, budget_ms, timeout)


def screenshot(html_path, png_path, chromium=None, *, script=None, size=(1400, 1000), budget_ms=10_000,
               timeout=120) -> Path:  # fmt: skip
    """Saves a PNG of the rendered report (the page shown at load, or after `script`) and returns its path."""
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    _chromium(html_path, [f"--screenshot={png_path}", f"--window-size={size[0]},{size[1]}"], chromium, script,
              budget_ms, timeout)  # fmt: skip
    if not png_path.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot to {png_path}")
    return png_path


if __name__ == "__main__":  # python tests/report_check.py report.html [shot.png]
    import sys

    data = report_data(sys.argv[1])
    print(visible_text(rendered_dom(sys.argv[1], script=SHOW_ALL_RESULTS)))
    print(f"{len(data['results'])} results in {sorted(data['categories'])}")
    if len(sys.argv) > 2:
        print(screenshot(sys.argv[1], sys.argv[2]))
