// Package redisstore keeps tollgate's shared state in Redis: [Limiter], a
// throttle.Limiter whose token buckets every replica of a service shares
// (one Lua script per decision, on the Redis server's clock), and the
// revocations every replica enforces: [RevocationStore] writes them,
// [FollowRevocations] keeps a token.Revocations in step with them.
//
// It is a package of its own so that a program that uses no Redis (a
// client, a single-replica service throttling in memory) links no
// go-redis: throttle, session, permissions and interceptors never
// import it. Wrap a Limiter in a throttle.Failover to say what happens when
// Redis does not answer, and pass it to the guard with
// interceptors.WithLimiter:
//
//	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
//	shared, err := redisstore.NewLimiter(client)
//	...
//	limiter, err := throttle.NewFailover(shared, throttle.FailLocal,
//		throttle.WithFailoverTimeout(50*time.Millisecond))
//	...
//	guard, err := interceptors.NewGuard(verifier, interceptors.WithLimiter(limiter))
//
// Revocations, followed by every replica and written by any (tollgate
// revoke, or a service's own code):
//
//	set := token.NewRevocations()
//	verifier, err := token.NewVerifier(keys, issuer, audience, token.WithRevocations(set))
//	...
//	feed, err := redisstore.FollowRevocations(ctx, feedClient, set)
//	...
//	defer feed.Close()
//
//	store, err := redisstore.NewRevocationStore(client)
//	...
//	r, err := token.NewRevocation(token.RevokeSession, sid, time.Time{}, time.Now(), verifier.RevocationLimits())
//	...
//	err = store.Revoke(ctx, r)
package redisstore
