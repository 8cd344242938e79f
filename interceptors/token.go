package interceptors

import (
	"context"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// tokenProblem says why no usable token was found; its cause goes to logs.
type tokenProblem struct {
	missing bool
	cause   string
}

var (
	problemMissing      = &tokenProblem{missing: true, cause: "no token"}
	problemManyAuth     = &tokenProblem{cause: "more than one authorization value"}
	problemScheme       = &tokenProblem{cause: "authorization is not Bearer <token>"}
	problemTooLarge     = &tokenProblem{cause: "token too large"}
	problemManyHeader   = &tokenProblem{cause: "more than one token header value"}
	problemHeaderValue  = &tokenProblem{cause: "token header value does not start with the token"}
	problemDisagreement = &tokenProblem{cause: "token sources disagree"}
)

// metadataToken reads the token from the incoming metadata: one
// "authorization: Bearer <token>" value, and/or one value of the configured
// header. Sizes are checked before anything else looks at the value.
func (g *Guard) metadataToken(ctx context.Context) (string, *tokenProblem) {
	var tok string
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	switch len(vals) {
	case 0:
	case 1:
		var p *tokenProblem
		if tok, p = g.bearer(vals[0]); p != nil {
			return "", p
		}
	default:
		return "", problemManyAuth
	}
	if g.opts.tokenHeader != "" {
		hv := metadata.ValueFromIncomingContext(ctx, g.opts.tokenHeader)
		switch len(hv) {
		case 0:
		case 1:
			if len(hv[0]) > g.opts.maxMetadataToken {
				return "", problemTooLarge
			}
			if hv[0] == "" {
				return "", problemMissing
			}
			if hv[0][0] == ' ' {
				// The raw token, as after "Bearer ": no leading space.
				return "", problemHeaderValue
			}
			if tok != "" && tok != hv[0] {
				return "", problemDisagreement
			}
			tok = hv[0]
		default:
			return "", problemManyHeader
		}
	}
	return tok, nil
}

// bearer parses "Bearer <token>": the scheme in any case, exactly one space,
// a token with no further spaces (the verifier rejects any character outside
// base64url and dots).
func (g *Guard) bearer(v string) (string, *tokenProblem) {
	const scheme = "bearer "
	if len(v) > len(scheme)+g.opts.maxMetadataToken {
		return "", problemTooLarge
	}
	if len(v) <= len(scheme) {
		return "", problemScheme
	}
	for i := 0; i < len(scheme); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != scheme[i] {
			return "", problemScheme
		}
	}
	tok := v[len(scheme):]
	if tok[0] == ' ' {
		return "", problemScheme
	}
	return tok, nil
}

// bodyToken reads the token field of msg, if the rule has one, and reconciles
// it with a metadata token: both present must be identical.
func (g *Guard) bodyToken(fd protoreflect.FieldDescriptor, msg proto.Message, mdTok string) (string, *tokenProblem) {
	if fd == nil || msg == nil {
		return mdTok, nil
	}
	m := msg.ProtoReflect()
	if md := m.Descriptor(); md != fd.ContainingMessage() {
		// The same message from another registry: resolve by number.
		if md.FullName() != fd.ContainingMessage().FullName() {
			return mdTok, nil
		}
		if fd = md.Fields().ByNumber(fd.Number()); fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
			return mdTok, nil
		}
	}
	body := m.Get(fd).String()
	if body == "" {
		return mdTok, nil
	}
	if len(body) > g.opts.maxBodyToken {
		return "", problemTooLarge
	}
	if mdTok != "" && mdTok != body {
		return "", problemDisagreement
	}
	return body, nil
}
