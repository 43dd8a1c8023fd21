#!/usr/bin/env python
"""Summarise a py-spy profile recorded with `-f raw` (collapsed stacks): inclusive and self time.

    python bench/profile_summary.py PROFILE.raw --rate 20 [--match transforms/] [--top 40]

py-spy writes one line per distinct stack, frames separated by ';', then the sample count.
Inclusive time of a function = samples of every stack that contains it (counted once per stack);
self time = samples where it is the innermost frame. Samples in threads that only wait (locks,
sleeps, sockets, the Prefect server's database thread) are left out, so the figures are CPU-ish
seconds summed over threads. See docs/SCALING.md ("Profiling").
"""
from __future__ import annotations

import argparse
import collections
import re

IDLE = re.compile(r"\b(wait|select|poll|_wait_for_tstate_lock|acquire|epoll|sleep|accept|recv|_recv_into|"
                  r"heartbeat_loop|_connection_worker_thread|_worker|run_forever|_run_once)\s\(")


def summarise(path: str, rate: float, match: str | None = None):
    incl: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    active = idle = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            try:
                count = int(n)
            except ValueError:
                continue
            frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")
                      if not fr.startswith(("process ", "thread "))]
            if not frames:
                continue
            if IDLE.search(frames[-1]):
                idle += count
                continue
            if match and not any(match in fr for fr in frames):
                continue
            active += count
            for fr in dict.fromkeys(frames):
                incl[fr] += count
            self_[frames[-1]] += count
    return active / rate, idle / rate, incl, self_


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("--rate", type=float, default=100.0, help="py-spy --rate used when recording")
    p.add_argument("--match", default=None, help="only stacks with a frame containing this text")
    p.add_argument("--show", default=None, help="only print functions whose frame contains this text")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args(argv)
    active, idle, incl, self_ = summarise(args.profile, args.rate, args.match)
    print(f"active {active:.1f} s (summed over threads), waiting {idle:.1f} s")
    print("--- inclusive")
    shown = 0
    for fr, c in incl.most_common():
        if args.show and args.show not in fr:
            continue
        print(f"{c / args.rate:9.1f} s  {fr[:160]}")
        shown += 1
        if shown >= args.top:
            break
    print("--- self")
    for fr, c in self_.most_common(min(args.top, 25)):
        print(f"{c / args.rate:9.1f} s  {fr[:160]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
