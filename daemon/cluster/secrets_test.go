package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/controlapi"
	"github.com/openswarm/swarmd/manager/state/store"
)

// TestSecretsInactive: on a node that is not a manager the endpoints
// answer docker's 503; bad input is a 400 first, as docker checks the body
// and version before the node's state.
func TestSecretsInactive(t *testing.T) {
	cli, _ := startServer(t)
	tests := []struct {
		method, path, body string
		code               int
		message            string
	}{
		{"GET", "/v1.51/secrets", "", 503, errNoManager.Error()},
		{"GET", "/v1.51/configs?filters={}", "", 503, errNoManager.Error()},
		{"GET", "/v1.51/secrets/abc", "", 503, errNoManager.Error()},
		{"GET", "/configs/abc", "", 503, errNoManager.Error()},
		{"DELETE", "/v1.51/secrets/abc", "", 503, errNoManager.Error()},
		{"DELETE", "/v1.51/configs/abc", "", 503, errNoManager.Error()},
		{"POST", "/v1.51/secrets/create", `{"Name":"pw","Data":"eA=="}`, 503, errNoManager.Error()},
		{"POST", "/v1.51/configs/create", `{"Name":"c","Data":"eA=="}`, 503, errNoManager.Error()},
		{"POST", "/v1.51/secrets/abc/update?version=3", `{"Name":"pw","Labels":{"a":"b"}}`, 503, errNoManager.Error()},

		{"POST", "/v1.51/secrets/create", `{`, 400, "invalid JSON: unexpected EOF"},
		{"POST", "/v1.51/configs/create", `{"Name":`, 400, "invalid JSON: unexpected EOF"},
		{"POST", "/v1.51/secrets/create", ``, 400, "request body is empty"},
		{"POST", "/v1.51/secrets/abc/update?version=3", `[]`, 400, "invalid JSON: json: cannot unmarshal array into Go value of type swarm.SecretSpec"},
		{"POST", "/v1.51/secrets/abc/update", `{"Name":"pw"}`, 400, `invalid secret version '': strconv.ParseUint: parsing "": invalid syntax`},
		{"POST", "/v1.51/configs/abc/update?version=x", `{"Name":"c"}`, 400, `invalid config version 'x': strconv.ParseUint: parsing "x": invalid syntax`},
		{"POST", "/v1.51/secrets/create", `{"Name":"pw","Driver":{"Name":"vault"}}`, 400, "Driver: secret drivers are not supported by swarmd"},
		{"POST", "/v1.51/secrets/abc/update?version=3", `{"Name":"pw","Templating":{"Name":"golang"}}`, 400, "Templating: secret templating is not supported by swarmd"},
		{"POST", "/v1.51/configs/abc/update?version=3", `{"Name":"c","Templating":{"Name":"golang"}}`, 400, "Templating: config templating is not supported by swarmd"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://swarmd"+tt.path, strings.NewReader(tt.body))
			resp, err := cli.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct{ Message string }
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || got.Message != tt.message {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, got.Message, tt.code, tt.message)
			}
		})
	}
}

// controlServer serves a control API over an in-memory store (no raft) on
// a unix socket and returns its store and a client.
func controlServer(t *testing.T) (*store.MemoryStore, api.ControlClient) {
	t.Helper()
	st := store.NewMemoryStore(nil)
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	api.RegisterControlServer(gs, controlapi.NewServer(st, nil, controlapi.WithLogger(slog.New(slog.DiscardHandler))))
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return st, api.NewControlClient(conn)
}

// dataServer is an Engine API server of the secret and config endpoints
// in front of ctl.
func dataServer(ctl api.ControlClient) *Server {
	s := &Server{mux: http.NewServeMux(), log: slog.New(slog.DiscardHandler)}
	control := func() (api.ControlClient, error) { return ctl, nil }
	dataRoutes(s, control, secretKind())
	dataRoutes(s, control, configKind())
	return s
}

// call makes one request of s and returns the status and body.
func call(t *testing.T, s *Server, method, path, body string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	return w.Code, w.Body.String()
}

