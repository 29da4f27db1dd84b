package constraint

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestParse(t *testing.T) {
	tests := []struct {
		expr    string
		want    Constraint
		wantErr string
	}{
		{expr: "node.role==manager", want: Constraint{Key: "node.role", Op: Eq, Value: "manager"}},
		{expr: " node.labels.zone != east ", want: Constraint{Key: "node.labels.zone", Op: NotEq, Value: "east"}},
		{expr: "node.role=manager", wantErr: "constraint expected one operator from ==, !="},
		{expr: "==manager", wantErr: "key '' is invalid"},
		{expr: "node.role==", wantErr: "value '' is invalid"},
		{expr: "node.labels.a==b==c", wantErr: "value 'b==c' is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := Parse([]string{tt.expr})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Parse(%q) error = %v, want %q", tt.expr, err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0] != tt.want {
				t.Fatalf("Parse(%q) = %v, %v; want %v", tt.expr, got, err, tt.want)
			}
			if back, err := Parse([]string{got[0].String()}); err != nil || back[0] != tt.want {
				t.Fatalf("String() does not parse back: %q", got[0].String())
			}
		})
	}
}

func TestMatch(t *testing.T) {
	node := &api.Node{
		Id:   "n1",
		Role: api.NodeRole_NODE_ROLE_MANAGER,
		Spec: &api.NodeSpec{Annotations: &api.Annotations{Labels: map[string]string{"zone": "East"}}},
		Description: &api.NodeDescription{
			Hostname: "host-1",
			Platform: &api.Platform{Os: "linux", Architecture: "x86_64"},
			Engine:   &api.EngineDescription{Labels: map[string]string{"disk": "ssd"}},
		},
	}
	tests := []struct {
		exprs []string
		want  bool
	}{
		{nil, true},
		{[]string{"node.id==n1"}, true},
		{[]string{"node.id==N1"}, false},
		{[]string{"node.hostname==HOST-1"}, true},
		{[]string{"node.role==manager"}, true},
		{[]string{"node.role!=manager"}, false},
		{[]string{"node.role==worker"}, false},
		{[]string{"node.platform.os==linux", "node.platform.arch==x86_64"}, true},
		{[]string{"node.labels.zone==East"}, true},
		{[]string{"node.labels.zone==east"}, false},
		{[]string{"node.labels.rack==1"}, false},
		{[]string{"node.labels.rack!=1"}, true},
		{[]string{"engine.labels.disk==ssd"}, true},
		{[]string{"engine.labels.disk!=ssd"}, false},
		{[]string{"node.labels.zone==East", "engine.labels.disk==hdd"}, false},
		{[]string{"something.else==x"}, false},
	}
	for _, tt := range tests {
		cs, err := Parse(tt.exprs)
		if err != nil {
			t.Fatalf("Parse(%v): %v", tt.exprs, err)
		}
		if got := Match(cs, node); got != tt.want {
			t.Errorf("Match(%v) = %v, want %v", tt.exprs, got, tt.want)
		}
	}
}
