#!/usr/bin/env python3
"""One HTTPS process serving many SPIFFE bundle endpoints, for the scale scenario.

GET /<trust-domain> answers the file DIR/<trust-domain>.json (a SPIFFE bundle made by
`fedgate ca init`); any other path is 404 and any other method 405. The server presents
--cert/--key (an X509-SVID, so that https_spiffe clients can pin it). It prints
"listening on HOST:PORT" once bound and serves until SIGTERM. Bench fixture only: the
documents are read once at start and kept in memory.
"""
import argparse
import http.server
import os
import signal
import ssl
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen-port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    a = p.parse_args()

    docs = {}
    for name in os.listdir(a.dir):
        if name.endswith(".json"):
            with open(os.path.join(a.dir, name), "rb") as f:
                docs["/" + name[: -len(".json")]] = f.read()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = docs.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # no per-request log lines
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    class Server(http.server.ThreadingHTTPServer):
        # A gateway with 1,000 peers fetches them all at start: keep them in the backlog
        # rather than refusing them (the default backlog is 5).
        request_queue_size = 1024
        daemon_threads = True

    server = Server(("127.0.0.1", a.listen_port), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on 127.0.0.1:{a.listen_port} ({len(docs)} bundles)", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
