package oteltollgate

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/interceptors"
	"github.com/tollgate/tollgate/token"
)

// The revocation feed's reports, through a real guard, reach the
// Prometheus exposition: tollgate_revocations_events_total by event, and
// tollgate_revocations_stale 1 while the feed is stale, 0 once it catches
// up.
func TestRevocationFeedMetrics(t *testing.T) {
	mp, url := promProvider(t)
	m, err := New(mp)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unregister()
	revs := token.NewRevocations()
	defer revs.Close()
	_, v := signerAndVerifier(t, time.Now, token.WithRevocations(revs))
	guardedServer(t, v, m, interceptors.WithLenientInit())

	stale := func() float64 { return value(scrape(t, url), "tollgate_revocations_stale", nil) }
	events := func(ev string) float64 {
		return value(scrape(t, url), "tollgate_revocations_events_total", map[string]string{"tollgate_revocations_event": ev})
	}
	if got := stale(); got != 0 {
		t.Fatalf("stale before any report = %v", got)
	}
	revs.Report(token.RevocationEvent{Source: "redis x", Kind: token.RevocationsLoaded})
	revs.Report(token.RevocationEvent{Source: "redis x", Kind: token.RevocationsStale, Err: errors.New("connection refused")})
	if got := stale(); got != 1 {
		t.Fatalf("stale after a stale report = %v", got)
	}
	revs.Report(token.RevocationEvent{Source: "redis x", Kind: token.RevocationsCaughtUp})
	if got := stale(); got != 0 {
		t.Fatalf("stale after catching up = %v", got)
	}
	for _, ev := range []string{"loaded", "stale", "caught_up"} {
		if got := events(ev); got != 1 {
			t.Errorf("%s events = %v, want 1", ev, got)
		}
	}
}
