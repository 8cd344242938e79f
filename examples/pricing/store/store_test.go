package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestNewHoldsTheCatalogue(t *testing.T) {
	s := New()
	for n := 1; n <= 20; n++ {
		sku := fmt.Sprintf("sku-%d", n)
		want := Price{SKU: sku, SellerID: "s-1", AmountCents: int64(100 * n), Currency: "USD"}
		if n > 10 {
			want.SellerID = "s-2"
		}
		got, err := s.Get(sku)
		if err != nil || got != want {
			t.Errorf("Get(%q) = %+v, %v; want %+v", sku, got, err, want)
		}
	}
	for _, sku := range []string{"sku-0", "sku-21", "", "SKU-1"} {
		if _, err := s.Get(sku); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) error = %v; want ErrNotFound", sku, err)
		}
	}
	if n := len(s.List("s-1")) + len(s.List("s-2")); n != 20 {
		t.Errorf("the two sellers hold %d prices; want 20", n)
	}
}

func TestListSortsBySKUAndFiltersBySeller(t *testing.T) {
	s := New()
	got := s.List("s-1")
	want := []string{"sku-1", "sku-10", "sku-2", "sku-3", "sku-4", "sku-5", "sku-6", "sku-7", "sku-8", "sku-9"}
	if len(got) != len(want) {
		t.Fatalf("List(s-1) has %d prices; want %d", len(got), len(want))
	}
	for i, p := range got {
		if p.SKU != want[i] || p.SellerID != "s-1" {
			t.Errorf("List(s-1)[%d] = %+v; want sku %s of s-1", i, p, want[i])
		}
	}
	if got := s.List("s-3"); len(got) != 0 {
		t.Errorf("List(s-3) = %v; want nothing", got)
	}
	if got := s.List(""); len(got) != 0 {
		t.Errorf("List(\"\") = %v; want nothing", got)
	}
}

func TestSetRejectsInvalidPrices(t *testing.T) {
	valid := Price{SKU: "sku-1", SellerID: "s-1", AmountCents: 150, Currency: "EUR"}
	cases := map[string]func(p *Price){
		"amount 0":        func(p *Price) { p.AmountCents = 0 },
		"amount -1":       func(p *Price) { p.AmountCents = -1 },
		"currency us":     func(p *Price) { p.Currency = "us" },
		"currency usd1":   func(p *Price) { p.Currency = "usd1" },
		"currency U$D":    func(p *Price) { p.Currency = "U$D" },
		"currency usd":    func(p *Price) { p.Currency = "usd" },
		"currency empty":  func(p *Price) { p.Currency = "" },
		"currency ÜS":     func(p *Price) { p.Currency = "ÜS" }, // three bytes, two letters
		"empty sku":       func(p *Price) { p.SKU = "" },
		"empty seller":    func(p *Price) { p.SellerID = "" },
		"over-long sku":   func(p *Price) { p.SKU = string(make([]byte, maxIDLen+1)) },
		"over-long owner": func(p *Price) { p.SellerID = string(make([]byte, maxIDLen+1)) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			s := New()
			p := valid
			mutate(&p)
			if _, err := s.Set(p, true); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
				t.Fatalf("Set(%+v) error = %v; want ErrInvalid", p, err)
			}
			if got, _ := s.Get("sku-1"); got.AmountCents != 100 || got.Currency != "USD" {
				t.Errorf("a refused Set changed sku-1 to %+v", got)
			}
		})
	}
	s := New()
	if got, err := s.Set(valid, false); err != nil || got != valid {
		t.Fatalf("Set(valid) = %+v, %v; want %+v", got, err, valid)
	}
	if got, _ := s.Get("sku-1"); got != valid {
		t.Errorf("after Set, Get(sku-1) = %+v; want %+v", got, valid)
	}
}

func TestSetCreatesNewSKUs(t *testing.T) {
	s := New()
	p := Price{SKU: "sku-new", SellerID: "s-3", AmountCents: 1, Currency: "JPY"}
	if _, err := s.Set(p, false); err != nil {
		t.Fatalf("Set(new sku) = %v", err)
	}
	if got, err := s.Get("sku-new"); err != nil || got != p {
		t.Errorf("Get(sku-new) = %+v, %v; want %+v", got, err, p)
	}
}

