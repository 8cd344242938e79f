package token

import (
	"errors"
	"unicode/utf8"
)

// ErrUnreadable reports a token whose claims cannot be read.
var ErrUnreadable = errors.New("token: token claims unreadable")

// UnverifiedClaims returns the registered claims of tok (iss, sub, aud,
// exp, nbf, iat, jti, sid, azp, auth_time, perms, and cnf's x5t#S256 as
// CertThumbprint) WITHOUT verifying its
// signature or any of its claims: for clients, which hold no keys, to check
// that a token they were handed continues the session of the one they
// hold. Never base a security decision on it alone: anyone can write a
// token that reads well here. Custom claims are not returned (Extra is
// nil), and a time claim that is absent is the zero time.
//
// The claim set is read as [Verifier.Verify] reads it: the same shape and
// size checks as [Verifier.Verify] (64 KiB at most, base64url segments, two
// dots), no duplicate members (compared case
// folded), no member named like a registered claim in another case, time
// claims as JSON numbers only, and exp required. Any failure is
// ErrUnreadable.
func UnverifiedClaims(tok string) (Claims, error) {
	sc := getScratch()
	defer putScratch(sc)
	data, ok := unverifiedPayload(sc, tok)
	if !ok {
		return Claims{}, ErrUnreadable
	}
	c := &sc.claims
	if parseClaims(data, c) != nil || !c.exp.set {
		return Claims{}, ErrUnreadable
	}
	text := string(data)
	var aud, perms []string
	if len(c.aud) > 0 {
		aud = make([]string, len(c.aud))
		for i := range c.aud {
			aud[i] = c.aud[i].in(text)
		}
	}
	if c.permsSet {
		perms = make([]string, len(c.perms))
		for i := range c.perms {
			perms[i] = c.perms[i].in(text)
		}
	}
	return Claims{
		Issuer:          c.iss.in(text),
		Subject:         c.sub.in(text),
		Audience:        aud,
		IssuedAt:        c.iat.t,
		NotBefore:       c.nbf.t,
		ExpiresAt:       c.exp.t,
		AuthTime:        c.authTime.t,
		ID:              c.jti.in(text),
		SessionID:       c.sid.in(text),
		AuthorizedParty: c.azp.in(text),
		CertThumbprint:  c.x5t.in(text),
		Permissions:     perms,
	}, nil
}

// unverifiedPayload checks tok's size and shape and returns its decoded
// claim set (in sc), which is valid UTF-8; the header and signature are
// not read.
func unverifiedPayload(sc *scratch, tok string) ([]byte, bool) {
	if len(tok) == 0 || len(tok) > MaxTokenSizeLimit {
		return nil, false
	}
	dot1, dot2, err := splitCompact(tok)
	if err != nil {
		return nil, false
	}
	sc.tok = append(sc.tok[:0], tok[dot1+1:dot2]...)
	data, ok := decodeInto(&sc.buf, sc.tok)
	if !ok || !utf8.Valid(data) {
		return nil, false
	}
	return data, true
}
