"""The landing zone decides whose file it is and which files are taken (issue 13, items 4, 5 and 8).

* a folder swapped for a symbolic link after the scan never makes a file outside the zone be read;
* term folders after the current term (by the clock in Vietnam) or outside the collection's terms
  are refused with a reason, and never become the latest term;
* the same bytes in another university's folder are that university's own submission, with a warning;
* the latest term is the latest one with accepted submissions from the stated share of universities.

The corpus is made here: a small demo collection, plus the files and folders each case plants.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from transforms.ingest import landing
from transforms.ingest import stage as ing

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "data" / "reference"
KEY = b"test-key-not-secret"
WINDOW = landing.TermWindow(first="2020-1", last=None, current="2026-1")


@pytest.fixture(scope="module")
def two_universities(tmp_path_factory) -> tuple[Path, dict]:
    """Two universities' valid files for one term (the demo generator's), kept read-only: copy them."""
    from transforms.demo.generate import generate_demo

    root = tmp_path_factory.mktemp("landing-corpus")
    summary = generate_demo(root / "landing", REFERENCE, universities=2, first_term="2024-1", last_term="2024-1")
    return root / "landing", summary


def _zone(tmp_path: Path, corpus: tuple[Path, dict]) -> tuple[Path, list[Path]]:
    """A fresh copy of the two universities' landing zone, and their enrollment files: first the one
    that is read and staged, then the one the demo makes unreadable on purpose (its `rejected_file`)."""
    zone = tmp_path / "landing"
    shutil.copytree(corpus[0], zone, copy_function=shutil.copy2)
    files = sorted(p for p in (zone / "enrollment").rglob("*") if p.is_file())
    rejected = zone / corpus[1]["rejected_file"]
    assert len(files) == 2 and rejected in files
    return zone, [f for f in files if f != rejected] + [rejected]


def _stage(files, tmp_path, known=None):
    known = known or ing.KnownFiles({}, {})
    work = tmp_path / "work"
    return ing.stage_submissions(ing.new_files(files, known), known, work, key=KEY, reference_dir=REFERENCE)


def _secret(tmp_path: Path, like: Path) -> Path:
    """A valid file outside the zone (a copy of a real submission): were it read, it would be staged."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy2(like, outside / like.name)
    return outside


# ---------------------------------------------------------------- item 8: the scan cannot be redirected

def test_symlinked_university_and_term_folders_are_refused_at_the_scan(tmp_path, two_universities):
    zone, files = _zone(tmp_path, two_universities)
    outside = _secret(tmp_path, files[0])
    (zone / "enrollment" / "EVIL").symlink_to(outside.parent, target_is_directory=True)
    uni = files[0].parent.parent
    (uni / "2024-2").symlink_to(outside, target_is_directory=True)
    found = {f.relpath: f for f in landing.scan(zone, WINDOW)}
    assert "symbolic link (to a folder) pointing outside the landing zone" in found["enrollment/EVIL"].problem
    term_link = found[f"enrollment/{uni.name}/2024-2"]
    assert "symbolic link (to a folder)" in term_link.problem and term_link.term is None
    assert not any(rel.endswith(f"/{files[0].name}") and "EVIL" in rel for rel in found)  # never entered
    subs = _stage(list(found.values()), tmp_path)
    links = {"enrollment/EVIL", f"enrollment/{uni.name}/2024-2"}
    assert {s.landed.relpath: s.status for s in subs if s.landed.relpath in links} == dict.fromkeys(links, "rejected")


@pytest.mark.parametrize("when", ["before hashing", "after hashing"])
def test_a_term_folder_swapped_for_a_link_after_the_scan_is_never_followed(tmp_path, two_universities, when):
    zone, files = _zone(tmp_path, two_universities)
    target = files[0]
    outside = _secret(tmp_path, target)
    term = target.parent

    def swap():  # the folder moves away and a link to the outside takes its name
        os.rename(term, tmp_path / "moved-away")
        term.symlink_to(outside, target_is_directory=True)

    listed = landing.scan(zone, WINDOW)
    mine = next(f for f in listed if f.path == target)
    known = ing.KnownFiles({}, {})
    if when == "before hashing":
        swap()
        new = ing.new_files(listed, known)
    else:
        new = ing.new_files(listed, known)
        assert mine.sha256 is not None
        swap()
    subs = ing.stage_submissions(new, known, tmp_path / "work", key=KEY, reference_dir=REFERENCE)
    swapped = next(s for s in subs if s.landed.path == target)
    assert swapped.status == "rejected"
    assert "became a symbolic link" in swapped.reason and "nothing outside the landing zone was read" in swapped.reason
    assert swapped.staged is None and swapped.rows_read == 0
    others = [s for s in subs if s.landed.path != target]  # the other university keeps its own verdict
    assert others and all("symbolic link" not in (s.reason or "") for s in others)
    assert swapped.rule == "ING.file.link"  # named where the file was refused, stored beside the reason


