package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/redisstore"
	"github.com/tollgate/tollgate/token"
)

// revokeTimeout bounds the whole write to Redis.
const revokeTimeout = 10 * time.Second

// revoke implements "tollgate revoke -redis HOST:PORT (-jti ID | -sid ID |
// -sub ID | -consumer ID | -ref REF) [-before RFC3339] [-max-lifetime D]
// [-max-session D] [-leeway D] [-prefix P]".
func revoke(e *env, args []string) int {
	fs := newFlagSet("revoke")
	addr := fs.String("redis", "", "Redis HOST:PORT the replicas follow")
	targets := []struct {
		kind token.RevocationKind
		v    *string
	}{
		{token.RevokeToken, fs.String("jti", "", "revoke the token with this jti")},
		{token.RevokeSession, fs.String("sid", "", "revoke the session: every token of this sid, renewals included")},
		{token.RevokeSubject, fs.String("sub", "", "revoke every token of this subject issued before -before (default now)")},
		{token.RevokeConsumer, fs.String("consumer", "", "revoke every token of this consumer (azp) issued before -before (default now)")},
		{token.RevokeRef, fs.String("ref", "", "revoke the token with this log reference (the ref of the guard's log lines)")},
	}
	before := fs.String("before", "", "RFC 3339 time: tokens issued before it are revoked (sub, consumer; sid optionally)")
	lim := token.DefaultRevocationLimits()
	fs.DurationVar(&lim.MaxLifetime, "max-lifetime", lim.MaxLifetime, "the verifiers' maximum token lifetime")
	fs.DurationVar(&lim.MaxSession, "max-session", lim.MaxSession, "the verifiers' maximum session")
	fs.DurationVar(&lim.Leeway, "leeway", lim.Leeway, "the verifiers' clock leeway")
	prefix := fs.String("prefix", "tollgate", "prefix of the revocation keys in Redis")
	if code, ok := e.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return e.fail(exitUsage, "revoke: unexpected argument after the flags")
	}
	if *addr == "" {
		return e.fail(exitUsage, "revoke: missing required flag: -redis HOST:PORT")
	}
	if host, _, err := net.SplitHostPort(*addr); err != nil {
		return e.fail(exitUsage, "revoke: -redis: want HOST:PORT")
	} else if token.Redact(host) != host {
		return e.fail(exitUsage, "revoke: -redis: the host looks like key material or a token")
	}
	var kind token.RevocationKind
	var value string
	given := 0
	fs.Visit(func(f *flag.Flag) {
		for _, t := range targets {
			if f.Name == string(t.kind) {
				given++
				kind, value = t.kind, *t.v
			}
		}
	})
	if given != 1 {
		return e.fail(exitUsage, "revoke: give exactly one of -jti, -sid, -sub, -consumer or -ref")
	}
	if value == "" {
		return e.fail(exitUsage, "revoke: -%s: empty", kind)
	}
	var at time.Time
	if *before != "" {
		t, err := time.Parse(time.RFC3339, *before)
		if err != nil {
			return e.fail(exitUsage, "revoke: -before: want an RFC 3339 time such as 2031-03-04T05:06:07Z")
		}
		if kind == token.RevokeToken || kind == token.RevokeRef {
			return e.fail(exitUsage, "revoke: -before: a -%s revocation covers one token and takes no before time", kind)
		}
		at = t
	}
	switch {
	case lim.MaxLifetime <= 0:
		return e.fail(exitUsage, "revoke: -max-lifetime: must be positive")
	case lim.MaxSession <= 0:
		return e.fail(exitUsage, "revoke: -max-session: must be positive")
	case lim.Leeway < 0:
		return e.fail(exitUsage, "revoke: -leeway: must not be negative")
	}
	r, err := token.NewRevocation(kind, value, at, e.now(), lim)
	if err != nil {
		// Validate's errors name the kind, never the value.
		return e.fail(exitUsage, "revoke: %v", err)
	}

	client := redis.NewClient(&redis.Options{Addr: *addr, ContextTimeoutEnabled: true, DisableIdentity: true})
	defer client.Close()
	store, err := redisstore.NewRevocationStore(client, redisstore.WithKeyPrefix(*prefix))
	if err != nil {
		return e.fail(exitUsage, "revoke: -prefix: must be non-empty and free of braces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if err := store.Revoke(ctx, r); err != nil {
		if errors.Is(err, redisstore.ErrRevocationExpired) {
			return e.fail(exitFail, "revoke: the entry has already expired by the Redis server's clock (check -before and the limits)")
		}
		return e.fail(exitFail, "revoke: writing to the Redis at -redis: %v", err)
	}
	fmt.Fprintf(e.stdout, "revoked %s\n", r)
	return exitOK
}
