// Tollgate generates signing keys, issues and inspects the access tokens
// that the tollgate library verifies, publishes public keys as a JWK Set,
// exports the options a .proto imports, shows and explains the rules a
// guard compiles from them, and revokes tokens through Redis.
//
// Usage:
//
//	tollgate keygen -alg ALG -out PATH [-kid KID]
//	tollgate token issue -key PATH -alg ALG -iss ISS -aud AUD -sub SUB [flags]
//	tollgate token inspect [-key PATH -alg ALG -iss ISS -aud AUD] TOKEN|-
//	tollgate jwks [-out FILE] -key KID:ALG:PATH [-key KID:ALG:PATH]...
//	tollgate proto export [-force] DIR
//	tollgate rules (-descriptor-set FILE | -addr HOST:PORT [-token T | -token-file F|-]
//	    [-tls] [-ca FILE] [-insecure] [-timeout 10s]) [-format table|json|markdown]
//	    [-require-all] [-services SVC[,SVC...]]
//	tollgate explain -descriptor-set FILE -method /pkg.Svc/Method [-request JSON|@FILE]
//	    [-key PATH -alg ALG -iss ISS -aud AUD TOKEN|-]
//	tollgate revoke -redis HOST:PORT (-jti ID | -sid ID | -sub ID | -consumer ID | -ref REF)
//	    [-before RFC3339] [-max-lifetime 1h] [-max-session 8h] [-leeway 30s] [-prefix tollgate]
//
// # keygen
//
// keygen writes a new key. For HS256, HS384 and HS512 the key is 32, 48 or
// 64 random bytes in standard base64 (one line) at PATH, mode 0600. For
// ES256, ES384, EdDSA, RS256 and PS256 (RSA keys have 2048 bits) it writes the
// private key as PKCS#8 PEM at PATH (mode 0600) and the public key as PKIX
// PEM at PATH.pub (mode 0644). It never overwrites a file, and it loads the
// result back before reporting success. It refuses a PATH whose file name
// looks like key material or a token (a key pasted in its place): it would
// be printed, and listed with the directory. -kid is only checked for
// validity: key files carry no kid.
//
// # token issue
//
// token issue signs a token with the private (or secret) key at -key and
// prints it. -aud and -perms take comma lists; -perms "" gives an empty
// perms array, no -perms gives none. -ttl (default 15m) counts from the
// issued-at time; -iat and -auth-time are signed offsets from now such as
// -50s or +10m (defaults: iat is now, auth_time is the iat). -claim
// name=value (repeatable) adds a custom claim: a JSON number or true/false
// keeps its type, anything else is a string. -sid defaults to a random
// session ID; the jti is always random. -kid names the key in the header;
// -azp names the calling service. -cnf-cert FILE binds the token to the
// first certificate of a PEM file (a client's, for mutual TLS): the token
// carries cnf x5t#S256 (RFC 8705), and a guard accepts it only on a
// mutual-TLS connection with that client certificate.
// Tokens the verifier rejects (a 10h lifetime, an iat long past) can be
// issued on purpose, for demos and tests.
//
// # token inspect
//
// token inspect prints a token's header and claims as indented JSON,
// decoded without verification; TOKEN "-" reads the token from standard
// input. With -key (then -alg, -iss and -aud are required too), it also
// verifies the token the way the gRPC guard does, with the default limits,
// and prints a last line "valid" or the reason it is not, such as
// "token expired: past exp". The key may be the public key or, for HMAC, the
// secret. Key files carry no kid, so the key is bound to the kid the token
// names: what is checked is the algorithm, the signature and the claims.
//
// # jwks
//
// jwks writes a JWK Set (RFC 7517) holding the public half of each key
// given, in the order given, for an issuer to publish at its jwks_uri
// (tokenservice.NewKeysHandler serves one from a live key set instead).
// Each -key is KID:ALG:PATH: the kid verifiers find the key by (it may not
// hold a colon; it may be empty only when a single key is given), the one
// algorithm the key is bound to (ES256, ES384, EdDSA, RS256 or PS256), and
// the key file, everything after the second colon, in the forms keygen
// writes. A public key file (PATH.pub) is enough; given the private key
// file (mode 0600), jwks publishes its public half, and no private
// parameter ever reaches the output. Each JWK carries kty, kid, use "sig",
// alg and the public parameters (n, e; crv, x, y; OKP crv Ed25519, x). HMAC
// keys are refused, before their file is read: a shared secret is never
// published. Duplicate kids are refused, and so is a kid that looks like
// key material or a token (43 base64 characters or more): the kid is
// published, and a secret pasted in its place must not be.
//
// The set is written, indented, to standard output, or with -out FILE to
// FILE (mode 0644) through a temporary file in the same directory and a
// rename, so that a server publishing FILE never serves half a set; jwks
// then prints "wrote N keys to FILE". To rotate, publish the new key next
// to the old one (tollgate jwks -key old:ES256:old.pub -key new:ES256:new.pub),
// wait for verifiers to refresh (the JWKS max-age), then sign with the new
// key; drop the old key once its last token has expired.
//
// # proto export
//
// proto export writes tollgate/v1/options.proto under DIR (creating the
// directories), byte for byte the file this binary's tollgate was built
// from, and prints the path written. Point a buf module or protoc -I at DIR
// and import "tollgate/v1/options.proto"; generate Go for your own files
// only, so that the options' Go package stays tollgate's. An identical file
// already there is left as it is; a different one is kept (exit 2) unless
// -force replaces it.
//
// # rules
//
// rules prints the compiled rules of every method: one row per method with
// its kind (unary, server stream, client stream, bidi stream), whether it
// is public, the permissions a caller needs (all of, any of), its ownership
// checks (request field = token claim, and the permissions that bypass
// them), its throttle (rate per period, burst, bucket, cost, and on client
// and bidi streams the cost of each message) and whether renewal is off
// (no_renewal). A method without a rule is shown as denied: the guard
// denies it. The rules are compiled by interceptors.CompileRules, the very
// code of Guard.Init, with the guard's defaults: gRPC health is public,
// reflection needs a valid token (a server that changes those with
// WithPublicServices or WithPublicMethods compiles differently).
//
// The descriptors come from -descriptor-set FILE, a binary
// FileDescriptorSet as `buf build -o FILE.binpb` or `protoc
// --include_imports --descriptor_set_out=FILE` write it; every service in
// it is shown. Without --include_imports the set lacks the imported files:
// google/protobuf/*.proto and tollgate/v1/options.proto are then taken from
// this binary, and any other missing import fails, naming it. Or they come
// from a running server through gRPC reflection (grpc.reflection.v1):
// -addr HOST:PORT, with the token the guard wants for reflection from
// -token-file F (- for standard input) or -token. The connection uses TLS
// (system roots, or -ca FILE) unless the host is loopback (127.0.0.0/8,
// ::1, localhost), where it is plaintext unless -tls or -ca asks for TLS;
// -insecure forces plaintext to any host, and sends the token in the clear.
// -services keeps the listed services only.
//
// -format table (the default) aligns columns for a terminal, markdown
// writes a table for a review, and json writes an array of objects, one
// per method sorted by name, with exactly these members: method (string,
// "/pkg.Svc/Method"), kind ("unary", "server_stream", "client_stream" or
// "bidi_stream"), has_rule (bool; false: denied), public (bool),
// permissions and any_permissions (arrays of strings, never null),
// ownership (array of {field, claim, bypass_permissions}), throttle (null
// or {rate, per (a Go duration such as "1s"), burst, bucket, cost,
// message_cost}), no_renewal (bool), max_streams (0: the guard's default)
// and token_field (the request field carrying the token, or "").
//
// -require-all fails (exit 1) naming every method without a rule: the lint
// for CI. Invalid rules fail (exit 1) with the lines Guard.Init gives, one
// problem a line, with or without -require-all.
//
// # explain
//
// explain answers "would this call pass, and why" for a method of the
// descriptor set and a request given as JSON (-request, default {}; @FILE
// reads it from FILE), parsed into the method's input type. With a TOKEN
// (- reads it from standard input) and -key, -alg, -iss and -aud, the token
// is verified as token inspect verifies it; the method's rule, compiled as
// rules compiles it, is then applied with Rule.Allow, the guard's own check.
// It prints the rule, a line "decision: allowed", "decision: unauthenticated"
// or "decision: denied", a line "reason: ..." (PERMISSION_DENIED naming the
// missing permission, NOT_OWNER naming the field and claim, TOKEN_EXPIRED,
// TOKEN_INVALID, TOKEN_MISSING, public, or no rule), and when allowed the
// throttle the call would be charged to. Revocation and the throttle's
// current state are not known to it.
//
// # revoke
//
// revoke writes one revocation to the Redis at -redis, which every replica
// following it (redisstore.FollowRevocations; pricing-server -redis)
// applies within a second: -jti revokes one token, -ref the token of a
// log line's ref (a token without jti), -sid a session (every token
// renewed from it, renewals to come included), -sub and -consumer every
// token of that subject or consumer (azp) issued before -before (default:
// now; "log out everywhere", "rotate a compromised service"). -before
// takes an RFC 3339 time; -sid takes one optionally, -jti and -ref none.
// The entry lives as long as a token it covers could: -max-lifetime,
// -max-session and -leeway are the verifiers' settings (defaults those of
// token.DefaultRevocationLimits: 1h, 8h, 30s). It prints one line,
// "revoked KIND VALUE [before T] until T", with jti and sid values as
// fingerprints (session.Fingerprint), never as given. A Redis that cannot
// be written is exit 1. -prefix is the key prefix of redisstore's keys.
//
// # Exit status
//
// 0: success (for inspect with -key: the token is valid; for explain: the
// call would be allowed). 1: the token is invalid, expired or not
// decodable, explain's call would be refused, rules are invalid or (with
// -require-all) missing, a server could not be asked, or an operation
// failed. 2: bad usage or input (unknown command or flag, missing flag, bad
// duration, unknown algorithm, unreadable or unusable key or descriptor
// set, existing output file), reported as one line on standard error.
// Invalid rules are reported one problem a line.
//
// No output ever contains key material, and inspect, rules and explain
// never echo the token they were given. Errors name the flag or argument that is wrong and never
// quote its value, since a key or a token pasted in the wrong place must
// not end up in a terminal's scrollback or a CI log; whatever they print is
// passed through token.Redact besides.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/tollgate/tollgate/token"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the token is invalid, or an operation failed
	exitUsage = 2 // bad flags or input
)

