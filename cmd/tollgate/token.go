package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tollgate/tollgate/token"
)

// maxTokenInput bounds a token read from standard input or a file: far
// above the largest token a verifier accepts, far below what could hurt.
const maxTokenInput = 1 << 20

// tokenCmd implements "tollgate token issue|inspect".
func tokenCmd(e *env, args []string) int {
	if len(args) == 0 {
		return e.fail(exitUsage, "token: missing subcommand (issue or inspect)")
	}
	switch args[0] {
	case "issue":
		return issue(e, args[1:])
	case "inspect":
		return inspect(e, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	}
	return e.fail(exitUsage, "token: unknown subcommand (want issue or inspect)")
}

// issue implements "tollgate token issue".
func issue(e *env, args []string) int {
	fs := newFlagSet("token issue")
	keyPath := fs.String("key", "", "private or secret key file")
	alg := fs.String("alg", "", "algorithm of the key")
	iss := fs.String("iss", "", "issuer")
	aud := fs.String("aud", "", "audiences, comma separated")
	sub := fs.String("sub", "", "subject")
	kid := fs.String("kid", "", "key ID for the header")
	azp := fs.String("azp", "", "authorized party: the calling service")
	perms := fs.String("perms", "", "permissions, comma separated")
	sid := fs.String("sid", "", "session ID (default random)")
	ttl := fs.Duration("ttl", 15*time.Minute, "lifetime, from the iat")
	iatOffset := fs.Duration("iat", 0, "issued-at, as an offset from now")
	authOffset := fs.Duration("auth-time", 0, "auth_time, as an offset from now (default: the iat)")
	cnfCert := fs.String("cnf-cert", "", "PEM client certificate to bind the token to (RFC 8705 cnf x5t#S256)")
	extra := claimFlag{}
	fs.Var(extra, "claim", "custom claim name=value (repeatable)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return e.fail(exitUsage, "token issue: unexpected argument after the flags")
	}
	if m := missing(fs, "key", "alg", "iss", "aud", "sub"); m != "" {
		return e.fail(exitUsage, "token issue: missing required flags: %s", m)
	}
	if err := checkAlg(*alg); err != nil {
		return e.fail(exitUsage, "token issue: %v", err)
	}
	if err := token.CheckKID(*kid); err != nil {
		return e.fail(exitUsage, "token issue: invalid -kid: %v", err)
	}
	// NumericDates have whole seconds: a shorter lifetime would sign exp == iat.
	if *ttl < time.Second {
		return e.fail(exitUsage, "token issue: -ttl %v is shorter than 1s", *ttl)
	}
	audience := splitList(*aud)
	if len(audience) == 0 {
		return e.fail(exitUsage, "token issue: -aud names no audience")
	}
	var permissions []string // nil: no perms claim at all
	if isSet(fs, "perms") {
		permissions = splitList(*perms)
	}

	var thumbprint string
	if *cnfCert != "" {
		var err error
		if thumbprint, err = certThumbprintFile(*cnfCert); err != nil {
			return e.fail(exitUsage, "token issue: -cnf-cert: %v", err)
		}
	}
	// LoadKeyFile's errors never hold the path: it is the likeliest place
	// for a key pasted instead of its path.
	key, err := token.LoadKeyFile(*keyPath, *kid, *alg)
	if err != nil {
		return e.fail(exitUsage, "token issue: -key: %v", err)
	}
	signer, err := token.NewSigner(key)
	if err != nil {
		return e.fail(exitUsage, "token issue: -key holds a public key; signing needs the private key")
	}
	if *sid == "" {
		if *sid, err = token.NewID(); err != nil {
			return e.fail(exitFail, "token issue: %v", err)
		}
	}
	now := e.now()
	iat := now.Add(*iatOffset)
	authTime := iat
	if isSet(fs, "auth-time") {
		authTime = now.Add(*authOffset)
	}
	tok, err := signer.Sign(token.Claims{
		Issuer:          *iss,
		Subject:         *sub,
		Audience:        audience,
		IssuedAt:        iat,
		ExpiresAt:       iat.Add(*ttl),
		AuthTime:        authTime,
		SessionID:       *sid,
		AuthorizedParty: *azp,
		Permissions:     permissions,
		CertThumbprint:  thumbprint,
		Extra:           extra,
	})
	if err != nil {
		code := exitFail
		if errors.Is(err, token.ErrClaims) {
			code = exitUsage
		}
		return e.fail(code, "token issue: %v", err)
	}
	fmt.Fprintln(e.stdout, tok)
	return exitOK
}

// maxCertInput bounds a certificate file: a chain of a few certificates
// is a few KiB.
const maxCertInput = 1 << 20

// certThumbprintFile returns the thumbprint (token.CertThumbprint) of the
// first certificate in the PEM file at path: the leaf, when the file holds
// a chain. Its errors hold neither the path nor the file's content (a key
// pasted in its place would be printed).
func certThumbprintFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", errors.New("cannot open the certificate file")
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertInput+1))
	if err != nil {
		return "", errors.New("cannot read the certificate file")
	}
	if len(data) > maxCertInput {
		return "", fmt.Errorf("the certificate file is larger than %d bytes", maxCertInput)
	}
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return "", errors.New("the file holds no PEM CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return "", errors.New("the first CERTIFICATE block is not a valid X.509 certificate")
		}
		return token.CertThumbprint(block.Bytes), nil
	}
}

