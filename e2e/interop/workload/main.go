// Command workload-interop fetches X.509-SVIDs and bundles from a SPIFFE Workload API socket
// with go-spiffe (github.com/spiffe/go-spiffe/v2), as any Go workload would, and checks what
// it got. It is run by run.sh against `fedgate agent`.
//
// Modes:
//
//	fetch    print the default SVID's SPIFFE ID and the trust domains of the X.509 and JWT
//	         bundles; fail unless the ID is -expect-id and -expect-td are all present
//	rotation watch the X.509 context and exit 0 after -updates updates (run.sh rotates the
//	         federated bundle while this waits)
//	denied   expect the fetch to fail with PermissionDenied
//	jwt      fetch a JWT-SVID for -audience (and a second audience), and check it: the default
//	         ID is -expect-id; the Workload API validates it (ValidateJWTSVID, through go-spiffe
//	         and raw, for the claims); it validates locally with jwtsvid.ParseAndValidate against
//	         FetchJWTBundles; a wrong audience is InvalidArgument; an ID not entitled is
//	         PermissionDenied; -peer-token (a federated trust domain's token, for -audience)
//	         validates both ways as -peer-id. Prints PASS or FAIL per check, exits 1 on any FAIL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	addr := flag.String("socket", "", "Workload API address, unix:///path")
	mode := flag.String("mode", "fetch", "fetch | rotation | denied | jwt")
	expectID := flag.String("expect-id", "", "the SPIFFE ID the default SVID must have")
	expectTD := flag.String("expect-td", "", "comma-separated trust domains the bundles must hold")
	updates := flag.Int("updates", 2, "rotation: how many X.509 context updates to wait for")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
	audience := flag.String("audience", "spiffe://cluster-a.test/interop-server", "jwt: the audience to fetch a JWT-SVID for")
	peerToken := flag.String("peer-token", "", "jwt: a JWT-SVID of a federated trust domain, for -audience")
	peerID := flag.String("peer-id", "", "jwt: the SPIFFE ID -peer-token is for")
	flag.Parse()
	if *addr == "" {
		fail("-socket is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(*addr))
	if err != nil {
		fail("cannot create the Workload API client: %v", err)
	}
	defer client.Close()

	switch *mode {
	case "fetch":
		doFetch(ctx, client, *expectID, *expectTD)
	case "rotation":
		doRotation(ctx, client, *updates)
	case "denied":
		doDenied(ctx, client)
	case "jwt":
		doJWT(ctx, client, *addr, *expectID, *audience, *peerToken, *peerID)
	default:
		fail("unknown -mode %q", *mode)
	}
}

func doFetch(ctx context.Context, client *workloadapi.Client, expectID, expectTD string) {
	x509ctx, err := client.FetchX509Context(ctx)
	if err != nil {
		fail("FetchX509Context: %v", err)
	}
	svid := x509ctx.DefaultSVID()
	fmt.Printf("svid: %s (expires %s)\n", svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	if expectID != "" && svid.ID.String() != expectID {
		fail("default SVID is %s, expected %s", svid.ID, expectID)
	}
	// The SVID must chain to its own trust domain's bundle from the same context.
	bundle, err := x509ctx.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		fail("no X.509 bundle for the SVID's trust domain: %v", err)
	}
	if len(bundle.X509Authorities()) == 0 {
		fail("the SVID's trust domain bundle is empty")
	}
	x509TDs := []string{}
	for _, b := range x509ctx.Bundles.Bundles() {
		x509TDs = append(x509TDs, b.TrustDomain().String())
	}
	sort.Strings(x509TDs)
	fmt.Printf("x509 bundles (FetchX509SVID): %s\n", strings.Join(x509TDs, ","))

	x509Bundles, err := client.FetchX509Bundles(ctx)
	if err != nil {
		fail("FetchX509Bundles: %v", err)
	}
	bTDs := []string{}
	for _, b := range x509Bundles.Bundles() {
		bTDs = append(bTDs, b.TrustDomain().String())
	}
	sort.Strings(bTDs)
	fmt.Printf("x509 bundles (FetchX509Bundles): %s\n", strings.Join(bTDs, ","))

	jwtBundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		fail("FetchJWTBundles: %v", err)
	}
	jTDs := []string{}
	for _, b := range jwtBundles.Bundles() {
		jTDs = append(jTDs, fmt.Sprintf("%s(%d keys)", b.TrustDomain(), len(b.JWTAuthorities())))
	}
	sort.Strings(jTDs)
	fmt.Printf("jwt bundles: %s\n", strings.Join(jTDs, ","))

	if expectTD != "" {
		for _, td := range strings.Split(expectTD, ",") {
			if !contains(x509TDs, td) || !contains(bTDs, td) {
				fail("trust domain %s missing from the X.509 bundles", td)
			}
		}
	}
	fmt.Println("ok")
}

