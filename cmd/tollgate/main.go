// Tollgate generates signing keys and issues and inspects the access tokens
// that the tollgate library verifies.
//
// Usage:
//
//	tollgate keygen -alg ALG -out PATH [-kid KID]
//	tollgate token issue -key PATH -alg ALG -iss ISS -aud AUD -sub SUB [flags]
//	tollgate token inspect [-key PATH -alg ALG -iss ISS -aud AUD] TOKEN|-
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
// -azp names the calling service.
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
// # Exit status
//
// 0: success (for inspect with -key: the token is valid). 1: the token is
// invalid, expired or not decodable, or an operation failed. 2: bad usage or
// input (unknown command or flag, missing flag, bad duration, unknown
// algorithm, unreadable or unusable key, existing output file), reported
// as one line on standard error.
//
// No output ever contains key material, and inspect never echoes the token
// it was given. Errors name the flag or argument that is wrong and never
// quote its value, since a key or a token pasted in the wrong place must
// not end up in a terminal's scrollback or a CI log; whatever they print is
// passed through session.Redact besides.
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

	"github.com/tollgate/tollgate/session"
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
        [-ttl 15m] [-iat OFFSET] [-auth-time OFFSET] [-sid ID]
  tollgate token inspect [-key PATH -alg ALG -iss ISS -aud AUD] TOKEN|-

algorithms: HS256 HS384 HS512 ES256 ES384 EdDSA RS256 PS256
exit status: 0 ok, 1 invalid token or failure, 2 bad usage or input
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
		return token(e, args[1:])
	case "proto":
		return protoCmd(e, args[1:])
	case "rules":
		return rules(e, args[1:])
	case "explain":
		return explain(e, args[1:])
	}
	return e.fail(exitUsage, "unknown command (want keygen, token, proto, rules or explain; see tollgate help)")
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
// does, is cut out first (session.Redact).
//
// The message is made one line of printable text, whatever the arguments
// held: scripts read it as one line, and terminals should not interpret it.
func (e *env) fail(code int, format string, a ...any) int {
	msg := session.Redact(fmt.Sprintf(format, a...), e.args...)
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
	if slices.Contains(session.Algorithms(), alg) {
		return nil
	}
	return fmt.Errorf("unknown -alg (supported: %s)", strings.Join(session.Algorithms(), ", "))
}