func TestSetRefusesToMoveASKUToAnotherSeller(t *testing.T) {
	s := New()
	move := Price{SKU: "sku-11", SellerID: "s-1", AmountCents: 999, Currency: "USD"}
	_, err := s.Set(move, false)
	if !errors.Is(err, ErrOtherSeller) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Set(sku of s-2 as s-1) error = %v; want ErrOtherSeller wrapping ErrInvalid", err)
	}
	if got, _ := s.Get("sku-11"); got.SellerID != "s-2" || got.AmountCents != 1100 {
		t.Fatalf("the refused move changed sku-11 to %+v", got)
	}
	if _, err := s.Set(move, true); err != nil {
		t.Fatalf("authorized move: %v", err)
	}
	if got, _ := s.Get("sku-11"); got != move {
		t.Errorf("after the authorized move, sku-11 = %+v; want %+v", got, move)
	}
}

func TestDelete(t *testing.T) {
	s := New()
	if err := s.Delete("sku-11", "s-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(sku of s-2, s-1) = %v; want ErrNotFound", err)
	}
	if _, err := s.Get("sku-11"); err != nil {
		t.Errorf("a refused Delete removed sku-11: %v", err)
	}
	if err := s.Delete("sku-99", "s-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(unknown) = %v; want ErrNotFound", err)
	}
	if err := s.Delete("sku-1", "s-1"); err != nil {
		t.Fatalf("Delete(sku-1, s-1) = %v", err)
	}
	if _, err := s.Get("sku-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Delete, Get(sku-1) error = %v; want ErrNotFound", err)
	}
	if err := s.Delete("sku-1", "s-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v; want ErrNotFound", err)
	}
}

func TestQuoteKeepsRequestOrderAndSkipsUnknown(t *testing.T) {
	s := New()
	got := s.Quote([]string{"sku-12", "nope", "sku-3", "sku-12"})
	want := []string{"sku-12", "sku-3", "sku-12"}
	if len(got) != len(want) {
		t.Fatalf("Quote = %v; want skus %v", got, want)
	}
	for i := range want {
		if got[i].SKU != want[i] {
			t.Errorf("Quote[%d] = %s; want %s", i, got[i].SKU, want[i])
		}
	}
	if got := s.Quote(nil); len(got) != 0 {
		t.Errorf("Quote(nil) = %v; want nothing", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= 50; n++ {
				sku := fmt.Sprintf("c-%d-%d", i, n)
				if _, err := s.Set(Price{SKU: sku, SellerID: "s-9", AmountCents: int64(n), Currency: "USD"}, false); err != nil {
					t.Error(err)
					return
				}
				s.Get(sku)
				s.List("s-9")
				s.Quote([]string{sku})
			}
		}()
	}
	wg.Wait()
	if n := len(s.List("s-9")); n != 400 {
		t.Errorf("after concurrent Sets, s-9 holds %d prices; want 400", n)
	}
}

func TestDefaultLimits(t *testing.T) {
	if got, want := DefaultLimits(), (Limits{PerSeller: DefaultMaxSKUsPerSeller, Total: DefaultMaxSKUs}); got != want {
		t.Fatalf("DefaultLimits() = %+v; want %+v", got, want)
	}
	if DefaultMaxSKUsPerSeller < 1 || DefaultMaxSKUsPerSeller > DefaultMaxSKUs {
		t.Fatalf("default per-seller limit %d is not within 1..%d", DefaultMaxSKUsPerSeller, DefaultMaxSKUs)
	}
	// New and NewEmpty apply them: a seller fills up at the default.
	s := NewEmpty()
	for n := range DefaultMaxSKUsPerSeller {
		if _, err := s.Set(Price{SKU: fmt.Sprintf("d-%d", n), SellerID: "s-1", AmountCents: 1, Currency: "USD"}, false); err != nil {
			t.Fatalf("SKU %d of %d: %v", n+1, DefaultMaxSKUsPerSeller, err)
		}
	}
	if _, err := s.Set(Price{SKU: "one-more", SellerID: "s-1", AmountCents: 1, Currency: "USD"}, false); !errors.Is(err, ErrFull) {
		t.Fatalf("SKU %d of seller s-1: %v; want ErrFull", DefaultMaxSKUsPerSeller+1, err)
	}
}

func TestNewWithLimitsRefusesBadLimits(t *testing.T) {
	for _, l := range []Limits{{0, 10}, {10, 0}, {-1, 10}, {10, -1}, {11, 10}} {
		if s, err := NewWithLimits(l); err == nil || s != nil {
			t.Errorf("NewWithLimits(%+v) = %v, %v; want an error", l, s, err)
		}
	}
	if s, err := NewWithLimits(Limits{PerSeller: 1, Total: 1}); err != nil || s == nil {
		t.Fatalf("NewWithLimits(1, 1) = %v, %v", s, err)
	}
}

