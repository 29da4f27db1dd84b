package agent

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestAssembler(t *testing.T) {
	const (
		complete    = api.AssignmentsMessage_COMPLETE
		incremental = api.AssignmentsMessage_INCREMENTAL
	)
	ch := func(id string) *api.AssignmentChange {
		return &api.AssignmentChange{Assignment: &api.Assignment{Item: &api.Assignment_Task{Task: &api.Task{Id: id}}}}
	}
	msg := func(typ api.AssignmentsMessage_Type, appliesTo, resultsIn string, more bool, ids ...string) *api.AssignmentsMessage {
		m := &api.AssignmentsMessage{Type: typ, AppliesTo: appliesTo, ResultsIn: resultsIn, More: more}
		for _, id := range ids {
			m.Changes = append(m.Changes, ch(id))
		}
		return m
	}
	type set struct {
		complete bool
		ids      []string
	}
	tests := []struct {
		name    string
		msgs    []*api.AssignmentsMessage
		want    []set
		wantErr bool // the last message is refused
	}{
		{name: "complete then incremental",
			msgs: []*api.AssignmentsMessage{msg(complete, "", "1", false, "a"), msg(incremental, "1", "2", false, "b")},
			want: []set{{true, []string{"a"}}, {false, []string{"b"}}}},
		{name: "empty complete set",
			msgs: []*api.AssignmentsMessage{msg(complete, "", "1", false)},
			want: []set{{true, nil}}},
		{name: "pages put together",
			msgs: []*api.AssignmentsMessage{msg(complete, "", "1", true, "a", "b"), msg(complete, "", "1", true, "c"), msg(complete, "", "1", false, "d"),
				msg(incremental, "1", "2", true, "e"), msg(incremental, "1", "2", false, "f")},
			want: []set{{true, []string{"a", "b", "c", "d"}}, {false, []string{"e", "f"}}}},
		{name: "incremental first", msgs: []*api.AssignmentsMessage{msg(incremental, "", "1", false, "a")}, wantErr: true},
		{name: "gap in the sequence",
			msgs: []*api.AssignmentsMessage{msg(complete, "", "1", false, "a"), msg(incremental, "2", "3", false, "b")},
			want: []set{{true, []string{"a"}}}, wantErr: true},
		{name: "pages that disagree",
			msgs: []*api.AssignmentsMessage{msg(complete, "", "1", true, "a"), msg(incremental, "1", "2", false, "b")}, wantErr: true},
		{name: "a complete set resynchronises",
			msgs: []*api.AssignmentsMessage{msg(complete, "", "1", false, "a"), msg(complete, "", "7", false, "b"), msg(incremental, "7", "8", false, "c")},
			want: []set{{true, []string{"a"}}, {true, []string{"b"}}, {false, []string{"c"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var as assembler
			var got []set
			var err error
			for i, m := range tc.msgs {
				var cs *changeSet
				cs, err = as.add(m)
				if err != nil {
					if i != len(tc.msgs)-1 {
						t.Fatalf("message %d refused: %v", i, err)
					}
					break
				}
				if cs != nil {
					s := set{complete: cs.complete}
					for _, c := range cs.changes {
						s.ids = append(s.ids, c.GetAssignment().GetTask().GetId())
					}
					got = append(got, s)
				}
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("sets %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].complete != tc.want[i].complete || len(got[i].ids) != len(tc.want[i].ids) {
					t.Fatalf("sets %v, want %v", got, tc.want)
				}
				for j := range got[i].ids {
					if got[i].ids[j] != tc.want[i].ids[j] {
						t.Fatalf("sets %v, want %v", got, tc.want)
					}
				}
			}
		})
	}
}
