package redisstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/redisstore"
	"github.com/tollgate/tollgate/throttle"
)

func ExampleNewLimiter() {
	// The client must honour context deadlines, so that a hung Redis
	// cannot hold calls beyond their deadline.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	limiter, err := redisstore.NewLimiter(client)
	if err != nil {
		panic(err)
	}
	// Every replica calling this shares the bucket tollgate:{billing}:orders.
	d, err := limiter.Allow(context.Background(), throttle.Key{Consumer: "billing", Bucket: "orders"}, throttle.PerSecond(5, 10), 1)
	fmt.Println(d.Allowed, d.Remaining, err)
}

// A Failover around the Redis limiter says what happens while Redis is
// away: here each replica enforces the limit on its own traffic, and three
// failures in a row stop Redis being asked for a second.
func ExampleNewLimiter_failover() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	shared, err := redisstore.NewLimiter(client)
	if err != nil {
		panic(err)
	}
	limiter, err := throttle.NewFailover(shared, throttle.FailLocal,
		throttle.WithFailoverTimeout(50*time.Millisecond),
		throttle.WithFailoverBreaker(3, time.Second),
		throttle.WithFailoverStateChange(func(open bool) { fmt.Println("redis limiter breaker open:", open) }))
	if err != nil {
		panic(err)
	}
	d, err := limiter.Allow(context.Background(), throttle.Key{Consumer: "billing", Bucket: "orders"}, throttle.PerSecond(5, 10), 1)
	fmt.Println(d.Allowed, d.Source, err)
}