type watcher struct {
	want    int
	seen    int
	done    chan struct{}
	lastErr error
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	w.seen++
	tds := []string{}
	for _, b := range c.Bundles.Bundles() {
		tds = append(tds, fmt.Sprintf("%s:%d", b.TrustDomain(), len(b.X509Authorities())))
	}
	sort.Strings(tds)
	fmt.Printf("update %d: svid %s, bundles %s\n", w.seen, c.DefaultSVID().ID, strings.Join(tds, ","))
	if w.seen == 1 {
		fmt.Println("ready")
	}
	if w.seen == w.want {
		close(w.done)
	}
}

func (w *watcher) OnX509ContextWatchError(err error) {
	w.lastErr = err
	fmt.Fprintf(os.Stderr, "watch error: %v\n", err)
}

func doRotation(ctx context.Context, client *workloadapi.Client, updates int) {
	w := &watcher{want: updates, done: make(chan struct{})}
	wctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- client.WatchX509Context(wctx, w) }()
	select {
	case <-w.done:
		stop()
		<-errc
		fmt.Println("ok")
	case err := <-errc:
		fail("watch ended after %d updates: %v", w.seen, err)
	case <-ctx.Done():
		fail("only %d of %d updates before the deadline (last error: %v)", w.seen, updates, w.lastErr)
	}
}

func doDenied(ctx context.Context, client *workloadapi.Client) {
	// One attempt: go-spiffe's FetchX509Context does not retry PermissionDenied on its own.
	_, err := client.FetchX509Context(ctx)
	if err == nil {
		fail("expected PermissionDenied, got an SVID")
	}
	var st interface{ GRPCStatus() *status.Status }
	if errors.As(err, &st) && st.GRPCStatus().Code() == codes.PermissionDenied {
		fmt.Printf("denied: %v\nok\n", err)
		return
	}
	if status.Code(err) == codes.PermissionDenied {
		fmt.Printf("denied: %v\nok\n", err)
		return
	}
	fail("expected PermissionDenied, got: %v", err)
}

// checks counts PASS and FAIL lines; the jwt mode runs every check and fails at the end.
type checks struct{ failed int }

func (c *checks) pass(format string, args ...any) {
	fmt.Printf("PASS: "+format+"\n", args...)
}

func (c *checks) fail(format string, args ...any) {
	c.failed++
	fmt.Printf("FAIL: "+format+"\n", args...)
}

