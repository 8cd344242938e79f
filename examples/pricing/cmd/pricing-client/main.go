// Pricing-client calls the pricing example's PriceService, for the demo.
//
// Usage:
//
//	pricing-client [-addr HOST:PORT[,HOST:PORT...]] [-token TOKEN | -token-file PATH]
//	    [-body-token] [-repeat N] COMMAND ARGS
//
// Commands:
//
//	ping                               Ping (public: no token needed)
//	get SKU                            GetPrice
//	list SELLER                        ListPrices (server stream)
//	set SKU SELLER AMOUNT_CENTS CUR    SetPrice
//	delete SKU SELLER                  DeletePrice
//	import SELLER SKU=AMOUNT...        ImportPrices (client stream, USD)
//	sync SELLER SKU=AMOUNT...          SyncPrices (bidi stream, USD)
//	quote SKU...                       QuotePrices
//	call /PKG.SERVICE/METHOD           any method by its full name, with an
//	                                   empty request (unary)
//
// call is for names the server may not serve, as a client built from a
// newer .proto would send them: tollgate's guard refuses every method
// without a rule with PermissionDenied (PERMISSION_DENIED). The request is
// an empty message (google.protobuf.Empty); a reply, should one come, is
// printed as {} whatever it holds. The token is attached as for any other
// command.
//
// # Tokens
//
// The token comes from -token, from the file -token-file names, or else from
// the environment variable TOLLGATE_TOKEN (prefer the file or the variable:
// command lines are visible to other users). tollgate's client interceptors
// (interceptors.NewTokenSource, UnaryClientInterceptor,
// StreamClientInterceptor) attach it as "authorization: Bearer <token>"
// metadata to every call except ping, which needs none, and quote: quote's
// request carries the token in its access_token field, the field meant for
// tokens too large for metadata, so the token travels in the body only and
// no metadata is attached (-body-token says so explicitly; other requests
// have no token field). The connection is plaintext, so a token is only ever
// sent to a loopback address: the interceptors get
// interceptors.AllowInsecureTransport only when every -addr is one, and with
// a token and any other address the client refuses to start (exit 2).
//
// When the server renews the token (it does in the last third of the
// token's lifetime), the interceptors pick the successor up from the call's
// trailers and use it for the calls that follow. At the end of the run the
// client prints one line on standard error, "renewed token (expires
// <RFC3339>)", and with -token-file writes the new token back to that file
// (mode 0600, replaced atomically): that is how a consumer keeps its renewed
// token across runs. Without -token-file the renewed token serves only the
// rest of the run.
//
// # Repeating
//
// -repeat N runs the command N times in a row, as fast as it can, printing
// none of the results. It ends with the first throttled refusal and the
// first other failure, if any, each on a line of the form below, and a
// summary line "ok=X throttled=Y other=Z", where throttled counts calls
// refused with ResourceExhausted. With several -addr addresses, the calls
// go to them in turn, one connection each: a consumer spread over the
// replicas of a service.
//
// Output: one line of JSON per result on standard output. A refused or
// failed call prints one line
//
//	error: <code>: <message> [<ErrorInfo reason> <key=value>...] [retry_delay=<duration>]
//
// on standard output and exits 1 (as does -repeat when any call failed); bad
// usage or an unreadable token exits 2, with one line on standard error that
// names the flag, variable or argument that is wrong. The token is never
// printed: no message quotes a value the user gave, and every line of
// errors, on either stream, has whatever looks like a token or key material
// cut out besides (token.Redact).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tollgate/tollgate/examples/pricing/internal/quiet"
	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
)

const tokenEnv = "TOLLGATE_TOKEN"

// callTimeout bounds one command (one call, or one stream).
const callTimeout = 10 * time.Second

// maxTokenFile caps what -token-file reads: tollgate accepts tokens of 64
// KiB at most.
const maxTokenFile = 64<<10 + 1

