"""py-spiffe (PyPI `spiffe`) against a SPIFFE Workload API socket; run by run-py.sh.

Modes (as main.go's):
  fetch     print the default SVID's SPIFFE ID and the bundles' trust domains; fail unless the
            ID is --expect-id and every --expect-td is present in the X.509 and JWT bundles
  rotation  stream X.509 contexts; print "ready" after the first, exit 0 after --updates
  denied    expect the fetch to fail with PermissionDenied
"""

import argparse
import sys
import threading

from spiffe import WorkloadApiClient


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def fetch(client, expect_id, expect_tds):
    ctx = client.fetch_x509_context()
    svid = ctx.default_svid
    print(f"svid: {svid.spiffe_id}")
    if expect_id and str(svid.spiffe_id) != expect_id:
        fail(f"default SVID is {svid.spiffe_id}, expected {expect_id}")
    x509 = sorted(str(b.trust_domain) for b in client.fetch_x509_bundles().bundles)
    print(f"x509 bundles: {','.join(x509)}")
    jwt = sorted(str(b.trust_domain) for b in client.fetch_jwt_bundles().bundles)
    print(f"jwt bundles: {','.join(jwt)}")
    for td in expect_tds:
        if td not in x509 or td not in jwt:
            fail(f"trust domain {td} missing from the bundles")
    print("ok")


def rotation(client, updates, timeout):
    seen = []
    done = threading.Event()
    errors = []

    def on_success(ctx):
        sizes = sorted(
            f"{b.trust_domain}:{len(b.x509_authorities)}" for b in ctx.x509_bundle_set.bundles
        )
        seen.append(sizes)
        print(f"update {len(seen)}: svid {ctx.default_svid.spiffe_id}, bundles {','.join(sizes)}",
              flush=True)
        if len(seen) == 1:
            print("ready", flush=True)
        if len(seen) >= updates:
            done.set()

    def on_error(err):
        errors.append(err)
        print(f"stream error: {err}", file=sys.stderr, flush=True)

    handler = client.stream_x509_contexts(on_success, on_error)
    ok = done.wait(timeout)
    handler.cancel()
    if not ok:
        fail(f"only {len(seen)} of {updates} updates (errors: {errors})")
    print("ok")


def denied(client):
    try:
        client.fetch_x509_context()
    except Exception as err:  # py-spiffe wraps the gRPC error in FetchX509SvidError
        if "PERMISSION_DENIED" in str(err) or "PermissionDenied" in str(err):
            print(f"denied: {err}\nok")
            return
        fail(f"expected PermissionDenied, got: {err}")
    fail("expected PermissionDenied, got an SVID")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True, help="unix:///path")
    p.add_argument("--mode", default="fetch", choices=["fetch", "rotation", "denied"])
    p.add_argument("--expect-id", default="")
    p.add_argument("--expect-td", default="")
    p.add_argument("--updates", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    with WorkloadApiClient(socket_path=args.socket, default_timeout=args.timeout) as client:
        if args.mode == "fetch":
            fetch(client, args.expect_id, [t for t in args.expect_td.split(",") if t])
        elif args.mode == "rotation":
            rotation(client, args.updates, args.timeout)
        else:
            denied(client)


if __name__ == "__main__":
    main()
