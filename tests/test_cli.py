"""The command line as a newcomer meets it (issue 17): help, version, --data-dir anywhere, the default
data folder, query's search path, the DuckDB shell, and plain messages when there is no snapshot yet."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from flows import cli
from transforms import config

REPO = Path(__file__).resolve().parent.parent


def lab2fab(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command, in its own process (as `.venv/bin/lab2fab` runs it)."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_bare_command_prints_the_help_and_version_is_the_package_version():
    bare = lab2fab(env={"LAB2FAB_DATA_DIR": None})
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("usage: lab2fab") and "shell" in bare.stdout and "query" in bare.stdout
    assert bare.stderr == ""
    shown = lab2fab("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"lab2fab {version('lab2fab')}"


def test_every_option_and_positional_has_help_and_shows_its_default():
    parser = cli.build_parser()
    for name, command in {"lab2fab": parser, **subcommands(parser)}.items():
        text = " ".join(command.format_help().split())  # unwrapped
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help, (name, action.dest)
            if action.default not in (None, False, argparse.SUPPRESS) and action.default != []:
                assert f"(default: {action.default})" in text, (name, action.dest)


def required_arguments(command: argparse.ArgumentParser) -> list[str]:
    """Values for a subcommand's required options and positionals, enough to parse."""
    out = []
    for action in command._actions:
        if action.required and not isinstance(action, argparse._SubParsersAction):
            value = str(next(iter(action.choices))) if action.choices else "1"
            out += [action.option_strings[0], value] if action.option_strings else [value]
    return out


def test_data_dir_before_or_after_the_subcommand(tmp_path):
    parser = cli.build_parser()
    for name, command in subcommands(parser).items():
        rest = required_arguments(command)
        before = parser.parse_args(["--data-dir", "A", name, *rest])
        after = parser.parse_args([name, *rest, "--data-dir", "B"])
        assert (before.data_dir, after.data_dir) == ("A", "B"), name
    # and for real: `lab2fab demo --data-dir X` writes into X (today's newcomer's first command)
    out = lab2fab("demo", "--universities", "1", "--first-term", "2024-1", "--last-term", "2024-1",
                  "--data-dir", str(tmp_path / "mine"))
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "mine" / "landing" / "enrollment").glob("*/2024-1/*"))


def test_default_data_folder_is_the_environment_then_local_data_then_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB2FAB_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.default_data_dir() == (config.REPO_ROOT / "data", "checkout")
    (tmp_path / "data" / "landing").mkdir(parents=True)
    assert config.default_data_dir() == (tmp_path / "data", "current folder")
    assert config.get_paths().landing == tmp_path / "data" / "landing"
    monkeypatch.setenv("LAB2FAB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert config.default_data_dir() == (tmp_path / "elsewhere", "environment")
    assert config.get_paths(tmp_path / "given").data_dir == tmp_path / "given"


def test_a_command_from_another_folder_says_which_data_folder_it_uses(tmp_path):
    away = lab2fab("dictionary", "--out", str(tmp_path / "d.md"), cwd=tmp_path, env={"LAB2FAB_DATA_DIR": None})
    assert f"data folder {config.REPO_ROOT / 'data'} (the checkout's" in away.stderr
    # from the checkout itself, or with the folder chosen, nothing is said about it
    for kwargs in ({"cwd": REPO, "env": {"LAB2FAB_DATA_DIR": None}},
                   {"cwd": tmp_path, "env": {"LAB2FAB_DATA_DIR": str(tmp_path)}}):
        quiet = lab2fab("dictionary", "--out", str(tmp_path / "d.md"), **kwargs)
        assert "data folder" not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize("command", [["dictionary"], ["query", "select 1"], ["shell"]])
def test_no_snapshot_yet_says_to_run_first(command, tmp_path, capsys):
    assert cli.main(["--data-dir", str(tmp_path), *command]) == 2
    err = capsys.readouterr().err
    assert f"no published snapshot at {tmp_path / 'published' / 'lab2fab.duckdb'}; run `lab2fab run` first" in err
    assert "disk" not in err and "permission" not in err


def test_query_finds_tables_without_their_schema(demo_run, capsys):
    data_dir = str(demo_run[0])
    for schema, table in (("marts", "model_headline"), ("analytics", "submissions"), ("ops", "quarantine"),
                          ("staging", "enrollment"), ("ref", "programmes")):
        shown = []
        for name in (table, f"{schema}.{table}"):
            assert cli.main(["query", f"select * from {name} order by all", "--json", "--data-dir", data_dir]) == 0
            shown.append(json.loads(capsys.readouterr().out))
        assert shown[0] == shown[1] and shown[0], table


def test_shell_opens_the_snapshot_read_only_with_the_search_path(demo_run):
    data_dir = str(demo_run[0])
    shown = lab2fab("shell", "--data-dir", data_dir, "-csv", "-c", "select count(*) as n from enrollment_by_term")
    assert shown.returncode == 0, shown.stderr
    assert int(shown.stdout.split()[-1]) > 0
    refused = lab2fab("--data-dir", data_dir, "shell", "-c", "create table marts.scratch (a int)")
    assert refused.returncode != 0 and re.search(r"read-only|read only", refused.stdout + refused.stderr, re.I)


def test_reference_readme_has_no_paths_from_a_developers_machine():
    text = (REPO / "data" / "reference" / "README.md").read_text(encoding="utf-8")
    assert not re.findall(r"(?<![\w.])/(?:tmp|home|Users|work|root|opt|var)/\S*", text)
