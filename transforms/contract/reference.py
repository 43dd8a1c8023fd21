"""The reference data (data/reference/*.csv) checked by GX suites before a run uses it.

Universities, programmes, hosts, host slots and targets each have a suite (rules ``REF.*`` in
transforms/contract/suites.py).  Every file is read as text, so a code such as 0752 or a slot count
of "1,5" is judged as written.  An ``error`` stops the pipeline run with a message naming the
file, the line and the rule; nothing has been loaded by then.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from transforms.contract import suites as contract

FILES = ("universities", "programmes", "hosts", "host_slots", "targets")


class ReferenceDataError(ValueError):
    """A reference CSV breaks an error rule; the run stops before using it."""


@dataclass(frozen=True)
class ReferenceCheck:
    failures: pd.DataFrame  # file, line, rule_id, severity, column, observed, message_en, message_vi
    gx_results: list  # GX suite results, for Data Docs

    @property
    def errors(self) -> pd.DataFrame:
        return self.failures[self.failures["severity"] == contract.ERROR]

    def message(self, limit: int = 20) -> str:
        e = self.errors
        lines = [f"{f}.csv line {ln}: {rid} ({col}={obs!r}): {msg}" for f, ln, rid, col, obs, msg in
                 zip(e["file"], e["line"], e["rule_id"], e["column"], e["observed"], e["message_en"])]
        more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
        return "reference data breaks the contract; fix it before running:\n  " + "\n  ".join(lines[:limit]) + more


def _read(reference_dir: Path, name: str) -> pd.DataFrame:
    path = reference_dir / f"{name}.csv"
    if not path.exists():
        raise ReferenceDataError(f"reference file {path} is missing")
    t = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    t = t.apply(lambda c: c.str.strip()).replace("", None)
    t.insert(0, "line", range(2, len(t) + 2))
    return t


def prepare(reference_dir: Path) -> tuple[dict[str, pd.DataFrame], list[str], list[str]]:
    """Frames per file with their derived columns, and the host codes / host|track pairs from hosts.csv."""
    frames = {name: _read(Path(reference_dir), name) for name in FILES}
    hosts = frames["hosts"]
    host_codes = sorted(set(hosts["host_code"].dropna()))
    host_tracks = sorted({f"{c}|{t}" for c, ts in zip(hosts["host_code"], hosts["tracks"]) if c and ts
                          for t in ts.split("|")})
    p = frames["programmes"]
    p["_code_level"] = p["programme_code"].str[:1]
    s = frames["host_slots"]
    s["_host_track"] = s["host_code"] + "|" + s["track"]
    s["_known_host"] = s["host_code"].isin(host_codes).map({True: "yes", False: "no"})
    t = frames["targets"]
    value = pd.to_numeric(t["target"], errors="coerce")
    total = value.where(t["dimension"] == "total").groupby(t["target_year"]).transform("max")
    sums = value.groupby([t["target_year"], t["dimension"]]).transform("sum")
    t["_dimension_sum"] = sums.where(t["dimension"] != "total")
    t["_year_total"] = total.where(t["dimension"] != "total")
    return frames, host_codes, host_tracks


# check_reference() results by the reference files' content: a process that validates several
# times (tests, the kit behind the portal, a backfill then a run) checks unchanged data once.
# The rules are code, fixed for the life of the process, so the files' bytes are the whole key.
_CHECKED: dict[str, ReferenceCheck] = {}


def fingerprint(reference_dir: Path) -> str | None:
    """sha256 over the checked reference files (None when one is missing: nothing is cached)."""
    digest = hashlib.sha256()
    for name in FILES:
        path = Path(reference_dir) / f"{name}.csv"
        if not path.is_file():
            return None
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_reference(reference_dir: Path) -> ReferenceCheck:
    key = fingerprint(reference_dir)
    hit = _CHECKED.get(key) if key else None
    if hit is None:
        hit = _check_reference(Path(reference_dir))
        if key:
            _CHECKED[key] = hit
    # Copies: a caller may trim or annotate the GX results (Data Docs), never the cached ones.
    return ReferenceCheck(hit.failures.copy(), copy.deepcopy(hit.gx_results))


def _check_reference(reference_dir: Path) -> ReferenceCheck:
    frames, host_codes, host_tracks = prepare(Path(reference_dir))
    suites = contract.build_reference_suites(host_codes, host_tracks)
    failures, results = [], []
    for name, suite in suites.items():
        frame = frames[name]
        columns = [c for c in suite.meta["required_columns"] if c not in frame.columns]
        if columns:
            raise ReferenceDataError(f"{name}.csv lacks column(s) {', '.join(columns)}")
        report = contract.validate(frame, suite, key_column="line")
        results.append(report.gx_result)
        f = report.row_failures.rename(columns={"line": "line"}).assign(file=name)
        failures.append(f)
    out = pd.concat(failures, ignore_index=True)[["file", "line", "rule_id", "severity", "column", "observed",
                                                 "message_en", "message_vi"]]
    return ReferenceCheck(out, results)


def require_valid_reference(reference_dir: Path) -> ReferenceCheck:
    """check_reference(), raising ReferenceDataError when an error rule fails."""
    check = check_reference(reference_dir)
    if len(check.errors):
        raise ReferenceDataError(check.message())
    return check