// splitList splits a comma list, dropping empty entries and the spaces
// around each; never nil.
func splitList(s string) []string {
	out := []string{}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// claimFlag collects -claim name=value. A value that is a JSON number or
// true/false keeps that type; any other value is a string.
type claimFlag map[string]any

func (c claimFlag) String() string { return "" }

func (c claimFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return errors.New("want name=value")
	}
	if _, dup := c[name]; dup {
		return errors.New("a claim name given twice")
	}
	c[name] = claimValue(value)
	return nil
}

// jsonNumber is the number grammar of RFC 8259 §6.
var jsonNumber = regexp.MustCompile(`^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$`)

func claimValue(v string) any {
	switch {
	case v == "true":
		return true
	case v == "false":
		return false
	case jsonNumber.MatchString(v):
		// json.Number keeps the digits as written (no float64 rounding).
		return json.Number(v)
	}
	return v
}

// inspect implements "tollgate token inspect".
func inspect(e *env, args []string) int {
	fs := newFlagSet("token inspect")
	keyPath := fs.String("key", "", "public, private or secret key file; verifies the token")
	alg := fs.String("alg", "", "algorithm of the key")
	iss := fs.String("iss", "", "issuer the token must name")
	aud := fs.String("aud", "", "audience the token must name")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	// Never quote the argument here: it is a token.
	switch fs.NArg() {
	case 0:
		return e.fail(exitUsage, "token inspect: missing TOKEN (or - to read it from standard input)")
	case 1:
	default:
		return e.fail(exitUsage, "token inspect: want one TOKEN after the flags, got %d arguments", fs.NArg())
	}
	verify := *keyPath != ""
	if verify {
		if m := missing(fs, "alg", "iss", "aud"); m != "" {
			return e.fail(exitUsage, "token inspect: -key needs -alg, -iss and -aud; missing %s", m)
		}
		if err := checkAlg(*alg); err != nil {
			return e.fail(exitUsage, "token inspect: %v", err)
		}
	} else if isSet(fs, "alg") || isSet(fs, "iss") || isSet(fs, "aud") {
		return e.fail(exitUsage, "token inspect: -alg, -iss and -aud apply only with -key")
	}

	tok, code := e.tokenArg("token inspect", fs.Arg(0))
	if code != exitOK {
		return code
	}

	var v *token.Verifier
	if verify {
		if v, code = e.keyFileVerifier("token inspect", *keyPath, *alg, *iss, *aud); code != exitOK {
			return code
		}
	}

	header, claims, err := decode(tok)
	if err != nil {
		e.fail(exitFail, "token inspect: the token is not decodable: %v", err)
		if !verify {
			return exitFail
		}
	} else {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		out := struct {
			Header map[string]any `json:"header"`
			Claims map[string]any `json:"claims"`
		}{header, claims}
		if err := enc.Encode(out); err != nil {
			return e.fail(exitFail, "token inspect: %v", err)
		}
	}
	if !verify {
		return exitOK
	}

	if _, err := v.Verify(context.Background(), tok); err != nil {
		// A *token.VerifyError: fixed words, never any part of the token.
		fmt.Fprintln(e.stdout, err.Error())
		return exitFail
	}
	fmt.Fprintln(e.stdout, "valid")
	return exitOK
}

// decode returns a token's header and claims without verifying anything.
// Its errors are fixed words: the token's content never reaches them.
func decode(tok string) (header, claims map[string]any, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("want three dot-separated segments, got %d", len(parts))
	}
	if header, err = decodeSegment(parts[0]); err != nil {
		return nil, nil, fmt.Errorf("header %w", err)
	}
	if claims, err = decodeSegment(parts[1]); err != nil {
		return nil, nil, fmt.Errorf("claims %w", err)
	}
	return header, claims, nil
}

func decodeSegment(seg string) (map[string]any, error) {
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a JSON object: data follows it")
	}
	return m, nil
}

// keyFileVerifier returns a verifier of the key file at path, bound to alg,
// for issuer iss and audience aud, with the default limits: exactly what a
// service that loaded this key file verifies. A key file carries no kid, so
// the key has none, and a token naming a kid is refused with "unknown kid"
// here just as it would be there.
func (e *env) keyFileVerifier(cmd, path, alg, iss, aud string) (*token.Verifier, int) {
	key, err := token.LoadKeyFile(path, "", alg)
	if err != nil {
		return nil, e.fail(exitUsage, "%s: -key: %v", cmd, err)
	}
	ks, err := token.NewKeySet(key)
	if err != nil {
		return nil, e.fail(exitFail, "%s: %v", cmd, err)
	}
	v, err := token.NewVerifier(ks, iss, aud, token.WithClock(e.now))
	if err != nil {
		return nil, e.fail(exitUsage, "%s: %v", cmd, err)
	}
	return v, exitOK
}