def test_a_file_replaced_after_the_scan_is_not_read_as_the_file_listed(tmp_path, two_universities):
    zone, files = _zone(tmp_path, two_universities)
    listed = landing.scan(zone, WINDOW)
    new = ing.new_files(listed, ing.KnownFiles({}, {}))
    # Same name, same bytes, but another file (a re-upload, or a hard link to something else).
    replacement = tmp_path / "replacement"
    shutil.copy2(files[0], replacement)
    os.replace(replacement, files[0])
    subs = ing.stage_submissions(new, ing.KnownFiles({}, {}), tmp_path / "work", key=KEY, reference_dir=REFERENCE)
    replaced = next(s for s in subs if s.landed.path == files[0])
    assert replaced.status == "rejected" and "changed while it was being ingested" in replaced.reason


def test_open_landed_walks_the_zone_without_following_links(tmp_path, two_universities):
    zone, files = _zone(tmp_path, two_universities)
    f = next(x for x in landing.scan(zone, WINDOW) if x.path == files[0])
    assert landing.hash_landed(f) == landing.sha256_of(files[0])
    f.sha256 = landing.hash_landed(f)
    assert landing.read_landed(f, 1 << 30) == files[0].read_bytes()
    with pytest.raises(landing.LandedFileRefused, match="over the 10-byte limit"):
        landing.read_landed(f, 10)
    # The university folder (not the term folder) swapped: still refused, naming that folder.
    uni = files[0].parent.parent
    os.rename(uni, tmp_path / "uni-away")
    uni.symlink_to(tmp_path / "uni-away", target_is_directory=True)  # even a link back to the real files
    with pytest.raises(landing.LandedFileRefused, match=f"the folder 'enrollment/{uni.name}' became a symbolic link"):
        landing.open_landed(f)


# ---------------------------------------------------------------- item 5: no file from the future

def test_the_term_calendar_on_vietnam_time():
    assert landing.term_on(date(2026, 9, 1)) == "2026-1"
    assert landing.term_on(date(2027, 1, 31)) == "2026-1"
    assert landing.term_on(date(2027, 2, 1)) == "2026-2"
    assert landing.term_on(date(2027, 8, 31)) == "2026-2"  # summer: no term has begun since semester 2
    # 31 January 17:00 UTC is 1 February in Vietnam: semester 2 has begun there.
    assert landing.current_term(datetime(2027, 1, 31, 16, 59, tzinfo=timezone.utc)) == "2026-1"
    assert landing.current_term(datetime(2027, 1, 31, 17, 0, tzinfo=timezone.utc)) == "2026-2"


def test_term_folders_after_the_current_term_or_outside_the_range_are_refused(tmp_path, two_universities):
    zone, files = _zone(tmp_path, two_universities)
    uni = files[0].parent.parent
    for term in ("2026-1", "2026-2", "2031-1", "2019-2"):
        (uni / term).mkdir()
        shutil.copy2(files[0], uni / term / files[0].name)
    window = landing.TermWindow(first="2020-1", last=None, current="2026-1")
    found = {f.relpath: f for f in landing.scan(zone, window)}
    at = lambda term: found[f"enrollment/{uni.name}/{term}/{files[0].name}"]  # noqa: E731
    assert at("2026-1").problem is None and at("2026-1").term == "2026-1"
    for term in ("2026-2", "2031-1"):
        assert f"folder '{term}' is a term after the current term 2026-1" in at(term).problem
        assert at(term).term is None and at(term).university_code == uni.name  # no mart counts the term
    assert "outside the collection's terms (before its first term 2020-1" in at("2019-2").problem
    capped = landing.TermWindow(first="2020-1", last="2025-2", current="2026-1")
    assert "after its last term 2025-2" in {f.relpath: f for f in landing.scan(zone, capped)}[
        f"enrollment/{uni.name}/2026-1/{files[0].name}"].problem
    assert at("2031-1").rule == "ING.file.term_future" and at("2026-2").rule == "ING.file.term_future"
    assert at("2019-2").rule == "ING.file.term_range" and at("2026-1").rule is None
    subs = _stage(list(found.values()), tmp_path)
    refused = [s for s in subs if s.landed.term is None and s.landed.university_code == uni.name]
    assert len(refused) == 3 and all(s.status == "rejected" and s.rows_read == 0 for s in refused)


