// Package tokenservice serves and calls the renew operation of
// tollgate.token.v1.TokenService, and publishes the issuer's keys.
//
// An issuer (the one service that holds the private signing key) registers
// [Server] on a server guarded by tollgate: the token to renew travels in the
// request's token field, so the guard verifies it in full (signature, expiry,
// audience, maximum session) before Renew runs. Services that hold only
// public keys renew through a [RemoteRenewer], which the guard calls
// asynchronously and best effort: a slow or dead issuer costs the call
// nothing, because the renewal is time-boxed and the guard never waits for it
// beyond its configured grace.
//
// The issuer publishes its public keys over HTTP with [NewKeysHandler]: a
// JWK Set and an OpenID discovery document, from which services verify its
// tokens without key files, following its rotations.
package tokenservice
