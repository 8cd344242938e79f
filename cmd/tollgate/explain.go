package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/permissions"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

// maxRequestJSON bounds the request read from -request @FILE.
const maxRequestJSON = 4 << 20

// explain runs "tollgate explain": would this call pass, and why.
func explain(e *env, args []string) int {
	fs := newFlagSet("explain")
	setPath := fs.String("descriptor-set", "", "binary FileDescriptorSet holding the method and its rule")
	method := fs.String("method", "", "full method name, /package.Service/Method")
	request := fs.String("request", "{}", "the request as JSON, or @FILE to read it from FILE")
	keyPath := fs.String("key", "", "key file to verify the token with")
	alg := fs.String("alg", "", "algorithm the key is bound to")
	iss := fs.String("iss", "", "issuer the token must name")
	aud := fs.String("aud", "", "audience the token must name")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if m := missing(fs, "descriptor-set", "method"); m != "" {
		return e.fail(exitUsage, "explain: missing %s", m)
	}
	if fs.NArg() > 1 {
		return e.fail(exitUsage, "explain: want at most one TOKEN after the flags, got %d arguments", fs.NArg())
	}
	hasToken := fs.NArg() == 1
	if hasToken {
		if m := missing(fs, "key", "alg", "iss", "aud"); m != "" {
			return e.fail(exitUsage, "explain: a TOKEN needs -key, -alg, -iss and -aud; missing %s", m)
		}
		if err := checkAlg(*alg); err != nil {
			return e.fail(exitUsage, "explain: %v", err)
		}
	} else if isSet(fs, "key") || isSet(fs, "alg") || isSet(fs, "iss") || isSet(fs, "aud") {
		return e.fail(exitUsage, "explain: -key, -alg, -iss and -aud verify a TOKEN, and none was given (- reads it from standard input)")
	}

	files, code := e.loadDescriptorSet("explain", *setPath)
	if code != exitOK {
		return code
	}
	infos, err := serviceInfos(files, nil)
	if err != nil {
		return e.fail(exitUsage, "explain: %v", err)
	}
	svc, name, ok := splitMethod(*method)
	if !ok {
		return e.fail(exitUsage, "explain: -method: want /package.Service/Method")
	}
	table, err := interceptors.CompileRules(infos, interceptors.WithRegistry(files, new(protoregistry.Types)), interceptors.WithLenientInit())
	if err != nil {
		return e.failLines(exitFail, "explain", err)
	}

	var tok string
	if hasToken {
		if tok, code = e.tokenArg("explain", fs.Arg(0)); code != exitOK {
			return code
		}
	}
	var v *token.Verifier
	if hasToken {
		if v, code = e.keyFileVerifier("explain", *keyPath, *alg, *iss, *aud); code != exitOK {
			return code
		}
	}

	// The request is parsed before anything is printed, so that a usage
	// error prints nothing on standard output.
	d, err := files.FindDescriptorByName(protoreflect.FullName(svc))
	sd, _ := d.(protoreflect.ServiceDescriptor)
	if err != nil || sd == nil || sd.Methods().ByName(protoreflect.Name(name)) == nil {
		return e.fail(exitUsage, "explain: -method: no such method in the descriptor set")
	}
	req := dynamicpb.NewMessage(sd.Methods().ByName(protoreflect.Name(name)).Input())
	if code := e.readRequest(*request, req); code != exitOK {
		return code
	}

	rule, ok := table.Rule(*method)
	out := func(decision, reason string) {
		fmt.Fprintf(e.stdout, "decision: %s\nreason: %s\n", decision, printable(reason))
	}
	if !ok {
		fmt.Fprintf(e.stdout, "rule: none\n")
		out("denied", permissions.ReasonPermissionDenied+": the method has no rule, and the guard denies what the .proto does not allow")
		return exitFail
	}
	fmt.Fprintf(e.stdout, "rule: %s\n", printable(rule.String()))
	if rule.Public() {
		out("allowed", "public: no token needed")
		e.printThrottle(rule, "the caller's peer address")
		return exitOK
	}
	if !hasToken {
		out("unauthenticated", interceptors.ReasonTokenMissing+": the method needs a token")
		return exitFail
	}

	sess, err := v.Verify(context.Background(), tok)
	if err != nil {
		reason := interceptors.ReasonTokenInvalid
		if errors.Is(err, token.ErrExpiredToken) {
			reason = interceptors.ReasonTokenExpired
		}
		// A *token.VerifyError: fixed words, never any part of the token.
		out("unauthenticated", reason+": "+err.Error())
		return exitFail
	}
	if err := rule.Allow(sess, req); err != nil {
		var de *permissions.DeniedError
		if !errors.As(err, &de) {
			return e.fail(exitFail, "explain: %v", err)
		}
		out("denied", deniedReason(de, rule))
		return exitFail
	}
	out("allowed", allowedReason(rule, sess))
	e.printThrottle(rule, "consumer "+sess.Consumer())
	return exitOK
}

