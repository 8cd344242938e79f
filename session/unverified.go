package session

import (
	"errors"
	"unicode/utf8"
)

// ErrUnreadable reports a token whose claims cannot be read.
var ErrUnreadable = errors.New("session: token claims unreadable")

// UnverifiedClaims returns the registered claims of tok (iss, sub, aud,
// exp, nbf, iat, jti, sid, azp, auth_time, perms) WITHOUT verifying its
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
	data, ok := unverifiedPayload(tok)
	if !ok {
		return Claims{}, ErrUnreadable
	}
	var c tokenClaims
	if parseClaims(data, &c) != nil || !c.ExpiresAt.set {
		return Claims{}, ErrUnreadable
	}
	return Claims{
		Issuer:          c.Issuer,
		Subject:         c.Subject,
		Audience:        []string(c.Audience),
		IssuedAt:        c.IssuedAt.t,
		NotBefore:       c.NotBefore.t,
		ExpiresAt:       c.ExpiresAt.t,
		AuthTime:        c.AuthTime.t,
		ID:              c.ID,
		SessionID:       c.SID,
		AuthorizedParty: c.AZP,
		Permissions:     c.Perms,
	}, nil
}

// unverifiedPayload checks tok's size and shape and returns its decoded
// claim set, which is valid UTF-8; the header and signature are not read.
func unverifiedPayload(tok string) ([]byte, bool) {
	if len(tok) == 0 || len(tok) > MaxTokenSizeLimit {
		return nil, false
	}
	dot1, dot2, err := splitCompact(tok)
	if err != nil {
		return nil, false
	}
	data, ok := decodeSegment(tok[dot1+1:dot2], nil)
	if !ok || !utf8.Valid(data) {
		return nil, false
	}
	return data, true
}
