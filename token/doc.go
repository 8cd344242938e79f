// Package token verifies and signs the stateless access tokens that
// services present to each other; the verified caller it returns is a
// [session.Session], which package session carries through a context.
//
// # Model
//
// Every call carries a compact JWS (a JWT) signed by an issuer. A [Verifier]
// checks it locally, with no session store and no network hop, against a
// [KeySet]: each [Key] has an ID (kid) and exactly one algorithm, and the
// token's header must name both. What a token must satisfy follows RFC 8725
// and the OWASP JWT guidance, strictly by default:
//
//   - size (8 KiB unless configured) and alphabet are checked before any
//     decoding: base64url characters and exactly two dots;
//   - the header may hold only alg, kid and typ; typ must be at+jwt; the alg
//     must equal the algorithm of the key the kid names ("none" never does);
//   - header and claims are strict base64url, valid UTF-8, JSON objects
//     without duplicate members;
//   - exp is required; iat may not be in the future; nbf is honoured; iss and
//     aud must match exactly; exp - iat may not exceed the maximum lifetime
//     (1 h by default); sub and jti are required; all with a leeway of 30 s
//     (at most 2 min);
//   - a token whose auth_time is more than the maximum session (8 h) ago is
//     rejected.
//
// Verified tokens are cached by their exact text, bounded by entries and
// bytes, and never served past their expiry; a cache hit costs a hash and a
// map lookup instead of a signature check. Replacing the key set
// ([Verifier.SetKeys]) is atomic and drops the cached tokens of keys that left
// the set.
//
// # Issuers, profiles and key sources
//
// [NewVerifier] trusts one issuer of tollgate's own tokens, as strictly as
// above. [NewVerifierFor] trusts several [Issuer]s, each with its own
// [KeySource], audiences and [Profile]. The token's iss picks the issuer
// before anything else (with several issuers the claim set is read, not
// trusted, before the signature), and only that issuer's keys verify it; an
// iss the verifier does not know is refused without a key lookup.
//
// A profile says what one provider's tokens look like: the typ values they
// carry (at+jwt, JWT, none), the header members tolerated but never used to
// find a key (x5t, x5t#S256 only: crit, jku, x5u, jwk, x5c, zip and enc stay
// refused under every profile), whether jti, iat or iss may be absent, the
// longest exp - iat (0: exp alone bounds it, since providers issue tokens of
// their own lifetimes), the claims holding permissions (perms, scope, scp,
// permissions, roles, realm_access.roles, any dotted path; an array of
// strings or a space-separated string) and the claims naming the consumer
// (azp, client_id, appid, cid, sub). [TollgateProfile] is tollgate's own;
// [OIDCProfile] is generic; [KeycloakProfile], [Auth0Profile],
// [OktaProfile], [GoogleProfile], [EntraProfile] and [SPIFFEProfile] follow
// those providers' documented token shapes. Only tokens of a renewable
// profile (tollgate's) are ever renewed by a service, and only they are
// bounded by the maximum session since auth_time.
//
// A [*KeySet] is the static source; a [*JWKS] follows a published key set
// ([NewJWKS], or [Discover] through OpenID Connect discovery). The verifier
// holds each issuer's current set in an atomic pointer, so a remote source
// costs a verification nothing while its token's key is known. A kid the
// set lacks is reported to the source ([KeySource.Unknown]), which may
// refetch, once per interval and in a single flight, waiting a short,
// bounded time; a set the source adopts replaces the old one, and the
// cached tokens of keys that left it are dropped. [Verifier.ObserveKeys]
// reports what the sources do.
//
// A [*Revocations] set takes tokens back without giving up local
// verification ([WithRevocations]): one token ([RevokeToken], [RevokeRef]),
// a session and all its renewals ([RevokeSession]), or a subject's or
// consumer's tokens issued before a time ([RevokeSubject],
// [RevokeConsumer]). Every verification checks it, cache hits included, for
// the price of a pointer load and a map lookup per kind of entry it holds;
// a covered token fails with [ErrRevokedToken]. Entries expire when no
// token they cover can still be valid ([NewRevocation] computes when, from
// [Verifier.RevocationLimits]). The set is fed directly in one process, or
// from a shared store every replica follows (package redisstore).
//
// Errors say why a token failed in fixed words ([VerifyError.Cause]) and never
// contain the token or any part of it. The key loaders' errors never contain
// the path, the file's content, the variable's value or the algorithm they
// were given. [Redact] cuts what looks like a token or key material out of
// any other text, for the place where a program prints its errors.
//
// # Certificate-bound tokens
//
// A token whose cnf claim holds x5t#S256 (RFC 8705 §3.1: the unpadded
// base64url SHA-256 of a client certificate's DER form) is bound to that
// certificate: its session's CertThumbprint says so, and it is proof of
// its caller only on a mutual-TLS connection with that certificate, which
// the transport checks (package interceptors' guard does, on every call).
// A cnf that is malformed, or holds only confirmation methods tollgate
// cannot check (jkt, jwk, jwe, kid: RFC 7800, RFC 9449), is refused: such a
// token must not pass as a plain bearer token. [Profile.RequireBoundTokens]
// refuses an issuer's unbound tokens. A [Signer] binds a token with
// [Claims.CertThumbprint] ([CertThumbprint] computes it), and a renewal
// keeps the binding.
//
// Only a [Verifier] builds a [session.Session] with a subject, permissions
// or claims: code elsewhere can make only the zero Session, which holds
// nothing and which the verifier's clock finds expired.
//
// This package knows nothing of gRPC: the same [Verifier] serves any
// transport.
package token
