package ca

import (
	"crypto/x509"
	"math/rand/v2"
	"time"
)

// Renewal happens at a random point between these fractions of a
// certificate's lifetime, so the nodes of a cluster do not all renew at
// once.
const (
	renewalStart = 0.5
	renewalEnd   = 0.8
)

// RenewalDelay returns how long to wait from now before renewing a
// certificate valid from notBefore to notAfter: until a uniformly random
// point between 50% and 80% of its lifetime, or 0 when that point has passed
// (or the validity period is empty). It is a pure function of its arguments.
func RenewalDelay(notBefore, notAfter, now time.Time, rnd *rand.Rand) time.Duration {
	lifetime := notAfter.Sub(notBefore)
	if lifetime <= 0 {
		return 0
	}
	f := renewalStart + (renewalEnd-renewalStart)*rnd.Float64()
	at := notBefore.Add(time.Duration(f * float64(lifetime)))
	return max(0, at.Sub(now))
}

// CertificateRenewalDelay is RenewalDelay for cert's validity period.
func CertificateRenewalDelay(cert *x509.Certificate, now time.Time, rnd *rand.Rand) time.Duration {
	return RenewalDelay(cert.NotBefore, cert.NotAfter, now, rnd)
}
