"""Is there anything for a run to do? One definition, used by the pipeline flow and by the CLI.

A run has work when the landing zone holds a file the manifest does not (path, size and mtime,
then sha256), or when what the published outputs were built from moved on: the data (a load
after the last publish), the reference data, the overrides, the scenarios, or the code's
version (`inputs_fingerprint`). The CLI asks `nothing_new` before it starts Prefect at all, so
that a run with nothing new costs a DuckDB read instead of a temporary Prefect server (several
seconds) and the imports of every stage.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from transforms.config import REPO_ROOT, Paths, settings


def code_version() -> str:
    """The code that builds marts, model and report: the checkout's commit, else the installed
    package's version. A new release (or commit) rebuilds the outputs once even when no file
    arrived; edits not yet committed do not (`lab2fab run --rebuild` is for those)."""
    git = REPO_ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            loose = git / ref
            if loose.exists():
                return loose.read_text().strip()
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
            return head
        return head
    except OSError:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "lab2fab " + version("lab2fab")
        except PackageNotFoundError:
            return "unknown"


def _overrides_paths(data_dir: Path) -> list[Path]:
    from transforms.contract.checks import overrides_paths

    return overrides_paths(data_dir)


def _place(paths: Paths, f: Path) -> str:
    """A file named by its place, not its absolute path: a data folder copied or moved elsewhere
    (a restore, a test's copy) has the same inputs."""
    for label, root in (("data folder", Path(paths.data_dir)), ("reference", paths.reference), ("checkout", REPO_ROOT)):
        try:
            return f"{label}:{f.relative_to(root)}"
        except ValueError:
            continue
    return str(f)


def inputs_fingerprint(paths: Paths) -> str:
    """Reference data, overrides, scenarios and the code's version, as one short hash."""
    h = hashlib.sha256()
    # The model reads the data folder's own scenarios/ when it has one, and the demo's scale from its
    # answer key (transforms.model.scenarios.scenario_dir / demo_scale): both belong to the inputs.
    files = [*sorted(paths.reference.glob("*.csv")), *_overrides_paths(paths.data_dir),
             *sorted((REPO_ROOT / "data" / "scenarios").glob("*.yaml")),
             *sorted((Path(paths.data_dir) / "scenarios").glob("*.yaml")),
             Path(paths.data_dir) / "landing" / "demo_truth.json"]
    for f in files:
        if f.exists():
            h.update(_place(paths, f).encode() + b"\0" + f.read_bytes())
    h.update(b"code " + code_version().encode())
    return h.hexdigest()[:16]


def outputs_stale(con, paths: Paths, fp: str) -> str | None:
    """Why the published outputs do not reflect the warehouse and its inputs (None: they do): data
    loaded since the last publish (also after a run that died between its load and its publish),
    inputs changed, or no snapshot."""
    from transforms.warehouse.db import get_state

    if not paths.snapshot.exists():
        return "no snapshot"
    loaded, published = get_state(con, "data_version"), get_state(con, "published_version")
    if loaded != published:
        return f"data loaded by run {loaded} after the last publish ({published})"
    if get_state(con, "inputs_fingerprint") != fp:
        return f"inputs changed (fingerprint {get_state(con, 'inputs_fingerprint')} -> {fp})"
    return None


def nothing_new(paths: Paths) -> dict | None:
    """`{"files_seen": n, "files_new": 0}` when a regular run would change nothing, else None.

    Read only. None whenever the answer needs the flow: no warehouse yet, a key that is not at hand
    without Prefect (a Secret block) or does not match, or another process holding the warehouse.
    """
    seen, _ = check(paths)
    return seen


def check(paths: Paths) -> tuple[dict | None, str]:
    """`nothing_new`'s answer, and why there is work when there is."""
    import duckdb

    from transforms.ingest import landing
    from transforms.ingest.pseudonym import PseudonymKeyError, fingerprint, load_key
    from transforms.ingest.stage import KnownFiles, new_files
    from transforms.warehouse.db import WarehouseDamaged, connect, get_state

    if not paths.warehouse.exists() or not paths.snapshot.exists():
        return None, "no warehouse or no snapshot yet"
    if settings().pseudonym_secret_block and not settings().pseudonym_key:
        return None, "the key is in a Prefect Secret block"
    try:
        con = connect(paths.warehouse, read_only=True)
    except (duckdb.Error, WarehouseDamaged, OSError) as e:  # busy or damaged: the flow says which
        return None, f"the warehouse cannot be read: {e}"
    try:
        expected = get_state(con, "key_fingerprint")
        try:
            if expected is None or fingerprint(load_key(paths.secrets, allow_demo_key=False)) != expected:
                return None, "the key is not the warehouse's"
        except PseudonymKeyError:
            return None, "no key"
        stale = outputs_stale(con, paths, inputs_fingerprint(paths))
        if stale:
            return None, stale
        known = KnownFiles.from_warehouse(con)
    except duckdb.Error as e:
        return None, f"the warehouse cannot be read: {e}"
    finally:
        con.close()
    landed = landing.scan(paths.landing)
    new = new_files(landed, known)
    if new:
        return None, f"{len(new)} new files, e.g. {new[0].relpath}"
    return {"files_seen": len(landed), "files_new": 0}, "nothing new"
