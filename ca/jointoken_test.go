package ca

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
)

var tokenRE = regexp.MustCompile(`^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$`)

func TestGenerateAndParseJoinToken(t *testing.T) {
	root := newRoot(t)
	tok, err := GenerateJoinToken(root)
	if err != nil {
		t.Fatal(err)
	}
	if !tokenRE.MatchString(tok) {
		t.Fatalf("token %q does not have docker's format", tok)
	}
	jt, err := ParseJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if jt.Version != 1 || jt.Digest != root.Digest() || len(jt.Secret) != 25 {
		t.Errorf("parsed %#v", jt)
	}
	if jt.Encode() != tok {
		t.Errorf("Encode() = %q, want %q", jt.Encode(), tok)
	}
	if err := jt.VerifyRoot(root.CertPEM()); err != nil {
		t.Errorf("VerifyRoot(own root): %v", err)
	}
	if again, _ := ParseJoinToken("  " + tok + "\n"); again != jt {
		t.Error("surrounding whitespace changes the token")
	}
	other, err := GenerateJoinToken(root)
	if err != nil {
		t.Fatal(err)
	}
	if other == tok {
		t.Error("two tokens are equal")
	}
	if _, err := GenerateJoinToken(RootCA{}); err == nil {
		t.Error("token for no root")
	}
}

func TestParseJoinTokenErrors(t *testing.T) {
	root := newRoot(t)
	tok, err := GenerateJoinToken(root)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, "-")
	digest, secret := parts[2], parts[3]
	for _, tc := range []struct {
		name, token, want string
	}{
		{"empty", "", "want SWMTKN-1-<digest>-<secret>"},
		{"too few parts", "SWMTKN-1-" + digest, "want SWMTKN-1"},
		{"too many parts", tok + "-x", "want SWMTKN-1"},
		{"wrong prefix", "SWMTKX-1-" + digest + "-" + secret, "want SWMTKN-1"},
		{"lower-case prefix", "swmtkn-1-" + digest + "-" + secret, "want SWMTKN-1"},
		{"version 2", "SWMTKN-2-" + digest + "-" + secret, "unsupported version"},
		{"short digest", "SWMTKN-1-" + digest[1:] + "-" + secret, "digest has 49 characters"},
		{"long digest", "SWMTKN-1-0" + digest + "-" + secret, "digest has 51 characters"},
		{"upper-case digest", "SWMTKN-1-" + strings.ToUpper(digest) + "-" + secret, "lower-case base 36"},
		{"digest not base 36", "SWMTKN-1-" + digest[:49] + "_-" + secret, "lower-case base 36"},
		{"digest too large", "SWMTKN-1-" + strings.Repeat("z", 50) + "-" + secret, "too large"},
		{"short secret", "SWMTKN-1-" + digest + "-" + secret[1:], "secret has 24 characters"},
		{"secret not base 36", "SWMTKN-1-" + digest + "-" + secret[:24] + "!", "secret is not lower-case"},
		{"spaces inside", "SWMTKN-1-" + digest + "- " + secret[1:], "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJoinToken(tc.token)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidJoinToken) || !strings.HasPrefix(err.Error(), "invalid join token") {
				t.Errorf("err = %v, want an ErrInvalidJoinToken", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret[:10]) || (len(tc.token) > 20 && strings.Contains(err.Error(), tc.token)) {
				t.Errorf("error %q reveals the token", err)
			}
		})
	}
}

func TestVerifyRoot(t *testing.T) {
	root, other := newRoot(t), newRoot(t)
	tok, err := GenerateJoinToken(root)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := ParseJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	err = jt.VerifyRoot(other.CertPEM())
	if !errors.Is(err, ErrRootCAMismatch) {
		t.Fatalf("other root: err = %v, want ErrRootCAMismatch", err)
	}
	want := "remote CA does not match fingerprint. Expected: " + root.Digest().String()
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q, want prefix %q", err, want)
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), append(root.CertPEM(), other.CertPEM()...)} {
		if err := jt.VerifyRoot(bad); err == nil {
			t.Errorf("VerifyRoot(%q) accepted", bad)
		}
	}
}

func TestJoinTokenNeverPrintsSecret(t *testing.T) {
	tok, err := GenerateJoinToken(newRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	jt, err := ParseJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(f, jt); strings.Contains(s, jt.Secret) {
			t.Errorf("%s prints the secret: %s", f, s)
		}
	}
	if s := fmt.Sprintf("%v", &jt); strings.Contains(s, jt.Secret) {
		t.Errorf("pointer prints the secret: %s", s)
	}
}

