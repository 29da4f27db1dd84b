package ca

import (
	"crypto/x509"
	"math/rand/v2"
	"testing"
	"time"
)

func TestRenewalDelay(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name          string
		notBefore     time.Time
		notAfter      time.Time
		now           time.Time
		seed          uint64
		wantMin       time.Duration
		wantMax       time.Duration
		wantExactZero bool
	}{
		{name: "90 days, at issuance", notBefore: start, notAfter: start.Add(90 * day), now: start, seed: 1, wantMin: 45 * day, wantMax: 72 * day},
		{name: "90 days, other seed", notBefore: start, notAfter: start.Add(90 * day), now: start, seed: 2, wantMin: 45 * day, wantMax: 72 * day},
		{name: "90 days, 10 days in", notBefore: start, notAfter: start.Add(90 * day), now: start.Add(10 * day), seed: 3, wantMin: 35 * day, wantMax: 62 * day},
		{name: "one minute", notBefore: start, notAfter: start.Add(time.Minute), now: start, seed: 4, wantMin: 30 * time.Second, wantMax: 48 * time.Second},
		{name: "past 80 percent", notBefore: start, notAfter: start.Add(10 * day), now: start.Add(9 * day), seed: 5, wantExactZero: true},
		{name: "expired", notBefore: start, notAfter: start.Add(day), now: start.Add(2 * day), seed: 6, wantExactZero: true},
		{name: "empty validity", notBefore: start, notAfter: start, now: start, seed: 7, wantExactZero: true},
		{name: "inverted validity", notBefore: start.Add(day), notAfter: start, now: start, seed: 8, wantExactZero: true},
		{name: "not yet valid", notBefore: start.Add(day), notAfter: start.Add(11 * day), now: start, seed: 9, wantMin: 6 * day, wantMax: 9 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RenewalDelay(tc.notBefore, tc.notAfter, tc.now, rand.New(rand.NewPCG(tc.seed, tc.seed)))
			if tc.wantExactZero {
				if got != 0 {
					t.Fatalf("delay = %s, want 0", got)
				}
				return
			}
			if got < tc.wantMin || got > tc.wantMax {
				t.Fatalf("delay = %s, want within [%s, %s]", got, tc.wantMin, tc.wantMax)
			}
			// Deterministic for a seed.
			if again := RenewalDelay(tc.notBefore, tc.notAfter, tc.now, rand.New(rand.NewPCG(tc.seed, tc.seed))); again != got {
				t.Fatalf("same seed gave %s then %s", got, again)
			}
		})
	}
}

// Over many draws the renewal point stays within 50-80% of the lifetime
// and covers that window.
func TestRenewalDelaySpread(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := 90 * 24 * time.Hour
	rnd := rand.New(rand.NewPCG(42, 7))
	lo, hi := 1.0, 0.0
	for range 10000 {
		f := float64(RenewalDelay(start, start.Add(life), start, rnd)) / float64(life)
		if f < 0.5 || f >= 0.8 {
			t.Fatalf("renewal at %.4f of the lifetime", f)
		}
		lo, hi = min(lo, f), max(hi, f)
	}
	if lo > 0.51 || hi < 0.79 {
		t.Errorf("draws span only [%.3f, %.3f]", lo, hi)
	}
}

func TestCertificateRenewalDelay(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &x509.Certificate{NotBefore: start, NotAfter: start.Add(time.Hour)}
	got := CertificateRenewalDelay(c, start, rand.New(rand.NewPCG(1, 1)))
	if want := RenewalDelay(start, start.Add(time.Hour), start, rand.New(rand.NewPCG(1, 1))); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
