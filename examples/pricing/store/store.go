// Package store keeps the prices of the pricing example in memory.
//
// It is plain domain code: it knows nothing of gRPC or tokens. It validates
// what it stores and refuses to move a SKU from one seller to another unless
// its caller says the move is authorized; deciding that is the caller's
// business (the server asks tollgate's permission model).
package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Errors the store returns. Every error of the store matches exactly one of
// them with errors.Is.
var (
	// ErrNotFound: no price for that SKU (or not for that seller).
	ErrNotFound = errors.New("price not found")
	// ErrInvalid: the price or the request is not acceptable.
	ErrInvalid = errors.New("invalid price")
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

// Store is a mutex-guarded map of prices by SKU. The zero value is not
// usable; build one with New or NewEmpty.
type Store struct {
	mu     sync.Mutex
	prices map[string]Price
}

// NewEmpty returns a store with no prices.
func NewEmpty() *Store {
	return &Store{prices: make(map[string]Price)}
}

// New returns a store holding the demo catalogue: sku-1 to sku-10 of seller
// s-1 and sku-11 to sku-20 of seller s-2, in USD, sku-n costing 100*n cents.
func New() *Store {
	s := NewEmpty()
	for n := 1; n <= 20; n++ {
		seller := "s-1"
		if n > 10 {
			seller = "s-2"
		}
		sku := fmt.Sprintf("sku-%d", n)
		s.prices[sku] = Price{SKU: sku, SellerID: seller, AmountCents: int64(100 * n), Currency: "USD"}
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
// true: then the SKU moves to p.SellerID.
func (s *Store) Set(p Price, reassign bool) (Price, error) {
	if err := Validate(p); err != nil {
		return Price{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.prices[p.SKU]; ok && old.SellerID != p.SellerID && !reassign {
		return Price{}, ErrOtherSeller
	}
	s.prices[p.SKU] = p
	return p, nil
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
