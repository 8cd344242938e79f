package oteltollgate

import "strings"

// spaceSaving keeps the k keys seen most often in a stream, in k counters
// (Metwally, Agrawal and El Abbadi, "Efficient computation of frequent and
// top-k elements in data streams", 2005): a key already kept counts up; a
// new key takes a free counter, or else replaces the key with the smallest
// count, inheriting that count plus one, with the inherited part noted as
// its possible overestimate. Every key seen more than N/k times of N is
// kept.
//
// It exports each kept key's guaranteed count (count minus overestimate, a
// lower bound on its true count) and the rest of the total as "_other", so
// the exported values always add up to N, "_other" never goes down, and a
// kept key's value never goes down while it is kept. Not safe for
// concurrent use.
type spaceSaving struct {
	k       int
	entries []hhEntry
	index   map[string]int
	total   int64
}

type hhEntry struct {
	key        string
	count, err int64
}

func newSpaceSaving(k int) *spaceSaving {
	return &spaceSaving{k: k, entries: make([]hhEntry, 0, k), index: make(map[string]int, k)}
}

// add counts one more of key. The linear scan for the minimum suits the
// small k of a metrics label set; it runs only when a new key displaces one.
func (s *spaceSaving) add(key string) {
	s.total++
	if i, ok := s.index[key]; ok {
		s.entries[i].count++
		return
	}
	key = strings.Clone(key) // not a slice of a larger string held for ever
	if len(s.entries) < s.k {
		s.index[key] = len(s.entries)
		s.entries = append(s.entries, hhEntry{key: key, count: 1})
		return
	}
	m := 0
	for i := range s.entries {
		if s.entries[i].count < s.entries[m].count {
			m = i
		}
	}
	minCount := s.entries[m].count
	delete(s.index, s.entries[m].key)
	s.entries[m] = hhEntry{key: key, count: minCount + 1, err: minCount}
	s.index[key] = m
}

// each calls f with every kept key and its guaranteed count, and returns
// the rest of the total.
func (s *spaceSaving) each(f func(key string, n int64)) (other int64) {
	other = s.total
	for _, e := range s.entries {
		g := e.count - e.err
		f(e.key, g)
		other -= g
	}
	return other
}
