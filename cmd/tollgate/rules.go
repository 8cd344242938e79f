package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/token"
)

// rules runs "tollgate rules".
func rules(e *env, args []string) int {
	fs := newFlagSet("rules")
	setPath := fs.String("descriptor-set", "", "binary FileDescriptorSet to read the rules from")
	addr := fs.String("addr", "", "HOST:PORT of a server to ask through gRPC reflection")
	tok := fs.String("token", "", "token for the reflection service (prefer -token-file)")
	tokFile := fs.String("token-file", "", "file holding the token for the reflection service (- for standard input)")
	useTLS := fs.Bool("tls", false, "connect with TLS (the default unless the address is loopback)")
	caFile := fs.String("ca", "", "PEM file of the CA certificates to trust (implies -tls)")
	plain := fs.Bool("insecure", false, "connect without TLS, even to a non-loopback address")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole reflection exchange")
	format := fs.String("format", "table", "table, json or markdown")
	requireAll := fs.Bool("require-all", false, "fail, naming them, when methods have no rule")
	services := fs.String("services", "", "comma list of full service names to show (default: all)")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return e.fail(exitUsage, "rules: unexpected argument after the flags")
	}
	switch *format {
	case "table", "json", "markdown":
	default:
		return e.fail(exitUsage, "rules: -format: want table, json or markdown")
	}
	if (*setPath == "") == (*addr == "") {
		return e.fail(exitUsage, "rules: want exactly one of -descriptor-set FILE and -addr HOST:PORT")
	}
	if *setPath != "" {
		for _, f := range []string{"token", "token-file", "tls", "ca", "insecure", "timeout"} {
			if isSet(fs, f) {
				return e.fail(exitUsage, "rules: -%s applies only with -addr", f)
			}
		}
	}
	var only []string
	if *services != "" {
		for s := range strings.SplitSeq(*services, ",") {
			if s = strings.TrimSpace(s); s != "" {
				only = append(only, s)
			}
		}
	}

	var files *protoregistry.Files
	var infos map[string]grpc.ServiceInfo
	if *setPath != "" {
		var code int
		if files, code = e.loadDescriptorSet("rules", *setPath); code != exitOK {
			return code
		}
		var err error
		if infos, err = serviceInfos(files, only); err != nil {
			return e.fail(exitUsage, "rules: %v", err)
		}
	} else {
		c := dialConfig{addr: *addr, useTLS: *useTLS, caFile: *caFile, insecure: *plain, timeout: *timeout}
		if *tok != "" && *tokFile != "" {
			return e.fail(exitUsage, "rules: give -token or -token-file, not both")
		}
		c.token = strings.TrimSpace(*tok)
		if *tokFile != "" {
			t, code := e.readToken("rules", "-token-file", *tokFile)
			if code != exitOK {
				return code
			}
			c.token = t
		}
		var code int
		if files, infos, code = e.reflect(c, only); code != exitOK {
			return code
		}
	}

	opts := []interceptors.Option{interceptors.WithRegistry(files, new(protoregistry.Types))}
	if !*requireAll {
		opts = append(opts, interceptors.WithLenientInit())
	}
	table, err := interceptors.CompileRules(infos, opts...)
	if err != nil {
		return e.failLines(exitFail, "rules", err)
	}
	rows := ruleRows(table, infos)
	switch *format {
	case "json":
		err = writeJSON(e.stdout, rows)
	case "markdown":
		err = writeMarkdown(e.stdout, rows)
	default:
		err = writeTable(e.stdout, rows)
	}
	if err != nil {
		return e.fail(exitFail, "rules: %v", err)
	}
	return exitOK
}

// failLines reports a multi-line error (rule compilation names one problem a
// line) as lines of their own, each cleaned as fail cleans its message.
func (e *env) failLines(code int, cmd string, err error) int {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if strings.TrimSpace(line) != "" {
			e.fail(code, "%s: %s", cmd, line)
		}
	}
	return code
}

// loadDescriptorSet reads and links the descriptor set at path.
func (e *env) loadDescriptorSet(cmd, path string) (*protoregistry.Files, int) {
	fdps, err := readDescriptorSet(path)
	if err != nil {
		return nil, e.fail(exitUsage, "%s: -descriptor-set: %v", cmd, pathless(err))
	}
	files, err := buildFiles(fdps)
	if err != nil {
		return nil, e.fail(exitUsage, "%s: -descriptor-set: %v", cmd, err)
	}
	return files, exitOK
}

