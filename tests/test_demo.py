"""The demo collection: deterministic, realistic in its flows, and honest about its planted mistakes."""
from __future__ import annotations

import hashlib
import io
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from transforms.demo.generate import CANON, MISTAKES, STYLES, generate_demo, pilot_rounds
from transforms.config import get_paths
from transforms.vocabulary import term_index

REFERENCE = get_paths().reference
SMALL = dict(universities=6, first_term="2023-1", last_term="2024-2")
HEADERS = {h: c for style in STYLES.values() for c, h in style.headers.items()}
LABELS = {label: code for style in STYLES.values() for code, label in style.values.items()}


def read(path: Path) -> pd.DataFrame:
    """A submission as canonical text columns, whatever the office's style (a small reader of our own)."""
    if path.suffix == ".xlsx":
        raw = pd.read_excel(path, header=None, dtype=object)
        at = int(raw.index[raw.isin(list(HEADERS)).sum(axis=1) >= 5][0])  # below the title rows
        frame = raw.iloc[at + 1:].set_axis(raw.iloc[at].tolist(), axis=1).reset_index(drop=True)
        frame = frame.map(lambda v: "" if pd.isna(v) else str(v.date()) if hasattr(v, "date") else str(v))
    else:
        text = path.read_text(encoding="utf-8-sig")
        sep = ";" if ";" in text.splitlines()[0] else ","
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    frame = frame.rename(columns=HEADERS)
    frame = frame[[c for c in CANON if c in frame.columns]].copy()
    for col in ("gender", "degree_level", "status"):
        if col in frame:
            frame[col] = frame[col].map(LABELS).fillna(frame[col])
    return frame


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def loaded(root: Path, truth: dict) -> pd.DataFrame:
    """Every row the pipeline should load: all enrollment files but the rejected, superseded and copied ones."""
    skip = {truth[k] for k in ("rejected_file", "superseded_file", "duplicate_file")}
    parts = []
    for rel, path in files(root / "enrollment").items():
        rel = f"enrollment/{rel}"
        if rel not in skip:
            university, term = rel.split("/")[1:3]
            parts.append(read(path).assign(university=university, term=term, file=rel))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def small(small_demo):
    """The session's small demo (tests/conftest.py: generate_demo with the arguments of SMALL), read only."""
    data_dir, truth = small_demo
    return data_dir / "landing", truth


@pytest.fixture(scope="module")
def rows(small):
    root, truth = small
    return loaded(root, truth)


def test_same_arguments_give_the_same_bytes_and_times(small, tmp_path):
    root, truth = small
    calls = []
    again = generate_demo(tmp_path, REFERENCE, progress=lambda done, total: calls.append((done, total)), **SMALL)
    first, second = files(root), files(tmp_path)
    assert first.keys() == second.keys()
    assert {k: sha(p) for k, p in first.items()} == {k: sha(p) for k, p in second.items()}
    data = [k for k in first if k != "demo_truth.json"]
    assert [first[k].stat().st_mtime for k in data] == [second[k].stat().st_mtime for k in data]
    assert again == truth
    assert calls[-1] == (truth["files_written"], truth["files_written"]) == (len(first) - 1, len(first) - 1)


def test_summary_counts_what_was_written(small):
    root, truth = small
    enrollment = [p for p in files(root / "enrollment").values()]
    assert sum(len(read(p)) for p in enrollment) == truth["rows_written"]
    assert truth["terms"] == ["2023-1", "2023-2", "2024-1", "2024-2"] and len(truth["universities"]) == 6
    assert (root / "demo_truth.json").exists()


