#!/usr/bin/env python3
"""soak.py — helpers for bench/soak.sh (the soak and fault run). Standard library only.

Subcommands:
  ports N
        print N distinct TCP ports that were free on 127.0.0.1 a moment ago (all bound at once,
        then released).
  backend --pass-port P --bridge-port Q --cert PEM --key PEM --pass-ca PEM --bridge-ca PEM
          --ready-file F
        the TLS backend behind both paths, on 127.0.0.1. Both ports require a client
        certificate: P (passthrough: end-to-end mTLS with the client) verifies it against
        --pass-ca, Q (bridge: gateway B re-originates) against --bridge-ca, selects the relay
        protocol (ALPN fedgate-relay/1) and first reads the PROXY v2 header gateway B sends
        inside TLS (origin ID from TLV 0xE1). For every line it
        receives it answers `ok peer=<client's SPIFFE ID> origin=<origin ID or -> <line>`.
        Writes F once both ports listen. Runs until SIGTERM.
  load --cert PEM --key PEM --path NAME=PORT,SNI,CAFILE,SERVER_ID,PEER,ORIGIN ...
       --rate R --duration S --max-conns N --out CSV [--hold-frac F --hold-min S --hold-max S]
       [--max-inflight K] [--status FILE] [--progress S] [--smoke]
        connection churn: per path, R new connections per second (open loop, fixed schedule),
        each: TCP connect + TLS 1.3 handshake presenting the client SVID, check the server's
        SPIFFE ID, one request line, check the answer (peer and origin IDs, echoed line),
        close. A fraction F of connections holds for a random time in [hold-min, hold-max]
        and sends a second request before closing, so that connections are live at any
        moment (the drain has something to drain). Stops by itself after S seconds or N
        connections per path, or on SIGTERM/SIGINT (stops starting new ones, then waits at
        most 30 s for those in flight). One CSV row per connection:
        path,seq,t_start,t_end,held,outcome,error   (outcome ok|fail|refused|skipped;
        skipped = not started because K connections of that path were already in flight).
        --smoke: one connection per path, exit 1 unless all succeed.
  get --addr HOST:PORT --path /status [--out FILE]
        one HTTP GET (admin API), 5 s timeout; prints the body (or writes FILE); exit 1 unless
        200.
  peer --addr HOST:PORT --td TD
        prints `<sequence> <authorities>` of peer TD from the gateway's /status.
  active --addr HOST:PORT --pid PID
        prints `<open fds> <live connections>` of a gateway: the fd count of /proc/PID/fd
        (mean of a count just before and just after the request) and the sum of
        active_connections on /status.
  metric --addr HOST:PORT --name NAME [--match SUBSTR]
        prints the sum of the samples of metric NAME (label set containing SUBSTR) on /metrics.
  summarize --dir DIR
        reads DIR/events.csv, DIR/conns.csv[.gz], DIR/rss.csv (and DIR/metrics-*-end.txt), prints
        the summary and writes DIR/summary.txt and DIR/summary.json. Exit 1 if the run failed
        (any failed connection, or fewer connections than --min-conns per path).

Every wait is bounded; everything binds or dials 127.0.0.1 only.
"""

import argparse
import asyncio
import csv
import gzip
import http.client
import json
import os
import random
import signal
import socket
import ssl
import struct
import sys
import time

PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
TLV_ORIGIN_ID = 0xE1


# ---------------------------------------------------------------------------------------------
# small helpers


def free_ports(n: int) -> list:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def uri_san(cert: dict) -> str:
    """The URI SAN of a verified peer certificate (getpeercert() form), or '?'."""
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "URI":
            return value
    return "?"


