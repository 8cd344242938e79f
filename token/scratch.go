package token

import (
	"context"
	"sync"
	"time"
)

// scratch is the working memory of one verification, pooled so that a
// miss allocates none of it and no deep frame holds a large array: a
// request goroutine starts with a small stack, and a frame that outgrows it
// makes every call pay for copying the stack.
type scratch struct {
	tok    []byte // the token, copied: the signing input and the segments to decode
	dot1   int    // where its dots are
	dot2   int
	ctx    context.Context // the verification's, for a key source that fetches
	iss    *issuer         // the issuer the token names
	read   bool            // the claim set is decoded and parsed (into data, claims)
	hbuf   []byte          // the decoded header
	key    *Key            // the key of ks the header names
	now    time.Time       // the clock reading the claims are checked at
	data   []byte          // the decoded claim set, in buf
	buf    []byte          // the decoded claim set
	sig    []byte          // the decoded signature
	mac    [64]byte        // the HMAC computed
	digest [48]byte        // the message digest an ECDSA signature signs
	der    [104]byte       // that signature's ASN.1 form, for ecdsa.VerifyASN1
	claims claimSet
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// maxPooledBytes is the largest buffer a scratch keeps when it goes back to
// the pool: a rare 64 KiB token is not held on to forever.
const maxPooledBytes = 16 << 10

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	sc.claims.reset()
	sc.ctx, sc.iss, sc.key, sc.data, sc.read = nil, nil, nil, nil, false
	if cap(sc.tok) > maxPooledBytes {
		sc.tok = nil
	}
	if cap(sc.hbuf) > maxPooledBytes {
		sc.hbuf = nil
	}
	if cap(sc.buf) > maxPooledBytes {
		sc.buf = nil
	}
	if cap(sc.sig) > maxPooledBytes {
		sc.sig = nil
	}
	scratchPool.Put(sc)
}
