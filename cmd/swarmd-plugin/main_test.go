package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/plugin/relay"
	"github.com/openswarm/swarmd/version"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCommand(&out, io.Discard, env(nil))
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := version.String("swarmd-plugin") + "\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
}

func TestInvalidFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--swarmd-plugin", "a/b"}, nil, "--swarmd-plugin"},
		{nil, map[string]string{envSwarmdPlugin: ".."}, envSwarmdPlugin},
		{[]string{"--swarmd-plugin", "two words"}, nil, "--swarmd-plugin"},
		{[]string{"--socket", "overlay.sock"}, nil, "--socket"},
		{[]string{"--host-plugin-dir", "host"}, nil, "--host-plugin-dir"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{nil, map[string]string{envLogLevel: "loud"}, "--log-level"},
		{[]string{"--socket", "/h/swarmd.sock", "--host-plugin-dir", "/h"}, nil, "swarmd's socket"},
		{[]string{"extra"}, nil, "extra"},
	} {
		cmd := newRootCommand(io.Discard, io.Discard, env(tc.env))
		cmd.SetArgs(tc.args)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %v: error %v, want one naming %s", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestRunRelays: the plugin serves its socket, relays to the socket of
// the swarmd plugin the environment names under --host-plugin-dir, says
// which one it tried when swarmd does not answer, and removes its socket
// when stopped.
func TestRunRelays(t *testing.T) {
	dir := t.TempDir()
	hostDir := filepath.Join(dir, "host")
	if err := os.Mkdir(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "plugins", "overlay.sock")
	var logs bytes.Buffer
	cmd := newRootCommand(&logs, io.Discard, env(map[string]string{envSwarmdPlugin: "swarmd-h1"}))
	cmd.SetArgs([]string{"--socket", sock, "--host-plugin-dir", hostDir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	call := func(path string) (int, string) {
		resp, err := c.Post("http://plugin"+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	deadline := time.Now().Add(10 * time.Second)
	status, body := call("/NetworkDriver.CreateNetwork")
	for status == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		status, body = call("/NetworkDriver.CreateNetwork")
	}
	var reply struct{ Err string }
	if status != 500 || json.Unmarshal([]byte(body), &reply) != nil ||
		!strings.Contains(reply.Err, "/run/docker/plugins/swarmd-h1.sock") || !strings.Contains(reply.Err, "--network-plugin=swarmd-h1") {
		t.Fatalf("without swarmd: %d %s", status, body)
	}
	// The engine's handshake is answered all the same.
	if status, body := call("/NetworkDriver.GetCapabilities"); status != 200 || body != relay.Handshake["/NetworkDriver.GetCapabilities"] {
		t.Fatalf("handshake without swarmd: %d %s", status, body)
	}

	// swarmd comes up.
	l, err := net.Listen("unix", filepath.Join(hostDir, "swarmd-h1.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"Implements":["NetworkDriver","IpamDriver"]}`)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	if status, body := call("/Plugin.Activate"); status != 200 || body != `{"Implements":["NetworkDriver","IpamDriver"]}` {
		t.Fatalf("with swarmd: %d %s", status, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after stop: %v", err)
	}
	if !strings.Contains(logs.String(), "relaying the engine's network and IPAM requests to swarmd") {
		t.Errorf("log: %s", logs.String())
	}
}
