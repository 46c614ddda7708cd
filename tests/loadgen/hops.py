#!/usr/bin/env python3
"""Splits one-to-one messages' delivery time into the hops of their path, from a system-call trace.

Usage: hops.py TRACE --loadgen PID --gateway PID --chat PID --redis PID

TRACE is `perf script -F pid,tid,time,event,trace` of a `perf record -e
raw_syscalls:sys_enter,raw_syscalls:sys_exit -p <those pids and the database's>` taken while
`loadgen direct` sends at a rate low enough that messages do not overlap (100 msg/s leaves 10 ms
between them; a message takes 2 to 5). Each message is followed from the load generator's send
through the first system call of each hop after the previous one:

    send            the load generator writes the frame
    gateway in      the gateway reads it
    admission out   the gateway writes to Redis (the admission script, which adds the action)
    chat in         chat-service reads from Redis (its blocking read returns the action)
    insert out      chat-service sends to the database (`sendto`: the driver's socket)
    insert back     chat-service reads the database's answer
    updates out     chat-service sends the summaries' and read marks' updates
    updates back    chat-service reads the last answer before publishing
    publish out     chat-service writes the publishing script to Redis (`writev` over 1,000 bytes)
    gateway event   the gateway reads the published event
    delivered       the gateway writes a frame of over 500 bytes (NEW_MESSAGE) to a client

These are heuristics on system calls and sizes, not message ids: a message is counted only when
every hop was found within 9 ms of its send, and the number counted is printed. Tracing adds a few
microseconds to every system call, so the total is longer than the benchmark's untraced latency;
the shares are what it is for.
"""

import argparse
import re
import statistics
import sys

READS = {0, 45}  # read, recvfrom
WRITES = {1, 20, 44}  # write, writev, sendto
SENDTO, WRITEV, RECVFROM = 44, 20, 45
WINDOW_S = 0.009
LINE = re.compile(r"\s*(\d+)/(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)\s*(.*)")
ARGS = re.compile(r"\(([0-9a-f]+), ([0-9a-f]+), ([0-9a-f]+)")
RETURNED = re.compile(r"= (-?\d+)")

HOPS = ["gateway in", "admission out", "chat in", "insert out", "insert back", "updates out",
        "updates back", "publish out", "gateway event", "delivered"]


class Call:
    """One system call: who made it, which, when it started, what it was asked for and gave."""

    def __init__(self, pid, at, number, asked):
        self.pid, self.at, self.number, self.asked, self.returned = pid, at, number, asked, None


def read_calls(path, pids):
    calls, open_by_thread = [], {}
    with open(path) as trace:
        for line in trace:
            m = LINE.match(line)
            if not m or int(m[1]) not in pids:
                continue
            pid, tid, at, side, number, rest = int(m[1]), int(m[2]), float(m[3]), m[4], int(m[5]), m[6]
            if side == "enter":
                args = ARGS.search(rest)
                call = Call(pid, at, number, int(args[3], 16) if args else 0)
                open_by_thread[tid] = call
                calls.append(call)
            elif tid in open_by_thread:
                returned = RETURNED.search(rest)
                open_by_thread.pop(tid).returned = int(returned[1]) if returned else None
    return calls


def follow(calls, start, p):
    """The hop times of the message whose send is calls[start], or None if a hop is missing."""
    t0 = calls[start].at
    window = [c for c in calls[start:start + 4000] if c.at < t0 + WINDOW_S]

    def first(after, test):
        return next((c.at for c in window if c.at > after and test(c)), None)

    times = {}
    times["gateway in"] = first(t0, lambda c: c.pid == p.gateway and c.number in READS)
    times["admission out"] = times["gateway in"] and first(
        times["gateway in"], lambda c: c.pid == p.gateway and c.number in WRITES and c.asked != 8)
    times["chat in"] = times["admission out"] and first(
        times["admission out"], lambda c: c.pid == p.chat and c.number == RECVFROM)
    times["insert out"] = times["chat in"] and first(
        times["chat in"], lambda c: c.pid == p.chat and c.number == SENDTO)
    times["insert back"] = times["insert out"] and first(
        times["insert out"], lambda c: c.pid == p.chat and c.number == RECVFROM)
    times["updates out"] = times["insert back"] and first(
        times["insert back"], lambda c: c.pid == p.chat and c.number == SENDTO)
    times["publish out"] = times["updates out"] and first(
        times["updates out"],
        lambda c: c.pid == p.chat and c.number == WRITEV and (c.returned or 0) > 1000)
    if times["publish out"]:
        backs = [c.at for c in window if times["updates out"] < c.at < times["publish out"]
                 and c.pid == p.chat and c.number == RECVFROM]
        times["updates back"] = backs[-1] if backs else None
    times["gateway event"] = times["publish out"] and first(
        times["publish out"], lambda c: c.pid == p.gateway and c.number in READS)
    times["delivered"] = times["gateway event"] and first(
        times["gateway event"],
        lambda c: c.pid == p.gateway and c.number == SENDTO and c.asked > 500)
    if any(times.get(hop) is None for hop in HOPS):
        return None
    return [t0] + [times[hop] for hop in HOPS]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    for role in ("loadgen", "gateway", "chat", "redis"):
        parser.add_argument(f"--{role}", type=int, required=True)
    p = parser.parse_args()
    calls = read_calls(p.trace, {p.loadgen, p.gateway, p.chat, p.redis})
    # A message starts with the load generator's first socket write after a quiet 5 ms (its
    # 8-byte writes wake its own threads).
    sends, last = [], -1.0
    for i, c in enumerate(calls):
        if c.pid == p.loadgen and c.number in WRITES and c.asked > 100:
            if c.at - last > 0.005:
                sends.append(i)
            last = c.at
    paths = [path for path in (follow(calls, i, p) for i in sends) if path]
    if not paths:
        sys.exit(f"no message followed through every hop (of {len(sends)} sends)")
    print(f"{len(paths)} of {len(sends)} messages followed through every hop; microseconds:")
    print(f"{'hop (from the one before)':<28} {'p50':>7} {'mean':>7} {'p90':>7} {'max':>7}")
    names = HOPS + ["send to delivered"]
    for k, name in enumerate(names):
        spans = sorted((path[-1] - path[0] if k == len(HOPS) else path[k + 1] - path[k]) * 1e6
                       for path in paths)
        p90 = spans[int(0.9 * (len(spans) - 1))]
        print(f"{name:<28} {statistics.median(spans):7.0f} {statistics.mean(spans):7.0f} "
              f"{p90:7.0f} {spans[-1]:7.0f}")


if __name__ == "__main__":
    main()
