// Command bundlemap-check reads a fedgate distribution generation with go-spiffe (see run.sh).
//
//	bundlemap-check -dir DIR [-expect TD=X509:JWT]...
//
// DIR is a generation directory (for example `<distribute_dir>/current`). bundles.json must be
// a JSON object with a "trust_domains" object; every key must be a trust domain name that
// spiffeid.TrustDomainFromString accepts, and every value a SPIFFE bundle that
// spiffebundle.Parse accepts for that trust domain, without a spiffe_refresh_hint. The
// `<td>.pem` next to it must load with x509bundle.Load and hold the same X.509 authorities.
// Each trust domain is printed as `TD x509=N jwt=M`; with -expect, the map must hold exactly
// the expected trust domains with those counts. Exits 1 on any failure.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type counts struct{ x509, jwt int }

type expectFlag map[string]counts

func (e expectFlag) String() string { return fmt.Sprint(map[string]counts(e)) }

func (e expectFlag) Set(v string) error {
	td, rest, ok := strings.Cut(v, "=")
	x, j, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return fmt.Errorf("want TD=X509:JWT, got %q", v)
	}
	xn, err := strconv.Atoi(x)
	if err != nil {
		return err
	}
	jn, err := strconv.Atoi(j)
	if err != nil {
		return err
	}
	e[td] = counts{xn, jn}
	return nil
}

func main() {
	dir := flag.String("dir", "", "generation directory holding bundles.json")
	expect := expectFlag{}
	flag.Var(expect, "expect", "TD=X509:JWT, repeatable: the exact trust domains and counts")
	flag.Parse()
	if *dir == "" {
		fail("-dir is required")
	}
	raw, err := os.ReadFile(filepath.Join(*dir, "bundles.json"))
	if err != nil {
		fail(err.Error())
	}
	var top struct {
		TrustDomains *map[string]json.RawMessage `json:"trust_domains"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		fail("bundles.json: " + err.Error())
	}
	if top.TrustDomains == nil {
		fail("bundles.json: no \"trust_domains\" object")
	}
	keys := make([]string, 0, len(*top.TrustDomains))
	for k := range *top.TrustDomains {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	failed := false
	seen := map[string]counts{}
	for _, key := range keys {
		td, err := spiffeid.TrustDomainFromString(key)
		if err != nil {
			fmt.Printf("FAIL key %q: not a trust domain: %v\n", key, err)
			failed = true
			continue
		}
		b, err := spiffebundle.Parse(td, (*top.TrustDomains)[key])
		if err != nil {
			fmt.Printf("FAIL %s: spiffebundle.Parse: %v\n", td, err)
			failed = true
			continue
		}
		if _, ok := b.RefreshHint(); ok {
			fmt.Printf("FAIL %s: the map entry carries a spiffe_refresh_hint\n", td)
			failed = true
		}
		c := counts{len(b.X509Authorities()), len(b.JWTAuthorities())}
		seen[td.Name()] = c
		fmt.Printf("%s x509=%d jwt=%d\n", td, c.x509, c.jwt)

		pem, err := x509bundle.Load(td, filepath.Join(*dir, td.Name()+".pem"))
		if err != nil {
			fmt.Printf("FAIL %s: x509bundle.Load(%s.pem): %v\n", td, td.Name(), err)
			failed = true
			continue
		}
		if !sameAuthorities(pem, b.X509Bundle()) {
			fmt.Printf("FAIL %s: %s.pem and the map entry differ\n", td, td.Name())
			failed = true
		}
	}
	if len(expect) > 0 {
		for td, want := range expect {
			if got, ok := seen[td]; !ok || got != want {
				fmt.Printf("FAIL %s: want x509=%d jwt=%d, got %+v (present %v)\n", td, want.x509, want.jwt, got, ok)
				failed = true
			}
		}
		for td := range seen {
			if _, ok := expect[td]; !ok {
				fmt.Printf("FAIL %s: unexpected trust domain in the map\n", td)
				failed = true
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}

func sameAuthorities(a, b *x509bundle.Bundle) bool {
	x, y := a.X509Authorities(), b.X509Authorities()
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !bytes.Equal(x[i].Raw, y[i].Raw) {
			return false
		}
	}
	return true
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bundlemap-check: "+msg)
	os.Exit(1)
}
