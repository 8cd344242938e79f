// Package session carries the verified caller of a call: a [Session], the
// claims of a token that passed every check of the verifier (package
// token's Verifier), through a context ([NewContext], [FromContext], and
// [Carrier] for a context embedded in a struct allocated anyway).
//
// Only the verifier builds a Session with a subject, permissions or
// claims; every field is unexported, so the one Session other code can
// make is the zero Session, which holds nothing: no subject, no
// permission, no claim, and valid until the zero time.
//
// [Fingerprint] digests a jti or a token for logs without revealing it;
// [Session.String] shows the jti that way.
//
// This package imports no other tollgate package and knows no transport.
package session
