package main

import (
	"bytes"
	"testing"

	"github.com/openswarm/swarmd/version"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCommand(&out, &bytes.Buffer{}, func(string) string { return "" })
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := version.String("swarmctl") + "\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestSocket(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", nil, defaultSocket},
		{"/run/a.sock", nil, "/run/a.sock"},
		{"/run/a.sock", []string{"-s", "/run/b.sock"}, "/run/b.sock"},
		{"", []string{"--socket", "/run/c.sock"}, "/run/c.sock"},
	} {
		cmd := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{}, func(k string) string {
			if k == socketEnv {
				return tc.env
			}
			return ""
		})
		cmd.SetArgs(append(tc.args, "version"))
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		got, err := cmd.PersistentFlags().GetString("socket")
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("env %q args %q: socket %q, want %q", tc.env, tc.args, got, tc.want)
		}
	}
}