def test_a_file_refused_for_its_term_is_taken_once_the_term_has_begun(tmp_path, two_universities):
    zone, files = _zone(tmp_path, two_universities)
    early = files[0].parent.parent / "2026-2"
    early.mkdir()
    shutil.copy2(files[0], early / "sent early.csv")
    rel = f"enrollment/{early.parent.name}/2026-2/sent early.csv"
    before = {f.relpath: f for f in landing.scan(zone, landing.TermWindow("2020-1", None, "2026-1"))}
    assert "after the current term" in before[rel].problem
    # What the manifest then holds: the file by its path, refused before it was read (no sha256).
    known = ing.KnownFiles({f.relpath: (f.size, f.mtime, None if f.problem else landing.hash_landed(f))
                            for f in before.values()}, {})
    assert ing.new_files(list(before.values()), known) == []  # still refused, already recorded: not again
    after = landing.scan(zone, landing.TermWindow("2020-1", None, "2026-2"))
    taken = ing.new_files(after, known)
    assert [f.relpath for f in taken] == [rel] and taken[0].term == "2026-2" and taken[0].sha256
    assert taken[0].file_id != before[rel].file_id  # a manifest row of its own


def test_the_collection_settings_are_checked(tmp_path):
    from transforms.config import CollectionSettings

    assert CollectionSettings.from_reference(REFERENCE).latest_term_min_share == 0.5
    (tmp_path / "collection.csv").write_text("setting,value,note\nfirst_term,2020-3,\n")
    with pytest.raises(ValueError, match="collection.csv, setting first_term, field value"):
        CollectionSettings.from_reference(tmp_path)
    (tmp_path / "collection.csv").write_text("setting,value,note\nlatest_term_min_share,1.5,\n")
    with pytest.raises(ValueError, match="not a share in"):
        CollectionSettings.from_reference(tmp_path)
    (tmp_path / "collection.csv").write_text("setting,value,note\nlast_trem,2025-2,\n")
    with pytest.raises(ValueError, match="line 2, field setting: unknown setting 'last_trem'"):
        CollectionSettings.from_reference(tmp_path)


# ---------------------------------------------------------------- item 4: the folder decides whose rows

def test_the_same_bytes_in_another_universitys_folder_are_its_own_submission(tmp_path, two_universities):
    zone, files = _zone(tmp_path, two_universities)
    a, b = files[0], files[1]
    assert a.parent.parent != b.parent.parent
    b.unlink()
    copy = b.parent / "copied from a.csv"
    shutil.copy2(a, copy)
    again = a.parent / "sent twice.csv"  # the same bytes twice in the same folder: that is a duplicate
    shutil.copy2(a, again)
    os.utime(again, (a.stat().st_mtime + 60,) * 2)
    found = landing.scan(zone, WINDOW)
    subs = {s.landed.path: s for s in _stage(found, tmp_path)}
    assert subs[a].status == "staged" and subs[copy].status == "staged"
    assert subs[copy].landed.university_code == b.parent.parent.name
    assert subs[again].status == "duplicate" and a.name in subs[again].reason
    # Across staging groups and against the manifest: the key is the folder and the content.
    by_content = {subs[a].landed.content_key: (f"enrollment/{a.parent.parent.name}/2024-1/{a.name}", "loaded")}
    known = ing.KnownFiles({}, by_content)
    fresh = landing.scan(zone, WINDOW)
    again_subs = {s.landed.path: s for s in ing.stage_submissions(ing.new_files(fresh, known), known, tmp_path / "w2",
                                                                   key=KEY, reference_dir=REFERENCE)}
    assert again_subs[a].status == "duplicate" and again_subs[copy].status == "staged"


# ---------------------------------------------------------------- through the real pipeline

def _dump(con) -> str:
    return "\n".join(str(r) for t in ("ops.manifest", "ops.validation_results")
                     for r in con.execute(f"SELECT * FROM {t}").fetchall())