// usd is a valid price of sku for seller.
func usd(sku, seller string, cents int64) Price {
	return Price{SKU: sku, SellerID: seller, AmountCents: cents, Currency: "USD"}
}

func TestSellerLimit(t *testing.T) {
	s, err := NewWithLimits(Limits{PerSeller: 3, Total: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, sku := range []string{"a", "b", "c"} {
		if _, err := s.Set(usd(sku, "s-1", 1), false); err != nil {
			t.Fatalf("Set(%s): %v", sku, err)
		}
	}
	_, err = s.Set(usd("d", "s-1", 1), false)
	if !errors.Is(err, ErrFull) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
		t.Fatalf("a fourth SKU of s-1: %v; want ErrFull only", err)
	}
	// The message names the limit and nothing the caller stored.
	if msg := err.Error(); !strings.Contains(msg, "3") || !strings.Contains(msg, "per seller") || strings.Contains(msg, "s-1") || strings.Contains(msg, `"d"`) {
		t.Errorf("error %q; want the per-seller limit 3 named, and neither seller nor sku", msg)
	}
	if _, err := s.Get("d"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused SKU was stored: %v", err)
	}

	// A full seller may still replace its prices; other sellers are not
	// affected.
	if got, err := s.Set(usd("b", "s-1", 99), false); err != nil || got.AmountCents != 99 {
		t.Fatalf("replacing a price of a full seller = %+v, %v", got, err)
	}
	if _, err := s.Set(usd("x", "s-2", 1), false); err != nil {
		t.Fatalf("another seller: %v", err)
	}

	// Moving a SKU to a full seller is refused; moving one away frees a
	// place, and so does Delete.
	if _, err := s.Set(usd("x", "s-1", 1), true); !errors.Is(err, ErrFull) {
		t.Fatalf("moving x to the full s-1: %v; want ErrFull", err)
	}
	if got, _ := s.Get("x"); got.SellerID != "s-2" {
		t.Fatalf("the refused move changed x to %+v", got)
	}
	if _, err := s.Set(usd("a", "s-2", 1), true); err != nil {
		t.Fatalf("moving a from s-1 to s-2: %v", err)
	}
	if _, err := s.Set(usd("d", "s-1", 1), false); err != nil {
		t.Fatalf("s-1 after a SKU moved away: %v", err)
	}
	if err := s.Delete("d", "s-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(usd("e", "s-1", 1), false); err != nil {
		t.Fatalf("s-1 after a Delete: %v", err)
	}
}

func TestTotalLimit(t *testing.T) {
	s, err := NewWithLimits(Limits{PerSeller: 2, Total: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Price{usd("a", "s-1", 1), usd("b", "s-1", 1), usd("c", "s-2", 1)} {
		if _, err := s.Set(p, false); err != nil {
			t.Fatalf("Set(%+v): %v", p, err)
		}
	}
	_, err = s.Set(usd("d", "s-3", 1), false)
	if !errors.Is(err, ErrFull) || errors.Is(err, ErrInvalid) {
		t.Fatalf("a fourth SKU in a store of 3: %v; want ErrFull", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "3") || strings.Contains(msg, "s-3") {
		t.Errorf("error %q; want the total limit 3 named, and not the seller", msg)
	}
	// Replacing and moving add no SKU: both work in a full store.
	if _, err := s.Set(usd("c", "s-2", 7), false); err != nil {
		t.Fatalf("replacing a price in a full store: %v", err)
	}
	if _, err := s.Set(usd("b", "s-2", 7), true); err != nil {
		t.Fatalf("moving a SKU in a full store: %v", err)
	}
	if err := s.Delete("a", "s-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(usd("d", "s-3", 1), false); err != nil {
		t.Fatalf("after a Delete: %v", err)
	}
}

// Concurrent writers cannot overshoot a limit between check and insert.
func TestLimitsHoldUnderConcurrency(t *testing.T) {
	s, err := NewWithLimits(Limits{PerSeller: 50, Total: 120})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seller := fmt.Sprintf("s-%d", i%4)
			for n := range 40 {
				_, err := s.Set(usd(fmt.Sprintf("c-%d-%d", i, n), seller, 1), false)
				if err != nil && !errors.Is(err, ErrFull) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for i := range 4 {
		n := len(s.List(fmt.Sprintf("s-%d", i)))
		if n > 50 {
			t.Errorf("seller s-%d holds %d SKUs; limit 50", i, n)
		}
		total += n
	}
	if total != 120 {
		t.Errorf("the store holds %d SKUs; want exactly the limit, 120 (320 were offered)", total)
	}
}