def test_students_come_back_term_after_term(rows):
    clean = rows[(rows["student_id"] != "") & (rows["study_year"].astype(int) <= 7) & (rows["gender"] != "?")]
    clean = clean.drop_duplicates()
    clean = clean.assign(t=clean["term"].map(term_index), study_year=clean["study_year"].astype(int))
    key = ["university", "student_id"]
    # Identity is stable across terms.
    assert (clean.groupby(key)[["national_id", "full_name", "birth_date", "gender"]].nunique() == 1).all().all()
    assert (clean.groupby(key)["term"].nunique() == 4).sum() > 100
    # Study years turn over each September, not in February.
    pairs = clean.merge(clean.assign(t=clean["t"] - 1), on=key + ["t"], suffixes=("", "_next"))
    both = pairs[(pairs["status"] == "studying") & (pairs["status_next"] == "studying")]
    step = both["study_year_next"] - both["study_year"]
    assert ((step == 1) == (both["t"] % 2 == 1)).all() and step.isin([0, 1]).all()
    # Leaving the rolls is reported once, and the student is then gone; leave lasts one or two terms.
    last = clean.groupby(key)["t"].transform("max")
    ends = clean[clean["status"].isin(["graduated", "dropped_out", "transferred"])]
    assert (ends["t"] == last[ends.index]).all()
    assert set(ends["status"]) == {"graduated", "dropped_out", "transferred"} or len(ends) > 0
    leave_terms = clean[clean["status"] == "on_leave"].groupby(key).size()
    assert len(leave_terms) > 0 and leave_terms.max() <= 2


def test_personal_data_looks_vietnamese(rows):
    people = rows[rows["student_id"] != ""].drop_duplicates(["university", "student_id"])
    assert (people["full_name"] == people["full_name"].map(lambda s: unicodedata.normalize("NFC", s))).all()
    assert people["full_name"].str.split().str[0].value_counts().index[0] == "Nguyễn"
    assert people["national_id"].str.fullmatch(r"\d{12}").all()
    # One national id per person; a person holds two student records only as a continuer: the same
    # university's first degree, then its master's (same name, birth date and gender).
    twice = people[people["national_id"].duplicated(keep=False)].sort_values(["national_id", "intake_year"])
    assert len(twice) and (twice.groupby("national_id").size() == 2).all()
    pairs = twice.groupby("national_id").agg(levels=("degree_level", tuple), unis=("university", "nunique"),
                                             names=("full_name", "nunique"), births=("birth_date", "nunique"))
    assert pairs["levels"].isin([("bachelor", "master"), ("engineer", "master")]).all()
    assert (pairs[["unis", "names", "births"]] == 1).all().all()
    born = pd.to_datetime(people["birth_date"], format="mixed", dayfirst=True).dt.year
    # CCCD: gender-and-century digit, then the two last digits of the birth year.
    digit = people["national_id"].str[3].astype(int)
    assert ((digit % 2 == 1) == (people["gender"] == "F"))[people["gender"] != "?"].all()
    assert (people["national_id"].str[4:6].astype(int) == born % 100).all()
    undergrad = people["degree_level"].isin(["bachelor", "engineer"]) & people["intake_year"].astype(int).lt(2030)
    assert ((people["intake_year"].astype(int) - born)[undergrad] == 18).mean() > 0.7
    assert {"bachelor", "engineer", "master"} <= set(people["degree_level"])


def test_demo_records_its_national_fraction_and_continuers(small):
    _, truth = small
    assert 0 < truth["national_fraction"] < 1 / 16 and truth["continuers"] > 0


def test_every_office_style_appears(small):
    root, truth = small
    assert set(truth["styles"].values()) == set(STYLES)
    paths = files(root / "enrollment").values()
    heads = [p.read_bytes()[:200] for p in paths if p.suffix == ".csv"]
    assert any(p.suffix == ".xlsx" for p in paths)
    assert any(h.startswith(b"\xef\xbb\xbf") for h in heads)  # Excel's "CSV UTF-8"
    assert any(h.startswith(b"ma_sv;") or b";ma_sv;" in h for h in heads)
    assert any(b"Student ID" in h for h in heads)


def test_planted_mistakes_are_there_and_counted(rows, small):
    root, truth = small
    year = rows["term"].str[:4].astype(int)
    named = rows[rows["student_id"] != ""]
    found = {
        "unknown_programme": (rows["programme_code"] == "7999999").sum(),
        "study_year_12": (rows["study_year"] == "12").sum(),
        "empty_student_id": (rows["student_id"] == "").sum(),
        "gender_unknown": (rows["gender"] == "?").sum(),
        "future_intake": (rows["intake_year"].astype(int) > year).sum(),
        "duplicate_row": named.duplicated(keep="first").sum(),
    }
    assert found == truth["row_mistakes"]
    assert all(truth["row_mistakes"][k] > 0 for k in MISTAKES)
    assert 0.003 < sum(found.values()) / len(rows) < 0.008