def http_get(addr: str, path: str, timeout: float = 5.0):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric_sum(text: str, name: str, match: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric = head.split("{", 1)[0]
        if metric != name or (match and match not in head):
            continue
        try:
            total += float(value)
        except ValueError:
            pass
    return total


# ---------------------------------------------------------------------------------------------
# backend


def parse_proxy_v2(hdr: bytes, body: bytes) -> str:
    """Origin ID (TLV 0xE1) of a PROXY v2 header, or '-'."""
    fam = hdr[13]
    skip = {0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216}.get(fam, 0)
    i = skip
    while i + 3 <= len(body):
        t = body[i]
        ln = struct.unpack("!H", body[i + 1 : i + 3])[0]
        val = body[i + 3 : i + 3 + ln]
        if t == TLV_ORIGIN_ID:
            return val.decode("utf-8", "replace")
        i += 3 + ln
    return "-"


async def backend(args) -> None:
    def ctx(ca: str, relay: bool) -> ssl.SSLContext:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.minimum_version = ssl.TLSVersion.TLSv1_2
        c.load_cert_chain(args.cert, args.key)
        c.verify_mode = ssl.CERT_REQUIRED
        c.load_verify_locations(cafile=ca)
        if relay:
            # A bridge-ingress route with send_proxy_header = true offers the relay protocol
            # and refuses a destination that does not select it (docs/configuration.md).
            c.set_alpn_protocols(["fedgate-relay/1"])
        return c

    stats = {"conns": 0, "errors": 0}

    def handler(expect_proxy: bool):
        async def handle(reader, writer):
            stats["conns"] += 1
            try:
                sslobj = writer.get_extra_info("ssl_object")
                peer = uri_san(sslobj.getpeercert() if sslobj else None)
                origin = "-"
                if expect_proxy:
                    hdr = await asyncio.wait_for(reader.readexactly(16), 10)
                    if hdr[:12] != PROXY_V2_SIG:
                        raise ValueError("no PROXY v2 header")
                    ln = struct.unpack("!H", hdr[14:16])[0]
                    body = await asyncio.wait_for(reader.readexactly(ln), 10)
                    origin = parse_proxy_v2(hdr, body)
                for _ in range(100):  # bounded: the load client sends at most 2 lines
                    line = await asyncio.wait_for(reader.readline(), 60)
                    if not line:
                        break
                    text = line.decode("utf-8", "replace").strip()
                    writer.write(f"ok peer={peer} origin={origin} {text}\n".encode())
                    await writer.drain()
            except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    ValueError) as e:
                stats["errors"] += 1
                print(f"backend: connection error: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                try:
                    writer.close()
                    await asyncio.wait_for(writer.wait_closed(), 5)
                except (OSError, ssl.SSLError, asyncio.TimeoutError):
                    pass

        return handle

    s1 = await asyncio.start_server(handler(False), "127.0.0.1", args.pass_port,
                                    ssl=ctx(args.pass_ca, False), ssl_handshake_timeout=10, backlog=1024)
    s2 = await asyncio.start_server(handler(True), "127.0.0.1", args.bridge_port,
                                    ssl=ctx(args.bridge_ca, True), ssl_handshake_timeout=10, backlog=1024)
    with open(args.ready_file, "w") as f:
        f.write("ready\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    s1.close()
    s2.close()
    print(f"backend: conns={stats['conns']} errors={stats['errors']}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# load client


class Path:
    def __init__(self, spec: str, cert: str, key: str):
        name, _, rest = spec.partition("=")
        port, sni, cafile, server_id, peer, origin = rest.split(",")
        self.name = name
        self.port = int(port)
        self.sni = sni
        self.server_id = server_id
        self.peer = peer
        self.origin = origin
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False  # SVIDs carry a SPIFFE ID, checked below, not a name
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(cafile=cafile)
        self.ctx.load_cert_chain(cert, key)
        self.inflight = 0
        self.counts = {"ok": 0, "fail": 0, "refused": 0, "skipped": 0}


async def one_conn(p: Path, seq: int, hold: float) -> tuple:
    """One connection; returns (outcome, error)."""
    writer = None
    try:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", p.port, ssl=p.ctx, server_hostname=p.sni,
                                        ssl_handshake_timeout=10), 15)
        except ConnectionRefusedError as e:
            return "refused", f"ConnectionRefusedError: {e}"
        sslobj = writer.get_extra_info("ssl_object")
        seen = uri_san(sslobj.getpeercert())
        if seen != p.server_id:
            return "fail", f"server ID {seen}, expected {p.server_id}"
        rounds = [f"{p.name} {seq} 1"] + ([f"{p.name} {seq} 2"] if hold > 0 else [])
        for i, req in enumerate(rounds):
            if i > 0:
                await asyncio.sleep(hold)
            writer.write(req.encode() + b"\n")
            await asyncio.wait_for(writer.drain(), 10)
            line = await asyncio.wait_for(reader.readline(), 15)
            want = f"ok peer={p.peer} origin={p.origin} {req}\n".encode()
            if line != want:
                return "fail", f"round {i + 1}: got {line[:200]!r}"
        return "ok", ""
    except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        return "fail", f"{type(e).__name__}: {e}"
    finally:
        if writer is not None:
            try:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                pass  # the exchange is complete; a close_notify race is not a failure


async def load(args) -> int:
    paths = [Path(s, args.cert, args.key) for s in args.path]
    if args.smoke:
        bad = 0
        for p in paths:
            outcome, err = await one_conn(p, 0, 0)
            print(f"smoke {p.name}: {outcome} {err}".rstrip(), file=sys.stderr)
            bad += outcome != "ok"
        return 1 if bad else 0

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    out = open(args.out, "w", newline="", buffering=1 << 16)
    w = csv.writer(out)
    w.writerow(["path", "seq", "t_start", "t_end", "held", "outcome", "error"])
    tasks = set()
    rnd = random.Random(1)
    t0 = time.monotonic()
    deadline = t0 + args.duration

    async def run_one(p: Path, seq: int, hold: float):
        t_start = time.time()
        p.inflight += 1
        try:
            outcome, err = await one_conn(p, seq, hold)
        finally:
            p.inflight -= 1
        p.counts[outcome] += 1
        w.writerow([p.name, seq, f"{t_start:.4f}", f"{time.time():.4f}", int(hold > 0), outcome,
                    err.replace("\n", " ")[:300]])

    async def schedule(p: Path, offset: float):
        interval = 1.0 / args.rate
        nxt = t0 + offset
        for seq in range(1, args.max_conns + 1):
            nxt += interval
            now = time.monotonic()
            if nxt > deadline or stop.is_set():
                return
            if nxt > now:
                try:
                    await asyncio.wait_for(stop.wait(), nxt - now)
                    return
                except asyncio.TimeoutError:
                    pass
            if p.inflight >= args.max_inflight:
                p.counts["skipped"] += 1
                w.writerow([p.name, seq, f"{time.time():.4f}", f"{time.time():.4f}", 0,
                            "skipped", "max-inflight"])
                continue
            hold = rnd.uniform(args.hold_min, args.hold_max) if rnd.random() < args.hold_frac else 0
            t = asyncio.ensure_future(run_one(p, seq, hold))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    async def progress():
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.progress)
            except asyncio.TimeoutError:
                pass
            snap = {p.name: dict(p.counts, inflight=p.inflight) for p in paths}
            snap["elapsed_s"] = round(time.monotonic() - t0, 1)
            out.flush()
            if args.status:
                tmp = args.status + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(snap, f)
                os.replace(tmp, args.status)
            print("load: " + " ".join(
                f"{p.name}: ok={p.counts['ok']} fail={p.counts['fail']} "
                f"refused={p.counts['refused']} skipped={p.counts['skipped']} "
                f"inflight={p.inflight}" for p in paths), file=sys.stderr, flush=True)

    prog = asyncio.ensure_future(progress())
    await asyncio.gather(*(schedule(p, i / (args.rate * len(paths))) for i, p in enumerate(paths)))
    # Stopped (time, count or signal): let the connections in flight finish, bounded.
    if tasks:
        await asyncio.wait(list(tasks), timeout=30)
    stop.set()
    await prog
    for t in list(tasks):
        t.cancel()
    out.close()
    return 0