const usage = `usage: pricing-client [-addr HOST:PORT[,HOST:PORT...]] [-token TOKEN | -token-file PATH | env TOLLGATE_TOKEN]
    [-body-token] [-repeat N] COMMAND ARGS
commands:
  ping
  get SKU
  list SELLER
  set SKU SELLER AMOUNT_CENTS CURRENCY
  delete SKU SELLER
  import SELLER SKU=AMOUNT...
  sync SELLER SKU=AMOUNT...
  quote SKU...
  call /PKG.SERVICE/METHOD   (any method, empty request)
-token-file: the token is read from PATH, and a renewed token written back to it.
-repeat N: run the command N times, print "ok=X throttled=Y other=Z".
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors of the command line and of its input.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErr(format string, a ...any) error { return errUsage{fmt.Sprintf(format, a...)} }

// client is one invocation: where to call, with which token, and where to
// print.
type client struct {
	conns     []*grpc.ClientConn             // one per address, used in turn
	apis      []pricingv1.PriceServiceClient // over conns
	next      int
	src       *interceptors.TokenSource // nil without a token
	bodyToken bool
	out       io.Writer
	suspects  []string // for token.Redact: arguments, $TOLLGATE_TOKEN, the token
}

// renewal records the latest token the server handed back.
type renewal struct {
	mu    sync.Mutex
	token string
	exp   time.Time
}

func (r *renewal) set(token string, exp time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.token, r.exp = token, exp
}

func (r *renewal) get() (string, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.token, r.exp
}

func run(args []string, stdout, stderr io.Writer) int {
	// Anything that may hold the token, or a key pasted by mistake, and
	// must not reach an output: the arguments, $TOLLGATE_TOKEN, and below,
	// the token itself.
	suspects := append([]string{os.Getenv(tokenEnv)}, args...)
	// fail is the one place errors are printed on stderr, as one line of
	// printable text.
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "pricing-client: %s\n", oneLine(token.Redact(err.Error(), suspects...)))
		return code
	}
	fs := flag.NewFlagSet("pricing-client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	addrList := fs.String("addr", "127.0.0.1:8443", "server address; several, comma-separated, are called in turn")
	tokenFlag := fs.String("token", "", "access token (default: $"+tokenEnv+")")
	tokenFile := fs.String("token-file", "", "file holding the access token; a renewed token is written back to it")
	bodyToken := fs.Bool("body-token", false, "send the token in the request body (quote only)")
	repeat := fs.Int("repeat", 0, "run the command this many times and print a summary")
	bad := quiet.Flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if *bad != nil {
			err = *bad
		}
		return fail(2, fmt.Errorf("%w (see pricing-client -h)", err))
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if isSet(fs, "repeat") && *repeat < 1 {
		return fail(2, errors.New("-repeat: want a count of at least 1"))
	}
	addrs := strings.Split(*addrList, ",")
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if _, perr := strconv.ParseUint(port, 10, 16); err == nil && perr != nil {
			err = perr
		}
		switch {
		case err != nil:
			return fail(2, errors.New("-addr: want HOST:PORT[,HOST:PORT...]"))
		case token.Redact(host) != host:
			// A host name is looked up in DNS: a key or a token pasted as
			// one would be sent to the resolver.
			return fail(2, errors.New("-addr: a host looks like key material or a token"))
		}
	}
	tok, from, err := loadToken(*tokenFlag, *tokenFile)
	if err != nil {
		return fail(2, err)
	}
	suspects = append(suspects, tok)
	// The connection is plaintext: a token goes only to this machine, and
	// the interceptors are told so explicitly (without it they refuse to
	// send a token in plaintext at all).
	var clientOpts []interceptors.ClientOption
	if allLoopback(addrs) {
		clientOpts = append(clientOpts, interceptors.AllowInsecureTransport())
	} else if tok != "" {
		for _, a := range addrs {
			if !isLoopback(a) {
				// Quoted: its host was checked above not to look like a
				// key or a token, and with several addresses the one is
				// wanted.
				return fail(2, fmt.Errorf("-addr: refusing to send a token in plaintext to %q: it is not a loopback address", a))
			}
		}
	}

	var renewed renewal
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	var src *interceptors.TokenSource
	if tok != "" {
		src, err = interceptors.NewTokenSource(tok, interceptors.OnRenew(renewed.set))
		if err != nil {
			return fail(2, fmt.Errorf("%s: not a JWT with readable claims and exp", from))
		}
		dialOpts = append(dialOpts,
			grpc.WithChainUnaryInterceptor(unaryInterceptor(src, clientOpts...)),
			grpc.WithChainStreamInterceptor(interceptors.StreamClientInterceptor(src, clientOpts...)))
	}
	c := &client{src: src, bodyToken: *bodyToken, suspects: suspects}
	for _, a := range addrs {
		conn, err := grpc.NewClient(a, dialOpts...)
		if err != nil {
			return fail(2, fmt.Errorf("-addr: %w", err))
		}
		defer conn.Close()
		c.conns = append(c.conns, conn)
		c.apis = append(c.apis, pricingv1.NewPriceServiceClient(conn))
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	c.out = out

	var code int
	if isSet(fs, "repeat") {
		code, err = c.repeat(*repeat, fs.Arg(0), fs.Args()[1:])
	} else {
		code, err = c.once(fs.Arg(0), fs.Args()[1:])
	}
	if err != nil { // bad usage: no call was made
		return fail(2, err)
	}
	if newTok, exp := renewed.get(); newTok != "" {
		suspects = append(suspects, newTok)
		if *tokenFile != "" {
			if err := saveToken(*tokenFile, newTok); err != nil {
				out.Flush()
				return fail(1, fmt.Errorf("-token-file: saving the renewed token: %w", quiet.Pathless(err)))
			}
		}
		fmt.Fprintf(stderr, "renewed token (expires %s)\n", exp.UTC().Format(time.RFC3339))
	}
	return code
}

// isSet reports whether the flag name was given.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// loadToken returns the token of -token, of -token-file, or of
// $TOLLGATE_TOKEN, in that order, and where it came from; "" when there is
// none. Its errors name the flag, never the path: the likeliest thing in
// place of a token file's path is the token itself.
func loadToken(flagToken, path string) (tok, from string, err error) {
	switch {
	case flagToken != "" && path != "":
		return "", "", errors.New("-token and -token-file: give one, not both")
	case flagToken != "":
		return flagToken, "-token", nil
	case path == "":
		return os.Getenv(tokenEnv), "$" + tokenEnv, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("-token-file: %w", quiet.Pathless(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile))
	if err != nil {
		return "", "", fmt.Errorf("-token-file: %w", quiet.Pathless(err))
	}
	tok = strings.TrimSpace(string(b))
	switch {
	case len(b) == maxTokenFile:
		return "", "", errors.New("-token-file: larger than any token tollgate accepts")
	case tok == "":
		return "", "", errors.New("-token-file: empty")
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", "", errors.New("-token-file: holds more than one line")
	}
	return tok, "-token-file", nil
}

// oneLine makes s one line of printable text, for scripts and terminals.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// saveToken replaces the file at path with tok, mode 0600: written to a
// temporary file beside it and renamed over it, so the file holds the old
// token or the new one, never a mix.
func saveToken(path, tok string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// unaryInterceptor is tollgate's client interceptor, per method: ping gets
// no token (it is public), quote gets none in metadata (its token travels in
// the request body) but still has its renewed token picked up; every other
// call gets the token attached.
func unaryInterceptor(src *interceptors.TokenSource, opts ...interceptors.ClientOption) grpc.UnaryClientInterceptor {
	attach := interceptors.UnaryClientInterceptor(src, opts...)
	pickUp := interceptors.UnaryClientInterceptor(src, append(opts, interceptors.PickUpOnly())...)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch method {
		case pricingv1.PriceService_Ping_FullMethodName:
			return invoker(ctx, method, req, reply, cc, opts...)
		case pricingv1.PriceService_QuotePrices_FullMethodName:
			return pickUp(ctx, method, req, reply, cc, invoker, opts...)
		}
		return attach(ctx, method, req, reply, cc, invoker, opts...)
	}
}

// once runs the command and prints its results, or the error that ended
// it. It returns the exit status, or an error for bad usage.
func (c *client) once(cmd string, args []string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err := c.do(ctx, cmd, args)
	var ue errUsage
	switch {
	case errors.As(err, &ue):
		return 2, ue
	case err != nil:
		fmt.Fprintln(c.out, c.describe(err))
		return 1, nil
	}
	return 0, nil
}

// repeat runs the command n times without printing its results, then the
// first throttled refusal and first other failure, and the summary line.
// It returns 0 when every call succeeded, else 1, or an error for bad usage.
func (c *client) repeat(n int, cmd string, args []string) (int, error) {
	out := c.out
	c.out = io.Discard
	defer func() { c.out = out }()
	var ok, throttled, other int
	var firstThrottled, firstOther string
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		err := c.do(ctx, cmd, args)
		cancel()
		var ue errUsage
		switch {
		case errors.As(err, &ue):
			return 2, ue
		case err == nil:
			ok++
		case status.Code(err) == codes.ResourceExhausted:
			throttled++
			if firstThrottled == "" {
				firstThrottled = c.describe(err)
			}
		default:
			other++
			if firstOther == "" {
				firstOther = c.describe(err)
			}
		}
	}
	for _, line := range []string{firstThrottled, firstOther} {
		if line != "" {
			fmt.Fprintln(out, line)
		}
	}
	fmt.Fprintf(out, "ok=%d throttled=%d other=%d\n", ok, throttled, other)
	if ok != n {
		return 1, nil
	}
	return 0, nil
}

// allLoopback reports whether every address of addrs is a loopback one.
func allLoopback(addrs []string) bool {
	for _, a := range addrs {
		if !isLoopback(a) {
			return false
		}
	}
	return true
}

// isLoopback reports whether addr names this machine: localhost or a
// loopback IP.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// do runs one command.
func (c *client) do(ctx context.Context, cmd string, args []string) error {
	if c.bodyToken && cmd != "quote" {
		return usageErr("-body-token: only quote has a token field in its request")
	}
	nargs := func(n int, form string) error {
		if len(args) != n {
			return usageErr("usage: %s", form)
		}
		return nil
	}
	switch cmd {
	case "ping":
		if err := nargs(0, "ping"); err != nil {
			return err
		}
		resp, err := c.api().Ping(ctx, &pricingv1.PingRequest{})
		return c.print(resp, err)
	case "get":
		if err := nargs(1, "get SKU"); err != nil {
			return err
		}
		resp, err := c.api().GetPrice(ctx, &pricingv1.GetPriceRequest{Sku: args[0]})
		return c.print(resp, err)
	case "list":
		if err := nargs(1, "list SELLER"); err != nil {
			return err
		}
		stream, err := c.api().ListPrices(ctx, &pricingv1.ListPricesRequest{SellerId: args[0]})
		if err != nil {
			return err
		}
		return c.printStream(stream.Recv)
	case "set":
		if err := nargs(4, "set SKU SELLER AMOUNT_CENTS CURRENCY"); err != nil {
			return err
		}
		amount, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return usageErr("set: AMOUNT_CENTS is not an integer")
		}
		resp, err := c.api().SetPrice(ctx, &pricingv1.SetPriceRequest{Sku: args[0], SellerId: args[1], AmountCents: amount, Currency: args[3]})
		return c.print(resp, err)
	case "delete":
		if err := nargs(2, "delete SKU SELLER"); err != nil {
			return err
		}
		resp, err := c.api().DeletePrice(ctx, &pricingv1.DeletePriceRequest{Sku: args[0], SellerId: args[1]})
		return c.print(resp, err)
	case "import", "sync":
		if len(args) < 2 {
			return usageErr("usage: %s SELLER SKU=AMOUNT...", cmd)
		}
		reqs, err := setRequests(args[0], args[1:])
		if err != nil {
			return err
		}
		if cmd == "import" {
			return c.importPrices(ctx, reqs)
		}
		return c.syncPrices(ctx, reqs)
	case "quote":
		if len(args) == 0 {
			return usageErr("usage: quote SKU...")
		}
		// The token goes in the body and nowhere else: the interceptor
		// attaches no metadata to quote (see unaryInterceptor).
		resp, err := c.api().QuotePrices(ctx, &pricingv1.QuotePricesRequest{AccessToken: c.token(), Skus: args})
		return c.print(resp, err)
	case "call":
		if err := nargs(1, "call /PKG.SERVICE/METHOD"); err != nil {
			return err
		}
		if err := checkMethodName(args[0]); err != nil {
			return err
		}
		resp := new(emptypb.Empty)
		err := c.conn().Invoke(ctx, args[0], new(emptypb.Empty), resp)
		return c.print(resp, err)
	}
	return usageErr("unknown command (see pricing-client -h)")
}

// api returns the client of the next address in turn.
func (c *client) api() pricingv1.PriceServiceClient {
	a := c.apis[c.next%len(c.apis)]
	c.next++
	return a
}

// conn returns the connection to the next address in turn.
func (c *client) conn() *grpc.ClientConn {
	cc := c.conns[c.next%len(c.conns)]
	c.next++
	return cc
}

// checkMethodName accepts a gRPC full method name, "/pkg.Service/Method":
// two non-empty parts of printable characters without spaces. It goes to the
// server as the call's path, so nothing shaped like a token or a key (pasted
// in the wrong place) may be sent as one.
func checkMethodName(name string) error {
	svc, method, ok := strings.Cut(strings.TrimPrefix(name, "/"), "/")
	switch {
	case !strings.HasPrefix(name, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/"):
		return usageErr("call: want a full method name, /PKG.SERVICE/METHOD")
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return usageErr("call: the method name holds spaces or unprintable characters")
	case token.Redact(name) != name:
		return usageErr("call: the method name looks like key material or a token")
	}
	return nil
}

// token returns the current token, renewed or not; "" without one.
func (c *client) token() string {
	if c.src == nil {
		return ""
	}
	return c.src.Token()
}

// setRequests parses SKU=AMOUNT pairs of one seller, in USD.
func setRequests(seller string, pairs []string) ([]*pricingv1.SetPriceRequest, error) {
	reqs := make([]*pricingv1.SetPriceRequest, 0, len(pairs))
	for i, p := range pairs {
		sku, amount, ok := strings.Cut(p, "=")
		n, err := strconv.ParseInt(amount, 10, 64)
		if !ok || err != nil {
			return nil, usageErr("the SKU=AMOUNT_CENTS pair %d is not one", i+1)
		}
		reqs = append(reqs, &pricingv1.SetPriceRequest{Sku: sku, SellerId: seller, AmountCents: n, Currency: "USD"})
	}
	return reqs, nil
}

// importPrices sends every request on one client stream and prints the
// count; a refusal mid-way ends the call with the server's status.
func (c *client) importPrices(ctx context.Context, reqs []*pricingv1.SetPriceRequest) error {
	stream, err := c.api().ImportPrices(ctx)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the call; CloseAndRecv returns its status
			}
			return err
		}
	}
	resp, err := stream.CloseAndRecv()
	return c.print(resp, err)
}

// syncPrices sends each request and prints its echo before sending the
// next, so the output shows how far the stream got.
func (c *client) syncPrices(ctx context.Context, reqs []*pricingv1.SetPriceRequest) error {
	stream, err := c.api().SyncPrices(ctx)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		// After io.EOF from Send, Recv returns the status that ended the call.
		p, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := c.print(p, nil); err != nil {
			return err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return c.printStream(stream.Recv)
}

// printStream prints every message recv returns until io.EOF.
func (c *client) printStream(recv func() (*pricingv1.Price, error)) error {
	for {
		p, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err := c.print(p, err); err != nil {
			return err
		}
	}
}

// print writes m as one line of JSON, unless err is set.
func (c *client) print(m proto.Message, err error) error {
	if err != nil {
		return err
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its white space on purpose; compact it so that the
	// output is stable for scripts.
	var line bytes.Buffer
	if err := json.Compact(&line, b); err != nil {
		return err
	}
	line.WriteByte('\n')
	_, err = c.out.Write(line.Bytes())
	return err
}

// describe is where errors of calls are printed (on stdout, one line each):
// it renders err and cuts out anything that looks like a token or a key, or
// shares a run with the token (a server, or a transport error, could quote
// anything).
func (c *client) describe(err error) string {
	return oneLine(token.Redact(describe(err), c.suspects...))
}

// describe renders an error as "error: <code>: <message> [<reason>
// <key=value>...] [retry_delay=<duration>]". A gRPC message never holds the
// token (tollgate's are fixed phrases), and nothing else of the token is in
// the error.
func describe(err error) string {
	st := status.Convert(err)
	s := "error: " + st.Code().String() + ": " + st.Message()
	var retry string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			parts := []string{d.GetReason()}
			keys := make([]string, 0, len(d.GetMetadata()))
			for k := range d.GetMetadata() {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				parts = append(parts, k+"="+d.GetMetadata()[k])
			}
			s += " [" + strings.Join(parts, " ") + "]"
		case *errdetails.RetryInfo:
			retry = " [retry_delay=" + d.GetRetryDelay().AsDuration().Round(time.Millisecond).String() + "]"
		}
	}
	return s + retry
}
