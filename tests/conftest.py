"""Test set-up: Prefect runs against a throwaway local API, never the developer's own.

`make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`). Each worker is its
own process with its own PREFECT_HOME and Prefect test server; pipeline runs a test starts in a process
of their own report to that server (`prefect_api`) unless they test start-up. What many tests read, and what costs
pipeline runs to make (the small demo and its runs), is built once for the whole session by whichever
worker asks first (`build_once`); a test that uses a module-scoped fixture is kept on one worker with
the other tests of its module that use one, so that fixture is built once too."""
from __future__ import annotations

import fcntl
import functools
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import pytest

# Before Prefect is imported anywhere: a private PREFECT_HOME, no analytics, a fixed test key.
_PREFECT_HOME = tempfile.mkdtemp(prefix="lab2fab-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
os.environ.setdefault("LAB2FAB_PSEUDONYM_KEY", "test-key-not-secret")
os.environ["GX_ANALYTICS_ENABLED"] = "false"
# A pipeline run in its own process starts a temporary Prefect server; with two workers busy on two
# cores that start can take longer than Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"

T = TypeVar("T")


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """`build(folder)` run once per test session, across xdist workers: the first worker to ask builds
    in a folder they all see, under an OS file lock; the others wait for it and get its (pickled) result.
    Tests must treat the folder as read-only and work on copies."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's basetemp is <session basetemp>/popen-gwN
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(exist_ok=True)
    folder, done, failed = root / name, root / f"{name}.pickle", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the worker dies
        if failed.exists():  # one failure is reported in full once, not rebuilt for every test
            pytest.fail(f"{name} could not be built (see the first test that needed it): {failed.read_text()}",
                        pytrace=False)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                value = build(folder)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {str(e)[-2000:]}")
                raise
            done.write_bytes(pickle.dumps(value))
    return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def once(tmp_path_factory):
    """`once(name, build)`: build_once for the fixtures of test modules."""
    return functools.partial(build_once, tmp_path_factory)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Keep the tests of a module that use its module-scoped fixtures on one xdist worker; and on
    workers, hand out the modules with `slow` tests (each a pipeline process or more) first, so that
    the two workers finish together instead of one waiting for the other's last long test (whole
    modules move, in their own order, so that no module fixture is built twice)."""
    def module(item) -> str:
        return getattr(getattr(item, "module", None), "__name__", "")

    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(defs[-1].scope == "module" for name, defs in info.name2fixturedefs.items() if defs):
            item.add_marker(pytest.mark.xdist_group(module(item)))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow = {module(item) for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: module(item) not in slow)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api(prefect_harness) -> str:
    """The API URL of this worker's Prefect test server, for pipeline runs in their own process
    (`PREFECT_API_URL`): each would otherwise start a temporary server of its own, about 5 s a process
    on a quiet machine and far more on a busy one. Tests of start-up itself, or that scan a run's own Prefect database, leave
    it out. A run killed against it only leaves a flow run marked running, which nothing reads."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> tuple[Path, dict]:
    """A small demo collection (a few universities, two academic years), generated once."""
    from transforms.demo.generate import generate_demo

    def build(data_dir: Path):
        summary = generate_demo(data_dir / "landing", REFERENCE, universities=6, first_term="2023-1",
                                last_term="2024-2")
        return data_dir, summary

    return build_once(tmp_path_factory, "demo-data", build)


@pytest.fixture(scope="session")
def demo_run(prefect_harness, small_demo, tmp_path_factory) -> tuple[Path, dict]:
    """The small demo collection through one real pipeline run (in this process, real Prefect, DuckDB
    and GX): the data folder and the run's result. Read it; copy the folder to run on it again."""
    from flows.pipeline import pipeline

    def build(data_dir: Path):
        shutil.copytree(small_demo[0] / "landing", data_dir / "landing", copy_function=shutil.copy2)
        return data_dir, pipeline(data_dir=str(data_dir))

    return build_once(tmp_path_factory, "demo-run", build)

