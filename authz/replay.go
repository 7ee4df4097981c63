package authz

import (
	"sync"
	"time"
)

// ReplayCache remembers the token IDs (iss + jti) used for single_use profiles until
// they expire. Use reports whether key may be used now and records it until until;
// it must be safe for concurrent use and must fail closed (return false) when it
// cannot record. The default is in memory and per process: several replicas behind a
// load balancer need a shared implementation.
type ReplayCache interface {
	Use(key string, until, now time.Time) bool
}

// DefaultReplayCacheSize bounds the in-memory cache; when it is full of unexpired
// entries single_use requests are denied rather than forgotten.
const DefaultReplayCacheSize = 1 << 20

// MemoryReplayCache is the default ReplayCache.
type MemoryReplayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
}

// NewMemoryReplayCache returns a cache holding at most max unexpired entries.
func NewMemoryReplayCache(max int) *MemoryReplayCache {
	if max <= 0 {
		max = DefaultReplayCacheSize
	}
	return &MemoryReplayCache{max: max, seen: map[string]time.Time{}}
}

// Use implements ReplayCache.
func (c *MemoryReplayCache) Use(key string, until, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[key]; ok && now.Before(exp) {
		return false
	}
	if len(c.seen) >= c.max {
		for k, exp := range c.seen {
			if !now.Before(exp) {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= c.max {
			return false
		}
	}
	c.seen[key] = until
	return true
}
