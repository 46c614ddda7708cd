#!/usr/bin/env python3
"""Turns the loadgen reports of one bench.sh run into docs/benchmarks.md.

Usage: summarize.py RESULTS_DIR OUTPUT_MD

RESULTS_DIR holds <system>/<scenario>/run<N>[/part<M>]/report.json as bench.sh
writes them. Every figure is the median over runs; the runs themselves are
listed too. Machine facts come from /proc and uname; versions, the start time
and the commands from the BENCH_* environment variables bench.sh sets.
"""

import json
import os
import platform
import statistics
import sys
from pathlib import Path

SYSTEMS = ["switchyard", "centrifugo", "bare"]
# Centrifugo keeping each channel's messages runs the capacity scenario only.
CAPACITY_SYSTEMS = ["switchyard", "centrifugo", "centrifugo-history", "bare"]
LABEL = {"switchyard": "Switchyard (this product)", "centrifugo": "Centrifugo",
         "centrifugo-history": "Centrifugo with history", "bare": "bare ceiling"}
CAPACITY_SHAPES = [("direct", "one-to-one"), ("fanout", "groups")]


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


FAILED = {}


def usable(reports):
    """A run counts if every part wrote a report, opened at least 90 % of its connections and,
    when it sent messages, had at least 90 % of their deliveries arrive: a run that collapsed says
    something, but its percentiles are not comparable, so it is listed as failed instead."""
    return all(reports) and all(
        r["counts"]["connections_opened"] >= 0.9 * r["params"]["connections"]
        and r["counts"]["delivered"] >= 0.9 * r["counts"]["expected_deliveries"]
        for r in reports
    )


def runs(results, system, scenario):
    """Reports per usable run; a run of several parts (one per server) is a list. Runs that
    failed are counted in FAILED, so the document can say how many there were."""
    base = results / system / scenario
    out = []
    for run_dir in sorted(base.glob("run*")):
        parts = sorted(run_dir.glob("part*"))
        reports = [load(p / "report.json") for p in parts] if parts else [load(run_dir / "report.json")]
        if usable(reports):
            out.append(reports)
        else:
            FAILED.setdefault((system, scenario), set()).add(run_dir.name)
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def idle_figures(run):
    """Memory per connection of one idle run over all its servers."""
    opened = sum(r["counts"]["connections_opened"] for r in run)
    delta = sum(
        max(0, r["memory"]["rss_after_bytes"] - r["memory"]["rss_before_bytes"]) for r in run if r.get("memory")
    )
    open_secs = max((r["counts"]["connections_opened"] / r["throughput"]["connections_per_sec"])
                    for r in run if r["throughput"]["connections_per_sec"] > 0) if any(
        r["throughput"]["connections_per_sec"] > 0 for r in run) else None
    p99_open = max((r["latency_us"].get("open", {}).get("p99", 0) for r in run), default=0)
    return {
        "opened": opened,
        "per_conn": delta / opened if opened else None,
        "rss_after": sum(r["memory"]["rss_after_bytes"] for r in run if r.get("memory")),
        "errors": sum(r["error_total"] for r in run),
        "conn_per_sec": opened / open_secs if open_secs else None,
        "open_p99_ms": p99_open / 1000 if p99_open else None,
    }


def traffic_figures(run):
    r = run[0]
    cpu = r.get("cpu") or {}
    delivery = r["latency_us"].get("delivery", {})
    return {
        "sent": r["counts"]["sent"],
        "delivered": r["counts"]["delivered"],
        "expected": r["counts"]["expected_deliveries"],
        # Over the sending time: the drain after it may wait for deliveries that never come.
        "delivered_per_sec": r["counts"]["delivered"] / cpu["sending_secs"] if cpu.get("sending_secs") else None,
        "per_cpu": cpu.get("delivered_per_cpu_second"),
        "server_cpu": cpu.get("server_seconds"),
        "window": cpu.get("window_secs"),
        "loadgen_cpu": cpu.get("loadgen_seconds"),
        "watched": cpu.get("watched_seconds", {}),
        "p50": delivery.get("p50", 0) / 1000 if delivery else None,
        "p99": delivery.get("p99", 0) / 1000 if delivery else None,
        "p999": delivery.get("p999", 0) / 1000 if delivery else None,
        "max": delivery.get("max", 0) / 1000 if delivery else None,
        "errors": r["error_total"],
        "error_kinds": {k: v["count"] for k, v in r["errors"].items()},
        "rate": r["params"]["rate"],
        "group": r["params"]["group_size"],
        "connections": r["params"]["connections"],
    }


