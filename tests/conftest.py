"""Test set-up: Prefect runs against a throwaway local API, never the developer's own."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: a private PREFECT_HOME, no analytics, a fixed test key.
_PREFECT_HOME = tempfile.mkdtemp(prefix="lab2fab-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
os.environ.setdefault("LAB2FAB_PSEUDONYM_KEY", "test-key-not-secret")
os.environ["GX_ANALYTICS_ENABLED"] = "false"

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> tuple[Path, dict]:
    """A small demo collection (a few universities, two academic years), generated once."""
    from transforms.demo.generate import generate_demo

    data_dir = tmp_path_factory.mktemp("demo-data")
    summary = generate_demo(data_dir / "landing", REFERENCE, universities=6, first_term="2023-1", last_term="2024-2")
    return data_dir, summary
