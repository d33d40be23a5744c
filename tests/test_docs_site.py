"""The documentation site: its API reference covers the packages, and the built site renders.

The cheap tests always run: ``docs/conf.py``'s ``API_SECTIONS`` lists each package's ``__all__``
exactly (so the reference cannot drift from the code), the results figures draw, the link
checker finds broken links. The browser test is ``slow``: it builds the site once (a few minutes:
the notebooks execute), or reads the build named by ``RECGYM_DOCS_HTML`` (``.ci/run`` builds it
first), then opens pages in headless Chromium and checks that they render and every ``<img>``
loads. It skips, saying why, where Chromium or Sphinx is missing.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
PACKAGES = ("recgym", "rewards", "agents")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BUILD_TIMEOUT_S = 1800
CHECK_ID = "recgym-docs-check"
# Run in the page after load: what rendered, and every image's natural size.
CHECK_SCRIPT = f"""<script>
window.addEventListener("load", () => setTimeout(() => {{
  const main = document.querySelector("article") || document.body;
  const result = {{
    title: document.title,
    text: main.innerText.length,
    styles: [...document.styleSheets].filter(s => s.href).length,
    images: [...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]),
    body: document.body.innerText,
  }};
  const out = document.createElement("pre");
  out.id = "{CHECK_ID}";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
}}, 200));
</script>"""


def api_sections() -> dict[str, list[tuple[str, list[str]]]]:
    """``API_SECTIONS`` of docs/conf.py, read without executing conf.py (it sets env vars)."""
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "API_SECTIONS" for t in targets):
                return ast.literal_eval(node.value)
    raise AssertionError("docs/conf.py defines no API_SECTIONS")


@pytest.mark.parametrize("package", PACKAGES)
def test_api_sections_cover_each_packages_all(package):
    sections = api_sections()
    listed = [name for _, names in sections[package] for name in names]
    exported = importlib.import_module(package).__all__
    duplicated = sorted({name for name in listed if listed.count(name) > 1})
    missing = sorted(set(exported) - set(listed))
    extra = sorted(set(listed) - set(exported))
    assert not (duplicated or missing or extra), (
        f"docs/conf.py API_SECTIONS[{package!r}] drifted from {package}.__all__: "
        f"missing {missing}, not exported {extra}, listed twice {duplicated}"
    )


def test_api_pages_document_every_name(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        recgym_docs = importlib.import_module("recgym_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    sections = api_sections()
    recgym_docs.write_api_pages(tmp_path, sections)
    for package, package_sections in sections.items():
        page = (tmp_path / "api" / f"{package}.md").read_text(encoding="utf-8")
        for _, names in package_sections:
            for name in names:
                assert re.search(rf"^   {name}$|`{package}\.{name}`", page, re.M), (package, name)


def test_results_figures_draw(tmp_path):
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        results_figures = importlib.import_module("results_figures")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    drawn = results_figures.draw_all(DOCS, tmp_path)
    assert len(drawn) >= 6
    assert all(path.stat().st_size > 10_000 for path in drawn), drawn
    assert results_figures.draw_all(DOCS, tmp_path) == []  # up to date: nothing redrawn


def test_link_checker_finds_broken_links(tmp_path):
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        check_links = importlib.import_module("check_links")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    (tmp_path / "a").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="a/b.html#x">ok</a><a href="a/b.html#nope">bad anchor</a>'
        '<img src="missing.png"><a href="https://example.org/">external</a><p id="top"></p>'
        '<a href="#top">self</a>'
    )
    (tmp_path / "a" / "b.html").write_text('<h1 id="x">b</h1><a href="../index.html">up</a>')
    assert check_links.broken_links(tmp_path) == [
        ("index.html", "a/b.html#nope"),
        ("index.html", "missing.png"),
    ]


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def site() -> Path:
    """The built site: ``$RECGYM_DOCS_HTML``, else built once into a fresh folder."""
    if find_browser() is None:
        pytest.skip("no headless browser: install Debian's chromium (apt-get install chromium)")
    if os.environ.get("RECGYM_DOCS_HTML"):
        html = Path(os.environ["RECGYM_DOCS_HTML"]).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(f"RECGYM_DOCS_HTML={html} holds no index.html", pytrace=False)
        return html
    for module in ("sphinx", "myst_nb"):
        pytest.importorskip(module, reason="no docs extra: pip install -e .[docs]")
    html = DOCS / "_build" / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(html)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    if done.returncode:
        pytest.fail(f"docs build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return html


def open_page(site: Path, page: str) -> dict:
    """Load ``page`` in headless Chromium with CHECK_SCRIPT; what the script measured."""
    source = site / page
    assert source.is_file(), f"{page} is not in the build"
    # A copy beside the page (same relative links), with the check script appended.
    probe = source.with_name(f".{source.stem}.check.html")
    probe.write_text(source.read_text(encoding="utf-8") + CHECK_SCRIPT, encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    command = [find_browser(), *flags, "--virtual-time-budget=15000", "--dump-dom"]
    try:
        done = subprocess.run(
            [*command, probe.as_uri()], capture_output=True, text=True, timeout=120
        )
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(rf'<pre id="{CHECK_ID}">(.*?)</pre>', done.stdout, re.S)
    assert found, f"{page}: the check script did not run (browser said: {done.stderr[-2000:]})"
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(text.replace("&amp;", "&"))


def assert_renders(result: dict, page: str, min_images: int) -> None:
    assert result["title"] and result["text"] > 500, f"{page} rendered almost nothing: {result}"
    assert result["styles"] >= 2, f"{page}: stylesheets did not load ({result['styles']})"
    broken = [src for src, complete, width in result["images"] if not (complete and width > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"
    assert len(result["images"]) >= min_images, f"{page}: {len(result['images'])} images"


@pytest.mark.slow
def test_front_page_renders_with_every_image(site):
    assert_renders(open_page(site, "index.html"), "index.html", min_images=0)
    figures = open_page(site, "results_figures.html")
    assert_renders(figures, "results_figures.html", min_images=7)


@pytest.mark.slow
def test_notebook_page_renders_with_its_figures(site):
    result = open_page(site, "notebooks/03_imitation.html")
    assert_renders(result, "notebooks/03_imitation.html", min_images=2)  # executed: plots


@pytest.mark.slow
@pytest.mark.parametrize(
    ("page", "name"),
    [("recgym", "BatchedRecEnv"), ("rewards", "RewardModel"), ("agents", "AdversarialTrainer")],
)
def test_api_page_lists_the_core_classes(site, page, name):
    result = open_page(site, f"api/{page}.html")
    assert name in result["body"], f"api/{page}.html does not list {name}"