def commands(results):
    """The loadgen command of the first run of each system and scenario: from the command.txt
    bench.sh writes beside a report, or else rebuilt from the report's parameters."""
    out = []
    for system in CAPACITY_SYSTEMS:
        for scenario_dir in sorted((results / system).glob("*")):
            first = sorted(scenario_dir.glob("run1/part0")) or sorted(scenario_dir.glob("run1")) or [scenario_dir]
            where = first[0]
            parts = len(list(scenario_dir.glob("run1/part*")))
            suffix = f"   # one of {parts} at once, one per server" if parts > 1 else ""
            text = where / "command.txt"
            if text.exists():
                out.append(text.read_text().strip() + suffix)
                continue
            report = load(where / "report.json")
            if not report:
                continue
            p = report["params"]
            line = (f"loadgen {report['scenario']} --protocol {report['protocol']} "
                    f"--target {','.join(report['targets'])} --connections {p['connections']}")
            if report["scenario"] in ("direct", "fanout"):
                line += f" --rate {p['rate']:g} --duration {p['duration_secs']:g}"
            if report["scenario"] == "fanout":
                line += f" --group-size {p['group_size']}"
            if report["scenario"] in ("idle", "storm"):
                line += f" --users {p['users']} --duration {p['duration_secs']:g}"
            if report["scenario"] == "accounts":
                line += f" --concurrency {p['concurrency']}"
            line += f" --concurrency {p['concurrency']}" if report["scenario"] != "accounts" else ""
            out.append(line + suffix)
    return out


def capacity_runs(results, system, shape):
    """The capacity section of each run's report; a run without one failed (see FAILED)."""
    out = []
    for run_dir in sorted((results / system / f"capacity-{shape}").glob("run*")):
        report = load(run_dir / "report.json")
        if report and report.get("capacity"):
            out.append(report)
        else:
            FAILED.setdefault((system, f"capacity-{shape}"), set()).add(run_dir.name)
    return out


def capacity_figures(report):
    c = report["capacity"]
    o = c.get("overload") or {}
    refusal = o.get("refusal_us") or {}
    delivery = o.get("delivery_us") or {}
    held_steps = [s for s in c["steps"] if s["held"]]
    last = held_steps[-1] if held_steps else None
    cpu = None
    if last:
        cpu = {"server": last["server_cpu_secs"] / last["secs"],
               **{k: v / last["secs"] for k, v in last["watched_cpu_secs"].items()},
               "loadgen": last["loadgen_cpu_secs"] / last["secs"]}
    return {
        "held": c["held_rate"] or 0.0,
        "held_deliveries": c["held_deliveries_per_sec"] or 0.0,
        "held_p99": (last["delivery_us"]["p99"] / 1000) if last and last.get("delivery_us") else None,
        "stopped": c.get("stopped_because"),
        "overload_rate": o.get("rate"),
        "overload_sent": o.get("sent"),
        "overload_acked": o.get("acked"),
        "overload_busy": o.get("busy"),
        "overload_timeouts": o.get("timeouts"),
        "overload_lost": o.get("lost_acked"),
        "overload_refused": o.get("refused"),
        "overload_unanswered": o.get("unanswered"),
        "refusal_p99": refusal.get("p99", 0) / 1000 if refusal else None,
        "overload_p99": delivery.get("p99", 0) / 1000 if delivery else None,
        "recovered": c.get("recovered_after_secs"),
        "recovery_secs": len(c.get("recovery", [])),
        "cpu": cpu,
        "limit": c["p99_limit_ms"],
        "receivers": c["receivers_per_message"],
        "connections": report["params"]["connections"],
        "group": report["params"]["group_size"],
        "errors": {k: v["count"] for k, v in report["errors"].items()},
    }


