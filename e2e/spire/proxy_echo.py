#!/usr/bin/env python3
"""The application behind the e2e sidecars: one line in, one line out, with the caller's
identities read from the PROXY v2 header the sidecar sends (`proxy_protocol = true`).

  proxy_echo.py serve PORT        accept on 127.0.0.1:PORT; for each connection read the PROXY
                                  v2 header and one line, answer
                                  `client=<TLV 0xE0> origin=<TLV 0xE1 or -> msg=<line>`, close
  proxy_echo.py call PORT MSG     connect to 127.0.0.1:PORT, send MSG and a newline, print the
                                  answer line (10 s deadline); exit 1 on no answer

Only the standard library; every socket operation has a deadline.
"""
import socket
import struct
import sys
import threading

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
ADDRESS_LEN = {0x00: 0, 0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216}


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed inside the PROXY header")
        buf += chunk
    return buf


def read_proxy_v2(conn):
    """The TLVs of the PROXY v2 header at the start of `conn`, as {type: bytes}."""
    head = read_exact(conn, 16)
    if head[:12] != SIGNATURE or head[12] >> 4 != 2:
        raise ValueError("not a PROXY v2 header")
    (length,) = struct.unpack("!H", head[14:16])
    body = read_exact(conn, length)
    skip = ADDRESS_LEN.get(head[13], 0)
    tlvs, i = {}, skip
    while i + 3 <= len(body):
        kind, size = body[i], struct.unpack("!H", body[i + 1 : i + 3])[0]
        tlvs[kind] = body[i + 3 : i + 3 + size]
        i += 3 + size
    return tlvs


def read_line(conn):
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < 4096:
        chunk = conn.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace").strip()


def handle(conn):
    with conn:
        conn.settimeout(10)
        try:
            tlvs = read_proxy_v2(conn)
            client = tlvs.get(0xE0, b"-").decode() or "-"
            origin = tlvs.get(0xE1, b"-").decode() or "-"
            msg = read_line(conn)
            conn.sendall(f"client={client} origin={origin} msg={msg}\n".encode())
        except (OSError, ValueError, EOFError) as e:
            try:
                conn.sendall(f"error={e}\n".encode())
            except OSError:
                pass


def serve(port):
    srv = socket.create_server(("127.0.0.1", port))
    print(f"proxy_echo listening on 127.0.0.1:{port}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def call(port, msg):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(10)
        conn.sendall(msg.encode() + b"\n")
        line = read_line(conn)
    if not line:
        print("no answer", file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "call":
        sys.exit(call(int(sys.argv[2]), sys.argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
