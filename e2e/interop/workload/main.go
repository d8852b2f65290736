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

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func main() {
	addr := flag.String("socket", "", "Workload API address, unix:///path")
	mode := flag.String("mode", "fetch", "fetch | rotation | denied")
	expectID := flag.String("expect-id", "", "the SPIFFE ID the default SVID must have")
	expectTD := flag.String("expect-td", "", "comma-separated trust domains the bundles must hold")
	updates := flag.Int("updates", 2, "rotation: how many X.509 context updates to wait for")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
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
