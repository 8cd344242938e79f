package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tollgate/tollgate/token"
)

// keySpecs collects the repeatable -key KID:ALG:PATH of jwks. Set accepts
// any text: the parts are checked after parsing, so that a bad one is
// reported by its position, never by its value.
type keySpecs []string

func (k *keySpecs) String() string { return "" }

func (k *keySpecs) Set(s string) error {
	*k = append(*k, s)
	return nil
}

// splitKeySpec splits KID:ALG:PATH at its first two colons: the kid and
// the algorithm hold none, the path may.
func splitKeySpec(s string) (kid, alg, path string, ok bool) {
	kid, rest, ok1 := strings.Cut(s, ":")
	alg, path, ok2 := strings.Cut(rest, ":")
	return kid, alg, path, ok1 && ok2 && path != ""
}

// jwks implements "tollgate jwks [-out FILE] -key KID:ALG:PATH...".
func jwks(e *env, args []string) int {
	fs := newFlagSet("jwks")
	var specs keySpecs
	fs.Var(&specs, "key", "KID:ALG:PATH of a public or private key file (repeatable)")
	out := fs.String("out", "", "file to write the JWK Set to (default: standard output)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return e.fail(exitUsage, "jwks: unexpected argument after the flags (keys go in -key KID:ALG:PATH)")
	}
	if len(specs) == 0 {
		return e.fail(exitUsage, "jwks: missing required flag: -key KID:ALG:PATH")
	}
	// A key or a token given as -out would name a file for anyone listing
	// the directory, and be printed below: refuse what Redact would cut.
	if *out != "" && looksSecretPath(*out) {
		return e.fail(exitUsage, "jwks: -out looks like key material or a token, not a path (a long file name without a dot can look like base64: give it an extension such as .json)")
	}
	keys := make([]*token.Key, 0, len(specs))
	kids := make(map[string]int, len(specs)) // kid -> its -key number
	for i, s := range specs {
		// Keys are named by their place on the command line: the value
		// may be a key pasted in place of KID:ALG:PATH.
		n := i + 1
		kid, alg, path, ok := splitKeySpec(s)
		if !ok {
			return e.fail(exitUsage, "jwks: -key #%d: want KID:ALG:PATH (KID may be empty for a lone key)", n)
		}
		if err := checkAlg(alg); err != nil {
			return e.fail(exitUsage, "jwks: -key #%d: %v", n, strings.Replace(err.Error(), "-alg", "algorithm", 1))
		}
		if token.MinHMACKeyLen(alg) > 0 {
			return e.fail(exitUsage, "jwks: -key #%d: an %s key is a shared secret and is never published; a JWK Set holds public keys only (ES256, ES384, EdDSA, RS256, PS256)", n, alg)
		}
		if err := token.CheckKID(kid); err != nil {
			return e.fail(exitUsage, "jwks: -key #%d: invalid kid: %v", n, err)
		}
		// The kid is published: a secret or a token pasted in its place
		// would go out to every verifier.
		if token.Redact(kid) != kid {
			return e.fail(exitUsage, "jwks: -key #%d: the kid looks like key material or a token, and kids are published; choose a shorter one (under 43 base64 characters), such as a date", n)
		}
		if kid == "" && len(specs) > 1 {
			return e.fail(exitUsage, "jwks: -key #%d has no kid; every key of a set of several needs one (verifiers pick the key by the token's kid)", n)
		}
		if first, dup := kids[kid]; dup {
			return e.fail(exitUsage, "jwks: -key #%d has the kid of -key #%d; kids must be unique", n, first)
		}
		kids[kid] = n
		k, err := token.LoadKeyFile(path, kid, alg)
		if err != nil {
			return e.fail(exitUsage, "jwks: -key #%d: %v", n, err)
		}
		keys = append(keys, k)
	}
	doc, err := token.MarshalJWKS(keys...)
	if err != nil {
		// Checked above, key by key; kept in case MarshalJWKS learns a
		// refusal of its own.
		return e.fail(exitUsage, "jwks: %v", err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, doc, "", "  "); err != nil {
		return e.fail(exitFail, "jwks: %v", err)
	}
	buf.WriteByte('\n')
	if *out == "" {
		if _, err := e.stdout.Write(buf.Bytes()); err != nil {
			return e.fail(exitFail, "jwks: writing standard output: %v", err)
		}
		return exitOK
	}
	if err := writeReplace(*out, buf.Bytes(), 0o644); err != nil {
		return e.fail(exitUsage, "jwks: -out: cannot write the file: %v", osCause(err))
	}
	noun := "keys"
	if len(keys) == 1 {
		noun = "key"
	}
	fmt.Fprintf(e.stdout, "wrote %d %s to %s\n", len(keys), noun, *out)
	return exitOK
}

// osCause returns the cause of an os error without the paths it names.
func osCause(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return pathless(err)
}
