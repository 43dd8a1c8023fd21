"""Scenarios: reviewed YAML files in `data/scenarios/` that change the baseline (`ref.host_slots`).

A scenario file holds who wrote it and when, what it means, its changes to internship capacity
relative to the baseline slots, and any assumption overrides (see docs/MODEL.md, "Scenarios"):

```yaml
name: more_slots                 # must equal the file name
description: ...
author: ...
date: 2026-05-01
reviewed_by: ...                 # who reviewed it (or "pending")
changes:
  - multiply_slots: {track: all, from_round: 2027H1, factor: 1.5}
  - add_slots: {host_code: KR-SEC, track: design, from_round: 2027H1, slots: 20}
  - add_host: {host_code: KR-NEW, name: ..., host_type: company, from_round: 2027H2,
               slots: {fabrication: 40, packaging_testing: 20}}
  - open_domestic_labs: {from_round: 2028H1, slots: {design: 30, fabrication: 30, packaging_testing: 30}}
assumptions:                     # optional overrides of transforms.model.calibrate.Assumptions
  application_rate: [0.7, 20]
```
Every change applies from `from_round` up to `to_round` (default: the horizon round), both included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

from transforms.model.calibrate import TRACKS, Assumptions
from transforms.config import REPO_ROOT
from transforms.vocabulary import ROUND_RE, round_index

SCENARIO_DIR = REPO_ROOT / "data" / "scenarios"
REQUIRED = ("name", "description", "author", "date")
OPTIONAL = ("reviewed_by", "reviewed_on", "changes", "assumptions", "notes", "milestones")
# Interim milestones: {year: {measure: {category: persons}}} (docs/MODEL.md, "Milestones").
MILESTONE_MEASURES = ("trained", "practice_ready")
MILESTONE_CATEGORIES = {"all": "total", "design": "track_group", "fab_pkg_test": "track_group",
                        "bachelor_engineer": "degree_level", "master": "degree_level", "doctor": "degree_level"}
CHANGE_KEYS = {
    "multiply_slots": ({"factor"}, {"track", "from_round", "to_round", "host_type", "host_code"}),
    "add_slots": ({"host_code", "track", "slots"}, {"from_round", "to_round"}),
    "add_host": ({"host_code", "host_type", "slots"}, {"name", "from_round", "to_round", "tracks"}),
    "open_domestic_labs": ({"slots"}, {"from_round", "to_round", "hosts"}),
}
HOST_TYPES = ("company", "research_centre", "university", "domestic_lab")


class ScenarioError(ValueError):
    """A scenario file that cannot be used as written; the message says which file and why."""


@dataclass
class Scenario:
    name: str
    description: str
    author: str
    date: str
    reviewed_by: str | None = None
    changes: list = field(default_factory=list)
    assumptions: dict = field(default_factory=dict)
    path: str | None = None
    milestones: dict = field(default_factory=dict)   # year -> measure -> category -> persons (national)

    def assumptions_over(self, base: Assumptions) -> Assumptions:
        try:
            return Assumptions.with_overrides(base, self.assumptions)
        except (ValueError, TypeError) as e:
            raise ScenarioError(f"scenario {self.name}: {e}") from None


def baseline() -> Scenario:
    return Scenario(name="baseline", description="ref.host_slots as it is", author="lab2fab", date="")


def _check_round(value, where: str) -> str:
    if not isinstance(value, str) or not ROUND_RE.match(value):
        raise ScenarioError(f"{where}: round {value!r} is not of the form YYYYHn, e.g. 2027H1")
    return value


def _check_tracks(value, where: str) -> list[str]:
    tracks = TRACKS if value in (None, "all") else [value] if isinstance(value, str) else list(value)
    bad = [t for t in tracks if t not in TRACKS]
    if bad:
        raise ScenarioError(f"{where}: unknown track(s) {bad}; tracks are {TRACKS} or 'all'")
    return tracks


def _check_slots(value, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: slots must be a mapping track -> slots per round, e.g. {{design: 20}}")
    _check_tracks(list(value), where)
    out = {}
    for t, n in value.items():
        if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 0:
            raise ScenarioError(f"{where}: slots for {t} must be a number >= 0, not {n!r}")
        out[t] = float(n)
    return out


def parse_scenario(spec: dict, path: str | None = None) -> Scenario:
    where = path or "scenario"
    if not isinstance(spec, dict):
        raise ScenarioError(f"{where}: a scenario file is a YAML mapping")
    missing = [k for k in REQUIRED if not spec.get(k)]
    if missing:
        raise ScenarioError(f"{where}: missing required field(s) {missing} (every scenario says what it is, "
                            "who wrote it and when)")
    unknown = sorted(set(spec) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {unknown}; allowed: {list(REQUIRED + OPTIONAL)}")
    name = str(spec["name"])
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ScenarioError(f"{where}: name {name!r} must be lower case letters, digits and _")
    if path and Path(path).stem != name:
        raise ScenarioError(f"{where}: name {name!r} must equal the file name {Path(path).stem!r}")
    when = spec["date"]
    if not isinstance(when, date):
        try:
            date.fromisoformat(str(when))
        except ValueError:
            raise ScenarioError(f"{where}: date {when!r} is not an ISO date (YYYY-MM-DD)") from None
    changes = spec.get("changes") or []
    if not isinstance(changes, list):
        raise ScenarioError(f"{where}: changes must be a list")
    parsed = []
    for i, ch in enumerate(changes, 1):
        at = f"{where}: change {i}"
        if not isinstance(ch, dict) or len(ch) != 1:
            raise ScenarioError(f"{at}: each change is one of {list(CHANGE_KEYS)} with its fields")
        (kind, body), = ch.items()
        if kind not in CHANGE_KEYS:
            raise ScenarioError(f"{at}: unknown change {kind!r}; known: {list(CHANGE_KEYS)}")
        body = dict(body or {})
        required, optional = CHANGE_KEYS[kind]
        if required - set(body):
            raise ScenarioError(f"{at} ({kind}): missing {sorted(required - set(body))}")
        if set(body) - required - optional:
            raise ScenarioError(f"{at} ({kind}): unknown field(s) {sorted(set(body) - required - optional)}")
        for key in ("from_round", "to_round"):
            if key in body:
                body[key] = _check_round(body[key], at)
        if kind == "multiply_slots":
            body["track"] = _check_tracks(body.get("track"), at)
            if not isinstance(body["factor"], (int, float)) or body["factor"] < 0:
                raise ScenarioError(f"{at}: factor must be a number >= 0")
            if "host_type" in body and body["host_type"] not in HOST_TYPES:
                raise ScenarioError(f"{at}: host_type must be one of {HOST_TYPES}")
        elif kind == "add_slots":
            body["track"] = _check_tracks(body["track"], at)
            if not isinstance(body["slots"], (int, float)) or body["slots"] < 0:
                raise ScenarioError(f"{at}: slots must be a number >= 0")
        elif kind == "add_host":
            if body["host_type"] not in HOST_TYPES:
                raise ScenarioError(f"{at}: host_type must be one of {HOST_TYPES}")
            body["slots"] = _check_slots(body["slots"], at)
            body["tracks"] = _check_tracks(body.get("tracks", list(body["slots"])), at)
        elif kind == "open_domestic_labs":
            body["slots"] = _check_slots(body["slots"], at)
        parsed.append((kind, body))
    assumptions = spec.get("assumptions") or {}
    if not isinstance(assumptions, dict):
        raise ScenarioError(f"{where}: assumptions must be a mapping")
    _check_decision_inputs(assumptions, where)
    sc = Scenario(name=name, description=str(spec["description"]).strip(), author=str(spec["author"]),
                  date=str(when), reviewed_by=spec.get("reviewed_by"), changes=parsed, assumptions=assumptions,
                  path=path, milestones=parse_milestones(spec.get("milestones"), where))
    sc.assumptions_over(Assumptions())  # unknown assumption names fail here, with the file named
    return sc


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_decision_inputs(assumptions: dict, where: str) -> None:
    """The budget answer's inputs (docs/MODEL.md, "Decisions"): `cost_per_slot` and `extra_slot_limit` by
    host type (USD per six-month slot; national extra slots a round in each track, null: no limit),
    `budget` (national USD) and `goal_probability`."""
    for key in ("cost_per_slot", "extra_slot_limit"):
        if key not in assumptions:
            continue
        value = assumptions[key]
        if not isinstance(value, dict):
            raise ScenarioError(f"{where}: assumptions {key} must be a mapping host type -> number, "
                                f"e.g. {{company: 9000}}")
        bad = sorted(set(value) - set(HOST_TYPES))
        if bad:
            raise ScenarioError(f"{where}: assumptions {key}: unknown host type(s) {bad}; known: {list(HOST_TYPES)}")
        for ht, n in value.items():
            if not (n is None and key == "extra_slot_limit") and not (_number(n) and n >= 0):
                raise ScenarioError(f"{where}: assumptions {key} {ht} must be a number >= 0, not {n!r}")
    if "budget" in assumptions and assumptions["budget"] is not None and not (
            _number(assumptions["budget"]) and assumptions["budget"] >= 0):
        raise ScenarioError(f"{where}: assumptions budget must be a number >= 0 (national USD), "
                            f"not {assumptions['budget']!r}")
    if "goal_probability" in assumptions and not (
            _number(assumptions["goal_probability"]) and 0 < assumptions["goal_probability"] <= 1):
        raise ScenarioError(f"{where}: assumptions goal_probability must be a number in (0, 1], "
                            f"not {assumptions['goal_probability']!r}")


def parse_milestones(spec, where: str = "scenario") -> dict:
    """`milestones: {2027: {trained: {all: 20000, design: 6000}, practice_ready: {design: 300}}}` ->
    {year: {measure: {category: persons}}}; numbers are national persons, counted from the programme's
    start to the end of the year."""
    if not spec:
        return {}
    if not isinstance(spec, dict):
        raise ScenarioError(f"{where}: milestones must be a mapping of year to measures")
    out = {}
    for year, body in spec.items():
        at = f"{where}: milestones {year}"
        if not isinstance(year, int) or not 2024 <= year <= 2100:
            raise ScenarioError(f"{at}: the year must be a number like 2027")
        if not isinstance(body, dict) or not body:
            raise ScenarioError(f"{at}: give a mapping of measure ({', '.join(MILESTONE_MEASURES)}) to categories")
        for measure, cats in body.items():
            if measure not in MILESTONE_MEASURES:
                raise ScenarioError(f"{at}: unknown measure {measure!r}; known: {list(MILESTONE_MEASURES)}")
            if not isinstance(cats, dict) or not cats:
                raise ScenarioError(f"{at} {measure}: give a mapping of category to persons, e.g. {{all: 20000}}")
            for cat, n in cats.items():
                if cat not in MILESTONE_CATEGORIES:
                    raise ScenarioError(f"{at} {measure}: unknown category {cat!r}; known: {list(MILESTONE_CATEGORIES)}")
                if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
                    raise ScenarioError(f"{at} {measure} {cat}: persons must be a number >= 0, not {n!r}")
                out.setdefault(int(year), {}).setdefault(measure, {})[cat] = float(n)
    return out


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {e}") from None
    return parse_scenario(spec, str(path))


def scenario_dir(data_dir: str | Path | None = None) -> Path:
    """`<data_dir>/scenarios` if it holds scenario files, else the repo's reviewed `data/scenarios`."""
    if data_dir:
        own = Path(data_dir) / "scenarios"
        if own.is_dir() and any(own.glob("*.yaml")):
            return own
    return SCENARIO_DIR


