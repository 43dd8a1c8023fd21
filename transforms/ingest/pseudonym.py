"""Keyed pseudonymisation (HMAC-SHA256) of personal identifiers.

The key comes from $LAB2FAB_PSEUDONYM_KEY, or a Prefect Secret block named by
$LAB2FAB_PSEUDONYM_SECRET_BLOCK; only for local demo use is a key created in
`data/.secrets/` (never tracked). The warehouse remembers the key's fingerprint, so a run
with a different key stops before it writes anything.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

import pandas as pd

KEY_ENV = "LAB2FAB_PSEUDONYM_KEY"
BLOCK_ENV = "LAB2FAB_PSEUDONYM_SECRET_BLOCK"
log = logging.getLogger(__name__)


class PseudonymKeyError(RuntimeError):
    """The pseudonymisation key is missing or is not the one the warehouse was built with."""


def load_key(secrets_dir: Path, *, allow_demo_key: bool = True) -> bytes:
    value = os.environ.get(KEY_ENV)
    if value:
        return value.encode()
    block = os.environ.get(BLOCK_ENV)
    if block:
        from prefect.blocks.system import Secret

        return Secret.load(block).get().encode()
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

    Per value only the digest is computed: pandas string operations around HMAC cost more than
    HMAC itself, and a keyed hmac object copied per value saves re-keying.
    """
    fresh = hmac.new(key, digestmod=hashlib.sha256).copy
    out: list = [None] * len(values)
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
        h = fresh()
        h.update(v.encode())
        out[i] = h.hexdigest()
    return out
