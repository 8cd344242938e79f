package token

import (
	"errors"
	"fmt"
)

// KeySet is the set of keys a [Verifier] accepts, by kid. The first key that
// can sign is the current signing key (used to issue and renew tokens); the
// others stay for verification during a rotation's overlap.
//
// A KeySet is immutable; rotate by building a new one and passing it to
// [Verifier.SetKeys].
type KeySet struct {
	byID    map[string]*Key
	keys    []*Key
	signing *Key
}

// ErrKeySet reports a key set that cannot be built.
var ErrKeySet = errors.New("token: invalid key set")

// NewKeySet returns a key set of keys. It needs at least one key; kids must
// be unique; when the set holds more than one key every key needs a kid, and
// tokens must then name one.
func NewKeySet(keys ...*Key) (*KeySet, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key configured (tollgate has no default key)", ErrKeySet)
	}
	ks := &KeySet{byID: make(map[string]*Key, len(keys)), keys: make([]*Key, 0, len(keys))}
	for i, k := range keys {
		if k == nil {
			return nil, fmt.Errorf("%w: key %d is nil", ErrKeySet, i)
		}
		if len(keys) > 1 && k.id == "" {
			return nil, fmt.Errorf("%w: key %d has no kid; every key of a set of several needs one", ErrKeySet, i)
		}
		if _, dup := ks.byID[k.id]; dup {
			return nil, fmt.Errorf("%w: kid %q appears twice", ErrKeySet, k.id)
		}
		ks.byID[k.id] = k
		ks.keys = append(ks.keys, k)
		if ks.signing == nil && k.CanSign() {
			ks.signing = k
		}
	}
	return ks, nil
}

// Keys returns the keys of the set, in the order given.
func (ks *KeySet) Keys() []*Key { return append([]*Key(nil), ks.keys...) }

// SigningKey returns the current signing key: the first key of the set that
// can sign. It reports false for a verify-only set.
func (ks *KeySet) SigningKey() (*Key, bool) { return ks.signing, ks.signing != nil }

// lookup resolves the key a token names. An empty kid resolves only in a set
// of one key; a kid never resolves to a key with another kid.
func (ks *KeySet) lookup(kid []byte) *Key {
	if len(kid) == 0 {
		if len(ks.keys) == 1 {
			return ks.keys[0]
		}
		return nil
	}
	return ks.byID[string(kid)]
}

// holds reports whether the set still holds key k with the same material.
func (ks *KeySet) holds(k *Key) bool {
	cur := ks.byID[k.id]
	return cur != nil && (cur == k || cur.fingerprint == k.fingerprint && cur.alg == k.alg)
}