def find_scenarios(names: list[str] | None = None, folder: str | Path | None = None) -> list[Scenario]:
    """Scenarios by name (a file in `folder`) or path; all files in `folder` when `names` is None.
    The baseline always comes first (and is added if not named)."""
    folder = Path(folder) if folder else SCENARIO_DIR
    if names is None:
        paths = sorted(folder.glob("*.yaml"))
    else:
        paths = []
        for n in names:
            p = Path(n)
            if p.suffix in (".yaml", ".yml") and p.exists():
                paths.append(p)
            elif (folder / f"{n}.yaml").exists():
                paths.append(folder / f"{n}.yaml")
            elif n == "baseline":
                continue
            else:
                known = sorted(q.stem for q in folder.glob("*.yaml"))
                raise ScenarioError(f"no scenario {n!r} in {folder} (known: {known})")
    scenarios = [load_scenario(p) for p in paths]
    seen = set()
    for s in scenarios:
        if s.name in seen:
            raise ScenarioError(f"scenario {s.name} given twice")
        seen.add(s.name)
    if "baseline" not in seen:
        # The folder's own baseline when it has one (a named run must not silently use the built-in one).
        own = folder / "baseline.yaml"
        scenarios.insert(0, load_scenario(own) if own.exists() else baseline())
    return sorted(scenarios, key=lambda s: s.name != "baseline")