def test_special_submissions(small):
    root, truth = small
    rejected = read(root / truth["rejected_file"])
    assert "status" not in rejected.columns and "student_id" in rejected.columns
    old, new = root / truth["superseded_file"], root / truth["resubmitted_file"]
    assert old.parent == new.parent and old.stat().st_mtime < new.stat().st_mtime
    assert 0.45 < len(read(old)) / len(read(new)) < 0.75
    copy, original = root / truth["duplicate_file"], root / truth["duplicate_of"]
    assert copy.parent == original.parent and copy.name != original.name
    assert sha(copy) == sha(original) and copy.stat().st_mtime < original.stat().st_mtime
    late = root / truth["late_file"]
    assert late.parent.name < truth["terms"][-1]
    last_term = [p for p in files(root / "enrollment").values() if p.parent.name == truth["terms"][-1]]
    assert late.stat().st_mtime > max(p.stat().st_mtime for p in last_term)


def test_placements_respect_slots_and_eligibility(small, rows):
    root, truth = small
    assert list(truth["placements"]) == ["2025H1"]
    placed = pd.read_csv(root / "placements/2025H1/placements_2025H1.csv", dtype=str, keep_default_na=False)
    assert list(placed.columns) == ["round", "university_code", "student_id", "host_code", "track", "outcome",
                                    "semiconductor_job"]
    assert len(placed) == truth["placements"]["2025H1"] > 0
    slots = pd.read_csv(REFERENCE / "host_slots.csv").query("round == '2025H1'")
    used = placed.groupby(["host_code", "track"]).size().rename("used").reset_index()
    check = used.merge(slots, on=["host_code", "track"], how="left")
    assert (check["used"] <= check["slots"]).all()
    assert not placed.duplicated(["university_code", "student_id"]).any()
    # Placed students graduated in the year before the round, from a programme of the placement's track.
    # A graduation may sit in the rejected file, which has no status column, or carry a planted mistake.
    rejected = truth["rejected_file"]
    everything = pd.concat([rows, read(root / rejected).assign(university=rejected.split("/")[1],
                                                                term=rejected.split("/")[2])])
    programmes = pd.read_csv(REFERENCE / "programmes.csv", dtype=str)
    last = everything.sort_values("term").drop_duplicates(["university", "student_id"], keep="last")
    last = last.merge(programmes[["programme_code", "track"]], on="programme_code")
    match = placed.merge(last, left_on=["university_code", "student_id", "track"],
                         right_on=["university", "student_id", "track"])
    assert len(match) == len(placed) and match["term"].isin(["2023-1", "2023-2", "2024-1"]).all()
    assert match["status"].fillna("graduated").eq("graduated").mean() > 0.9
    assert placed["outcome"].isin(["completed", "withdrew"]).all()
    assert ((placed["semiconductor_job"] == "") == (placed["outcome"] == "withdrew")).all()


def test_pilot_rounds_follow_the_last_term():
    rounds = ["2025H1", "2025H2", "2026H1", "2026H2"]
    assert pilot_rounds("2025-2", rounds) == ["2025H1", "2025H2", "2026H1"]
    assert pilot_rounds("2025-1", rounds) == ["2025H1", "2025H2"]
    assert pilot_rounds("2024-2", rounds) == ["2025H1"]
    assert pilot_rounds("2023-2", rounds) == []


def test_scale_multiplies_the_students(small, tmp_path):
    _, truth = small
    double = generate_demo(tmp_path, REFERENCE, scale=2, **SMALL)
    ratio = sum(double["students_per_term"].values()) / sum(truth["students_per_term"].values())
    assert 1.7 < ratio < 2.3
    assert double["universities"] == truth["universities"]
