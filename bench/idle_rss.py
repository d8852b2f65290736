#!/usr/bin/env python3
"""idle_rss.py — helpers for bench/idle_rss.sh (memory per idle connection of a passthrough proxy).

Subcommands:
  sink   --port-file F
         accept TCP connections on 127.0.0.1:0 (port written to F), read and discard what
         arrives, hold every connection open until SIGTERM; prints the number of connections
         it holds when asked with SIGUSR1 (to stderr) and on exit.
  hold   --addr HOST:PORT --sni NAME --conns N --pids P[,P..] --settle S --hold-max S
         [--sink-pid PID]
         build one real TLS 1.3 ClientHello for NAME with Python's ssl module (memory BIO, no
         network), open N TCP connections to the proxy (at most 256 connecting at a time), send
         the ClientHello on each, so the proxy routes it and opens an upstream connection of its
         own, then wait S seconds and read VmRSS of the given proxy PIDs (and their children)
         from /proc (and SIGUSR1 the sink, which logs how many connections it holds). Prints
         one line of key=value pairs:
           conns=N opened=K alive=A errors=E rss_before_kib=.. rss_after_kib=..
           rss_closed_kib=.. per_conn_bytes=..
         "before" is measured before the first connection, "after" with all connections open
         and idle, "closed" 1 s after closing them all.
  free-port
         print a port that was free on 127.0.0.1 a moment ago (for proxy configs).

Every wait is bounded (--hold-max, connect timeouts); nothing is sent beyond the ClientHello.
"""

import argparse
import asyncio
import os
import signal
import socket
import ssl
import sys
import time


def client_hello(sni: str) -> bytes:
    """A complete TLS ClientHello for `sni`, as Python's OpenSSL would send it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    if len(hello) < 50 or hello[0] != 0x16:
        raise SystemExit("idle_rss.py: could not build a ClientHello")
    return hello


def children(pid: int) -> list:
    """`pid` and every descendant (nginx masters fork workers; haproxy/fedgate are one process)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parent.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, []))
    return out


def rss_kib(pids: list) -> int:
    total = 0
    for root in pids:
        for p in children(root):
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


async def sink(port_file: str) -> None:
    held = set()

    async def handle(reader, writer):
        held.add(writer)
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            held.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: print(f"sink_conns={len(held)}", file=sys.stderr, flush=True)
    )
    await stop.wait()
    print(f"sink_conns={len(held)}", file=sys.stderr, flush=True)
    server.close()
    for w in list(held):
        w.close()


async def hold(args) -> None:
    host, port = args.addr.rsplit(":", 1)
    hello = client_hello(args.sni)
    pids = [int(p) for p in args.pids.split(",") if p]
    deadline = time.monotonic() + args.hold_max
    before = rss_kib(pids)
    gate = asyncio.Semaphore(256)
    conns = []
    errors = 0

    async def open_one():
        nonlocal errors
        async with gate:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
                w.write(hello)
                await asyncio.wait_for(w.drain(), 10)
                conns.append((r, w))
            except (OSError, asyncio.TimeoutError):
                errors += 1

    await asyncio.gather(*(open_one() for _ in range(args.conns)))
    # Let the proxy read every ClientHello, dial upstream and replay it.
    await asyncio.sleep(min(args.settle, max(0.0, deadline - time.monotonic())))
    after = rss_kib(pids)
    if args.sink_pid:
        os.kill(args.sink_pid, signal.SIGUSR1)  # the sink logs how many upstream conns it holds
    # Still open? (a proxy that closed them would make the figure meaningless)
    alive = sum(1 for r, _ in conns if not r.at_eof())
    for _, w in conns:
        w.close()
    await asyncio.sleep(1.0)
    closed = rss_kib(pids)
    opened = len(conns)
    per_conn = (after - before) * 1024 / opened if opened else 0
    print(
        f"conns={args.conns} opened={opened} alive={alive} errors={errors} "
        f"rss_before_kib={before} rss_after_kib={after} rss_closed_kib={closed} "
        f"per_conn_bytes={per_conn:.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port-file", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--addr", required=True)
    h.add_argument("--sni", required=True)
    h.add_argument("--conns", type=int, default=10000)
    h.add_argument("--pids", required=True)
    h.add_argument("--settle", type=float, default=3.0)
    h.add_argument("--sink-pid", type=int, default=0)
    h.add_argument("--hold-max", type=float, default=60.0)
    sub.add_parser("free-port")
    args = ap.parse_args()
    if args.cmd == "sink":
        asyncio.run(sink(args.port_file))
    elif args.cmd == "hold":
        asyncio.run(asyncio.wait_for(hold(args), args.hold_max + 120))
    else:
        with socket.socket() as s2:
            s2.bind(("127.0.0.1", 0))
            print(s2.getsockname()[1])


if __name__ == "__main__":
    main()
