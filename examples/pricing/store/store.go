// Package store keeps the prices of the pricing example in memory.
//
// It is plain domain code: it knows nothing of gRPC or tokens. It validates
// what it stores and refuses to move a SKU from one seller to another unless
// its caller says the move is authorized; deciding that is the caller's
// business (the server asks tollgate's permission model).
//
// A store holds a bounded number of SKUs, per seller and in all (see
// [Limits]): any writer may add SKUs, and without a bound one writer could
// fill the memory of the process. A full store still replaces the prices it
// holds; only new SKUs are refused, with [ErrFull].
package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Errors the store returns. Every error a Store method returns matches
// exactly one of them with errors.Is.
var (
	// ErrNotFound: no price for that SKU (or not for that seller).
	ErrNotFound = errors.New("price not found")
	// ErrInvalid: the price or the request is not acceptable.
	ErrInvalid = errors.New("invalid price")
	// ErrFull: the price would add a SKU beyond one of the store's
	// [Limits]. The message names the limit, never the seller or the SKU.
	ErrFull = errors.New("store full")
)

// ErrOtherSeller is the ErrInvalid returned when a SKU would move from its
// seller to another one without authorization.
var ErrOtherSeller = fmt.Errorf("%w: sku belongs to another seller", ErrInvalid)

// Price is the price of one SKU.
type Price struct {
	SKU         string
	SellerID    string
	AmountCents int64
	Currency    string // ISO 4217: three upper-case ASCII letters
}

// Default limits of [New] and [NewEmpty]. A price takes about 400 bytes at
// most (two IDs of up to 128 bytes and the map's share), so a full store
// holds about 40 MiB; one seller can take a tenth of it.
const (
	DefaultMaxSKUsPerSeller = 10_000
	DefaultMaxSKUs          = 100_000
)

// Limits bounds how many SKUs a store holds.
type Limits struct {
	// PerSeller is the most SKUs one seller may hold.
	PerSeller int
	// Total is the most SKUs the store holds, all sellers together.
	Total int
}

// DefaultLimits returns [DefaultMaxSKUsPerSeller] and [DefaultMaxSKUs].
func DefaultLimits() Limits {
	return Limits{PerSeller: DefaultMaxSKUsPerSeller, Total: DefaultMaxSKUs}
}

// Store is a mutex-guarded map of prices by SKU, with a count of SKUs per
// seller for its limits. The zero value is not usable; build one with New,
// NewEmpty or NewWithLimits.
type Store struct {
	mu        sync.Mutex
	limits    Limits
	prices    map[string]Price
	perSeller map[string]int // SKUs held by each seller; no zero entries
}

// NewWithLimits returns a store with no prices and the limits l. It fails
// unless both limits are at least 1 and PerSeller is at most Total.
func NewWithLimits(l Limits) (*Store, error) {
	if l.PerSeller < 1 || l.Total < 1 || l.PerSeller > l.Total {
		return nil, fmt.Errorf("store: limits %d per seller, %d in all: want 1 <= per seller <= total", l.PerSeller, l.Total)
	}
	return &Store{limits: l, prices: make(map[string]Price), perSeller: make(map[string]int)}, nil
}

// NewEmpty returns a store with no prices and the [DefaultLimits].
func NewEmpty() *Store {
	s, _ := NewWithLimits(DefaultLimits()) // valid by construction
	return s
}

// New returns a store with the [DefaultLimits] holding the demo catalogue:
// sku-1 to sku-10 of seller s-1 and sku-11 to sku-20 of seller s-2, in USD,
// sku-n costing 100*n cents.
func New() *Store {
	s := NewEmpty()
	for n := 1; n <= 20; n++ {
		seller := "s-1"
		if n > 10 {
			seller = "s-2"
		}
		sku := fmt.Sprintf("sku-%d", n)
		s.prices[sku] = Price{SKU: sku, SellerID: seller, AmountCents: int64(100 * n), Currency: "USD"}
		s.perSeller[seller]++
	}
	return s
}

