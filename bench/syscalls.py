"""Per-connection syscalls of a passthrough gateway: N sequential connections, each sending a
real ClientHello (python ssl, MemoryBIO) to the gateway, whose route goes to a local sink that
reads the hello, answers 3 bytes and closes. Run under `strace -c -f -p GW` in parallel."""
import socket
import ssl
import sys
import threading

gw_port, sink_port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context()
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="backend.cluster-b.test")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()

s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", sink_port)); s.listen(128)
def sink():
    while True:
        c, _ = s.accept()
        got = b""
        while len(got) < len(hello):
            d = c.recv(65536)
            if not d: break
            got += d
        c.sendall(b"bye"); c.close()
threading.Thread(target=sink, daemon=True).start()
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", gw_port))
    c.sendall(hello)
    r = b""
    while True:
        d = c.recv(100)
        if not d: break
        r += d
    assert r == b"bye", r
    c.close()
print("ok", n, "connections, hello", len(hello), "bytes")
