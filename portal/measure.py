"""Time from upload to verdict, as a data officer sees it: `python -m portal.measure DATA_DIR FILE... --university CODE --term TERM`.

Starts `lab2fab portal` on a free port of 127.0.0.1 for DATA_DIR (which should hold a run's snapshot,
so the cross-term rules are judged as in production), creates a throwaway university account in a
copy of nothing else (the account is removed afterwards), uploads each FILE `--repeats` times
(each copy made distinct by a trailing newline so it is judged, not skipped as a duplicate), and
prints the wall-clock seconds from sending the request to the verdict page received: the median
and the maximum.  Files it lands are removed again from the landing zone, with their log lines.
"""
from __future__ import annotations

import argparse
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import httpx

    from portal.accounts import Accounts
    from portal.state import State

    p = argparse.ArgumentParser(prog="python -m portal.measure")
    p.add_argument("data_dir")
    p.add_argument("files", nargs="+")
    p.add_argument("--university", required=True)
    p.add_argument("--term", required=True)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    state = State(data_dir).ensure()
    name, password = f"measure-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    Accounts(state).add(name, password, university_code=args.university, office=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "--data-dir", str(data_dir), "portal", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    landed: list[Path] = []
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=600, follow_redirects=True) as c:
            for _ in range(200):
                try:
                    c.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            page = c.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            page = c.post("/login", data={"csrf": token, "name": name, "password": password})
            token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            time.sleep(5)  # let the portal's warm-up (GX import, suites) finish, as it has in service
            for f in map(Path, args.files):
                seconds, verdicts = [], set()
                for i in range(args.repeats):
                    data = f.read_bytes() + b"\n" * (i + 1)
                    started = time.perf_counter()
                    r = c.post(f"/u/{args.university}/upload", data={"csrf": token, "term": args.term},
                               files={"file": (f"{f.stem}-m{i}{f.suffix}", data)})
                    seconds.append(time.perf_counter() - started)
                    verdicts.add(re.search(r'data-verdict="([^"]+)"', r.text).group(1))
                rows = state.uploads(args.university)[0].get("rows") or {}
                print(f"{f.name}: {f.stat().st_size:,} bytes, {rows.get('read', '?'):,} rows, verdict {'/'.join(sorted(verdicts))}: "
                      f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s over {args.repeats}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        # leave the data folder as it was: no measuring account, no landed copies, no log lines
        with state.locked():
            users = state.read_json(state.users_file, {})
            users.pop(name, None)
            state.write_json(state.users_file, users)
            lines = state.uploads_file.read_text(encoding="utf-8").splitlines(keepends=True)
            keep = [line for line in lines if f'"user": "{name}"' not in line]
            for line in lines:
                if f'"user": "{name}"' in line:
                    m = re.search(r'"landed_as": "([^"]+)"', line)
                    if m:
                        landed.append(data_dir / "landing" / m.group(1))
            state.uploads_file.write_text("".join(keep), encoding="utf-8")
        for path in landed:
            path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
