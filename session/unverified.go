package session

import (
	"errors"
	"time"
	"unicode/utf8"
)

// ErrUnreadable reports a token whose expiry cannot be read.
var ErrUnreadable = errors.New("session: token expiry unreadable")

// UnverifiedExpiry reads the exp claim of tok WITHOUT verifying anything
// else: for clients, which hold no keys, to pick the later-expiring of two
// tokens they were handed. Never base a security decision on it. The same
// shape and size checks as [Verifier.Verify] apply (64 KiB at most,
// base64url segments, two dots), and exp must be a JSON number.
func UnverifiedExpiry(tok string) (time.Time, error) {
	if len(tok) == 0 || len(tok) > MaxTokenSizeLimit {
		return time.Time{}, ErrUnreadable
	}
	dot1, dot2, err := splitCompact(tok)
	if err != nil {
		return time.Time{}, ErrUnreadable
	}
	data, ok := decodeSegment(tok[dot1+1:dot2], nil)
	if !ok || !utf8.Valid(data) {
		return time.Time{}, ErrUnreadable
	}
	var arr [16]member
	members, ok := scanObject(data, arr[:0])
	if !ok {
		return time.Time{}, ErrUnreadable
	}
	var exp numericDate
	found := false
	for _, m := range members {
		if string(m.key) != "exp" {
			continue
		}
		if found || exp.UnmarshalJSON(m.value) != nil {
			return time.Time{}, ErrUnreadable
		}
		found = true
	}
	if !found {
		return time.Time{}, ErrUnreadable
	}
	return exp.t, nil
}
