"""Build data/reference/universities.csv from the public list of institutions.

    python -m transforms.reference_build --source ../shared/reference/vn_institutions_public_list.csv

The committed CSV is the product; this script exists so that anyone can rebuild it and
get the same bytes. Rules (codes, provinces, participation) are documented in
data/reference/README.md; keep the two in step.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import unicodedata
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "data" / "reference"

COLUMNS = [
    "university_code", "name_vi", "abbreviation", "website", "kind", "address_pre2025",
    "province_pre2025", "province_2025", "province_2025_code", "region",
    "participates", "participation_reason",
]
CODE_MAX = 12
# Generic words ("university", "academy") some institutions put in front of their web
# name ("daihocnguyentrai"); they carry no identity, so they are dropped.
GENERIC_PREFIXES = ("DAIHOC", "HOCVIEN", "TRUONG")

# Participation: first matching rule wins, tested on the folded name (lower case, no
# diacritics, đ -> d). Exclusions of fields with no semiconductor pathway come first,
# so "Kỹ thuật Y - Dược" is medicine, not engineering; then engineering/science words;
# then single-field business/language schools; everything left is multi-disciplinary.
PARTICIPATION_RULES: list[tuple[str, bool, str]] = [
    ("excl_medicine_health", False, r"\by\b|\bduoc\b|dieu duong"),
    ("excl_arts", False, r"am nhac|nhac vien|hoc vien mua|my thuat|nghe thuat|san khau|dien anh"),
    ("excl_sports", False, r"the duc the thao"),
    ("excl_culture", False, r"van hoa"),
    ("excl_law_justice", False, r"luat|kiem sat|toa an"),
    ("excl_politics_public_admin", False,
     r"chinh tri|bao chi|can bo|hanh chinh|dan toc|phu nu|thanh thieu nien|ngoai giao"
     r"|quan ly giao duc|cong doan|noi vu|lao dong - xa hoi|khoa hoc xa hoi|chinh sach"),
    # Tech-focused universities whose names carry no field word are listed by name.
    ("incl_engineering_science", True,
     r"bach khoa|cong nghe|ky thuat|cong nghiep|khoa hoc|dien luc|buu chinh|dau khi|hang hai"
     r"|hang khong|giao thong|dia chat|thuy loi|xay dung|tin hoc"
     r"|\bfpt\b|\bcmc\b|phenikaa|vinuni|viet duc|viet nhat"),
    ("excl_business_finance", False,
     r"kinh te|tai chinh|ngan hang|thuong mai|ngoai thuong|marketing|kinh doanh|ke toan"),
    ("excl_foreign_languages", False, r"ngoai ngu"),
    # These run engineering faculties (mechatronics, electrical, automation, IT, geomatics).
    ("incl_agri_env_engineering", True, r"nong nghiep|nong lam|lam nghiep|tai nguyen va moi truong"),
    # Building-services and construction engineering: fab and cleanroom facilities.
    ("incl_architecture_building", True, r"kien truc"),
    ("incl_pedagogy", True, r"su pham|giao duc"),
    ("incl_multidisciplinary", True, r""),
]


def clean(text: str) -> str:
    """NFC, single spaces, trimmed: the form every text field is stored in."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text or "")).strip()


def fold(text: str) -> str:
    """Lower-case ASCII form for matching (Hoá/Hóa and Thuỷ/Thủy spellings compare equal)."""
    text = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def participation(name: str) -> tuple[bool, str]:
    folded = fold(name)
    for reason, participates, pattern in PARTICIPATION_RULES:
        if re.search(pattern, folded):
            return participates, reason
    raise AssertionError("the last rule matches everything")


def base_code(abbreviation: str, website: str) -> str:
    """Registry code from the institution's own abbreviation, else its web domain."""
    token = (abbreviation.split() or [""])[0]
    if not token:
        host = re.sub(r"^https?://", "", website).split("/")[0]
        token = re.sub(r"^www\d*\.", "", host).split(".")[0]
    code = re.sub(r"[^A-Z0-9]", "", fold(token).upper())
    for prefix in GENERIC_PREFIXES:
        if code.startswith(prefix) and len(code) > len(prefix) + 1:
            code = code[len(prefix):]
            break
    return code[:CODE_MAX]


def assign_codes(rows: list[dict]) -> None:
    """Give every row a unique code; ties are broken without looking at row order.

    1. code = first token of the abbreviation (or the web domain), A-Z0-9, without a
       leading generic DAIHOC/HOCVIEN/TRUONG, cut to 12 characters.
    2. Where codes collide, a member of a larger university ("ump vnu") appends its
       parent token (UMPVNU), so the institution that owns the plain name keeps it.
    3. Remaining ties: sorted by name (then address, website), the first keeps the code, the others get the
       lowest free digit suffix (PCTU, PCTU2); codes already used elsewhere are skipped.
    """
    for row in rows:
        row["university_code"] = base_code(row["abbreviation"], row["website"])
    by_code: dict[str, list[dict]] = {}
    for row in rows:
        by_code.setdefault(row["university_code"], []).append(row)
    for group in by_code.values():
        if len(group) > 1:
            for row in group:
                tokens = row["abbreviation"].split()
                if len(tokens) > 1:
                    joined = re.sub(r"[^A-Z0-9]", "", fold("".join(tokens)).upper())
                    row["university_code"] = joined[:CODE_MAX]
    used = {row["university_code"] for row in rows}
    by_code = {}
    for row in sorted(rows, key=lambda r: (r["name_vi"], r["address_pre2025"], r["website"])):
        by_code.setdefault(row["university_code"], []).append(row)
    for code, group in sorted(by_code.items()):
        for row in group[1:]:
            n = 2
            while (candidate := code[: CODE_MAX - len(str(n))] + str(n)) in used:
                n += 1
            row["university_code"] = candidate
            used.add(candidate)


