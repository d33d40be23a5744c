"""Check the internal links of the built site: every relative ``href``/``src`` names a file of
the build, and every ``#anchor`` an ``id`` of its page.

External links (``http(s)://``, ``mailto:``) cannot be checked offline and are skipped; so are
the search page's ``javascript:`` links. Usage, after the HTML build::

    python docs/_ext/check_links.py docs/_build/html

Exits 1 and lists each broken link (page, link) when there is one.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SKIPPED_SCHEMES = {"http", "https", "mailto", "javascript", "data", "ftp"}


class _Page(HTMLParser):
    """The ids and the link targets of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key) and (key == "id" or tag == "a"):
                self.ids.add(str(values[key]))
        for key in ("href", "src"):
            if values.get(key) and not (tag == "link" and values.get("rel") == "preconnect"):
                self.links.append(str(values[key]))


def parse(path: Path, cache: dict[Path, _Page]) -> _Page:
    if path not in cache:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def broken_links(root: Path) -> list[tuple[str, str]]:
    """``(page, link)`` of every internal link of ``root``'s pages whose target is missing."""
    root = root.resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} holds no index.html: build the site first")
    cache: dict[Path, _Page] = {}
    broken = []
    for page_path in sorted(root.rglob("*.html")):
        for link in parse(page_path, cache).links:
            parts = urlsplit(link)
            if parts.scheme in SKIPPED_SCHEMES or parts.netloc:
                continue
            target = (page_path.parent / unquote(parts.path)).resolve() if parts.path else page_path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or not target.is_relative_to(root):
                broken.append((str(page_path.relative_to(root)), link))
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in parse(target, cache).ids:
                    broken.append((str(page_path.relative_to(root)), link))
    return broken


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/_ext/check_links.py BUILD_HTML_DIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    broken = broken_links(root)
    n_pages = sum(1 for _ in root.rglob("*.html"))
    for page, link in broken:
        print(f"broken internal link in {page}: {link}")
    print(f"internal links: {len(broken)} broken in {n_pages} pages")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
