package convert

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/openswarm/swarmd/api"
)

func TestSecretToDocker(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	meta := &api.Meta{Version: &api.Version{Index: 7}, CreatedAt: timestamppb.New(created), UpdatedAt: timestamppb.New(created)}
	tests := []struct {
		name string
		in   *api.Secret
		want swarm.Secret
	}{
		{"data never shown", &api.Secret{Id: "s1", Meta: meta, Spec: &api.SecretSpec{
			Annotations: &api.Annotations{Name: "pw", Labels: map[string]string{"a": "b"}}, Data: []byte("hunter2"),
		}}, swarm.Secret{ID: "s1", Meta: swarm.Meta{Version: swarm.Version{Index: 7}, CreatedAt: created, UpdatedAt: created},
			Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "pw", Labels: map[string]string{"a": "b"}}}}},
		{"no labels is an empty map", &api.Secret{Id: "s2", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "x"}}},
			swarm.Secret{ID: "s2", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "x", Labels: map[string]string{}}}}},
		{"driver", &api.Secret{Id: "s3", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "x"}, Driver: "vault"}},
			swarm.Secret{ID: "s3", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "x", Labels: map[string]string{}}, Driver: &swarm.Driver{Name: "vault"}}}},
		{"nil", nil, swarm.Secret{Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Labels: map[string]string{}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SecretToDocker(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			b, _ := json.Marshal(got)
			if strings.Contains(string(b), `"Data"`) {
				t.Fatalf("JSON carries data: %s", b)
			}
		})
	}
}

func TestConfigToDocker(t *testing.T) {
	tests := []struct {
		name string
		in   *api.Config
		want swarm.Config
	}{
		{"data shown", &api.Config{Id: "c1", Meta: &api.Meta{Version: &api.Version{Index: 3}}, Spec: &api.ConfigSpec{
			Annotations: &api.Annotations{Name: "nginx.conf", Labels: map[string]string{"k": ""}}, Data: []byte("server {}"),
		}}, swarm.Config{ID: "c1", Meta: swarm.Meta{Version: swarm.Version{Index: 3}},
			Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "nginx.conf", Labels: map[string]string{"k": ""}}, Data: []byte("server {}")}}},
		{"nil", nil, swarm.Config{Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Labels: map[string]string{}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConfigToDocker(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSecretSpecFromDocker(t *testing.T) {
	tests := []struct {
		name    string
		body    string // as the docker CLI or SDK sends it
		want    *api.SecretSpec
		wantErr string
	}{
		{"cli create", `{"Name":"pw","Labels":{"a":"b"},"Data":"aHVudGVyMg=="}`,
			&api.SecretSpec{Annotations: &api.Annotations{Name: "pw", Labels: map[string]string{"a": "b"}}, Data: []byte("hunter2")}, ""},
		{"labels update", `{"Name":"pw","Labels":{"c":"d"}}`,
			&api.SecretSpec{Annotations: &api.Annotations{Name: "pw", Labels: map[string]string{"c": "d"}}}, ""},
		{"driver", `{"Name":"pw","Driver":{"Name":"vault"}}`, nil, "Driver: secret drivers are not supported by swarmd"},
		{"templating", `{"Name":"pw","Data":"eA==","Templating":{"Name":"golang"}}`, nil, "Templating: secret templating is not supported by swarmd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ds swarm.SecretSpec
			if err := json.Unmarshal([]byte(tt.body), &ds); err != nil {
				t.Fatal(err)
			}
			got, err := SecretSpecFromDocker(ds)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfigSpecFromDocker(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    *api.ConfigSpec
		wantErr string
	}{
		{"cli create", `{"Name":"conf","Labels":{},"Data":"c2VydmVyIHt9"}`,
			&api.ConfigSpec{Annotations: &api.Annotations{Name: "conf", Labels: map[string]string{}}, Data: []byte("server {}")}, ""},
		{"templating", `{"Name":"conf","Data":"eA==","Templating":{"Name":"golang"}}`, nil, "Templating: config templating is not supported by swarmd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dc swarm.ConfigSpec
			if err := json.Unmarshal([]byte(tt.body), &dc); err != nil {
				t.Fatal(err)
			}
			got, err := ConfigSpecFromDocker(dc)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSecretAndConfigFilter(t *testing.T) {
	objs := []struct {
		id, name string
		labels   map[string]string
	}{
		{"abc123", "db-password", map[string]string{"env": "prod", "team": "db"}},
		{"abd456", "db-user", map[string]string{"env": "dev"}},
		{"xyz789", "web-cert", nil},
	}
	tests := []struct {
		name    string
		args    filters.Args
		want    string // the names that match, space-separated
		wantErr string
	}{
		{"none", filters.NewArgs(), "db-password db-user web-cert", ""},
		{"id prefix", filters.NewArgs(filters.Arg("id", "ab")), "db-password db-user", ""},
		{"id prefixes or", filters.NewArgs(filters.Arg("id", "abc"), filters.Arg("id", "xyz")), "db-password web-cert", ""},
		{"name prefix", filters.NewArgs(filters.Arg("name", "db-")), "db-password db-user", ""},
		{"names exact", filters.NewArgs(filters.Arg("names", "db")), "", ""},
		{"names exact hit", filters.NewArgs(filters.Arg("names", "db-user"), filters.Arg("names", "web-cert")), "db-user web-cert", ""},
		{"label key", filters.NewArgs(filters.Arg("label", "env")), "db-password db-user", ""},
		{"label key=value", filters.NewArgs(filters.Arg("label", "env=prod")), "db-password", ""},
		{"labels and", filters.NewArgs(filters.Arg("label", "env"), filters.Arg("label", "team=db")), "db-password", ""},
		{"fields and", filters.NewArgs(filters.Arg("name", "db"), filters.Arg("id", "abd")), "db-user", ""},
		{"unknown filter", filters.NewArgs(filters.Arg("mode", "global")), "", "invalid filter 'mode'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			smatch, serr := SecretFilter(tt.args)
			cmatch, cerr := ConfigFilter(tt.args)
			if tt.wantErr != "" {
				if serr == nil || serr.Error() != tt.wantErr || cerr == nil || cerr.Error() != tt.wantErr {
					t.Fatalf("got errors %v, %v, want %q", serr, cerr, tt.wantErr)
				}
				return
			}
			if serr != nil || cerr != nil {
				t.Fatal(serr, cerr)
			}
			var secrets, configs []string
			for _, o := range objs {
				ann := &api.Annotations{Name: o.name, Labels: o.labels}
				if smatch(&api.Secret{Id: o.id, Spec: &api.SecretSpec{Annotations: ann}}) {
					secrets = append(secrets, o.name)
				}
				if cmatch(&api.Config{Id: o.id, Spec: &api.ConfigSpec{Annotations: ann}}) {
					configs = append(configs, o.name)
				}
			}
			if got := strings.Join(secrets, " "); got != tt.want {
				t.Fatalf("secrets %q, want %q", got, tt.want)
			}
			if got := strings.Join(configs, " "); got != tt.want {
				t.Fatalf("configs %q, want %q", got, tt.want)
			}
		})
	}
}