// readToken reads a token from the file at path (named flag in errors), or
// from standard input for "-": the one reader of tokens the commands share.
func (e *env) readToken(cmd, flag, path string) (string, int) {
	src := "standard input"
	var r io.Reader = e.stdin
	if path != "-" {
		src = flag
		f, err := os.Open(path)
		if err != nil {
			return "", e.fail(exitUsage, "%s: %s: %v", cmd, src, pathless(err))
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxTokenInput+1))
	if err != nil {
		return "", e.fail(exitUsage, "%s: %s: %v", cmd, src, pathless(err))
	}
	if len(data) > maxTokenInput {
		return "", e.fail(exitUsage, "%s: %s holds more than %d bytes", cmd, src, maxTokenInput)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", e.fail(exitUsage, "%s: the token is empty", cmd)
	}
	return tok, exitOK
}

// dialConfig is how rules reaches a server.
type dialConfig struct {
	addr             string
	useTLS, insecure bool
	caFile           string
	token            string
	timeout          time.Duration
}

// transport decides between TLS and plaintext: TLS unless -insecure, or the
// host is loopback and neither -tls nor -ca asks for it.
func (c dialConfig) transport() (credentials.TransportCredentials, error) {
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return nil, fmt.Errorf("-addr: want HOST:PORT")
	}
	if token.Redact(host) != host {
		return nil, fmt.Errorf("-addr: the host looks like key material or a token")
	}
	wantTLS := c.useTLS || c.caFile != ""
	if c.insecure && wantTLS {
		return nil, fmt.Errorf("-insecure contradicts -tls and -ca")
	}
	if c.insecure || (!wantTLS && isLoopback(host)) {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %v", pathless(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca: no PEM certificate in the file")
		}
		cfg.RootCAs = pool
	}
	return credentials.NewTLS(cfg), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reflect fetches the descriptors of every service the server at c.addr
