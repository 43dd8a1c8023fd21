"""Checks on the committed reference data (data/reference/*.csv); plain pandas."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from vietnam_provinces import Province

REPO = Path(__file__).resolve().parent.parent
REF = REPO / "data" / "reference"
SOURCE = REPO.parent / "shared" / "reference" / "vn_institutions_public_list.csv"

TRACKS = {"design", "fabrication", "packaging_testing", "equipment"}
REGIONS = {
    "Red River Delta", "Northern Midlands and Mountains", "North Central and Central Coast",
    "Central Highlands", "Southeast", "Mekong Delta",
}
OFFICIAL = {int(p.code): p.name for p in Province.iter_all()}
FILES = ["universities", "regions", "programmes", "hosts", "host_slots", "targets"]


def load(name: str) -> pd.DataFrame:
    # Everything as text: codes such as 7520207 must not become numbers silently.
    return pd.read_csv(REF / f"{name}.csv", dtype=str, keep_default_na=False, encoding="utf-8")


@pytest.mark.parametrize("name", FILES)
def test_files_are_utf8_nfc_without_bom(name):
    raw = (REF / f"{name}.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8")
    assert text == unicodedata.normalize("NFC", text)


def test_official_list_has_34_provinces():
    assert len(OFFICIAL) == 34


def test_universities_registry():
    u = load("universities")
    assert list(u.columns) == [
        "university_code", "name_vi", "abbreviation", "website", "kind", "address_pre2025",
        "province_pre2025", "province_2025", "province_2025_code", "region",
        "participates", "participation_reason",
    ]
    assert len(u) == 244 and set(u["kind"]) == {"university"}
    assert u["university_code"].is_unique
    assert u["university_code"].str.fullmatch(r"[A-Z0-9]{2,12}").all()
    assert u["university_code"].tolist() == sorted(u["university_code"])
    assert set(u["participates"]) <= {"true", "false"}
    assert (u["participates"] == "true").sum() >= 160
    assert (u["participation_reason"] != "").all()
    assert (u["province_pre2025"] != "").all()
    assert set(u["province_2025"]) <= set(OFFICIAL.values())
    assert all(OFFICIAL[int(c)] == n for c, n in zip(u["province_2025_code"], u["province_2025"]))
    assert set(u["region"]) <= REGIONS


@pytest.mark.parametrize("code", ["HUST", "HCMUT", "DUT", "UET", "HUS", "HCMUS", "FPT", "EPU", "PTIT"])
def test_engineering_schools_take_part(code):
    u = load("universities").set_index("university_code")
    assert u.loc[code, "participates"] == "true"


def test_regions_cover_the_34_provinces():
    r = load("regions")
    assert sorted(int(c) for c in r["province_2025_code"]) == sorted(OFFICIAL)
    assert all(OFFICIAL[int(c)] == n for c, n in zip(r["province_2025_code"], r["province_2025"]))
    assert set(r["region"]) == REGIONS
    assert (r["source"] != "").all()
    u = load("universities").merge(r, on="province_2025_code", suffixes=("", "_r"))
    assert (u["region"] == u["region_r"]).all()


def test_programmes():
    p = load("programmes")
    assert p["programme_code"].is_unique
    assert p["programme_code"].str.fullmatch(r"\d{7}").all()
    assert set(p["track"]) <= TRACKS
    prefix = {"undergraduate": "7", "master": "8", "doctor": "9"}
    assert all(c[0] == prefix[lvl] for c, lvl in zip(p["programme_code"], p["level"]))
    assert {"7520207", "7510302"} <= set(p["programme_code"])
    assert p["normal_years"].astype(int).between(1, 6).all()
    assert (p["source"] != "").all()


def test_hosts_and_slots():
    h = load("hosts")
    assert h["host_code"].is_unique
    assert h["host_code"].str.fullmatch(r"(KR|VN)-[A-Z0-9-]+").all()
    assert set(h["host_type"]) <= {"company", "research_centre", "university", "domestic_lab"}
    assert 2 <= (h["host_type"] == "domestic_lab").sum() <= 4
    host_tracks = {c: set(t.split("|")) for c, t in zip(h["host_code"], h["tracks"])}
    assert all(t <= TRACKS for t in host_tracks.values())

    s = load("host_slots")
    assert s["round"].str.fullmatch(r"20(2[5-9]|30)H[12]").all()
    assert s.duplicated(["round", "host_code", "track"]).sum() == 0
    assert set(s["host_code"]) <= set(host_tracks)
    assert set(s["track"]) <= TRACKS
    assert all(t in host_tracks[c] for c, t in zip(s["host_code"], s["track"]))
    slots = s["slots"].astype(int)
    assert (slots > 0).all()
    per_round = slots.groupby(s["round"]).sum()
    assert list(per_round.index) == [f"{y}H{n}" for y in range(2025, 2031) for n in (1, 2)]
    # Baseline: domestic labs open only in scenarios.
    domestic = set(h.loc[h["host_type"] == "domestic_lab", "host_code"])
    assert not domestic & set(s["host_code"])


def test_targets_add_up():
    t = load("targets")
    t["target"] = t["target"].astype(int)
    at = lambda dim: t[(t["target_year"] == "2030") & (t["dimension"] == dim)].set_index("category")["target"]
    total = at("total")["all"]
    assert total == 50000
    assert set(at("track_group").index) == {"design", "fab_pkg_test"}
    assert at("track_group").sum() == total
    assert set(at("degree_level").index) == {"bachelor_engineer", "master", "doctor"}
    assert at("degree_level").sum() == total
    assert t["source"].str.contains("1017/QĐ-TTg").all()


def test_builder_reproduces_committed_universities(tmp_path):
    if not SOURCE.exists():
        pytest.skip(f"public source list not available at {SOURCE}")
    from transforms import reference_build

    out = tmp_path / "universities.csv"
    assert reference_build.main(["--source", str(SOURCE), "--out", str(out)]) == 0
    assert out.read_bytes() == (REF / "universities.csv").read_bytes()


def test_university_codes_ignore_row_order(tmp_path):
    if not SOURCE.exists():
        pytest.skip(f"public source list not available at {SOURCE}")
    from transforms import reference_build

    source = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    shuffled = tmp_path / "reversed.csv"
    source.iloc[::-1].to_csv(shuffled, index=False)
    out = tmp_path / "universities.csv"
    reference_build.main(["--source", str(shuffled), "--out", str(out)])
    assert out.read_bytes() == (REF / "universities.csv").read_bytes()
