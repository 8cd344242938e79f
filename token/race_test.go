//go:build race

package token

// raceEnabled: the race detector makes sync.Pool drop what is put back at
// random, so allocation counts of pooled paths are not exact under it.
const raceEnabled = true
