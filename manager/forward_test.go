package manager

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestReplyFor(t *testing.T) {
	tests := []struct {
		method  string
		want    string
		wantErr bool
	}{
		{method: "/swarmd.api.Control/ListNodes", want: "swarmd.api.ListNodesResponse"},
		{method: "/swarmd.api.Control/UpdateCluster", want: "swarmd.api.UpdateClusterResponse"},
		{method: "/swarmd.api.Control/NoSuch", wantErr: true},
		{method: "garbage", wantErr: true},
	}
	_ = api.File_api_control_proto
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			m, err := replyFor(tc.method)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && string(m.ProtoReflect().Descriptor().FullName()) != tc.want {
				t.Fatalf("got %s, want %s", m.ProtoReflect().Descriptor().FullName(), tc.want)
			}
		})
	}
}
