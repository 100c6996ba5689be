"""The dashboard's shipped files: every listed asset exists in the package, the page loads
only those, nothing points at another origin (no CDN), and no script builds HTML from
strings (values from the API are inserted as text only)."""

from __future__ import annotations

import re
from importlib import resources

from gateway.dashboard import STATIC_FILES

STATIC = resources.files("gateway.dashboard") / "static"
HTML_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function"
)


def test_every_listed_asset_ships_in_the_package() -> None:
    for name in [*STATIC_FILES, "index.html"]:
        assert (STATIC / name).is_file(), name


def test_the_page_loads_only_listed_assets_of_its_own_origin() -> None:
    html = (STATIC / "index.html").read_text()
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert referenced, "the page references its script and stylesheet"
    for target in referenced:
        assert target.startswith("/dashboard/static/"), target
        assert target.removeprefix("/dashboard/static/") in STATIC_FILES, target
    imports = re.findall(r'from "\./([^"]+)"', (STATIC / "dashboard.js").read_text())
    assert imports and all(name in STATIC_FILES for name in imports)


def test_no_asset_reaches_another_origin_or_builds_html_from_strings() -> None:
    for name in [*STATIC_FILES, "index.html"]:
        text = (STATIC / name).read_text()
        urls = re.findall(r"https?://[^\s\"')]+", text)
        assert urls in ([], ["http://www.w3.org/2000/svg"]), (name, urls)
        assert "<script>" not in text and " style=" not in text, name  # CSP: no inline code
        if name.endswith(".js"):
            assert not HTML_SINKS.search(text), name