const usage = `usage:
  tollgate keygen -alg ALG -out PATH [-kid KID]
  tollgate token issue -key PATH -alg ALG -iss ISS -aud AUD[,AUD...] -sub SUB
        [-kid KID] [-azp ID] [-perms P[,P...]] [-claim NAME=VALUE]...
        [-ttl 15m] [-iat OFFSET] [-auth-time OFFSET] [-sid ID] [-cnf-cert FILE]
  tollgate token inspect [-key PATH -alg ALG -iss ISS -aud AUD] TOKEN|-
  tollgate jwks [-out FILE] -key KID:ALG:PATH [-key KID:ALG:PATH]...
  tollgate proto export [-force] DIR
  tollgate rules (-descriptor-set FILE | -addr HOST:PORT [-token T | -token-file F|-]
        [-tls] [-ca FILE] [-insecure] [-timeout 10s])
        [-format table|json|markdown] [-require-all] [-services SVC[,SVC...]]
  tollgate explain -descriptor-set FILE -method /pkg.Svc/Method [-request JSON|@FILE]
        [-key PATH -alg ALG -iss ISS -aud AUD TOKEN|-]
  tollgate revoke -redis HOST:PORT (-jti ID | -sid ID | -sub ID | -consumer ID | -ref REF)
        [-before RFC3339] [-max-lifetime 1h] [-max-session 8h] [-leeway 30s] [-prefix P]

algorithms: HS256 HS384 HS512 ES256 ES384 EdDSA RS256 PS256
exit status: 0 ok, 1 invalid token, refused call, invalid or missing rules, or failure,
  2 bad usage or input
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, time.Now))
}

// run is the whole command: main only wires it to the process, so tests can
// drive it with their own streams and clock.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) int {
	e := &env{args: args, stdin: stdin, stdout: stdout, stderr: stderr, now: now}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "keygen":
		return keygen(e, args[1:])
	case "token":
		return tokenCmd(e, args[1:])
	case "jwks":
		return jwks(e, args[1:])
	case "proto":
		return protoCmd(e, args[1:])
	case "rules":
		return rules(e, args[1:])
	case "explain":
		return explain(e, args[1:])
	case "revoke":
		return revoke(e, args[1:])
	}
	return e.fail(exitUsage, "unknown command (want keygen, token, jwks, proto, rules, explain or revoke; see tollgate help)")
}

// env is what a command runs against.
type env struct {
	args           []string // the whole command line, for redaction
	stdin          io.Reader
	stdout, stderr io.Writer
	now            func() time.Time
}

// fail reports msg as one line on stderr and returns code. Messages name
// what is wrong and quote no value, but the flag package and the os package
// quote what they were given, and a key pasted where a path belongs must
// not end up in a log: so whatever the message holds that looks like a
// token or key material, or shares a run of 16 bytes with an argument that
// does, is cut out first (token.Redact).
//
// The message is made one line of printable text, whatever the arguments
// held: scripts read it as one line, and terminals should not interpret it.
func (e *env) fail(code int, format string, a ...any) int {
	msg := token.Redact(fmt.Sprintf(format, a...), e.args...)
	msg = strings.Join(strings.Fields(msg), " ")
	msg = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, msg)
	fmt.Fprintln(e.stderr, "tollgate: "+msg)
	return code
}

// newFlagSet returns a flag set that reports nothing itself: errors are
// printed by parse, as one line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args into fs. When it returns false the command is over and
// code is its exit status: -h printed the usage, or a flag was bad. A bad
// value is reported as the flag's name and what it wants, never the value
// (the flag package's own message quotes it).
func (e *env) parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	var bad badValue
	fs.VisitAll(func(f *flag.Flag) { f.Value = quietValue{f.Value, f.Name, &bad} })
	err := fs.Parse(args)
	switch {
	case err == flag.ErrHelp:
		fmt.Fprint(e.stdout, usage)
		return exitOK, false
	case bad.name != "":
		return e.fail(exitUsage, "%s: -%s: %s", fs.Name(), bad.name, bad.want), false
	case err != nil:
		return e.fail(exitUsage, "%s: %v", fs.Name(), err), false
	}
	return exitOK, true
}

// badValue is the flag whose value failed to parse, and what it wants.
type badValue struct{ name, want string }

// quietValue wraps a flag's value to record which flag refused its value
// and why, in words that do not repeat the value.
type quietValue struct {
	flag.Value
	name string
	bad  *badValue
}

func (v quietValue) Set(s string) error {
	err := v.Value.Set(s)
	if err != nil && v.bad.name == "" {
		want := err.Error() // the values of this package say what they want
		if g, ok := v.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				want = "want a duration such as 15m, 90s or -50s"
			case bool:
				want = "want true or false"
			case int, int64, uint, uint64:
				want = "want a whole number"
			}
		}
		*v.bad = badValue{v.name, want}
	}
	return err
}

// IsBoolFlag keeps boolean flags usable without a value (-flag).
func (v quietValue) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// missing names the flags among names whose value is empty, for a "missing
// required flags" message; "" when all are set.
func missing(fs *flag.FlagSet, names ...string) string {
	var out []string
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			out = append(out, "-"+n)
		}
	}
	return strings.Join(out, ", ")
}

// isSet reports whether the flag name was given on the command line, even
// with an empty value.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkAlg returns an error message for an algorithm session does not
// support, naming the ones it does (not the one given: it may be a key
// pasted in the wrong place).
func checkAlg(alg string) error {
	if slices.Contains(token.Algorithms(), alg) {
		return nil
	}
	return fmt.Errorf("unknown -alg (supported: %s)", strings.Join(token.Algorithms(), ", "))
}
