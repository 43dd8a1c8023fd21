"""The settings object (transforms/config.py): every LAB2FAB_* variable in one class, read when
asked (never at import time), re-read when the environment changes, a bad value named; the README's
configuration table generated from it; the run context keeps the key out of what Prefect records."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from transforms import config
from transforms.config import Settings, SettingsError, settings

REPO = Path(__file__).resolve().parent.parent


def test_a_variable_changed_after_import_is_seen(monkeypatch):
    import transforms.warehouse.db as db  # imported before the change: nothing may have been read then
    from transforms.model.simulate import threads

    monkeypatch.setenv("LAB2FAB_DUCKDB_MEMORY_LIMIT", "512MB")
    monkeypatch.setenv("LAB2FAB_MODEL_THREADS", "3")
    assert settings().duckdb_memory_limit == "512MB" and threads() == 3
    monkeypatch.setenv("LAB2FAB_MODEL_THREADS", "1")
    assert threads() == 1
    monkeypatch.delenv("LAB2FAB_DUCKDB_MEMORY_LIMIT")
    assert settings().duckdb_memory_limit == "1GB"
    assert not hasattr(db, "MEMORY_LIMIT")  # no import-time copy left to go stale


def test_the_connection_uses_the_limit_set_after_import(monkeypatch, tmp_path):
    from transforms.warehouse.db import connect

    monkeypatch.setenv("LAB2FAB_DUCKDB_MEMORY_LIMIT", "256MB")
    con = connect(tmp_path / "w.duckdb")
    try:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()
    assert limit.replace(" ", "") in ("256.0MiB", "244.1MiB", "256MB"), limit


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("LAB2FAB_MAX_FILE_BYTES", "")
    monkeypatch.setenv("LAB2FAB_TASK_RUNNER", "")
    assert settings().max_file_bytes == 200 * 1024 * 1024 and settings().task_runner == "auto"


@pytest.mark.parametrize("name, value, says", [
    ("LAB2FAB_MAX_FILE_BYTES", "big", "valid integer"),
    ("LAB2FAB_FILE_TIME_LIMIT", "-1", "greater than 0"),
    ("LAB2FAB_MODEL_THREADS", "two", "valid integer"),
    ("LAB2FAB_TASK_RUNNER", "spark", "'auto', 'thread', 'process' or 'dask'"),
    ("LAB2FAB_DASK_WORKERS", "0", "greater than or equal to 1"),
    ("LAB2FAB_DUCKDB_MEMORY_LIMIT", "lots", "pattern"),
    ("LAB2FAB_FAIL_AT", "publish:ENOPE", "errno name"),
])
def test_a_bad_value_names_the_variable(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as e:
        settings()
    assert f"${name}={value!r}" in str(e.value) and says in str(e.value)
    monkeypatch.delenv(name)
    settings()  # fixed: read again


def test_secrets_are_never_shown(monkeypatch):
    monkeypatch.setenv("LAB2FAB_PSEUDONYM_KEY", "k" * 40)
    monkeypatch.setenv("LAB2FAB_PORTAL_SECRET", "p" * 40)
    s = settings()
    assert "k" * 40 not in repr(s) and "p" * 40 not in repr(s)
    assert s.pseudonym_key.get_secret_value() == "k" * 40


def test_old_spellings_of_the_runner_still_mean_threads(monkeypatch):
    from flows.runners import runner_kind

    for spelling in ("threads", " ThreadPool ", "local"):
        monkeypatch.setenv("LAB2FAB_TASK_RUNNER", spelling)
        assert runner_kind() == "thread"


def test_a_worker_process_reads_its_own_environment(tmp_path):
    # A child started with another environment (a process-pool worker, a Dask worker) sees its own values.
    code = ("from transforms.config import settings; import os; s = settings(); "
            "os.environ['LAB2FAB_MODEL_THREADS'] = '7'; print(s.model_threads, settings().model_threads)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                         env={"PATH": "/usr/bin:/bin", "LAB2FAB_MODEL_THREADS": "2"}).stdout.split()
    assert out == ["2", "7"]


def test_reload_reads_the_environment_again(monkeypatch):
    monkeypatch.setenv("LAB2FAB_DASK_ADDRESS", "tcp://a:8786")
    assert config.reload().dask_address == "tcp://a:8786"


def test_every_field_is_described_and_the_readme_table_is_generated_from_the_class():
    assert all(f.description for f in Settings.model_fields.values())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert config.settings_table() in readme, "README's configuration table: paste config.settings_table()"


def test_no_module_reads_the_environment_outside_the_settings():
    # transforms/, flows/ and portal/ read LAB2FAB_* only through transforms.config.settings().
    found = subprocess.run(["grep", "-rn", "--include=*.py", "-E", r"environ(\.get)?\(?\[?[\"']LAB2FAB_|getenv\([\"']LAB2FAB_",
                            "transforms", "flows", "portal"], capture_output=True, text=True, cwd=REPO).stdout
    assert not found, found


def test_the_run_context_keeps_the_key_out_of_what_prefect_records(tmp_path):
    from pydantic import SecretBytes

    from flows.pipeline import ingest_flow
    from transforms.config import get_paths
    from transforms.warehouse.runs import RunContext

    ctx = RunContext(paths=get_paths(tmp_path), run_id="r", key=SecretBytes(b"the-real-key-0123456789"),
                     key_fingerprint="fp", overrides=pd.DataFrame({"rule_id": ["x"]}), periods=frozenset({"2024-1"}))
    recorded = str(ingest_flow.serialize_parameters({"ctx": ctx}))
    assert "the-real-key" not in recorded and "rule_id" not in recorded and "2024-1" in recorded
    assert "the-real-key" not in repr(ctx)
    assert ingest_flow.validate_parameters({"ctx": ctx})["ctx"] is ctx  # the stage gets the object itself


def test_failpoints_live_outside_transforms():
    from flows import faults

    assert faults.POINTS == ("staging", "load", "marts", "publish")
    assert not (REPO / "transforms" / "faults.py").exists()
    found = subprocess.run(["grep", "-rln", "--include=*.py", "-E", r"import fcntl|fcntl\.flock|get_run_logger\(|signal\.SIGKILL|faults\.checkpoint|from flows",
                            "transforms"],
                           capture_output=True, text=True, cwd=REPO).stdout.split()
    assert not found, found
