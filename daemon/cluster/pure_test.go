package cluster

import (
	"net/url"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/openswarm/swarmd/api"
)

func TestCountTasks(t *testing.T) {
	task := func(svc, node string, st, desired api.TaskState, iter uint64) *api.Task {
		return &api.Task{ServiceId: svc, NodeId: node, DesiredState: desired,
			Status: &api.TaskStatus{State: st}, JobIteration: &api.Version{Index: iter}}
	}
	const (
		run  = api.TaskState_TASK_STATE_RUNNING
		done = api.TaskState_TASK_STATE_COMPLETE
		shut = api.TaskState_TASK_STATE_SHUTDOWN
		pend = api.TaskState_TASK_STATE_PENDING
	)
	svcs := []*api.Service{
		{Id: "rep", Spec: &api.ServiceSpec{Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 3}}}},
		{Id: "glob", Spec: &api.ServiceSpec{Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}}}},
		{Id: "job", Spec: &api.ServiceSpec{Mode: &api.ServiceSpec_ReplicatedJob{ReplicatedJob: &api.ReplicatedJob{MaxConcurrent: 2, TotalCompletions: 4}}},
			JobStatus: &api.JobStatus{JobIteration: &api.Version{Index: 1}}},
	}
	tasks := []*api.Task{
		task("rep", "n1", run, run, 0), task("rep", "n2", run, run, 0), task("rep", "n1", pend, run, 0),
		task("rep", "n1", shut, shut, 0),
		task("rep", "down", run, run, 0), // on a DOWN node: not counted
		task("glob", "n1", run, run, 0), task("glob", "n2", pend, run, 0), task("glob", "n2", shut, shut, 0),
		task("job", "n1", done, done, 1), task("job", "n2", run, done, 1), task("job", "n1", pend, done, 1),
		task("job", "n2", done, done, 0), // an earlier iteration
		task("other", "n1", run, run, 0),
	}
	got := countTasks(svcs, tasks, map[string]bool{"down": true})
	want := map[string]swarm.ServiceStatus{
		"rep":  {RunningTasks: 2, DesiredTasks: 3},
		"glob": {RunningTasks: 1, DesiredTasks: 2},
		"job":  {RunningTasks: 1, DesiredTasks: 2, CompletedTasks: 1},
	}
	for id, w := range want {
		if *got[id] != w {
			t.Errorf("%s: got %+v, want %+v", id, *got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d services, want %d", len(got), len(want))
	}
}

func TestFormatLogLine(t *testing.T) {
	ts := time.Date(2026, 11, 24, 1, 2, 3, 4500, time.UTC)
	m := &api.LogMessage{
		Context:   &api.LogContext{NodeId: "n1", ServiceId: "s1", TaskId: "t1"},
		Timestamp: timestamppb.New(ts),
		Data:      []byte("hello"),
		Attrs:     []*api.LogAttr{{Key: "env", Value: "a b"}},
	}
	tests := []struct {
		name                string
		details, timestamps bool
		want                string
	}{
		{"plain", false, false, "hello\n"},
		{"timestamps", false, true, "2026-11-24T01:02:03.000004500Z hello\n"},
		{"details", true, false, "com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1,env=a+b hello\n"},
		{"both", true, true, "2026-11-24T01:02:03.000004500Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1,env=a+b hello\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(formatLogLine(m, tt.details, tt.timestamps)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseLogRequest(t *testing.T) {
	tests := []struct {
		query   string
		follow  bool
		tail    int64
		streams int
		since   bool
		err     string
	}{
		{query: "stdout=1&stderr=1", tail: -1, streams: 2},
		{query: "stdout=1&follow=1&tail=10", follow: true, tail: 10, streams: 1},
		{query: "stderr=true&tail=all&since=1700000000.5", tail: -1, streams: 1, since: true},
		{query: "follow=1", err: "Bad parameters: you must choose at least one stream"},
		{query: "stdout=1&tail=-3", err: `invalid tail value "-3": must be "all" or a non-negative number`},
		{query: "stdout=1&follow=maybe", err: `invalid value for follow: "maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			lr, err := parseLogRequest(q)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || statusOf(err) != 400 {
					t.Fatalf("got %v, want 400 %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := lr.opts
			if o.GetFollow() != tt.follow || o.GetTail() != tt.tail || len(o.GetStreams()) != tt.streams || (o.GetSince() != nil) != tt.since {
				t.Fatalf("got %+v", o)
			}
		})
	}
}

func TestResolveAddrs(t *testing.T) {
	tests := []struct {
		listen, advertise string
		want              savedAddrs
		err               bool
	}{
		{"127.0.0.5:2377", "", savedAddrs{ListenAddr: "127.0.0.5:2377", AdvertiseAddr: "127.0.0.5:2377"}, false},
		{"127.0.0.5", "", savedAddrs{ListenAddr: "127.0.0.5:2377", AdvertiseAddr: "127.0.0.5:2377"}, false},
		{"0.0.0.0:4000", "10.1.2.3", savedAddrs{ListenAddr: "0.0.0.0:4000", AdvertiseAddr: "10.1.2.3:4000"}, false},
		{"0.0.0.0:4000", "10.1.2.3:5000", savedAddrs{ListenAddr: "0.0.0.0:4000", AdvertiseAddr: "10.1.2.3:5000"}, false},
		{"lo:2377", "", savedAddrs{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1:2377"}, false},
		{"no-such-if0:2377", "", savedAddrs{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.listen+"/"+tt.advertise, func(t *testing.T) {
			got, err := resolveAddrs(tt.listen, tt.advertise)
			if (err != nil) != tt.err || (!tt.err && got != tt.want) {
				t.Fatalf("got %+v, %v; want %+v (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{errNoManager, 503},
		{badRequest("x"), 400},
		{status.Error(codes.NotFound, "service x not found"), 404},
		{status.Error(codes.AlreadyExists, "name conflicts"), 409},
		{status.Error(codes.InvalidArgument, "bad"), 400},
		{status.Error(codes.FailedPrecondition, "no previous spec"), 400},
		{status.Error(codes.Unknown, "update out of sequence"), 500},
		{status.Error(codes.Unavailable, "no leader"), 503},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.code {
			t.Errorf("%v: got %d, want %d", tt.err, got, tt.code)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.41", "1.42", -1}, {"1.50", "1.42", 1}, {"1.42", "1.42", 0}, {"1.9", "1.10", -1},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