def test_pipeline_strays_do_not_move_the_latest_term_and_copies_are_warned(prefect_harness, tmp_path):
    """A real run: a copy of university A's file in university C's folder, a term sent by one
    university only, then (second run) a valid file in a far-future folder."""
    from flows.pipeline import pipeline
    from transforms.demo.generate import generate_demo

    data = tmp_path / "data"
    summary = generate_demo(data / "landing", REFERENCE, universities=3, first_term="2023-1", last_term="2024-2")
    codes = summary["universities"]
    enrollment = data / "landing" / "enrollment"

    def first_file(code, term):
        return sorted((enrollment / code / term).iterdir())[0]

    a_file = first_file(codes[0], "2024-2")
    c_folder = enrollment / codes[2] / "2024-2"
    for p in c_folder.iterdir():
        p.unlink()
    shutil.copy2(a_file, c_folder / "danh_sach.csv")           # A's bytes as C's submission
    (enrollment / codes[0] / "2025-1").mkdir()
    shutil.copy2(a_file, enrollment / codes[0] / "2025-1" / a_file.name)  # only A has sent 2025-1

    first = pipeline(data_dir=str(data))
    snapshot = data / "published" / "lab2fab.duckdb"
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        current = con.execute("SELECT term, universities_accepted, universities_reporting "
                              "FROM marts.current_term").fetchone()
        assert current == ("2024-2", 3, 3), current
        m = con.execute("SELECT path, status, university_code, term, reason FROM ops.manifest").df().set_index("path")
        c_rel = f"enrollment/{codes[2]}/2024-2/danh_sach.csv"
        a_rel = a_file.relative_to(data / "landing").as_posix()
        assert m.loc[c_rel, "status"] != "duplicate" and m.loc[c_rel, "university_code"] == codes[2]
        assert m.loc[f"enrollment/{codes[0]}/2025-1/{a_file.name}", "status"] == "loaded"
        warnings = con.execute("""SELECT m.path, v.rule_id, v.observed FROM ops.validation_results v
                                  JOIN ops.manifest m USING (file_id) WHERE v.rule_id LIKE 'ING.file.matches%'""").df()
        assert (c_rel, "ING.file.matches_other_university") in set(zip(warnings.path, warnings.rule_id))
        assert a_rel not in set(warnings.path)  # the first copy received is not the one warned
        assert (f"enrollment/{codes[0]}/2025-1/{a_file.name}", "ING.file.matches_other_period") in set(
            zip(warnings.path, warnings.rule_id))
        # The programme office finds the other file by its sha256; the university's own outputs never name it.
        same = con.execute("SELECT count(DISTINCT university_code) FROM ops.manifest WHERE sha256 = "
                           "(SELECT sha256 FROM ops.manifest WHERE path = ?)", [c_rel]).fetchone()[0]
        assert same == 2
        assert a_rel not in " ".join(warnings.observed.astype(str))
        university_summary = con.execute("SELECT count(*) FROM marts.university_summary WHERE students_latest_term > 0"
                                         ).fetchone()[0]
        assert university_summary == 3
        headline = con.execute("SELECT * FROM marts.model_headline ORDER BY ALL").df()
    finally:
        con.close()
    assert first["last_term"] == "2024-2"
    feedback = data / "published" / "feedback" / codes[2]
    doc = json.loads((feedback / "2024-2.json").read_text())
    assert "ING.file.matches_other_university" in {r["rule_id"] for r in doc["reasons"]}
    for path in feedback.iterdir():
        text = path.read_text(encoding="utf-8-sig")
        assert a_rel not in text and a_file.name not in text and f"/{codes[0]}/" not in text, path
    assert "data to term 2024-2" in (data / "published" / "report.html").read_text()

    # Second run: one valid file in a far-future folder is refused and moves nothing.
    (enrollment / codes[1] / "2031-1").mkdir()
    shutil.copy2(first_file(codes[1], "2024-2"), enrollment / codes[1] / "2031-1" / "future.csv")
    second = pipeline(data_dir=str(data))
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        row = con.execute("SELECT status, term, university_code, reason FROM ops.manifest WHERE path = ?",
                          [f"enrollment/{codes[1]}/2031-1/future.csv"]).fetchone()
        assert row[0] == "rejected" and row[1] is None and row[2] == codes[1]
        assert "is a term after the current term" in row[3]
        assert con.execute("SELECT term FROM marts.current_term").fetchone()[0] == "2024-2"
        assert con.execute("SELECT count(*) FROM marts.submission_status WHERE term = '2031-1'").fetchone()[0] == 0
        pd.testing.assert_frame_equal(con.execute("SELECT * FROM marts.model_headline ORDER BY ALL").df(), headline)
    finally:
        con.close()
    assert second.get("last_term", "2024-2") == "2024-2"
    unknown = json.loads((data / "published" / "feedback" / codes[1] / "unknown-term.json").read_text())
    assert "ING.file.term_future" in {r["rule_id"] for r in unknown["reasons"]}