// Get returns the price of sku, or ErrNotFound.
func (s *Store) Get(sku string) (Price, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.prices[sku]
	if !ok {
		return Price{}, ErrNotFound
	}
	return p, nil
}

// List returns the prices of seller, sorted by SKU (in byte order, so
// "sku-10" sorts before "sku-2"). An unknown seller has no prices.
func (s *Store) List(seller string) []Price {
	s.mu.Lock()
	out := make([]Price, 0, 16)
	for _, p := range s.prices {
		if p.SellerID == seller {
			out = append(out, p)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Price) int { return strings.Compare(a.SKU, b.SKU) })
	return out
}

// Set creates or replaces the price of p.SKU and returns what it stored.
// It fails with ErrInvalid when p is not valid (see Validate), and with
// ErrOtherSeller when p.SKU belongs to another seller, unless reassign is
// true: then the SKU moves to p.SellerID. It fails with ErrFull when p.SKU
// is new and the store, or p.SellerID, holds as many SKUs as its limit
// allows, or when the SKU would move to a seller that does. Replacing the
// price of a SKU its seller holds always works, however full the store.
func (s *Store) Set(p Price, reassign bool) (Price, error) {
	if err := Validate(p); err != nil {
		return Price{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.prices[p.SKU]
	switch {
	case exists && old.SellerID == p.SellerID:
		// A new price for a SKU held: no count changes.
	case exists && !reassign:
		return Price{}, ErrOtherSeller
	case !exists && len(s.prices) >= s.limits.Total:
		return Price{}, fmt.Errorf("%w: at most %d skus in all", ErrFull, s.limits.Total)
	case s.perSeller[p.SellerID] >= s.limits.PerSeller:
		return Price{}, fmt.Errorf("%w: at most %d skus per seller", ErrFull, s.limits.PerSeller)
	default:
		if exists {
			s.release(old.SellerID)
		}
		s.perSeller[p.SellerID]++
	}
	s.prices[p.SKU] = p
	return p, nil
}

// release takes one SKU off seller's count. Called with s.mu held.
func (s *Store) release(seller string) {
	if s.perSeller[seller]--; s.perSeller[seller] <= 0 {
		delete(s.perSeller, seller)
	}
}

// Delete removes the price of sku. It fails with ErrNotFound when there is
// none or when it belongs to another seller than seller: a seller cannot
// tell another seller's SKU from a missing one.
func (s *Store) Delete(sku, seller string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.prices[sku]
	if !ok || p.SellerID != seller {
		return ErrNotFound
	}
	delete(s.prices, sku)
	s.release(seller)
	return nil
}

// Quote returns the prices of the known SKUs among skus, in the order
// asked; unknown SKUs are skipped.
func (s *Store) Quote(skus []string) []Price {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Price, 0, len(skus))
	for _, sku := range skus {
		if p, ok := s.prices[sku]; ok {
			out = append(out, p)
		}
	}
	return out
}

// Longest SKU and seller ID accepted, so a caller cannot fill memory with
// one huge key.
const maxIDLen = 128

// Validate reports, as an error wrapping ErrInvalid, what is wrong with p:
// an empty or over-long SKU or seller, an amount that is not positive, or a
// currency that is not exactly three upper-case ASCII letters.
func Validate(p Price) error {
	switch {
	case p.SKU == "":
		return fmt.Errorf("%w: sku is required", ErrInvalid)
	case len(p.SKU) > maxIDLen:
		return fmt.Errorf("%w: sku longer than %d bytes", ErrInvalid, maxIDLen)
	case p.SellerID == "":
		return fmt.Errorf("%w: seller_id is required", ErrInvalid)
	case len(p.SellerID) > maxIDLen:
		return fmt.Errorf("%w: seller_id longer than %d bytes", ErrInvalid, maxIDLen)
	case p.AmountCents <= 0:
		return fmt.Errorf("%w: amount_cents must be positive", ErrInvalid)
	case !isCurrency(p.Currency):
		return fmt.Errorf("%w: currency must be three upper-case letters (ISO 4217)", ErrInvalid)
	}
	return nil
}

func isCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}
