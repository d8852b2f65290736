// Command jwt-interop checks JWT-SVIDs between fedgate and go-spiffe (see run.sh).
//
//	jwt-interop validate -td TD -bundle FILE -audience A -token FILE
//	    validates a token (e.g. minted by `fedgate jwt mint`) with jwtsvid.ParseAndValidate
//	    against the SPIFFE bundle FILE of TD, and prints the SPIFFE ID.
//	jwt-interop mint -id SPIFFE_ID -audience A -bundle-out FILE -token-out FILE
//	    mints an ES256 JWT-SVID with go-jose (the library go-spiffe uses) and a fresh P-256
//	    key, and writes the trust domain's SPIFFE bundle (spiffebundle.Marshal) with that key.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: jwt-interop validate|mint ...")
	}
	switch os.Args[1] {
	case "validate":
		validate(os.Args[2:])
	case "mint":
		mint(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func validate(args []string) {
	fs := flag.NewFlagSet("validate", flag.ExitOnError)
	tdName := fs.String("td", "", "trust domain of the bundle")
	bundlePath := fs.String("bundle", "", "SPIFFE bundle file")
	audience := fs.String("audience", "", "expected audience")
	tokenPath := fs.String("token", "", "file holding the token")
	_ = fs.Parse(args)
	td, err := spiffeid.TrustDomainFromString(*tdName)
	check(err)
	bundle, err := spiffebundle.Load(td, *bundlePath)
	check(err)
	raw, err := os.ReadFile(*tokenPath)
	check(err)
	svid, err := jwtsvid.ParseAndValidate(strings.TrimSpace(string(raw)), bundle, []string{*audience})
	check(err)
	fmt.Println(svid.ID.String())
}

func mint(args []string) {
	fs := flag.NewFlagSet("mint", flag.ExitOnError)
	idText := fs.String("id", "", "SPIFFE ID (sub)")
	audience := fs.String("audience", "", "audience")
	bundleOut := fs.String("bundle-out", "", "where to write the SPIFFE bundle")
	tokenOut := fs.String("token-out", "", "where to write the token")
	_ = fs.Parse(args)
	id, err := spiffeid.FromString(*idText)
	check(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	kid := "go-spiffe-interop"
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	check(err)
	now := time.Now()
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  id.String(),
		Audience: jwt.Audience{*audience},
		Expiry:   jwt.NewNumericDate(now.Add(5 * time.Minute)),
		IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
	check(err)
	bundle := spiffebundle.New(id.TrustDomain())
	check(bundle.AddJWTAuthority(kid, key.Public()))
	doc, err := bundle.Marshal()
	check(err)
	check(os.WriteFile(*bundleOut, doc, 0o644))
	check(os.WriteFile(*tokenOut, []byte(token+"\n"), 0o600))
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "jwt-interop:", msg)
	os.Exit(1)
}
