"""py-spiffe (PyPI `spiffe`) against a SPIFFE Workload API socket; run by run-py.sh.

Modes (as main.go's):
  fetch     print the default SVID's SPIFFE ID and the bundles' trust domains; fail unless the
            ID is --expect-id and every --expect-td is present in the X.509 and JWT bundles
  rotation  stream X.509 contexts; print "ready" after the first, exit 0 after --updates
  denied    expect the fetch to fail with PermissionDenied
  jwt       fetch a JWT-SVID for --audience (and a second audience) and check it: its ID is
            --expect-id; the Workload API validates it (validate_jwt_svid, and a raw
            ValidateJWTSVID call for the returned SPIFFE ID and claims); it validates locally
            (JwtSvid.parse_and_validate with the fetch_jwt_bundles bundle of its trust domain); a
            wrong audience is INVALID_ARGUMENT; an ID not entitled is PERMISSION_DENIED;
            --peer-token (a federated trust domain's token for --audience) validates both ways
            as --peer-id. Prints PASS or FAIL per check and exits 1 on any FAIL.
"""

import argparse
import sys
import threading
import time

import grpc
from google.protobuf.json_format import MessageToDict
from spiffe import JwtSvid, SpiffeId, WorkloadApiClient
# py-spiffe's generated messages and stub, for the raw call: its validate_jwt_svid drops the
# response (it re-parses the token), and the claims are what this checks.
from spiffe._proto import workload_pb2, workload_pb2_grpc


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


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, ok, message):
        print(f"{'PASS' if ok else 'FAIL'}: {message}", flush=True)
        if not ok:
            self.failed += 1


def raw_validate(socket, token, audience, timeout):
    with grpc.insecure_channel(socket) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        return stub.ValidateJWTSVID(
            workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token),
            metadata=(("workload.spiffe.io", "true"),),
            timeout=timeout,
        )


def local_validate(client, token, audience, spiffe_id):
    td = SpiffeId(spiffe_id).trust_domain
    bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
    if bundle is None:
        raise RuntimeError(f"no JWT bundle for {td}")
    return JwtSvid.parse_and_validate(token, bundle, {audience})


def jwt_checks(client, args):
    c = Checks()
    audience, extra = args.audience, args.audience + "/extra"
    svid = client.fetch_jwt_svid({audience, extra})
    print(f"jwt-svid: {svid.spiffe_id} aud {sorted(svid.audience)} exp {svid.expiry}"
          f" ({len(svid.token)} bytes)")
    c.check(str(svid.spiffe_id) == args.expect_id and {audience, extra} <= set(svid.audience),
            f"fetch_jwt_svid: {svid.spiffe_id} for {sorted(svid.audience)}")
    left = svid.expiry - time.time()
    c.check(0 < left <= 6 * 60, f"fetch_jwt_svid: lifetime at most 5 minutes ({left:.0f}s left)")

    try:
        v = client.validate_jwt_svid(svid.token, audience)
        c.check(str(v.spiffe_id) == args.expect_id, f"validate_jwt_svid: {v.spiffe_id}")
    except Exception as err:
        c.check(False, f"validate_jwt_svid: {err}")
    try:
        resp = raw_validate(args.socket, svid.token, audience, args.timeout)
        claims = MessageToDict(resp.claims)
        ok = (resp.spiffe_id == args.expect_id and claims.get("sub") == args.expect_id
              and "aud" in claims and isinstance(claims.get("exp"), float)
              and isinstance(claims.get("iat"), float))
        c.check(ok, f"ValidateJWTSVID (raw): spiffe_id {resp.spiffe_id}, claims {sorted(claims)}")
    except Exception as err:
        c.check(False, f"ValidateJWTSVID (raw): {err}")
    try:
        v = local_validate(client, svid.token, audience, args.expect_id)
        c.check(str(v.spiffe_id) == args.expect_id,
                f"JwtSvid.parse_and_validate with fetch_jwt_bundles: {v.spiffe_id}")
    except Exception as err:
        c.check(False, f"JwtSvid.parse_and_validate with fetch_jwt_bundles: {err}")

    try:
        client.validate_jwt_svid(svid.token, "spiffe://cluster-a.test/someone-else")
        c.check(False, "validate_jwt_svid with a wrong audience: accepted")
    except Exception as err:
        c.check("INVALID_ARGUMENT" in str(err) or "InvalidArgument" in str(err),
                f"validate_jwt_svid refuses a wrong audience: {err}")
    try:
        client.fetch_jwt_svid({audience}, subject=SpiffeId("spiffe://cluster-a.test/not-mine"))
        c.check(False, "fetch_jwt_svid for an ID not entitled: got a token")
    except Exception as err:
        c.check("PERMISSION_DENIED" in str(err) or "PermissionDenied" in str(err),
                f"fetch_jwt_svid refuses an ID the caller is not entitled to: {err}")

    if args.peer_token:
        try:
            v = client.validate_jwt_svid(args.peer_token, audience)
            c.check(str(v.spiffe_id) == args.peer_id,
                    f"validate_jwt_svid of a federated token: {v.spiffe_id}")
        except Exception as err:
            c.check(False, f"validate_jwt_svid of a federated token: {err}")
        try:
            v = local_validate(client, args.peer_token, audience, args.peer_id)
            c.check(str(v.spiffe_id) == args.peer_id,
                    f"JwtSvid.parse_and_validate of a federated token: {v.spiffe_id}")
        except Exception as err:
            c.check(False, f"JwtSvid.parse_and_validate of a federated token: {err}")

    if c.failed:
        fail(f"{c.failed} JWT check(s) failed")
    print("ok")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True, help="unix:///path")
    p.add_argument("--mode", default="fetch", choices=["fetch", "rotation", "denied", "jwt"])
    p.add_argument("--expect-id", default="")
    p.add_argument("--expect-td", default="")
    p.add_argument("--updates", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--audience", default="spiffe://cluster-a.test/interop-server")
    p.add_argument("--peer-token", default="")
    p.add_argument("--peer-id", default="")
    args = p.parse_args()
    with WorkloadApiClient(socket_path=args.socket, default_timeout=args.timeout) as client:
        if args.mode == "fetch":
            fetch(client, args.expect_id, [t for t in args.expect_td.split(",") if t])
        elif args.mode == "rotation":
            rotation(client, args.updates, args.timeout)
        elif args.mode == "jwt":
            jwt_checks(client, args)
        else:
            denied(client)


if __name__ == "__main__":
    main()