def capacity_section(results, w):
    """Capacity: the rate held at p99 within the limit, and the overload and recovery steps."""
    table = {(s, shape): [capacity_figures(r) for r in capacity_runs(results, s, shape)]
             for s in CAPACITY_SYSTEMS for shape, _ in CAPACITY_SHAPES}
    if not any(table.values()):
        return
    any_run = next(rows[0] for rows in table.values() if rows)
    w("## Capacity")
    w("")
    w(f"`loadgen direct|fanout --capacity`: the offered rate starts low and rises in steps (each step a fixed "
      f"number of seconds, the next rate a fixed multiple of the last) until a step fails: p99 delivery latency "
      f"above {any_run['limit']:.0f} ms, or any message refused (`BUSY` included), unanswered or undelivered, or "
      "any other error. The highest rate of a step that held is the capacity. Each step starts once the one "
      "before it has settled. Then, on the same connections, one step at 3× the rate held (the overload step), "
      "followed at once by a recovery step at half the rate held, measured in one-second slices by send time. "
      "Latency is from the time a message was due (open loop) to its receipt; a `BUSY` refusal's latency from "
      "the write of the message to the reply. An acknowledged message is lost when its sender got "
      "`MESSAGE_SENT` (Centrifugo: the publish reply) but some recipient never got it, however late. "
      "Centrifugo with history keeps each channel's publications in Redis (`history_size`, `history_ttl` on the "
      "namespace), so it stores every message, as Switchyard does; the bare server has no acknowledgements, so "
      "its overload figures are deliveries only.")
    w("")
    for shape, name in CAPACITY_SHAPES:
        rows_any = [r for s in CAPACITY_SYSTEMS for r in table[(s, shape)]]
        if not rows_any:
            continue
        r0 = rows_any[0]
        if shape == "fanout":
            w(f"### Groups: {r0['connections']:,} connections in rooms of {r0['group']}")
        else:
            w(f"### One-to-one: {r0['connections']:,} connections in pairs of friends")
        w("")
        w("| system | messages/s held (runs) | median | deliveries/s | p99 at that rate (ms) | first step that failed (first run) |")
        w("|---|---|---|---|---|---|")
        for s in CAPACITY_SYSTEMS:
            rows = table[(s, shape)]
            if not rows:
                continue
            held = median([r["held"] for r in rows])
            w(f"| {LABEL[s]} | {', '.join(fmt(r['held'], 1) for r in rows)} | {fmt(held, 1)} | "
              f"{fmt(median([r['held_deliveries'] for r in rows]))} | {fmt(median([r['held_p99'] for r in rows]), 1)} | "
              f"{rows[0]['stopped'] or 'none: every step up to --max-rate held'} |")
        w("")
        w("At 3× the rate held, then the recovery step (medians of the runs):")
        w("")
        w("| system | msg/s offered | sent | acknowledged | `BUSY` | `TIMEOUT` | other refusals | unanswered | acknowledged and lost | `BUSY` reply p99 (ms) | delivery p99 (ms) | back to normal after |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in CAPACITY_SYSTEMS:
            rows = [r for r in table[(s, shape)] if r["overload_rate"] is not None]
            if not rows:
                continue
            m = lambda k: median([r[k] for r in rows])  # noqa: E731
            recovered = [r["recovered"] for r in rows]
            back = ", ".join("not within the step" if v is None else f"{v:.0f} s" for v in recovered)
            w(f"| {LABEL[s]} | {fmt(m('overload_rate'), 1)} | {fmt(m('overload_sent'))} | {fmt(m('overload_acked'))} | "
              f"{fmt(m('overload_busy'))} | {fmt(m('overload_timeouts'))} | {fmt(m('overload_refused'))} | "
              f"{fmt(m('overload_unanswered'))} | {fmt(m('overload_lost'))} | {fmt(m('refusal_p99'), 1)} | "
              f"{fmt(m('overload_p99'), 1)} | {back} |")
        w("")
        w("CPU used at the highest step held (CPU-seconds per second, median run), so the limiting process can be "
          "seen:")
        w("")
        for s in CAPACITY_SYSTEMS:
            rows = sorted((r for r in table[(s, shape)] if r["cpu"]), key=lambda r: r["held"])
            if not rows:
                continue
            mid = rows[(len(rows) - 1) // 2]
            w(f"- {LABEL[s]} at {mid['held']:,.1f} msg/s: " +
              ", ".join(f"{k} {v:.2f}" for k, v in mid["cpu"].items()))
        w("")


def fmt(value, digits=0, unit=""):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def kib(value):
    return None if value is None else value / 1024


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def verdict(value, target, higher_is_better):
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    return "**met**" if met else "**missed**"


def machine():
    cpus = os.cpu_count()
    model = ""
    mem_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return cpus, model, mem_kib / (1024 * 1024), platform.release()


def main():
    results, output = Path(sys.argv[1]), Path(sys.argv[2])
    cpus, model, mem_gib, kernel = machine()
    env = os.environ
    lines = []
    w = lines.append

    idle_sizes = sorted({int(p.name.split("-")[1]) for s in SYSTEMS for p in (results / s).glob("idle-*")})
    idle = {s: {n: [idle_figures(run) for run in runs(results, s, f"idle-{n}")] for n in idle_sizes} for s in SYSTEMS}
    fanout = {s: [traffic_figures(run) for run in runs(results, s, "fanout")] for s in SYSTEMS}
    direct = {s: [traffic_figures(run) for run in runs(results, s, "direct")] for s in SYSTEMS}

    def med(table, system, key, size=None):
        rows = table[system][size] if size is not None else table[system]
        return median([row[key] for row in rows])

    w("# Benchmarks")
    w("")
    w("Measured by `tests/loadgen/bench.sh` (also `./stack bench`): one script that builds everything in release, "
      "starts its own Redis, FerretDB, MailDev, services and gateways, a Centrifugo cluster and the bare broadcast "
      "server on free loopback ports, and runs the same `loadgen` scenarios against each. Every figure below is the "
      "**median of the runs** listed under it; nothing here is estimated or carried over from elsewhere, except the "
      "published reference figures, which are marked as such.")
    w("")
    w("## Machine and versions")
    w("")
    w(f"- Date: {env.get('BENCH_STARTED', '?')}")
    w(f"- CPU: {cpus} cores (`nproc`){', ' + model if model else ''}")
    w(f"- Memory: {mem_gib:.1f} GiB")
    w(f"- Kernel: Linux {kernel}")
    w(f"- Open-file limit per process: {env.get('BENCH_FD_LIMIT', '?')}")
    for line in env.get("BENCH_VERSIONS", "").splitlines():
        w(f"- {line}")
    w("")
    w("Everything — servers, Redis, FerretDB, the services and the load generator — shares these cores, so absolute "
      "rates are small; the ratios between systems measured the same way are the point.")
    w("")

    # ---- headline table
    w("## Results against the targets")
    w("")
    w("| figure | Switchyard | Centrifugo | bare ceiling | Switchyard / Centrifugo | Switchyard / bare | target | verdict |")
    w("|---|---|---|---|---|---|---|---|")
    for n in idle_sizes:
        sy, cf, bare = (kib(med(idle, s, "per_conn", n)) for s in SYSTEMS)
        r_cf = ratio(sy, cf)
        w(f"| memory per idle connection, {n:,} connections (KiB) | {fmt(sy, 1)} | {fmt(cf, 1)} | {fmt(bare, 1)} | "
          f"{fmt(r_cf, 2)} | {fmt(ratio(sy, bare), 2)} | ≤ 0.25 of Centrifugo | {verdict(r_cf, 0.25, False)} |")
    sy, cf, bare = (med(fanout, s, "per_cpu") for s in SYSTEMS)
    r_cf, r_bare = ratio(sy, cf), ratio(sy, bare)
    w(f"| fan-out: delivered messages per server CPU-second | {fmt(sy)} | {fmt(cf)} | {fmt(bare)} | {fmt(r_cf, 2)} | "
      f"{fmt(r_bare, 2)} | ≥ 2 × Centrifugo | {verdict(r_cf, 2.0, True)} |")
    w(f"| (same) | | | | | | ≥ 0.5 × bare | {verdict(r_bare, 0.5, True)} |")
    for name, table in (("fan-out", fanout), ("one-to-one", direct)):
        sy, cf, bare = (med(table, s, "p99") for s in SYSTEMS)
        w(f"| {name}: p99 delivery latency at a fixed rate (ms) | {fmt(sy, 1)} | {fmt(cf, 1)} | {fmt(bare, 1)} | "
          f"{fmt(ratio(sy, cf), 2)} | {fmt(ratio(sy, bare), 2)} | — | — |")
    w("")
    if any(fanout[s] for s in SYSTEMS):
        f0 = next(fanout[s][0] for s in SYSTEMS if fanout[s])
        w(f"Fan-out: {f0['connections']:,} connections in rooms of {f0['group']}, {fmt(f0['rate'])} messages/s sent "
          f"in total, so {fmt(f0['rate'] * (f0['group'] - 1))} deliveries/s offered, on one server per system.")
    if any(direct[s] for s in SYSTEMS):
        d0 = next(direct[s][0] for s in SYSTEMS if direct[s])
        w(f"One-to-one: {d0['connections']:,} connections in pairs of friends, {fmt(d0['rate'])} messages/s in total.")
    w("")

    # ---- idle details
    w("## Idle connections")
    w("")
    w("`loadgen idle`: open N connections, each logged in (Switchyard: `FASTLOGIN` as one of "
      f"{env.get('BENCH_IDLE_USERS', '100')} users; Centrifugo: `connect` with an HS256 token and a subscription to "
      "the user's channel; bare: `join` of the user's room), wait 2 s, and take the servers' resident memory "
      "(VmRSS) before and after: memory per connection = ΔRSS / connections. Servers are started fresh for every run. "
      "Connections over several servers are opened by one loadgen process per server, because a process may hold "
      "fewer than 20,000 files here.")
    w("")
    w("| system | connections | servers | KiB per connection (runs) | median | connections/s while opening (median) | p99 connect+login (ms, median) | errors |")
    w("|---|---|---|---|---|---|---|---|")
    for n in idle_sizes:
        for s in SYSTEMS:
            rows = idle[s][n]
            if not rows:
                continue
            servers = len(runs(results, s, f"idle-{n}")[0])
            per = ", ".join(fmt(kib(r["per_conn"]), 1) for r in rows)
            w(f"| {LABEL[s]} | {median([r['opened'] for r in rows]):,.0f} of {n:,} | {servers} | {per} | "
              f"{fmt(kib(med(idle, s, 'per_conn', n)), 1)} | {fmt(med(idle, s, 'conn_per_sec', n))} | "
              f"{fmt(med(idle, s, 'open_p99_ms', n), 1)} | {sum(r['errors'] for r in rows)} |")
    w("")

    # ---- traffic details
    for title, table, text in (
        ("Group fan-out", fanout,
         "`loadgen fanout`: members of each room take turns sending to it at a fixed total rate; each message is "
         "delivered to the other members. Latency is from the scheduled send time (open loop, so falling behind "
         "shows as latency) to each member's receipt. CPU is user + system time of the server process during the "
         "window (sending plus draining), from `/proc/<pid>/stat`."),
        ("One-to-one", direct,
         "`loadgen direct`: pairs of friends (Switchyard: `FRIEND_REQUEST` + `FRIEND_RESPOND`; Centrifugo and bare: "
         "the peer's personal channel or room) send to each other at a fixed total rate."),
    ):
        w(f"## {title}")
        w("")
        w(text)
        w("")
        w("| system | delivered / expected | deliveries/s while sending | server CPU-s | deliveries per CPU-s (runs) | median | p50 ms | p99 ms | p99.9 ms | max ms | errors |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for s in SYSTEMS:
            rows = table[s]
            if not rows:
                continue
            per = ", ".join(fmt(r["per_cpu"]) for r in rows)
            w(f"| {LABEL[s]} | {fmt(med(table, s, 'delivered'))} / {fmt(med(table, s, 'expected'))} | "
              f"{fmt(med(table, s, 'delivered_per_sec'))} | {fmt(med(table, s, 'server_cpu'), 2)} | {per} | "
              f"{fmt(med(table, s, 'per_cpu'))} | {fmt(med(table, s, 'p50'), 1)} | {fmt(med(table, s, 'p99'), 1)} | "
              f"{fmt(med(table, s, 'p999'), 1)} | {fmt(med(table, s, 'max'), 1)} | "
              f"{sum(r['errors'] for r in rows)} |")
        w("")
        w("CPU-seconds of every process in the window (median), so the limiting process can be seen:")
        w("")
        for s in SYSTEMS:
            rows = table[s]
            if not rows:
                continue
            names = sorted({k for r in rows for k in r["watched"]})
            parts = [f"server {fmt(med(table, s, 'server_cpu'), 2)}"]
            parts += [f"{k} {fmt(median([r['watched'].get(k) for r in rows]), 2)}" for k in names]
            parts.append(f"loadgen {fmt(med(table, s, 'loadgen_cpu'), 2)}")
            w(f"- {LABEL[s]}, window {fmt(med(table, s, 'window'), 1)} s: " + ", ".join(parts))
        kinds = {}
        for s in SYSTEMS:
            for r in table[s]:
                for k, v in r["error_kinds"].items():
                    kinds.setdefault(s, {}).setdefault(k, 0)
                    kinds[s][k] += v
        for s, counts in kinds.items():
            w(f"- errors, {LABEL[s]} (all runs): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        w("")

    # ---- accounts
    acc = load(results / "switchyard" / "accounts" / "report.json")
    if acc:
        lat = acc["latency_us"]
        w("## Sign-up storm (this product only)")
        w("")
        w(f"`loadgen accounts`: {acc['params']['connections']} new accounts over {acc['params']['concurrency']} "
          "connections, each through REGISTER, the code read from MailDev's API, CONFIRMATION and LOGIN "
          "(passwords hashed with Argon2id).")
        w("")
        w(f"- accounts signed up: {acc['counts']['accounts']} at {acc['throughput']['accounts_per_sec']:.1f}/s, "
          f"errors {acc['error_total']}")
        for key in ("register", "mail_wait", "confirm", "account_login", "sign_up"):
            if key in lat:
                w(f"- {key}: p50 {lat[key]['p50'] / 1000:.1f} ms, p99 {lat[key]['p99'] / 1000:.1f} ms")
        w("")

    capacity_section(results, w)

    # ---- reference figures
    w("## Published reference figures (not measured here)")
    w("")
    w("Quoted from their authors' own published tests, on very different hardware; they are context, not results "
      "of this benchmark:")
    w("")
    w("- Centrifugo's million-connection test: about 30 KB of memory per connection, and about 500,000 delivered "
      "messages per second on 40 CPUs with a p99 delivery latency of 200 ms.")
    w("- Phoenix Channels' two-million-connection test: about 33 KB per connection.")
    w("")

    # ---- analysis
    w("## Reading the results")
    w("")
    analysis = []
    for n in idle_sizes:
        sy, cf = kib(med(idle, "switchyard", "per_conn", n)), kib(med(idle, "centrifugo", "per_conn", n))
        r = ratio(sy, cf)
        if r is not None and r > 0.25:
            analysis.append(
                f"- Memory target missed at {n:,} connections: {sy:.1f} KiB against Centrifugo's {cf:.1f} KiB "
                f"(ratio {r:.2f}, target ≤ 0.25).")
    sy, cf, bare = (med(fanout, s, "per_cpu") for s in SYSTEMS)
    if ratio(sy, cf) is not None and ratio(sy, cf) < 2:
        analysis.append(f"- Fan-out efficiency target against Centrifugo missed: {sy:,.0f} against {cf:,.0f} "
                        f"deliveries per CPU-second (ratio {ratio(sy, cf):.2f}, target ≥ 2).")
    if ratio(sy, bare) is not None and ratio(sy, bare) < 0.5:
        analysis.append(f"- Fan-out efficiency target against the bare ceiling missed: {sy:,.0f} against "
                        f"{bare:,.0f} (ratio {ratio(sy, bare):.2f}, target ≥ 0.5).")
    for s in SYSTEMS:
        for name, table in (("fan-out", fanout), ("one-to-one", direct)):
            d, e = med(table, s, "delivered"), med(table, s, "expected")
            offered = None
            if table[s]:
                r0 = table[s][0]
                offered = r0["rate"] * (r0["group"] - 1 if name == "fan-out" else 1)
            dps = med(table, s, "delivered_per_sec")
            if offered and d is not None and e and d < 0.9 * e:
                analysis.append(f"- {LABEL[s]} {name}: {dps:,.0f} deliveries/s of {offered:,.0f} offered — it did "
                                "not keep up, so its latency figures describe an overloaded system.")
            if d is not None and e and d < e:
                analysis.append(f"- {LABEL[s]} {name}: {e - d:,.0f} deliveries (median) missing at the end of the drain.")
    for (system, scenario), names in sorted(FAILED.items()):
        analysis.append(f"- {LABEL[system]}, {scenario}: {len(names)} run(s) failed and are left out of the "
                        f"medians ({', '.join(sorted(names))}); see the notes below.")
    notes_file = Path(__file__).with_name("bench-notes.md")
    if analysis:
        lines.extend(analysis)
    else:
        w("- Every target was met in this run.")
    if notes_file.exists():
        w("")
        lines.extend(notes_file.read_text().rstrip().splitlines())
    w("")

    # ---- method
    w("## How it was measured")
    w("")
    w("- `loadgen` (crate `tests/loadgen`) runs the same scenario code for each system; only the wire protocol "
      "differs. Latencies are recorded in HDR histograms (1 µs to 1 h, 3 significant digits).")
    w("- Client sockets are bound to 20 source addresses (127.0.0.1–127.0.0.20) before connecting, so the "
      "ephemeral ports of one address do not cap the connection count.")
    w("- Switchyard: 2 auth-services, 1 chat-service, 1 mailer, Redis, FerretDB 1.24 on SQLite and MailDev, all "
      "with log level `warn`; users are signed up once through the real flow (REGISTER, mail, CONFIRMATION, "
      "LOGIN) and reused with FASTLOGIN. Every message is stored by chat-service before it is delivered.")
    w("- Centrifugo: its Redis engine on its own Redis, HMAC (HS256) tokens made by loadgen, a namespace with "
      "`allow_subscribe_for_client` and `allow_publish_for_client`, log level `error`, everything else default. "
      "A publisher subscribed to the room also receives its own message; loadgen does not count those echoes.")
    w("- bare: `bare-broadcast` from the loadgen crate — tokio-tungstenite with no bus and no storage, written the "
      "way the library's examples are (a reader and a writer task per connection, a bounded outbox), with the "
      "gateway's read buffer and frame limits; a message goes to every other member of the room. The gateway "
      "writes a frame from the task that produced it while the socket has room, so it can do less per frame "
      "than this server.")
    w("- Idle memory is measured on freshly started servers; fan-out and one-to-one use one server each.")
    w("")
    w("Commands (the first run of each; bench.sh picks free ports and temporary paths for every run):")
    w("")
    w("```sh")
    w("tests/loadgen/bench.sh")
    for line in commands(results):
        w(line)
    w("```")
    output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
