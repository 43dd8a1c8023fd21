"""Portal accounts: `lab2fab users add|reset|disable|list`.

A university user belongs to exactly one university (a registry code); an office user sees every
university.  Passwords are kept only as scrypt hashes with a per-user salt (hashlib, parameters
stored with the hash so that they can be raised later).  Every change bumps the account's
`generation`, which the session cookie carries: a reset or a disable ends the account's sessions.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from portal.state import State, now_utc

UNIVERSITY, OFFICE = "university", "office"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")
MIN_PASSWORD = 10
# N=2^15, r=8: about 32 MiB and a tenth of a second per check on this size of machine.
SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1}


class AccountError(ValueError):
    pass


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT["n"], r: int = SCRYPT["r"],
                  p: int = SCRYPT["p"]) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        again = hash_password(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(again.rsplit("$", 1)[1], digest)


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash to check against when the user name is unknown, so that a failed login takes as long
    whether or not the account exists."""
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_hex(8)))
    return _DUMMY[0]


@dataclass(frozen=True)
class User:
    name: str
    role: str
    university_code: str | None
    display_name: str
    generation: int
    disabled: bool

    @property
    def is_office(self) -> bool:
        return self.role == OFFICE

    def may_see(self, university_code: str) -> bool:
        return self.is_office or self.university_code == university_code


def _user(name: str, d: dict) -> User:
    return User(name, d["role"], d.get("university_code"), d.get("display_name") or name, int(d.get("generation", 0)),
                bool(d.get("disabled")))


class Accounts:
    def __init__(self, state: State):
        self.state = state
        self._cache: tuple[float, dict] | None = None

    def _all(self) -> dict:
        """users.json, re-read when it changes (the CLI may edit it while the portal runs)."""
        path = self.state.users_file
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != mtime:
            self._cache = (mtime, self.state.read_json(path, {}))
        return self._cache[1]

    def get(self, name: str) -> User | None:
        d = self._all().get(name)
        return _user(name, d) if d else None

    def list(self) -> list[User]:
        return [_user(n, d) for n, d in sorted(self._all().items())]

    def authenticate(self, name: str, password: str) -> User | None:
        d = self._all().get(name)
        ok = verify_password(password, d["password"] if d else _dummy_hash())
        if not d or not ok or d.get("disabled"):
            return None
        return _user(name, d)

    def _change(self, name: str, change) -> User:
        with self.state.locked():
            users = self.state.read_json(self.state.users_file, {})
            change(users)
            users[name]["generation"] = int(users[name].get("generation", 0)) + 1
            users[name]["updated_at"] = now_utc()
            self.state.write_json(self.state.users_file, users)
        self._cache = None
        return self.get(name)

    def add(self, name: str, password: str, *, university_code: str | None, office: bool,
            display_name: str | None = None, known_universities: set[str] | None = None) -> User:
        if not NAME_RE.match(name):
            raise AccountError(f"user name {name!r}: use 2-40 lower-case letters, digits, '.', '_' or '-'")
        if office == bool(university_code):
            raise AccountError("give exactly one of --university CODE (a university user) or --office")
        if university_code and known_universities is not None and university_code not in known_universities:
            raise AccountError(f"university code {university_code} is not a participating university in the registry")
        _check_password(password)

        def change(users):
            if name in users:
                raise AccountError(f"user {name} already exists (use `lab2fab users reset {name}`)")
            users[name] = {"role": OFFICE if office else UNIVERSITY, "university_code": university_code,
                           "display_name": display_name or name, "password": hash_password(password),
                           "disabled": False, "created_at": now_utc(), "generation": 0}
        return self._change(name, change)

    def reset(self, name: str, password: str) -> User:
        _check_password(password)

        def change(users):
            if name not in users:
                raise AccountError(f"no user {name}")
            users[name].update(password=hash_password(password), disabled=False)
        return self._change(name, change)

    def disable(self, name: str) -> User:
        def change(users):
            if name not in users:
                raise AccountError(f"no user {name}")
            users[name]["disabled"] = True
        return self._change(name, change)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")


def participating_universities(reference_dir: Path) -> set[str]:
    import csv

    with open(reference_dir / "universities.csv", encoding="utf-8") as f:
        return {r["university_code"] for r in csv.DictReader(f) if r.get("participates", "").lower() == "true"}


# ---------------------------------------------------------------------- the command line

def users_command(args) -> int:
    """`lab2fab users add|reset|disable|list` (the password is read from stdin with --password-stdin)."""
    import getpass
    import sys

    from transforms.config import get_paths

    paths = get_paths(args.data_dir)
    accounts = Accounts(State(paths.data_dir).ensure())

    def password() -> str:
        if args.password_stdin:
            return sys.stdin.readline().rstrip("\n")
        first = getpass.getpass(f"password for {args.name}: ")
        if first != getpass.getpass("again: "):
            raise AccountError("the two passwords differ")
        return first

    if args.action != "list" and not args.name:
        print("lab2fab users: give the user name", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            for u in accounts.list():
                print(f"{u.name:<20} {u.role:<10} {u.university_code or '(all)':<12} "
                      f"{'disabled' if u.disabled else 'active':<8} {u.display_name}")
            return 0
        if args.action == "add":
            u = accounts.add(args.name, password(), university_code=args.university, office=args.office,
                             display_name=args.display_name, known_universities=participating_universities(paths.reference))
            print(f"added {u.role} user {u.name}" + (f" for {u.university_code}" if u.university_code else ""))
        elif args.action == "reset":
            accounts.reset(args.name, password())
            print(f"new password set for {args.name}; its open sessions are ended")
        elif args.action == "disable":
            accounts.disable(args.name)
            print(f"{args.name} can no longer log in; its open sessions are ended")
    except AccountError as e:
        print(f"lab2fab users: {e}", file=sys.stderr)
        return 2
    return 0
