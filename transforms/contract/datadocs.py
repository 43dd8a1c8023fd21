"""GX Data Docs for a run's validation results: a static site beside the report.

The pipeline validates with ``Batch.validate()`` (no results store: see transforms/contract/suites.py),
so :func:`save_results` keeps each batch's GX result as JSON in the run's work folder, trimmed to
20 failing values per expectation (the full list of failing rows is in ``ops.row_issues``), and
:func:`build_data_docs` renders them with GX's own SiteBuilder from a fresh *ephemeral* context
whose only site is a filesystem store at the output folder: no ``gx/`` project folder is needed.
The site is built in a temporary folder beside ``out_dir`` and swapped in, so a reader never sees
half a site.  Pages: one per suite (its expectations, with rule id, severity and messages in
their meta) and one per validated batch, plus GX's index.

The failing values GX keeps are universities' cells: each is screened for personal data by content
(transforms/contract/privacy.py) and HTML-escaped when it is saved, because GX's renderer writes
values into the page as they are (a `<script>` sent as a programme code would run in the browser).
"""
from __future__ import annotations

import html
import json
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from transforms.contract import suites as contract  # noqa: F401  (sets GX logging and analytics first)
from transforms.contract.privacy import mask_value

import great_expectations as gx  # noqa: E402
from great_expectations.core.expectation_validation_result import (  # noqa: E402
    ExpectationSuiteValidationResult, ExpectationSuiteValidationResultSchema)
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import (  # noqa: E402
    ExpectationSuiteIdentifier, ValidationResultIdentifier)

SITE = "lab2fab"
KEEP_VALUES = 20
_LISTS = ("unexpected_list", "unexpected_index_list", "partial_unexpected_list", "partial_unexpected_index_list",
          "partial_unexpected_counts")


def safe(value):
    """Every string in a GX result value screened for personal data and HTML-escaped (keys are
    column names, ours)."""
    if isinstance(value, dict):
        return {k: safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe(v) for v in value]
    if isinstance(value, str):
        return html.escape(mask_value(value))
    return value


def trimmed(result: ExpectationSuiteValidationResult) -> dict:
    """JSON dict of a suite result with at most KEEP_VALUES failing values per expectation, every
    value from the data screened and escaped (see :func:`safe`)."""
    for r in result.results:
        res = r.result or {}
        for k in _LISTS:
            if isinstance(res.get(k), list) and len(res[k]) > KEEP_VALUES:
                res[k] = res[k][:KEEP_VALUES]
        res.pop("unexpected_index_query", None)
    out = result.to_json_dict()
    for r in out.get("results", []):
        for k in ("result", "exception_info"):
            if k in r:
                r[k] = safe(r[k])
    return out


def save_results(results: Iterable[ExpectationSuiteValidationResult], folder: Path, label: str) -> list[Path]:
    """Write each result as <folder>/<label>-<suite>.json (the batch label names the page)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in results:
        path = folder / f"{label}-{r.suite_name}.json"
        path.write_text(json.dumps(trimmed(r), ensure_ascii=False))
        out.append(path)
    return out


def _condition(c) -> str:
    """A GX row condition (as stored in JSON) in one line: "prev_rows >= 20"."""
    if isinstance(c, dict) and c.get("type") in ("and", "or"):
        return f" {c['type']} ".join(_condition(x) for x in c.get("conditions", []))
    if isinstance(c, dict) and "column" in c:
        name = c["column"].get("name") if isinstance(c["column"], dict) else c["column"]
        param = c.get("parameter")
        return f"{name} {c.get('operator', '').lower().replace('_', ' ')} {param if not isinstance(param, list) or len(param) < 6 else f'[{len(param)} values]'}"
    return str(c)


def _describe(config) -> None:
    """Show each expectation in Data Docs as its rule: id, severity, both messages, then the GX test.

    GX renders an expectation's ``description`` (a string.Template, hence "$" doubled) instead of
    its built-in sentence; ``meta``, where the rule lives, is not rendered on validation pages.
    """
    meta = config.meta or {}
    if "rule_id" not in meta:
        return
    args = ", ".join(f"{k}={_condition(v) if k == 'row_condition' else v}" for k, v in config.kwargs.items()
                     if k not in ("result_format", "catch_exceptions", "value_set", "value_pairs_set", "batch_id",
                                  "condition_parser") and v not in (None, ""))
    sets = [k for k in ("value_set", "value_pairs_set") if config.kwargs.get(k) is not None]
    test = f"{config.type}({args}{', ' if args and sets else ''}{', '.join(f'{k}=[{len(config.kwargs[k])} values]' for k in sets)})"
    text = f"{meta['rule_id']} [{meta['severity']}] {meta['message_en']} / {meta['message_vi']} — {test}"
    config.description = text.replace("$", "$$")


def _load(item) -> tuple[str, ExpectationSuiteValidationResult]:
    if isinstance(item, ExpectationSuiteValidationResult):
        return f"batch-{uuid.uuid4().hex[:8]}", item
    if isinstance(item, (str, Path)):
        path = Path(item)
        label = path.stem.rsplit("-", 1)[0] if "-" in path.stem else path.stem
        return label, ExpectationSuiteValidationResultSchema().load(json.loads(path.read_text()))
    return f"batch-{uuid.uuid4().hex[:8]}", ExpectationSuiteValidationResultSchema().load(item)


def build_data_docs(results, out_dir: Path, *, run_name: str | None = None) -> Path:
    """Render ``results`` as a GX Data Docs site in ``out_dir``; returns its index.html.

    ``results``: a folder of JSON files written by :func:`save_results` (e.g. the run's
    ``gx_results/``), or an iterable of GX suite results, their JSON dicts or JSON paths.
    """
    if isinstance(results, (str, Path)) and Path(results).is_dir():
        results = sorted(Path(results).glob("*.json"))
    loaded = [_load(r) for r in results]
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    context = contract.quiet_context(gx.get_context(mode="ephemeral"))
    context.add_data_docs_site(SITE, {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(tmp)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    run = RunIdentifier(run_name=run_name or "lab2fab", run_time=datetime.now(timezone.utc))
    suites: dict[str, list] = {}
    for label, result in loaded:
        for r in result.results:
            _describe(r.expectation_config)
            cfgs = suites.setdefault(result.suite_name, [])
            if r.expectation_config.meta.get("rule_id") not in {c.meta.get("rule_id") for c in cfgs}:
                cfgs.append(r.expectation_config)
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(result.suite_name), run, label)
        context.validation_results_store.set(key, result)
    for name, cfgs in suites.items():
        context.suites.add(gx.ExpectationSuite(name=name, expectations=[c.to_domain_obj() for c in cfgs]))
    try:
        context.build_data_docs(site_names=[SITE])
        contract.quiet_gx_logging()  # renderers imported just now
        install_site(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "index.html"


def install_site(built: Path, out_dir: Path) -> None:
    """Put the finished site `built` at `out_dir` in place of the one there (a rename each: a reader
    sees the old site or the new one)."""
    old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
    if out_dir.exists():
        out_dir.rename(old)
    built.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
