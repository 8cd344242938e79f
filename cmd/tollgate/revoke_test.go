package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/session"
	"github.com/tollgate/tollgate/token"
)

const (
	revSet  = "tollgate:{revocations}:set"
	revFeed = "tollgate:{revocations}:feed"
)

// digits19 formats t as the store does: 19 digits of ns since the epoch.
func digits19(t time.Time) string { return fmt.Sprintf("%019d", t.UnixNano()) }

const everyToken = "9223372036854775807"

// Each kind writes the entry token.NewRevocation computes, to the hash and
// to the feed, and prints one line that holds no raw jti or sid.
func TestRevokeWrites(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	lim := token.DefaultRevocationLimits()
	before := fixedNow.Add(-time.Hour)
	for _, tc := range []struct {
		flag, value string
		extra       []string
		field, v    string
		out         string
	}{
		{"jti", "jti-secret-1", nil, "jti:jti-secret-1", everyToken + "/" + digits19(fixedNow.Add(lim.MaxLifetime+lim.Leeway)),
			"revoked jti " + session.Fingerprint("jti-secret-1") + " until 2031-03-04T06:06:37Z"},
		{"sid", "sid-secret-1", nil, "sid:sid-secret-1", everyToken + "/" + digits19(fixedNow.Add(lim.MaxSession+lim.Leeway)),
			"revoked sid " + session.Fingerprint("sid-secret-1") + " until 2031-03-04T13:06:37Z"},
		{"sub", "alice", nil, "sub:alice", digits19(fixedNow) + "/" + digits19(fixedNow.Add(lim.MaxLifetime+lim.Leeway)),
			"revoked sub alice before 2031-03-04T05:06:07Z until 2031-03-04T06:06:37Z"},
		{"consumer", "billing", []string{"-before", before.Format(time.RFC3339), "-max-lifetime", "2h", "-leeway", "0s"},
			"consumer:billing", digits19(before) + "/" + digits19(fixedNow.Add(2*time.Hour)),
			"revoked consumer billing before 2031-03-04T04:06:07Z until 2031-03-04T07:06:07Z"},
		{"ref", "0123456789abcdef", nil, "ref:0123456789abcdef", everyToken + "/" + digits19(fixedNow.Add(lim.MaxLifetime+lim.Leeway)),
			"revoked ref 0123456789abcdef until 2031-03-04T06:06:37Z"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			r := runCLI(t, append([]string{"revoke", "-redis", srv.Addr(), "-" + tc.flag, tc.value}, tc.extra...)...)
			mustSucceed(t, r)
			if r.stdout != tc.out+"\n" {
				t.Errorf("stdout %q, want %q", r.stdout, tc.out+"\n")
			}
			if tc.flag == "jti" || tc.flag == "sid" {
				if strings.Contains(r.stdout, tc.value) {
					t.Errorf("stdout %q holds the raw %s", r.stdout, tc.flag)
				}
			}
			if got := c.HGet(ctx, revSet, tc.field).Val(); got != tc.v {
				t.Errorf("hash field %s = %q, want %q", tc.field, got, tc.v)
			}
			msgs := c.XRevRangeN(ctx, revFeed, "+", "-", 1).Val()
			if len(msgs) != 1 || msgs[0].Values["f"] != tc.field || msgs[0].Values["v"] != tc.v {
				t.Errorf("last feed entry %v, want f=%s v=%s", msgs, tc.field, tc.v)
			}
		})
	}
}

func TestRevokeUsage(t *testing.T) {
	srv := redistest.Start(t)
	a := srv.Addr()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"-redis", a}, "exactly one of"},
		{"two targets", []string{"-redis", a, "-jti", "j", "-sid", "s"}, "exactly one of"},
		{"empty", []string{"-redis", a, "-sid", ""}, "-sid: empty"},
		{"no redis", []string{"-sid", "s"}, "missing required flag: -redis"},
		{"bad redis", []string{"-redis", "nocolon", "-sid", "s"}, "-redis: want HOST:PORT"},
		{"bad before", []string{"-redis", a, "-sub", "s", "-before", "yesterday"}, "-before: want an RFC 3339 time"},
		{"before on jti", []string{"-redis", a, "-jti", "j", "-before", "2031-03-04T05:06:07Z"}, "takes no before time"},
		{"bad lifetime", []string{"-redis", a, "-jti", "j", "-max-lifetime", "0s"}, "-max-lifetime: must be positive"},
		{"bad leeway", []string{"-redis", a, "-jti", "j", "-leeway", "-1s"}, "-leeway: must not be negative"},
		{"bad prefix", []string{"-redis", a, "-jti", "j", "-prefix", "{x}"}, "-prefix"},
		{"argument", []string{"-redis", a, "-jti", "j", "extra"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"revoke"}, tc.args...)...)
			mustFailUsage(t, r, tc.want)
		})
	}
	if n := srv.Client().Exists(context.Background(), revSet).Val(); n != 0 {
		t.Error("a usage error wrote to Redis")
	}
}

// A Redis that cannot be written is exit 1, with an error that holds
// neither the jti nor the sid.
func TestRevokeRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	const secret = "sid-never-print-me"
	r := runCLI(t, "revoke", "-redis", srv.Addr(), "-sid", secret)
	if r.code != exitFail || r.stdout != "" {
		t.Errorf("exit %d stdout %q, want exit 1 and nothing", r.code, r.stdout)
	}
	checkOneLine(t, r.stderr, "revoke: writing to the Redis at -redis")
	if strings.Contains(r.stderr, secret) {
		t.Errorf("stderr %q holds the sid", r.stderr)
	}
	// An entry already expired by Redis's clock: the CLI's clock is far
	// behind (its entry computed for 2001 expires long before now).
	srv.Restart()
	r = runAt(t, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), "", "revoke", "-redis", srv.Addr(), "-jti", secret)
	if r.code != exitFail || strings.Contains(r.stderr, secret) {
		t.Errorf("expired entry: exit %d stderr %q, want exit 1 without the jti", r.code, r.stderr)
	}
	checkOneLine(t, r.stderr, "already expired")
}
