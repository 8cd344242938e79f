// Package redisstore keeps tollgate's shared state in Redis: [Limiter], a
// throttle.Limiter whose token buckets every replica of a service shares
// (one Lua script per decision, on the Redis server's clock).
//
// It is a package of its own so that a program that uses no Redis (a
// client, a single-replica service throttling in memory, the tollgate CLI)
// links no go-redis: throttle, session, permissions and interceptors never
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
package redisstore
