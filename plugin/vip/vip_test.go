package vip

import (
	"net/netip"
	"strings"
	"testing"
)

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestRender(t *testing.T) {
	const head = "table ip swarmd-vip {}\ndelete table ip swarmd-vip\ntable ip swarmd-vip {\n" +
		"\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n"
	const mid = "\t}\n\tchain filter-output {\n\t\ttype filter hook output priority 0; policy accept;\n"
	const tail = "\t}\n}\n"
	tests := []struct {
		name    string
		table   string
		rules   Rules
		nat     []string
		filter  []string
		wantErr string
	}{
		{name: "empty rules", rules: nil},
		{
			name:  "one backend",
			rules: Rules{a("10.96.0.200"): {a("10.96.0.11")}},
			nat:   []string{"ip daddr 10.96.0.200 dnat to 10.96.0.11"},
		},
		{
			name:  "backends sorted and deduplicated",
			rules: Rules{a("10.96.0.200"): {a("10.96.0.12"), a("10.96.0.11"), a("10.96.0.12"), a("::ffff:10.96.0.11")}},
			nat:   []string{"ip daddr 10.96.0.200 dnat to numgen inc mod 2 map { 0 : 10.96.0.11, 1 : 10.96.0.12 }"},
		},
		{
			name: "several VIPs sorted, empty ones refused",
			rules: Rules{
				a("10.96.0.202"): {a("10.96.0.13"), a("10.96.0.12"), a("10.96.0.11")},
				a("10.96.0.201"): nil,
				a("10.96.0.200"): {a("10.96.0.11")},
				a("10.96.0.9"):   {},
			},
			nat: []string{
				"ip daddr 10.96.0.200 dnat to 10.96.0.11",
				"ip daddr 10.96.0.202 dnat to numgen inc mod 3 map { 0 : 10.96.0.11, 1 : 10.96.0.12, 2 : 10.96.0.13 }",
			},
			filter: []string{
				"ip daddr { 10.96.0.9, 10.96.0.201 } meta l4proto tcp reject with tcp reset",
				"ip daddr { 10.96.0.9, 10.96.0.201 } reject with icmp type port-unreachable",
			},
		},
		{
			name:  "mapped VIP merged",
			rules: Rules{a("10.96.0.200"): {a("10.96.0.11")}, a("::ffff:10.96.0.200"): {a("10.96.0.12")}},
			nat:   []string{"ip daddr 10.96.0.200 dnat to numgen inc mod 2 map { 0 : 10.96.0.11, 1 : 10.96.0.12 }"},
		},
		{name: "IPv6 VIP", rules: Rules{a("fd00::1"): {a("10.96.0.11")}}, wantErr: "only IPv4"},
		{name: "IPv6 backend", rules: Rules{a("10.96.0.200"): {a("fd00::1")}}, wantErr: "only IPv4"},
		{name: "bad table name", table: "x; flush ruleset", wantErr: "invalid nftables table name"},
		{name: "empty table name", table: "-", wantErr: "invalid nftables table name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table := tc.table
			if table == "" {
				table = DefaultTable
			}
			got, err := Render(table, tc.rules)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want strings.Builder
			if len(tc.nat) == 0 && len(tc.filter) == 0 {
				// No VIPs, no table.
				want.WriteString("table ip swarmd-vip {}\ndelete table ip swarmd-vip\n")
				if got != want.String() {
					t.Errorf("script:\n%s\nwant:\n%s", got, want.String())
				}
				return
			}
			want.WriteString(head)
			for _, r := range tc.nat {
				want.WriteString("\t\t" + r + "\n")
			}
			// The filter chain exists only while a VIP has no backend.
			if len(tc.filter) > 0 {
				want.WriteString(mid)
				for _, r := range tc.filter {
					want.WriteString("\t\t" + r + "\n")
				}
			}
			want.WriteString(tail)
			if got != want.String() {
				t.Errorf("script:\n%s\nwant:\n%s", got, want.String())
			}
			again, _ := Render(table, tc.rules)
			if again != got {
				t.Error("Render is not deterministic")
			}
		})
	}
}