# ---------------------------------------------------------------------------------------------
# summary


def read_events(path: str) -> list:
    ev = []
    with open(path) as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0] != "epoch":
                ev.append((float(row[0]), row[1], row[2] if len(row) > 2 else ""))
    return ev


def first(events, name):
    for t, n, _ in events:
        if n == name:
            return t
    return None


def summarize(args) -> int:
    d = args.dir
    events = read_events(os.path.join(d, "events.csv"))
    t_load = first(events, "load_start")
    rot_start = first(events, "rotation_start")
    rot_end = first(events, "rotation_end")
    t_term = first(events, "sigterm_gw-a")
    huptimes = [t for t, n, _ in events if n == "sighup"]

    paths = {}
    failures = []
    conns_file = os.path.join(d, "conns.csv")
    if not os.path.exists(conns_file) and os.path.exists(conns_file + ".gz"):
        opener = lambda: gzip.open(conns_file + ".gz", "rt", newline="")  # noqa: E731
    else:
        opener = lambda: open(conns_file, newline="")  # noqa: E731
    with opener() as f:
        for row in csv.DictReader(f):
            p = paths.setdefault(row["path"], {
                "started": 0, "ok": 0, "skipped": 0,
                "steady": {"n": 0, "fail": 0}, "rotation": {"n": 0, "fail": 0},
                "reload_10s": {"n": 0, "fail": 0},
                "drain_live": {"n": 0, "fail": 0},
                "after_sigterm": {"n": 0, "refused": 0, "ok": 0, "fail": 0},
            })
            outcome = row["outcome"]
            if outcome == "skipped":
                p["skipped"] += 1
                continue
            ts, te = float(row["t_start"]), float(row["t_end"])
            p["started"] += 1
            p["ok"] += outcome == "ok"
            bad = outcome not in ("ok",)
            if t_term is not None and ts >= t_term:
                w = p["after_sigterm"]
                w["n"] += 1
                w[outcome if outcome in ("ok", "refused") else "fail"] += 1
                if outcome not in ("ok", "refused"):
                    failures.append((ts, row["path"], "after_sigterm", row["error"]))
                continue
            if t_term is not None and te >= t_term:
                window = "drain_live"
            elif rot_start is not None and rot_start <= ts and (rot_end is None or ts < rot_end):
                window = "rotation"
            else:
                window = "steady"
            p[window]["n"] += 1
            p[window]["fail"] += bad
            if any(h <= ts < h + 10 for h in huptimes):
                p["reload_10s"]["n"] += 1
                p["reload_10s"]["fail"] += bad
            if bad:
                failures.append((ts, row["path"], window, f"{outcome}: {row['error']}"))

    # RSS, fds, threads, CPU
    procs = {}
    with open(os.path.join(d, "rss.csv")) as f:
        for row in csv.DictReader(f):
            if row["rss_kib"] in ("", "-"):
                continue
            cpu = row.get("cpu_ticks") or "-"
            act = row.get("active") or "-"
            procs.setdefault(row["name"], []).append(
                (float(row["epoch"]), int(row["rss_kib"]), int(row["fds"]), int(row["threads"]),
                 int(cpu) if cpu.isdigit() else None, int(act) if act.isdigit() else None))
    tck = os.sysconf("SC_CLK_TCK")
    mem = {}
    for name, s in procs.items():
        s = [x for x in s if t_term is None or x[0] < t_term]
        idle = [x for x in s if t_load is not None and x[0] < t_load]
        s = [x for x in s if t_load is None or x[0] >= t_load]
        if not s:
            continue
        r0, r1 = s[0][1], s[-1][1]
        rs = [x[1] for x in s]
        fds = [x[2] for x in s]
        # Descriptors that are not connections: a gateway holds 2 per live connection (client
        # and upstream side), counted from /status right after the fd count.
        other = [x[2] - 2 * x[5] for x in s if x[5] is not None]
        # Least-squares slope over the second half (KiB/min): growth after warm-up.
        half = s[len(s) // 2:]
        slope = 0.0
        if len(half) >= 3:
            xs = [(x[0] - half[0][0]) / 60 for x in half]
            ys = [x[1] for x in half]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            den = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0
        monotonic = len(rs) >= 4 and all(b >= a for a, b in zip(rs[1:], rs[2:])) and rs[-1] > rs[1]
        fd_growth = (other[-1] - other[0]) if other else (fds[-1] - fds[0])
        cpu_pct = None
        if len(s) >= 2 and s[0][4] is not None and s[-1][4] is not None and s[-1][0] > s[0][0]:
            cpu_pct = round(100.0 * (s[-1][4] - s[0][4]) / tck / (s[-1][0] - s[0][0]), 1)
        # Leak signal (fedgate processes): RSS rising at every sample after warm-up and by more
        # than 1 MiB, or a second-half slope above 0.5 %/min of the start (>= 5 samples), or
        # non-connection fds (fds - 2 x live connections; plain fds where unknown) up by more
        # than 16.
        leak = []
        if not name.startswith("py-"):
            if monotonic and rs[-1] - rs[1] > 1024:
                leak.append("RSS grew at every sample after warm-up")
            if r0 and slope > 0.005 * r0 and len(half) >= 5:
                leak.append(f"RSS slope {slope:.0f} KiB/min in the second half")
            if fd_growth > 16:
                leak.append(f"non-connection fds +{fd_growth}")
        mem[name] = {
            "samples": len(s), "rss_idle_kib": idle[-1][1] if idle else None,
            "rss_start_kib": r0, "rss_end_kib": r1, "rss_max_kib": max(rs),
            "drift_kib": r1 - r0, "drift_pct": round(100.0 * (r1 - r0) / r0, 1) if r0 else None,
            "slope_2nd_half_kib_per_min": round(slope, 1),
            "fds_idle": idle[-1][2] if idle else None,
            "fds_start": fds[0], "fds_end": fds[-1], "fds_max": max(fds),
            "other_fds_start": other[0] if other else None,
            "other_fds_end": other[-1] if other else None,
            "other_fds_max": max(other) if other else None,
            "threads_end": s[-1][3], "cpu_pct": cpu_pct, "leak_signal": leak,
        }

    # Reloads and exits from the events and the metrics snapshots.
    gw = {}
    for name in ("gw-a", "gw-b"):
        info = {}
        mfile = os.path.join(d, f"metrics-{name}-end.txt")
        if os.path.exists(mfile):
            with open(mfile) as f:
                text = f.read()
            info["reloads_ok"] = int(metric_sum(text, "fedgate_config_reloads_total", 'result="ok"'))
            info["reloads_failed"] = int(metric_sum(text, "fedgate_config_reloads_total",
                                                    'result="failed"'))
            info["bridge_rejects"] = int(metric_sum(text, "fedgate_bridge_rejects_total"))
            info["bridge_rebuilds_ok"] = int(metric_sum(text, "fedgate_bridge_rebuilds_total",
                                                        'result="ok"'))
        for t, n, detail in events:
            if n == f"exit_{name}":
                info["exit"] = detail
        gw[name] = info

    sighups = len(huptimes)
    total_fail = sum(p[w]["fail"] for p in paths.values()
                     for w in ("steady", "rotation", "drain_live", "after_sigterm"))
    min_total = min((p["started"] for p in paths.values()), default=0)
    duration = (t_term - t_load) / 60 if (t_term and t_load) else None
    verdict = "PASS" if total_fail == 0 and min_total >= args.min_conns and paths else "FAIL"
    leaks = {n: m["leak_signal"] for n, m in mem.items() if m["leak_signal"]}

    lines = []
    add = lines.append
    add(f"fedgate soak: {os.path.basename(os.path.normpath(d))}")
    for t, n, detail in events:
        if n == "meta":
            add(f"  {detail}")
    if duration is not None:
        add(f"  load until SIGTERM: {duration:.1f} min; SIGHUP reloads sent to each gateway: {sighups}")
    if rot_start and rot_end:
        add(f"  rotation window: +{(rot_start - t_load) / 60:.1f} min .. +{(rot_end - t_load) / 60:.1f} min "
            f"({rot_end - rot_start:.0f} s)")
    add("")
    add(f"{'path':<12} {'conns':>8} {'ok':>8} {'steady':>14} {'rotation':>14} {'reload+10s':>12} "
        f"{'live@SIGTERM':>14} {'after SIGTERM (ok/refused/fail)':>32} {'skipped':>8}")
    for name, p in sorted(paths.items()):
        a = p["after_sigterm"]
        add(f"{name:<12} {p['started']:>8} {p['ok']:>8} "
            f"{p['steady']['n']:>7}/{p['steady']['fail']:<6} "
            f"{p['rotation']['n']:>7}/{p['rotation']['fail']:<6} "
            f"{p['reload_10s']['n']:>6}/{p['reload_10s']['fail']:<5} "
            f"{p['drain_live']['n']:>7}/{p['drain_live']['fail']:<6} "
            f"{a['ok']:>14}/{a['refused']}/{a['fail']:<10} {p['skipped']:>8}")
    add("  (window columns: connections/failed; a connection is in the window it started in;")
    add("   live@SIGTERM = started before gateway A's SIGTERM, still open at it; connections")
    add("   started after SIGTERM are refused by design: the listeners close at once)")
    add("")
    add(f"{'process':<12} {'samples':>7} {'rss idle':>9} {'rss start':>10} {'rss end':>10} {'max':>10} "
        f"{'drift KiB':>10} {'drift %':>8} {'slope KiB/min':>14} {'fds idle/s/e/max':>17} "
        f"{'non-conn fds s/e/max':>21} {'threads':>7} {'CPU %':>6}")
    for name, m in sorted(mem.items()):
        fds = f"{m['fds_idle'] if m['fds_idle'] is not None else '-'}/{m['fds_start']}/{m['fds_end']}/{m['fds_max']}"
        ofd = (f"{m['other_fds_start']}/{m['other_fds_end']}/{m['other_fds_max']}"
               if m["other_fds_start"] is not None else "-")
        add(f"{name:<12} {m['samples']:>7} {m['rss_idle_kib'] or '-':>9} {m['rss_start_kib']:>10} "
            f"{m['rss_end_kib']:>10} {m['rss_max_kib']:>10} {m['drift_kib']:>10} {m['drift_pct']:>8} "
            f"{m['slope_2nd_half_kib_per_min']:>14} {fds:>17} {ofd:>21} {m['threads_end']:>7} "
            f"{m['cpu_pct'] if m['cpu_pct'] is not None else '-':>6}")
    add("  (RSS in KiB from /proc/PID/status VmRSS; idle = before the load, start = first sample")
    add("   under load, end = last sample before SIGTERM; slope: least squares over the second")
    add("   half of the samples; fds = entries of /proc/PID/fd; non-conn fds = fds - 2 x the")
    add("   gateway's live connections (/status); CPU % of one core, start..end;")
    add("   py-* are the Python load client and backend, for the CPU budget)")
    add("")
    for name, info in gw.items():
        add(f"{name}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    add("")
    add(f"leak signals: {json.dumps(leaks) if leaks else 'none'}")
    if failures:
        add(f"failures ({len(failures)}; first 20):")
        for ts, path, window, err in sorted(failures)[:20]:
            add(f"  +{ts - (t_load or ts):8.2f}s {path:<12} {window:<14} {err}")
    else:
        add("failures: none")
    add(f"verdict: {verdict} (0 failed connections of at least {args.min_conns} per path)")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(d, "summary.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"paths": paths, "processes": mem, "gateways": gw, "sighups": sighups,
                   "minutes": duration, "failures": failures[:200], "verdict": verdict}, f, indent=1)
    return 0 if verdict == "PASS" else 1


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("backend")
    for a in ("--cert", "--key", "--pass-ca", "--bridge-ca", "--ready-file"):
        p.add_argument(a, required=True)
    p.add_argument("--pass-port", type=int, required=True)
    p.add_argument("--bridge-port", type=int, required=True)
    p = sub.add_parser("load")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--path", action="append", required=True)
    p.add_argument("--rate", type=float, default=30)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--max-conns", type=int, default=1_000_000)
    p.add_argument("--max-inflight", type=int, default=500)
    p.add_argument("--hold-frac", type=float, default=0.2)
    p.add_argument("--hold-min", type=float, default=0.5)
    p.add_argument("--hold-max", type=float, default=3.0)
    p.add_argument("--out", default="/dev/null")
    p.add_argument("--status")
    p.add_argument("--progress", type=float, default=60)
    p.add_argument("--smoke", action="store_true")
    p = sub.add_parser("get")
    p.add_argument("--addr", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--out")
    p = sub.add_parser("peer")
    p.add_argument("--addr", required=True)
    p.add_argument("--td", required=True)
    p = sub.add_parser("active")
    p.add_argument("--addr", required=True)
    p.add_argument("--pid", type=int, required=True)
    p = sub.add_parser("metric")
    p.add_argument("--addr", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--match", default="")
    p = sub.add_parser("summarize")
    p.add_argument("--dir", required=True)
    p.add_argument("--min-conns", type=int, default=0)
    args = ap.parse_args()

    if args.cmd == "ports":
        print(" ".join(str(x) for x in free_ports(args.n)))
    elif args.cmd == "backend":
        asyncio.run(backend(args))
    elif args.cmd == "load":
        sys.exit(asyncio.run(load(args)))
    elif args.cmd == "get":
        try:
            status, body = http_get(args.addr, args.path)
        except OSError as e:
            print(f"soak.py get: {e}", file=sys.stderr)
            sys.exit(1)
        if args.out:
            with open(args.out, "w") as f:
                f.write(body)
        else:
            sys.stdout.write(body)
        sys.exit(0 if status == 200 else 1)
    elif args.cmd == "peer":
        try:
            _, body = http_get(args.addr, "/status")
            st = json.loads(body)
        except (OSError, ValueError) as e:
            print(f"soak.py peer: {e}", file=sys.stderr)
            sys.exit(1)
        for peer in st.get("peers", []):
            if peer.get("trust_domain") == args.td:
                print(f"{peer.get('sequence')} {peer.get('authorities')}")
                return
        sys.exit(1)
    elif args.cmd == "active":
        # fds, then /status, then fds again (a few ms apart): the average fd count goes with
        # the live-connection count taken between the two.
        try:
            f0 = len(os.listdir(f"/proc/{args.pid}/fd"))
            _, body = http_get(args.addr, "/status")
            f1 = len(os.listdir(f"/proc/{args.pid}/fd"))
            st = json.loads(body)
        except (OSError, ValueError) as e:
            print(f"soak.py active: {e}", file=sys.stderr)
            sys.exit(1)
        active = sum(int(x.get("active_connections") or 0) for x in st.get("listeners", []))
        print(f"{(f0 + f1) // 2} {active}")
    elif args.cmd == "metric":
        try:
            _, body = http_get(args.addr, "/metrics")
        except OSError as e:
            print(f"soak.py metric: {e}", file=sys.stderr)
            sys.exit(1)
        print(int(metric_sum(body, args.name, args.match)))
    elif args.cmd == "summarize":
        sys.exit(summarize(args))


if __name__ == "__main__":
    main()