class ProvinceMapper:
    """Old (63-province) and new (34-province) province of a pre-2025 address.

    All mapping comes from vietnam_address_converter; names are then checked against
    the official 34 of vietnam_provinces. Because the 2025 reform merged whole
    provinces, the province part of an address is enough to know the new province, so
    it is used both as a cross-check and as the fallback.
    """

    def __init__(self) -> None:
        from vietnam_address_converter import convert_address_text
        from vietnam_address_converter.conversion import convert_old_to_new
        from vietnam_provinces import Province

        self._convert_text = convert_address_text
        self._convert_fields = convert_old_to_new
        self.official = {p.codename: p for p in Province.iter_all()}
        self.by_code = {p.code: p for p in self.official.values()}
        if len(self.official) != 34:
            raise RuntimeError(f"vietnam_provinces lists {len(self.official)} provinces, not 34")
        self.fallbacks: list[tuple[str, str]] = []  # (address, what mapped it instead)

    def _official(self, converter_province: dict):
        # The converter's own province codes are not the official ones; its slug is
        # the official codename with dashes ("ho-chi-minh" -> "ho_chi_minh").
        key = converter_province["slug"].replace("-", "_")
        if key not in self.official:
            raise RuntimeError(f"converter province {converter_province} is not among the official 34")
        return self.official[key]

    def _by_part(self, field: str, part: str) -> tuple[set, set]:
        """(old names, new official provinces) of every ward under a province/district name."""
        result = self._convert_fields({field: part}, {"allowBroadMatch": True})
        olds = {c["old"]["province"]["name"] for c in result["candidates"] if c.get("old")}
        news = {self._official(c["new_province"]).code for c in result["candidates"]}
        return olds, news

    def resolve(self, address: str) -> tuple[str, object] | None:
        """(province_pre2025, official new Province), or None when nothing maps."""
        result = self._convert_text(address)
        conversion = result.get("conversion") or {}
        converted = (result.get("converted") or {}).get("province")
        candidates = conversion.get("candidates") or []
        # Ward-level "ambiguous" is fine as long as every candidate is in one province.
        new_codes = ({self._official(converted).code} if converted
                     else {self._official(c["new_province"]).code for c in candidates})
        olds = {c["old"]["province"]["name"] for c in candidates if c.get("old")}
        if (conversion.get("old") or {}).get("province"):
            olds.add(conversion["old"]["province"]["name"])

        # The last non-empty comma part is normally the province; a few source rows give
        # a city or district there instead ("Bà Rịa, Vũng Tàu", "Cầu Giấy,"), so that
        # part is tried as a province name first, then as a district name.
        part = next((p for p in reversed(address.split(",")) if p.strip()), "").strip()
        for field in ("province_name", "district_name"):
            part_olds, part_news = self._by_part(field, part)
            if len(part_olds) == 1 and len(part_news) == 1:
                if len(new_codes) == 1 and new_codes != part_news:
                    raise RuntimeError(f"{address!r}: full address and province part disagree")
                if len(new_codes) != 1:
                    self.fallbacks.append((address, f"{field.removesuffix('_name')} part {part!r}"))
                new_codes, olds = part_news, part_olds
                break
        if len(new_codes) != 1 or len(olds) != 1:
            return None
        return olds.pop(), self.by_code[new_codes.pop()]


def load_regions(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8", newline="") as f:
        return {int(r["province_2025_code"]): r["region"] for r in csv.DictReader(f)}


def build(source: Path, regions_path: Path) -> tuple[list[dict], ProvinceMapper]:
    with source.open(encoding="utf-8-sig", newline="") as f:
        rows = [{k: clean(v) for k, v in r.items()} for r in csv.DictReader(f)]
    rows = [r for r in rows if r["kind"] == "university"]
    regions = load_regions(regions_path)
    mapper = ProvinceMapper()
    unmapped = []
    out = []
    for r in rows:
        resolved = mapper.resolve(r["address"])
        if resolved is None:
            unmapped.append(f"{r['name_vi']} | {r['address']!r}")
            continue
        old, new = resolved
        code = int(new.code)
        if code not in regions:
            raise RuntimeError(f"no region for province {code} {new.name} in {regions_path}")
        participates, reason = participation(r["name_vi"])
        out.append({
            "name_vi": r["name_vi"], "abbreviation": r["abbreviation"], "website": r["website"],
            "kind": r["kind"], "address_pre2025": r["address"], "province_pre2025": clean(old),
            "province_2025": clean(new.name), "province_2025_code": code,
            "region": regions[code], "participates": "true" if participates else "false",
            "participation_reason": reason,
        })
    if unmapped:
        raise RuntimeError("addresses the converter could not map to a province:\n  "
                           + "\n  ".join(unmapped))
    assign_codes(out)
    out.sort(key=lambda r: r["university_code"])
    return out, mapper


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True,
                        help="vn_institutions_public_list.csv (name_vi,address,abbreviation,website,kind)")
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR / "universities.csv")
    parser.add_argument("--regions", type=Path, default=REFERENCE_DIR / "regions.csv")
    args = parser.parse_args(argv)
    rows, mapper = build(args.source, args.regions)
    write_csv(rows, args.out)
    taking_part = sum(r["participates"] == "true" for r in rows)
    print(f"wrote {len(rows)} universities ({taking_part} take part) to {args.out}")
    if mapper.fallbacks:
        print("full address not mapped by the converter; mapped by:",
              *sorted({f"{a!r} <- {how}" for a, how in mapper.fallbacks}), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