def apply_changes(scenario: Scenario, host_slots: pd.DataFrame, hosts: pd.DataFrame,
                  rounds: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scenario's slots (round, host_code, track, slots) and hosts (host_code, host_type, tracks)."""
    slots = host_slots[["round", "host_code", "track", "slots"]].copy()
    slots["slots"] = slots["slots"].astype(float)
    hosts = hosts[["host_code", "host_type", "tracks"]].copy()
    last = rounds[-1]

    def span(body):
        lo, hi = round_index(body.get("from_round", rounds[0])), round_index(body.get("to_round", last))
        return [r for r in rounds if lo <= round_index(r) <= hi]

    for kind, body in scenario.changes:
        where = f"scenario {scenario.name}: {kind}"
        rs = span(body)
        if kind == "multiply_slots":
            sel = slots["round"].isin(rs) & slots["track"].isin(body["track"])
            if "host_type" in body:
                sel &= slots["host_code"].isin(hosts.loc[hosts["host_type"] == body["host_type"], "host_code"])
            if "host_code" in body:
                sel &= slots["host_code"] == body["host_code"]
            slots.loc[sel, "slots"] *= float(body["factor"])
        elif kind == "add_slots":
            if body["host_code"] not in set(hosts["host_code"]):
                raise ScenarioError(f"{where}: host {body['host_code']} is not in ref.hosts (use add_host)")
            accepted = set(hosts.set_index("host_code").loc[body["host_code"], "tracks"].split("|"))
            if not set(body["track"]) <= accepted:
                raise ScenarioError(f"{where}: host {body['host_code']} takes only {sorted(accepted)}")
            slots = pd.concat([slots, pd.DataFrame([(r, body["host_code"], t, float(body["slots"]))
                                                    for r in rs for t in body["track"]], columns=slots.columns)])
        elif kind == "add_host":
            if body["host_code"] in set(hosts["host_code"]):
                raise ScenarioError(f"{where}: host {body['host_code']} already exists (use add_slots)")
            hosts = pd.concat([hosts, pd.DataFrame([(body["host_code"], body["host_type"], "|".join(body["tracks"]))],
                                                   columns=hosts.columns)], ignore_index=True)
            slots = pd.concat([slots, pd.DataFrame([(r, body["host_code"], t, n) for r in rs
                                                    for t, n in body["slots"].items()], columns=slots.columns)])
        elif kind == "open_domestic_labs":
            labs = hosts[hosts["host_type"] == "domestic_lab"]
            if "hosts" in body:
                missing = sorted(set(body["hosts"]) - set(labs["host_code"]))
                if missing:
                    raise ScenarioError(f"{where}: {missing} are not domestic_lab hosts in ref.hosts")
                labs = labs[labs["host_code"].isin(body["hosts"])]
            if labs.empty:
                raise ScenarioError(f"{where}: ref.hosts has no domestic_lab host to open")
            rows = [(r, h.host_code, t, n) for h in labs.itertuples() for t, n in body["slots"].items()
                    if t in h.tracks.split("|") for r in rs]
            slots = pd.concat([slots, pd.DataFrame(rows, columns=slots.columns)])
    slots = slots.groupby(["round", "host_code", "track"], as_index=False)["slots"].sum()
    return slots.sort_values(["round", "host_code", "track"]).reset_index(drop=True), hosts.reset_index(drop=True)


def demo_scale(data_dir: str | Path | None) -> float:
    """The data folder's share of national size: the demo's `national_fraction` (its answer key,
    `landing/demo_truth.json`, written by `lab2fab demo`), else 1 (real submissions are national)."""
    import json

    if not data_dir:
        return 1.0
    truth = Path(data_dir) / "landing" / "demo_truth.json"
    try:
        value = float(json.loads(truth.read_text(encoding="utf-8")).get("national_fraction", 1.0))
    except (OSError, ValueError, TypeError):
        return 1.0
    return value if 0 < value <= 1 else 1.0


def inputs(data_dir: str | Path | None) -> list[Path]:
    """Every file the model reads besides the warehouse: the scenario folder it will use and the demo's
    scale (for the rebuild fingerprint: a change to any of them re-runs the model)."""
    files = sorted(scenario_dir(data_dir).glob("*.yaml"))
    if data_dir:
        files.append(Path(data_dir) / "landing" / "demo_truth.json")
    return files