func doJWT(ctx context.Context, client *workloadapi.Client, addr, expectID, audience, peerToken, peerID string) {
	c := &checks{}
	extra := audience + "/extra"
	svid, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience, ExtraAudiences: []string{extra}})
	if err != nil {
		fail("FetchJWTSVID: %v", err)
	}
	token := svid.Marshal()
	fmt.Printf("jwt-svid: %s aud %v expires %s (%d bytes)\n", svid.ID, svid.Audience,
		svid.Expiry.UTC().Format(time.RFC3339), len(token))
	if svid.ID.String() == expectID && contains(svid.Audience, audience) && contains(svid.Audience, extra) {
		c.pass("FetchJWTSVID: %s for %s and %s", svid.ID, audience, extra)
	} else {
		c.fail("FetchJWTSVID: got %s for %v, expected %s for %s and %s", svid.ID, svid.Audience, expectID, audience, extra)
	}
	if ttl := time.Until(svid.Expiry); ttl > 0 && ttl <= 5*time.Minute+time.Minute {
		c.pass("FetchJWTSVID: lifetime at most 5 minutes (%s left)", ttl.Round(time.Second))
	} else {
		c.fail("FetchJWTSVID: expires in %s, expected at most 5 minutes", ttl)
	}

	// Validation by the agent, through go-spiffe (which only looks at the status) ...
	if v, err := client.ValidateJWTSVID(ctx, token, audience); err != nil {
		c.fail("ValidateJWTSVID: %v", err)
	} else if v.ID.String() != expectID {
		c.fail("ValidateJWTSVID: validated as %s, expected %s", v.ID, expectID)
	} else {
		c.pass("ValidateJWTSVID (go-spiffe): %s", v.ID)
	}
	// ... and raw, for the response's SPIFFE ID and claims.
	checkRawValidate(ctx, c, addr, token, audience, expectID)

	// Local validation against the bundles the Workload API serves.
	bundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		c.fail("FetchJWTBundles: %v", err)
	} else if v, err := jwtsvid.ParseAndValidate(token, bundles, []string{audience}); err != nil {
		c.fail("jwtsvid.ParseAndValidate with FetchJWTBundles: %v", err)
	} else if v.ID.String() != expectID {
		c.fail("jwtsvid.ParseAndValidate: %s, expected %s", v.ID, expectID)
	} else {
		c.pass("jwtsvid.ParseAndValidate with FetchJWTBundles: %s", v.ID)
	}

	// Refusals.
	if _, err := client.ValidateJWTSVID(ctx, token, "spiffe://cluster-a.test/someone-else"); status.Code(err) == codes.InvalidArgument {
		c.pass("ValidateJWTSVID refuses a wrong audience: %v", status.Convert(err).Message())
	} else {
		c.fail("ValidateJWTSVID with a wrong audience: expected InvalidArgument, got %v", err)
	}
	notMine := spiffeid.RequireFromString("spiffe://cluster-a.test/not-mine")
	if _, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience, Subject: notMine}); status.Code(err) == codes.PermissionDenied {
		c.pass("FetchJWTSVID refuses an ID the caller is not entitled to")
	} else {
		c.fail("FetchJWTSVID for %s: expected PermissionDenied, got %v", notMine, err)
	}

	// A federated trust domain's token.
	if peerToken != "" {
		if v, err := client.ValidateJWTSVID(ctx, peerToken, audience); err != nil {
			c.fail("ValidateJWTSVID of the federated token: %v", err)
		} else if v.ID.String() != peerID {
			c.fail("ValidateJWTSVID of the federated token: %s, expected %s", v.ID, peerID)
		} else {
			c.pass("ValidateJWTSVID of a federated token: %s", v.ID)
		}
		if bundles != nil {
			if v, err := jwtsvid.ParseAndValidate(peerToken, bundles, []string{audience}); err != nil {
				c.fail("jwtsvid.ParseAndValidate of the federated token: %v", err)
			} else if v.ID.String() != peerID {
				c.fail("jwtsvid.ParseAndValidate of the federated token: %s, expected %s", v.ID, peerID)
			} else {
				c.pass("jwtsvid.ParseAndValidate of a federated token with FetchJWTBundles: %s", v.ID)
			}
		}
	}

	if c.failed > 0 {
		fail("%d JWT check(s) failed", c.failed)
	}
	fmt.Println("ok")
}

// checkRawValidate calls ValidateJWTSVID with the generated client: go-spiffe's wrapper drops
// the response, whose SPIFFE ID and claims (a google.protobuf.Struct) are checked here.
func checkRawValidate(ctx context.Context, c *checks, addr, token, audience, expectID string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.fail("raw ValidateJWTSVID: cannot dial %s: %v", addr, err)
		return
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	resp, err := workload.NewSpiffeWorkloadAPIClient(conn).ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{
		Audience: audience,
		Svid:     token,
	})
	if err != nil {
		c.fail("raw ValidateJWTSVID: %v", err)
		return
	}
	claims := resp.GetClaims().AsMap()
	_, hasExp := claims["exp"].(float64)
	_, hasIat := claims["iat"].(float64)
	if resp.GetSpiffeId() == expectID && claims["sub"] == expectID && claims["aud"] != nil && hasExp && hasIat {
		c.pass("ValidateJWTSVID (raw): spiffe_id %s, claims %v", resp.GetSpiffeId(), keysOf(claims))
	} else {
		c.fail("ValidateJWTSVID (raw): spiffe_id %q, claims %v", resp.GetSpiffeId(), claims)
	}
}

func keysOf(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}