// splitMethod splits "/pkg.Svc/Method".
func splitMethod(full string) (svc, method string, ok bool) {
	rest, ok := strings.CutPrefix(full, "/")
	if !ok {
		return "", "", false
	}
	svc, method, ok = strings.Cut(rest, "/")
	return svc, method, ok && svc != "" && method != "" && !strings.Contains(method, "/")
}

// tokenArg returns the token argument, read from standard input for "-".
func (e *env) tokenArg(cmd, arg string) (string, int) {
	if arg == "-" {
		return e.readToken(cmd, "", "-")
	}
	tok := strings.TrimSpace(arg)
	if tok == "" {
		return "", e.fail(exitUsage, "%s: the token is empty", cmd)
	}
	return tok, exitOK
}

// readRequest parses spec (JSON, or @FILE) into req.
func (e *env) readRequest(spec string, req proto.Message) int {
	data := []byte(spec)
	if path, ok := strings.CutPrefix(spec, "@"); ok {
		f, err := os.Open(path)
		if err != nil {
			return e.fail(exitUsage, "explain: -request: %v", pathless(err))
		}
		defer f.Close()
		data, err = io.ReadAll(io.LimitReader(f, maxRequestJSON+1))
		if err != nil {
			return e.fail(exitUsage, "explain: -request: %v", pathless(err))
		}
		if len(data) > maxRequestJSON {
			return e.fail(exitUsage, "explain: -request: more than %d bytes", maxRequestJSON)
		}
	}
	if err := protojson.Unmarshal(data, req); err != nil {
		return e.fail(exitUsage, "explain: -request: not a JSON %s: %v", req.ProtoReflect().Descriptor().FullName(), err)
	}
	return exitOK
}

func deniedReason(de *permissions.DeniedError, rule *permissions.Rule) string {
	switch {
	case de.Reason == permissions.ReasonNotOwner:
		claim := ""
		for _, o := range rule.Ownership() {
			if o.Field == de.Field {
				claim = o.Claim
				break
			}
		}
		return fmt.Sprintf("%s: request field %s is unset or differs from the token's claim %s", de.Reason, de.Field, claim)
	case de.AnyOf:
		return fmt.Sprintf("%s: the token holds none of %q", de.Reason, strings.Split(de.Permission, ","))
	}
	return fmt.Sprintf("%s: missing %q", de.Reason, de.Permission)
}

func allowedReason(rule *permissions.Rule, sess *session.Session) string {
	parts := []string{"valid token"}
	if p := rule.Permissions(); len(p) > 0 {
		parts = append(parts, fmt.Sprintf("holds all of %q", p))
	}
	if p := rule.AnyPermissions(); len(p) > 0 {
		parts = append(parts, fmt.Sprintf("holds one of %q", p))
	}
	for _, o := range rule.Ownership() {
		bypass := ""
		for _, b := range o.BypassPermissions {
			if sess.Has(b) {
				bypass = b
				break
			}
		}
		if bypass != "" {
			parts = append(parts, fmt.Sprintf("ownership of %s bypassed by %q", o.Field, bypass))
		} else {
			parts = append(parts, fmt.Sprintf("request field %s equals the token's claim %s", o.Field, o.Claim))
		}
	}
	return strings.Join(parts, "; ")
}

// printThrottle says what throttle the call would be charged to.
func (e *env) printThrottle(rule *permissions.Rule, who string) {
	t, ok := rule.Throttle()
	if !ok {
		fmt.Fprintln(e.stdout, "throttle: none declared")
		return
	}
	s := fmt.Sprintf("throttle: %d per %s, burst %d, bucket %s, cost %d", t.Rate, t.Per, t.Burst, t.Bucket, t.Cost)
	if md := rule.Descriptor(); md != nil && md.IsStreamingClient() {
		s += fmt.Sprintf(", message cost %d", t.MessageCost)
	}
	fmt.Fprintln(e.stdout, printable(s+"; charged to "+who))
}