// serves (or of those in only) through its reflection service.
func (e *env) reflect(c dialConfig, only []string) (*protoregistry.Files, map[string]grpc.ServiceInfo, int) {
	if c.timeout <= 0 {
		return nil, nil, e.fail(exitUsage, "rules: -timeout must be positive")
	}
	creds, err := c.transport()
	if err != nil {
		return nil, nil, e.fail(exitUsage, "rules: %v", err)
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, e.fail(exitUsage, "rules: -addr: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	got, err := fetchReflection(ctx, conn)
	if err != nil {
		return nil, nil, e.fail(exitFail, "rules: %s: %v", c.addr, err)
	}
	files, err := buildFiles(got.files)
	if err != nil {
		return nil, nil, e.fail(exitFail, "rules: %s: %v", c.addr, err)
	}
	infos := make(map[string]grpc.ServiceInfo)
	for _, name := range got.services {
		if len(only) > 0 && !slices.Contains(only, name) {
			continue
		}
		sd, err := files.FindDescriptorByName(protoreflectName(name))
		if err != nil {
			return nil, nil, e.fail(exitFail, "rules: %s: the server serves %s but sent no descriptor of it", c.addr, name)
		}
		svc, ok := asService(sd)
		if !ok {
			return nil, nil, e.fail(exitFail, "rules: %s: %s is not a service", c.addr, name)
		}
		infos[name] = serviceInfo(svc)
	}
	for _, name := range only {
		if _, ok := infos[name]; !ok {
			return nil, nil, e.fail(exitUsage, "rules: -services: the server serves no %s", name)
		}
	}
	return files, infos, exitOK
}

// ruleRow is one method in the output; its JSON form is the documented,
// stable schema of -format json.
type ruleRow struct {
	Method         string         `json:"method"`
	Kind           string         `json:"kind"`
	HasRule        bool           `json:"has_rule"`
	Public         bool           `json:"public"`
	Permissions    []string       `json:"permissions"`
	AnyPermissions []string       `json:"any_permissions"`
	Ownership      []ownershipRow `json:"ownership"`
	Throttle       *throttleRow   `json:"throttle"`
	NoRenewal      bool           `json:"no_renewal"`
	MaxStreams     uint32         `json:"max_streams"`
	TokenField     string         `json:"token_field"`
}

type ownershipRow struct {
	Field             string   `json:"field"`
	Claim             string   `json:"claim"`
	BypassPermissions []string `json:"bypass_permissions"`
}

type throttleRow struct {
	Rate        uint32 `json:"rate"`
	Per         string `json:"per"`
	Burst       uint32 `json:"burst"`
	Bucket      string `json:"bucket"`
	Cost        uint32 `json:"cost"`
	MessageCost uint32 `json:"message_cost"`
}

// ruleRows makes one row per method of infos, sorted by full name.
func ruleRows(t *permissions.Table, infos map[string]grpc.ServiceInfo) []ruleRow {
	var rows []ruleRow
	for name, info := range infos {
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			row := ruleRow{Method: full, Kind: kindOf(m), Permissions: []string{}, AnyPermissions: []string{}, Ownership: []ownershipRow{}}
			if r, ok := t.Rule(full); ok {
				row.HasRule = true
				row.Public = r.Public()
				row.Permissions = append(row.Permissions, r.Permissions()...)
				row.AnyPermissions = append(row.AnyPermissions, r.AnyPermissions()...)
				for _, o := range r.Ownership() {
					row.Ownership = append(row.Ownership, ownershipRow{Field: o.Field, Claim: o.Claim, BypassPermissions: append([]string{}, o.BypassPermissions...)})
				}
				if th, ok := r.Throttle(); ok {
					row.Throttle = &throttleRow{Rate: th.Rate, Per: th.Per.String(), Burst: th.Burst, Bucket: th.Bucket, Cost: th.Cost, MessageCost: th.MessageCost}
				}
				row.NoRenewal = r.NoRenewal()
				row.MaxStreams, _ = r.MaxStreams()
				if f := r.TokenField(); f != nil {
					row.TokenField = string(f.Name())
				}
			}
			rows = append(rows, row)
		}
	}
	slices.SortFunc(rows, func(a, b ruleRow) int { return strings.Compare(a.Method, b.Method) })
	return rows
}

func kindOf(m grpc.MethodInfo) string {
	switch {
	case m.IsClientStream && m.IsServerStream:
		return "bidi_stream"
	case m.IsClientStream:
		return "client_stream"
	case m.IsServerStream:
		return "server_stream"
	}
	return "unary"
}

func writeJSON(w io.Writer, rows []ruleRow) error {
	if rows == nil {
		rows = []ruleRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(rows)
}

// cells renders a row as the columns of the table and markdown formats.
func (r ruleRow) cells() []string {
	access, perms, owner, thr, renew := "token", "-", "-", "-", "renews"
	switch {
	case !r.HasRule:
		access, renew = "DENIED (no rule)", "-"
	case r.Public:
		access, renew = "public", "-"
	}
	var p []string
	if len(r.Permissions) > 0 {
		p = append(p, "all of "+strings.Join(r.Permissions, ", "))
	}
	if len(r.AnyPermissions) > 0 {
		p = append(p, "any of "+strings.Join(r.AnyPermissions, " | "))
	}
	if len(p) > 0 {
		perms = strings.Join(p, "; ")
	}
	var o []string
	for _, ow := range r.Ownership {
		s := ow.Field + " = claim " + ow.Claim
		if len(ow.BypassPermissions) > 0 {
			s += " (bypass: " + strings.Join(ow.BypassPermissions, ", ") + ")"
		}
		o = append(o, s)
	}
	if len(o) > 0 {
		owner = strings.Join(o, "; ")
	}
	if t := r.Throttle; t != nil {
		bucket := "bucket " + t.Bucket
		if t.Bucket == r.Method {
			bucket = "own bucket" // the default: one per method
		}
		thr = fmt.Sprintf("%d/%s burst %d %s cost %d", t.Rate, t.Per, t.Burst, bucket, t.Cost)
		if r.Kind == "client_stream" || r.Kind == "bidi_stream" {
			thr += fmt.Sprintf(" message cost %d", t.MessageCost)
		}
	}
	if r.NoRenewal {
		renew = "no_renewal"
	}
	kind := strings.ReplaceAll(r.Kind, "_", " ")
	out := []string{r.Method, kind, access, perms, owner, thr, renew}
	for i := range out {
		out[i] = printable(out[i])
	}
	return out
}

var header = []string{"METHOD", "KIND", "ACCESS", "PERMISSIONS", "OWNERSHIP", "THROTTLE", "RENEWAL"}

func writeTable(w io.Writer, rows []ruleRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	return tw.Flush()
}

func writeMarkdown(w io.Writer, rows []ruleRow) error {
	titles := []string{"Method", "Kind", "Access", "Permissions", "Ownership", "Throttle", "Renewal"}
	var b strings.Builder
	b.WriteString("| " + strings.Join(titles, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(titles)) + "\n")
	for _, r := range rows {
		c := r.cells()
		for i := range c {
			c[i] = strings.ReplaceAll(c[i], `\`, `\\`)
			c[i] = strings.ReplaceAll(c[i], "|", `\|`)
		}
		c[0] = "`" + c[0] + "`"
		b.WriteString("| " + strings.Join(c, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printable replaces what a terminal might interpret (and tabs, which would
// break the table's columns) with '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}