// message is the message of an Engine API error body.
func message(t *testing.T, body string) string {
	t.Helper()
	var m struct{ Message string }
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return m.Message
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestSecretsControlAPI runs the secret endpoints against a real control
// API.
func TestSecretsControlAPI(t *testing.T) {
	st, ctl := controlServer(t)
	s := dataServer(ctl)

	code, body := call(t, s, "POST", "/v1.51/secrets/create", `{"Name":"pw","Labels":{"a":"b"},"Data":"`+b64("hunter2")+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var created swarm.SecretCreateResponse
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == "" {
		t.Fatalf("create answer %s: %v", body, err)
	}
	id := created.ID

	code, body = call(t, s, "POST", "/v1.51/secrets/create", `{"Name":"pw","Data":"`+b64("x")+`"}`)
	if code != http.StatusConflict || message(t, body) != "rpc error: code = AlreadyExists desc = secret pw already exists" {
		t.Fatalf("duplicate create: %d %s", code, body)
	}
	big := base64.StdEncoding.EncodeToString(make([]byte, 500*1024))
	code, body = call(t, s, "POST", "/v1.51/secrets/create", `{"Name":"big","Data":"`+big+`"}`)
	if code != http.StatusBadRequest || !strings.Contains(message(t, body), "less than 512000 bytes") {
		t.Fatalf("oversized create: %d %s", code, body)
	}

	// Inspect by ID, name and ID prefix; the data never shows.
	for _, ref := range []string{id, "pw", id[:5]} {
		code, body = call(t, s, "GET", "/v1.51/secrets/"+ref, "")
		if code != http.StatusOK || strings.Contains(body, `"Data"`) || strings.Contains(body, b64("hunter2")) {
			t.Fatalf("inspect %s: %d %s", ref, code, body)
		}
		var got swarm.Secret
		if err := json.Unmarshal([]byte(body), &got); err != nil || got.ID != id || got.Spec.Name != "pw" || got.Spec.Labels["a"] != "b" {
			t.Fatalf("inspect %s: %s (%v)", ref, body, err)
		}
	}
	code, body = call(t, s, "GET", "/v1.51/secrets/nope", "")
	if code != http.StatusNotFound || message(t, body) != "secret nope not found" {
		t.Fatalf("inspect unknown: %d %s", code, body)
	}

	// List with filters.
	for _, tc := range []struct{ filters, want string }{
		{"", "pw"},
		{`{"name":{"p":true}}`, "pw"},
		{`{"names":{"p":true}}`, ""},
		{`{"label":{"a=b":true}}`, "pw"},
		{`{"label":{"a=c":true}}`, ""},
		{`{"id":{"` + id[:3] + `":true}}`, "pw"},
	} {
		code, body = call(t, s, "GET", "/v1.51/secrets?filters="+tc.filters, "")
		var list []swarm.Secret
		if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || list == nil {
			t.Fatalf("list %s: %d %s", tc.filters, code, body)
		}
		var names []string
		for _, sec := range list {
			names = append(names, sec.Spec.Name)
		}
		if strings.Join(names, " ") != tc.want || strings.Contains(body, b64("hunter2")) {
			t.Fatalf("list %s: %s, want %q", tc.filters, body, tc.want)
		}
	}
	code, body = call(t, s, "GET", `/v1.51/secrets?filters={"mode":{"x":true}}`, "")
	if code != http.StatusBadRequest || message(t, body) != "invalid filter 'mode'" {
		t.Fatalf("list with a bad filter: %d %s", code, body)
	}

	// Update: labels only, at the version read.
	version := inspectVersion(t, s, "/v1.51/secrets/pw")
	code, body = call(t, s, "POST", fmt.Sprintf("/v1.51/secrets/pw/update?version=%d", version), `{"Name":"pw","Labels":{"c":"d"}}`)
	if code != http.StatusOK || body != "" {
		t.Fatalf("update: %d %s", code, body)
	}
	_, body = call(t, s, "GET", "/v1.51/secrets/pw", "")
	if !strings.Contains(body, `"Labels":{"c":"d"}`) {
		t.Fatalf("after update: %s", body)
	}
	version = inspectVersion(t, s, "/v1.51/secrets/pw")
	for _, spec := range []string{`{"Name":"other"}`, `{"Name":"pw","Data":"` + b64("changed") + `"}`} {
		code, body = call(t, s, "POST", fmt.Sprintf("/v1.51/secrets/%s/update?version=%d", id, version), spec)
		if code != http.StatusBadRequest || message(t, body) != "rpc error: code = InvalidArgument desc = only updates to Labels are allowed" {
			t.Fatalf("update %s: %d %s", spec, code, body)
		}
	}
	code, body = call(t, s, "POST", "/v1.51/secrets/nope/update?version=1", `{"Name":"nope"}`)
	if code != http.StatusNotFound || message(t, body) != "secret nope not found" {
		t.Fatalf("update unknown: %d %s", code, body)
	}

	// Remove: not while a service uses it.
	useInService(t, st, &api.ContainerSpec{Image: "img", Secrets: []*api.SecretReference{{SecretId: id, SecretName: "pw"}}})
	code, body = call(t, s, "DELETE", "/v1.51/secrets/pw", "")
	if code != http.StatusBadRequest || message(t, body) != "rpc error: code = InvalidArgument desc = secret 'pw' is in use by the following service: web" {
		t.Fatalf("remove in use: %d %s", code, body)
	}
	removeService(t, st)
	if code, body = call(t, s, "DELETE", "/v1.51/secrets/pw", ""); code != http.StatusNoContent || body != "" {
		t.Fatalf("remove: %d %s", code, body)
	}
	code, body = call(t, s, "DELETE", "/v1.51/secrets/pw", "")
	if code != http.StatusNotFound || message(t, body) != "secret pw not found" {
		t.Fatalf("remove again: %d %s", code, body)
	}
}

// TestConfigsControlAPI runs the config endpoints against a real control
// API.
func TestConfigsControlAPI(t *testing.T) {
	st, ctl := controlServer(t)
	s := dataServer(ctl)

	code, body := call(t, s, "POST", "/v1.51/configs/create", `{"Name":"nginx.conf","Labels":{},"Data":"`+b64("server {}")+`"}`)
	var created swarm.ConfigCreateResponse
	if err := json.Unmarshal([]byte(body), &created); code != http.StatusCreated || err != nil || created.ID == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	id := created.ID
	code, body = call(t, s, "POST", "/v1.51/configs/create", `{"Name":"nginx.conf","Data":"`+b64("x")+`"}`)
	if code != http.StatusConflict {
		t.Fatalf("duplicate create: %d %s", code, body)
	}

	// Inspect and list show the data.
	code, body = call(t, s, "GET", "/v1.51/configs/nginx.conf", "")
	var got swarm.Config
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil || got.ID != id || string(got.Spec.Data) != "server {}" {
		t.Fatalf("inspect: %d %s", code, body)
	}
	code, body = call(t, s, "GET", `/v1.51/configs?filters={"names":{"nginx.conf":true}}`, "")
	var list []swarm.Config
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list) != 1 || string(list[0].Spec.Data) != "server {}" {
		t.Fatalf("list: %d %s", code, body)
	}
	code, body = call(t, s, "GET", "/v1.51/configs/nope", "")
	if code != http.StatusNotFound || message(t, body) != "config nope not found" {
		t.Fatalf("inspect unknown: %d %s", code, body)
	}

	// Update: the spec as inspected, data included, with other labels.
	got.Spec.Labels = map[string]string{"env": "prod"}
	spec, _ := json.Marshal(got.Spec)
	code, body = call(t, s, "POST", fmt.Sprintf("/v1.51/configs/%s/update?version=%d", id, got.Version.Index), string(spec))
	if code != http.StatusOK {
		t.Fatalf("update: %d %s", code, body)
	}
	got.Spec.Data = []byte("changed")
	spec, _ = json.Marshal(got.Spec)
	code, body = call(t, s, "POST", fmt.Sprintf("/v1.51/configs/%s/update?version=%d", id, inspectVersion(t, s, "/v1.51/configs/"+id)), string(spec))
	if code != http.StatusBadRequest || message(t, body) != "rpc error: code = InvalidArgument desc = only updates to Labels are allowed" {
		t.Fatalf("update of the data: %d %s", code, body)
	}

	useInService(t, st, &api.ContainerSpec{Image: "img", Configs: []*api.ConfigReference{{ConfigId: id, ConfigName: "nginx.conf"}}})
	code, body = call(t, s, "DELETE", "/v1.51/configs/"+id, "")
	if code != http.StatusBadRequest || message(t, body) != "rpc error: code = InvalidArgument desc = config 'nginx.conf' is in use by the following service: web" {
		t.Fatalf("remove in use: %d %s", code, body)
	}
	removeService(t, st)
	if code, body = call(t, s, "DELETE", "/v1.51/configs/"+id[:6], ""); code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", code, body)
	}
}

// inspectVersion is the version of the object at path.
func inspectVersion(t *testing.T, s *Server, path string) uint64 {
	t.Helper()
	_, body := call(t, s, "GET", path, "")
	var m struct{ Version swarm.Version }
	if err := json.Unmarshal([]byte(body), &m); err != nil || m.Version.Index == 0 {
		t.Fatalf("inspect %s: %s (%v)", path, body, err)
	}
	return m.Version.Index
}

// useInService stores a service "web" with container spec c.
func useInService(t *testing.T, st *store.MemoryStore, c *api.ContainerSpec) {
	t.Helper()
	svc := &api.Service{Id: "websvc", Spec: &api.ServiceSpec{
		Annotations: &api.Annotations{Name: "web"},
		Task:        &api.TaskSpec{Container: c},
	}}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.Create(svc) }); err != nil {
		t.Fatal(err)
	}
}

func removeService(t *testing.T, st *store.MemoryStore) {
	t.Helper()
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.Delete(store.KindService, "websvc") }); err != nil {
		t.Fatal(err)
	}
}
