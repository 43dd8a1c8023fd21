"""Keyed pseudonymisation (HMAC-SHA256) of personal identifiers.

The key comes from $LAB2FAB_PSEUDONYM_KEY, or a Prefect Secret block named by
$LAB2FAB_PSEUDONYM_SECRET_BLOCK; only for local demo use is a key created in
`data/.secrets/` (never tracked). The warehouse remembers the key's fingerprint, so a run
with a different key stops before it writes anything.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
import hmac
import logging
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.config import settings

KEY_ENV = "LAB2FAB_PSEUDONYM_KEY"
BLOCK_ENV = "LAB2FAB_PSEUDONYM_SECRET_BLOCK"
log = logging.getLogger(__name__)


class PseudonymKeyError(RuntimeError):
    """The pseudonymisation key is missing or is not the one the warehouse was built with."""


def load_key(secrets_dir: Path, *, allow_demo_key: bool = True) -> bytes:
    s = settings()
    if s.pseudonym_key:
        return s.pseudonym_key.get_secret_value().encode()
    if s.pseudonym_secret_block:
        from prefect.blocks.system import Secret

        return Secret.load(s.pseudonym_secret_block).get().encode()
    key_file = secrets_dir / "pseudonym.key"
    if key_file.exists():
        return key_file.read_text().strip().encode()
    if not allow_demo_key:
        raise PseudonymKeyError(f"no pseudonymisation key: set ${KEY_ENV} or ${BLOCK_ENV} (a Prefect Secret block name)")
    secrets_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    log.warning("created a local demo pseudonymisation key at %s (set $%s for real data)", key_file, KEY_ENV)
    return key_file.read_text().strip().encode()


def fingerprint(key: bytes) -> str:
    """Identifies a key without revealing it."""
    return hmac.new(key, b"lab2fab key fingerprint", hashlib.sha256).hexdigest()[:16]


def pseudonymise(key: bytes, values: pd.Series, prefix: pd.Series | str | None = None) -> pd.Series:
    """HMAC-SHA256 hex of each non-empty value (optionally prefixed, e.g. by university code).

    With a prefix per value, a value whose prefix is missing has no key (null): a student number
    without its university cannot be pseudonymised, and the contract quarantines such a row.
    """
    text = values.astype("string").tolist()
    if prefix is None or isinstance(prefix, str):
        prefixes = prefix
    else:
        prefixes = prefix.astype("string").reindex(values.index).tolist()  # by index, as `prefix + text` aligned
    return pd.Series(pseudonymise_list(key, text, prefixes), index=values.index, dtype="string")


def pseudonymise_list(key: bytes, values: list, prefix: list | str | None = None) -> list:
    """`pseudonymise` over plain lists: a hex digest, or None for a missing or blank value, or for a
    value whose prefix (per value) is missing: e.g. a placement row's student number without its
    university code has no student key; the row is then quarantined (PLC.university_code.present),
    never the whole file refused.
    """
    messages: list = [None] * len(values)
    for i, v in enumerate(values):
        if not isinstance(v, str):  # None or pd.NA
            continue
        v = v.strip()
        if not v:
            continue
        if prefix is not None:
            p = prefix if isinstance(prefix, str) else prefix[i]
            if not isinstance(p, str):  # None or pd.NA: no key without the prefix
                continue
            v = p + ":" + v
        messages[i] = v.encode()
    return keyed_digests(key, messages)


def pseudonymise_arrow(key: bytes, values: pa.Array, prefix: pa.Array | str | None = None) -> pa.Array:
    """`pseudonymise_list` over an Arrow text column (as normalise.py holds a file's columns): the same
    digests, with the same rules for blank values and missing prefixes; the message is built in Arrow."""
    text = pa.large_string()
    values = values.cast(text)
    trimmed = pc.utf8_trim(values, characters=WHITESPACE)
    message = pc.if_else(pc.greater(pc.binary_length(trimmed), 0), trimmed, pa.scalar(None, text))
    if prefix is not None:
        prefix = pa.scalar(prefix, text) if isinstance(prefix, str) else prefix.cast(text)
        message = pc.binary_join_element_wise(prefix, message, pa.scalar(":", text))  # null if either is null
    return pa.array(keyed_digests(key, message.cast(pa.large_binary()).to_numpy(zero_copy_only=False)), type=text)


def keyed_digests(key: bytes, messages) -> list:
    """HMAC-SHA256 hex of each message (bytes), None for None; a third cheaper per value than `hmac`'s objects.

    HMAC as RFC 2104 defines it, SHA-256(key ^ opad || SHA-256(key ^ ipad || message)), from two
    SHA-256 states keyed once and copied per value: hmac.HMAC.copy() is Python code around the same
    states, and `hmac.digest` re-keys on every call. tests/test_normalise_fast.py compares it with `hmac`.
    """
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key)).copy
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key)).copy
    out: list = [None] * len(messages)
    for i, m in enumerate(messages):
        if m is None:
            continue
        h = inner()
        h.update(m)
        o = outer()
        o.update(h.digest())
        out[i] = o.hexdigest()
    return out


# ---------------------------------------------------------------- identifiers before hashing
#
# One student, one pseudonym, whatever the spelling: an identifier is hashed only in its canonical
# form, the same for CSV and every spreadsheet format (normalise.py calls these for every file).
#   1. Unicode NFKC (full-width Ａ１ -> A1, NBSP -> space, ligatures);
#   2. format and invisible characters removed (Unicode category Cf: zero-width space, ZWNJ/ZWJ,
#      LRM/RLM and the other bidi marks, word joiner, soft hyphen, BOM; also variation selectors);
#   3. any Unicode decimal digit (Arabic-Indic ٣, Devanagari ३, ...) to its ASCII digit;
#   4. surrounding spaces trimmed; a student number also loses inner spaces, a national id its
#      separators (space, dot, hyphen); Excel's ".0" of a number is dropped;
#   5. case: the letters of a student number are case-insensitive and kept upper case
#      ("b21dccn001" is "B21DCCN001");
#   6. a letter from another script inside an id (Cyrillic "В" or Greek "Β" for Latin "B", Cyrillic
#      "О" for the digit 0) is not hashed: the row is quarantined (ENR/PLC.student_id.unreadable,
#      ENR.national_id.unreadable), as is a national id with letters for digits or one that Excel
#      wrote in scientific notation with digits lost;
#   7. leading zeros Excel dropped from a national id written as a number (it has no leading zero of
#      its own): 10 or 11 digits are a 12-digit CCCD (its province code starts with 0) and are padded
#      to 12; 8 digits are a 9-digit CMND of provinces 01–09 and are padded to 9. No other length is
#      padded, and a value that already starts with 0 never is;
#   8. after a label such as "CCCD:" a national id is digits and separators only, 12 digits (CCCD)
#      or 9 (CMND): anything else (a name, a date, a phone number shifted into the column) is
#      quarantined (ENR.national_id.unreadable), never hashed as if it named a person; likewise a
#      student number with no digit, or shaped like a date or an email (ENR/PLC.student_id.unreadable).
LOOKALIKE = "a letter from another alphabet that looks like a Latin letter or a digit"
NOT_A_NUMBER = "not a student number: no digit, or shaped like a name, a date or an email"
_DATE_SHAPED = re.compile(r"\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}")
_DIGIT_LOOKALIKES = re.compile(r"\d[OoIl]|[OoIl]\d")  # Latin letters typed for 0 and 1 among digits
_SCIENTIFIC = re.compile(r"(\d)[.,](\d+)[eE]\+?(\d{1,2})")
_DOT_ZERO = re.compile(r"(\d+)\.0+")
_ID_LABEL = re.compile(r"^(?:(?:số\s+)?(?:cccd|cmnd|cmt)(?:\s*/\s*(?:cccd|cmnd|cmt))*|số)\s*[:#.]?\s*", re.I)
_ID_BODY = re.compile(r"\d[\d .\-]*")  # digits with the separators offices type between groups
# What str.strip() removes (the characters for which str.isspace() holds), for trimming a whole Arrow
# column exactly as Python trims one value (tests/test_normalise_fast.py checks the list).
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
             "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _to_ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(c)) if not c.isascii() and unicodedata.category(c) == "Nd" else c
                   for c in text)


def canonical_text(value: str) -> str:
    """Steps 1–4 common to every identifier: NFKC, invisible characters out, ASCII digits, trimmed."""
    if value.isascii():  # the usual case, and already canonical but for the spaces (ASCII has no Cf)
        return value.strip()
    from transforms.contract.privacy import clean

    return _to_ascii_digits(clean(value)).strip()


def _other_script(text: str) -> bool:
    return not text.isascii() and any(c.isalpha() and not c.isascii() and not unicodedata.name(c, "").startswith("LATIN")
                                      for c in text)


def canonical_student_number(value: str) -> tuple[str | None, str | None]:
    """(canonical student number, None), or (None, why it cannot be hashed), or (None, None) when blank."""
    if not isinstance(value, str):
        return None, None
    s = "".join(canonical_text(value).split()).upper()
    if not s:
        return None, None
    if _other_script(s):
        return None, LOOKALIKE
    if not any(c.isdigit() for c in s) or "@" in s or _DATE_SHAPED.fullmatch(s):
        return None, NOT_A_NUMBER
    m = _DOT_ZERO.fullmatch(s)
    return (m.group(1) if m else s), None


def canonical_national_id(value: str) -> tuple[str | None, str | None]:
    """(canonical national id: digits only, padded by rule 7), or (None, why it cannot be hashed)."""
    if not isinstance(value, str):
        return None, None
    s = canonical_text(value)
    if not s:
        return None, None
    if _other_script(s) or _DIGIT_LOOKALIKES.search(s):
        return None, LOOKALIKE
    m = _SCIENTIFIC.fullmatch(s)
    if m:  # 1.23456789012E+11 is exact; 1.23457E+11 kept 6 of 12 digits and names nobody
        digits = m.group(1) + m.group(2)
        if len(digits) != int(m.group(3)) + 1:
            return None, "a number in scientific notation whose digits were lost (send the id as text)"
        s = digits
    m = _DOT_ZERO.fullmatch(s)
    as_number = bool(m) or re.fullmatch(r"\d+", s) is not None
    s = m.group(1) if m else s
    body = _ID_LABEL.sub("", s)
    if not _ID_BODY.fullmatch(body):  # a name, a date or a phone glued into the column is nobody's id
        return None, "not a national id: it holds characters other than digits and separators"
    digits = re.sub(r"\D", "", body)
    if as_number and not digits.startswith("0"):
        if len(digits) in (10, 11):
            digits = digits.zfill(12)
        elif len(digits) == 8:
            digits = digits.zfill(9)
    if digits and len(digits) not in (9, 12):
        return None, f"a national id has 12 digits (CCCD) or 9 (CMND); this one has {len(digits)}"
    return digits or None, None


# A whole column's values already in canonical form, recognised at once (RE2 in C; [0-9] and [A-Za-z] are
# ASCII only): a student number of ASCII letters and digits with a digit is its own upper case, a national id
# of exactly 12 or 9 ASCII digits is itself. Every other value goes through the rules above, once per distinct
# value. tests/test_normalise_fast.py checks on hostile values that both ways agree.
_CANONICAL_FORMS = {canonical_student_number: (r"^[A-Za-z0-9]*[0-9][A-Za-z0-9]*$", pc.ascii_upper),
                    canonical_national_id: (r"^(?:[0-9]{9}|[0-9]{12})$", None)}


def canonical_ids(values: pa.Array, canonical=canonical_student_number) -> tuple[pa.Array, pa.Array]:
    """`canonical` (canonical_student_number or canonical_national_id) over an Arrow text column:
    (canonical ids, null where missing or not hashable; why one is not hashable, else null)."""
    text = pa.large_string()
    values = values.cast(text)
    pattern, form = _CANONICAL_FORMS[canonical]
    fast = pc.fill_null(pc.match_substring_regex(values, pattern), False)
    ids = pc.if_else(fast, form(values) if form else values, pa.scalar(None, text))
    rest = ~fast.to_numpy(zero_copy_only=False) & values.is_valid().to_numpy(zero_copy_only=False)
    rest = rest.nonzero()[0]
    if not len(rest):
        return ids, pa.nulls(len(values), text)
    done: dict = {}
    pairs = [done[v] if v in done else done.setdefault(v, canonical(v)) for v in values.take(rest).to_pylist()]
    canon = ids.to_numpy(zero_copy_only=False)
    canon[rest] = [p[0] for p in pairs]
    problems = np.full(len(values), None, dtype=object)
    problems[rest] = [p[1] for p in pairs]
    return pa.array(canon, type=text), pa.array(problems, type=text)
