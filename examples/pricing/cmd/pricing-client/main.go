// Pricing-client calls the pricing example's PriceService, for the demo.
//
// Usage:
//
//	pricing-client [-addr HOST:PORT] [-token TOKEN] [-body-token] COMMAND ARGS
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
//
// The token comes from -token or else from the environment variable
// TOLLGATE_TOKEN (prefer the variable: command lines are visible to other
// users). It travels as "authorization: Bearer <token>" metadata, except
// for quote, whose request carries it in its access_token field and sends
// no metadata (-body-token says so explicitly; other requests have no token
// field). The connection is plaintext, so a token is only ever sent to a
// loopback address.
//
// Output: one line of JSON per result on standard output. A refused or
// failed call prints one line
//
//	error: <code>: <message> [<ErrorInfo reason> <key=value>...]
//
// on standard output and exits 1; bad usage exits 2. The token is never
// printed.
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
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pricingv1 "github.com/tollgate/tollgate/examples/pricing/proto/pricing/v1"
)

const tokenEnv = "TOLLGATE_TOKEN"

const callTimeout = 10 * time.Second

const usage = `usage: pricing-client [-addr HOST:PORT] [-token TOKEN | env TOLLGATE_TOKEN] [-body-token] COMMAND ARGS
commands:
  ping
  get SKU
  list SELLER
  set SKU SELLER AMOUNT_CENTS CURRENCY
  delete SKU SELLER
  import SELLER SKU=AMOUNT...
  sync SELLER SKU=AMOUNT...
  quote SKU...
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors of the command line.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErr(format string, a ...any) error { return errUsage{fmt.Sprintf(format, a...)} }

// client is one invocation: where to call, with which token, and where to
// print.
type client struct {
	api       pricingv1.PriceServiceClient
	token     string
	bodyToken bool
	out       *bufio.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pricing-client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "127.0.0.1:8443", "server address")
	token := fs.String("token", "", "access token (default: $"+tokenEnv+")")
	bodyToken := fs.Bool("body-token", false, "send the token in the request body (quote only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "pricing-client: %s (see pricing-client -h)\n", redact(err.Error(), args))
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv(tokenEnv)
	}
	if tok != "" && !isLoopback(*addr) {
		fmt.Fprintf(stderr, "pricing-client: refusing to send a token in plaintext to %s: only loopback addresses\n", *addr)
		return 2
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "pricing-client: %v\n", err)
		return 2
	}
	defer conn.Close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	c := &client{api: pricingv1.NewPriceServiceClient(conn), token: tok, bodyToken: *bodyToken, out: out}

	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err = c.do(ctx, fs.Arg(0), fs.Args()[1:])
	var ue errUsage
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "pricing-client: %s\n", ue.msg)
		return 2
	case err != nil:
		fmt.Fprintln(out, describe(err))
		return 1
	}
	return 0
}

// redact cuts out of msg every argument that could be a token (the flag
// package quotes bad values, and a token may be pasted anywhere).
func redact(msg string, args []string) string {
	for _, a := range args {
		_, v, _ := strings.Cut(a, "=")
		for _, s := range []string{a, v} {
			if len(s) >= 16 && strings.Count(s, ".") >= 2 {
				msg = strings.ReplaceAll(msg, s, "[redacted]")
			}
		}
	}
	return msg
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
		resp, err := c.api.Ping(ctx, &pricingv1.PingRequest{})
		return c.print(resp, err)
	case "get":
		if err := nargs(1, "get SKU"); err != nil {
			return err
		}
		resp, err := c.api.GetPrice(c.auth(ctx), &pricingv1.GetPriceRequest{Sku: args[0]})
		return c.print(resp, err)
	case "list":
		if err := nargs(1, "list SELLER"); err != nil {
			return err
		}
		stream, err := c.api.ListPrices(c.auth(ctx), &pricingv1.ListPricesRequest{SellerId: args[0]})
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
			return usageErr("set: AMOUNT_CENTS %q is not an integer", args[2])
		}
		resp, err := c.api.SetPrice(c.auth(ctx), &pricingv1.SetPriceRequest{Sku: args[0], SellerId: args[1], AmountCents: amount, Currency: args[3]})
		return c.print(resp, err)
	case "delete":
		if err := nargs(2, "delete SKU SELLER"); err != nil {
			return err
		}
		resp, err := c.api.DeletePrice(c.auth(ctx), &pricingv1.DeletePriceRequest{Sku: args[0], SellerId: args[1]})
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
		// The token goes in the body and nowhere else: no metadata.
		resp, err := c.api.QuotePrices(ctx, &pricingv1.QuotePricesRequest{AccessToken: c.token, Skus: args})
		return c.print(resp, err)
	}
	return usageErr("unknown command %q (see pricing-client -h)", cmd)
}

// auth attaches the token as Bearer metadata, when there is one.
func (c *client) auth(ctx context.Context) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

// setRequests parses SKU=AMOUNT pairs of one seller, in USD.
func setRequests(seller string, pairs []string) ([]*pricingv1.SetPriceRequest, error) {
	reqs := make([]*pricingv1.SetPriceRequest, 0, len(pairs))
	for _, p := range pairs {
		sku, amount, ok := strings.Cut(p, "=")
		n, err := strconv.ParseInt(amount, 10, 64)
		if !ok || err != nil {
			return nil, usageErr("%q is not SKU=AMOUNT_CENTS", p)
		}
		reqs = append(reqs, &pricingv1.SetPriceRequest{Sku: sku, SellerId: seller, AmountCents: n, Currency: "USD"})
	}
	return reqs, nil
}

// importPrices sends every request on one client stream and prints the
// count; a refusal mid-way ends the call with the server's status.
func (c *client) importPrices(ctx context.Context, reqs []*pricingv1.SetPriceRequest) error {
	stream, err := c.api.ImportPrices(c.auth(ctx))
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
	stream, err := c.api.SyncPrices(c.auth(ctx))
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

// describe renders an error as "error: <code>: <message> [<reason>
// <key=value>...]". A gRPC message never holds the token (tollgate's are
// fixed phrases), and nothing else of the token is in the error.
func describe(err error) string {
	st := status.Convert(err)
	s := "error: " + st.Code().String() + ": " + st.Message()
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok {
			continue
		}
		parts := []string{info.GetReason()}
		keys := make([]string, 0, len(info.GetMetadata()))
		for k := range info.GetMetadata() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			parts = append(parts, k+"="+info.GetMetadata()[k])
		}
		s += " [" + strings.Join(parts, " ") + "]"
	}
	return s
}
