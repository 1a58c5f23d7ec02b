"""Sphinx configuration: furo, MyST Markdown pages, autodoc of the public API, the figures' tables."""

import os
import string
import sys
import tomllib
from pathlib import Path
from typing import Any

import django
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# autodoc imports the app's modules, which need configured settings and a loaded app registry.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

project = "django-observers-hub"
author = "the observers team"
copyright = "the observers team"
# The version is written once, in pyproject.toml (observers_app.__version__ reads it from the
# installed package's metadata; the docs build from a source tree).
release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "django-observers-hub"

autodoc_member_order = "bysource"
autodoc_typehints = "description"


class ObserversFigures(SphinxDirective):
    """``observers-figures``: a table read from ``observers_app.telemetry.catalog``, so the docs say
    what the admin, the dashboard and ``/metrics`` say.

    No argument (or ``figures``): every figure of ``get_stats()``, with its label and help text.
    ``live`` or ``counters``: only those. ``metrics``: the Prometheus series recorded from the hub's
    signals, with their HELP lines."""

    optional_arguments = 1

    def run(self) -> list[Any]:
        from observers_app.telemetry import catalog

        which = self.arguments[0] if self.arguments else "figures"
        if which == "metrics":
            rows = [[f"`{name}`", _plain(help_)] for name, help_ in catalog.METRICS.items()]
            return self.parse_text_to_nodes(_markdown_table(["series", "help"], rows))
        figures = {"figures": catalog.FIGURES, "live": catalog.LIVE, "counters": catalog.COUNTERS}.get(which)
        if figures is None:
            raise self.error(f"unknown table {which!r}: figures, live, counters or metrics")
        rows = [[f"`{name}`", _plain(f.label), _plain(f.help)] for name, f in figures.items()]
        return self.parse_text_to_nodes(_markdown_table(["name", "label", "help"], rows))


def _plain(text: str) -> str:
    """Text shown as written: every ASCII punctuation character escaped (CommonMark allows it)."""
    return "".join(f"\\{char}" if char in string.punctuation else char for char in text)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("observers-figures", ObserversFigures)
    return {"parallel_read_safe": True}
