"""English and Vietnamese: the labels of data codes (``labels.yaml``), numbers formatted for each
language (50,000 / 50.000), and the rounding of figures published per university or region.

Figures published per university (and per region) follow HESA's rounding for published figures:
counts are rounded to the nearest 5 and counts under 10 are suppressed and shown as ``..``; a
percentage is shown only when its base is at least 23 people and the count it describes at least 10.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

LANGUAGES = ("en", "vi")
SUPPRESSED = ".."
MIN_COUNT = 10          # counts under this are not published per university or region
MIN_BASE = 22.5         # HESA: percentages on fewer than 22.5 people are suppressed

# {kind: {code: (en, vi)}} for every label that comes from data codes (track, target, status, ...).
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    kind: {code: tuple(pair) for code, pair in codes.items()}
    for kind, codes in yaml.safe_load((Path(__file__).with_name("labels.yaml")).read_text(encoding="utf-8")).items()}

# d3-format locales handed to Vega (axis labels, text marks, tooltips).
D3_LOCALES = {
    "en": {"decimal": ".", "thousands": ",", "grouping": [3], "currency": ["$", ""]},
    "vi": {"decimal": ",", "thousands": ".", "grouping": [3], "currency": ["", " ₫"]},
}


def missing(x) -> bool:
    """None or NaN: a figure that is not there (shown as ".." or left blank)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class Lang:
    """Text and numbers in one language."""

    code: str = "en"

    def __post_init__(self):
        if self.code not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {self.code!r}")

    def t(self, en: str, vi: str) -> str:
        return vi if self.code == "vi" else en

    def pick(self, pair: tuple[str, str] | None, fallback: str = "") -> str:
        return (pair[1] if self.code == "vi" else pair[0]) if pair else fallback

    def label(self, kind: str, code: str | None) -> str:
        """The label of a data code (LABELS[kind]), else the code itself ("?" for none)."""
        return self.pick(LABELS[kind].get(code or ""), code or "?")

    def n(self, x, digits: int = 0) -> str:
        """A number with thousands separators: 50,000 (en) or 50.000 (vi)."""
        if missing(x):
            return SUPPRESSED
        s = f"{x:,.{digits}f}"
        return s.translate(str.maketrans(",.", ".,")) if self.code == "vi" else s

    def pct(self, x, digits: int = 0) -> str:
        if missing(x):
            return SUPPRESSED
        s = f"{100 * x:.{digits}f}%"
        return s.replace(".", ",") if self.code == "vi" else s

    # lang.track("design") == "Design" (en) or "Thiết kế" (vi); one per kind of labels.yaml
    track = functools.partialmethod(label, "track")
    target = functools.partialmethod(label, "target")
    status = functools.partialmethod(label, "status")
    region = functools.partialmethod(label, "region")
    scenario = functools.partialmethod(label, "scenario")
    measure = functools.partialmethod(label, "measure")
    measure_name = functools.partialmethod(label, "measure_name")


def publishable_count(x) -> int | None:
    """A count as it may be published per university or region (HESA rounding): None (shown
    as '..') when under 10, else rounded to the nearest 5, halves up."""
    if missing(x) or pd.isna(x):
        return None
    x = float(x)
    if x < MIN_COUNT:
        return None
    return int(5 * math.floor(x / 5 + 0.5))


def publishable_share(part, base) -> float | None:
    """part / base, or None when the base is under 22.5 people or the part under 10."""
    if base is None or pd.isna(base) or part is None or pd.isna(part):
        return None
    if float(base) < MIN_BASE or float(part) < MIN_COUNT:
        return None
    return float(part) / float(base)