func TestRotateJoinTokens(t *testing.T) {
	root := newRoot(t)
	apiRoot, err := NewClusterRootCA(root)
	if err != nil {
		t.Fatal(err)
	}
	if apiRoot.CaCertHash != root.Digest().String() || string(apiRoot.CaKey) != string(root.KeyPEM()) {
		t.Error("cluster root CA does not carry the root")
	}
	for _, tok := range []string{apiRoot.JoinTokens.Worker, apiRoot.JoinTokens.Manager} {
		jt, err := ParseJoinToken(tok)
		if err != nil || jt.Digest != root.Digest() {
			t.Fatalf("token does not pin the root: %v", err)
		}
	}
	if apiRoot.JoinTokens.Worker == apiRoot.JoinTokens.Manager {
		t.Fatal("worker and manager tokens are equal")
	}
	for _, tc := range []struct {
		name            string
		worker, manager bool
	}{
		{"neither", false, false},
		{"worker", true, false},
		{"manager", false, true},
		{"both", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &api.Cluster{RootCa: &api.RootCA{CaCert: apiRoot.CaCert, JoinTokens: &api.JoinTokens{Worker: apiRoot.JoinTokens.Worker, Manager: apiRoot.JoinTokens.Manager}}}
			if err := RotateJoinTokens(c, tc.worker, tc.manager); err != nil {
				t.Fatal(err)
			}
			if changed := c.RootCa.JoinTokens.Worker != apiRoot.JoinTokens.Worker; changed != tc.worker {
				t.Errorf("worker token changed = %v", changed)
			}
			if changed := c.RootCa.JoinTokens.Manager != apiRoot.JoinTokens.Manager; changed != tc.manager {
				t.Errorf("manager token changed = %v", changed)
			}
			for _, tok := range []string{c.RootCa.JoinTokens.Worker, c.RootCa.JoinTokens.Manager} {
				if jt, err := ParseJoinToken(tok); err != nil || jt.Digest != root.Digest() {
					t.Errorf("rotated token does not pin the root: %v", err)
				}
			}
		})
	}
	if err := RotateJoinTokens(&api.Cluster{}, true, false); err == nil {
		t.Error("rotated the tokens of a cluster without root CA")
	}
}

func TestTokenRole(t *testing.T) {
	tokens := &api.JoinTokens{Worker: "SWMTKN-1-w", Manager: "SWMTKN-1-m"}
	for _, tc := range []struct {
		token string
		role  api.NodeRole
		ok    bool
	}{
		{"SWMTKN-1-w", worker, true},
		{"SWMTKN-1-m", manager, true},
		{"SWMTKN-1-x", 0, false},
		{"", 0, false},
		{"SWMTKN-1-w ", 0, false},
	} {
		role, ok := tokenRole(tokens, tc.token)
		if ok != tc.ok || role != tc.role {
			t.Errorf("tokenRole(%q) = %v, %v", tc.token, role, ok)
		}
	}
	if _, ok := tokenRole(&api.JoinTokens{}, ""); ok {
		t.Error("empty token matches unset tokens")
	}
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add("SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx")
	f.Add("SWMTKN-1-" + strings.Repeat("0", 50) + "-" + strings.Repeat("0", 25))
	f.Add("SWMTKN-1-" + strings.Repeat("z", 50) + "-" + strings.Repeat("z", 25))
	f.Add("SWMTKN-2-a-b")
	f.Add("")
	f.Add("----")
	f.Fuzz(func(t *testing.T, s string) {
		jt, err := ParseJoinToken(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidJoinToken) {
				t.Fatalf("error %v is not ErrInvalidJoinToken", err)
			}
			if len(s) >= 30 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q contains the token", err)
			}
			return
		}
		if enc := jt.Encode(); enc != strings.TrimSpace(s) {
			t.Fatalf("Encode() = %q, want %q", enc, strings.TrimSpace(s))
		}
		if !tokenRE.MatchString(jt.Encode()) {
			t.Fatalf("accepted %q", s)
		}
		if jt.String() != strings.TrimSuffix(jt.Encode(), jt.Secret)+"<redacted>" {
			t.Fatal("String reveals the secret")
		}
	})
}
