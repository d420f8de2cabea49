"""Pages to HTML with Jinja2 (autoescaped: instructions and messages are the sources' text, not markup)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import jinja2

from pipelines.report.page import Cited, Page

INDEX_PAGE = "index.html"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("pipelines.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.tests["cited"] = lambda value: isinstance(value, Cited)
    return env


def _href(out: Path):
    """Links relative to the page, so a report and the files it cites can move together (a checkout,
    an archive) and the page's bytes do not depend on where it was written."""
    base = os.path.abspath(out)
    return lambda path: Path(os.path.relpath(os.path.abspath(path), base)).as_posix()


def write_page(page: Page, out: Path) -> Path:
    dest = out / page.file_name
    html = _environment().get_template("page.html.j2").render(page=page, href=_href(out), index=INDEX_PAGE)
    dest.write_text(html, encoding="utf-8")
    return dest


def write_index(pages: list[Page], out: Path) -> Path:
    """One table per kind of page, a column per headline number any of its pages has."""
    groups = []
    for kind, title in (("store", "Episode stores"), ("manifest", "Manifests")):
        members = [p for p in pages if p.kind == kind]
        labels = list(dict.fromkeys(label for p in members for label, _, _ in p.stats))
        rows = [(p, [next((v for label_, v, _ in p.stats if label_ == label), "") for label in labels])
                for p in members]
        if members:
            groups.append((kind, title, labels, rows))
    dest = out / INDEX_PAGE
    dest.write_text(_environment().get_template("index.html.j2").render(groups=groups, href=_href(out)),
                    encoding="utf-8")
    return dest
