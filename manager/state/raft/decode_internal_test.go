package raft

import (
	"fmt"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func actionsOf(ids ...string) []*api.StoreAction {
	var out []*api.StoreAction
	for _, id := range ids {
		out = append(out, task(id)...)
	}
	return out
}

func encodeBatch(t *testing.T, reqs ...*api.InternalRaftRequest) []byte {
	t.Helper()
	data, err := proto.Marshal(&api.RaftBatch{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDecodeEntry checks which requests of an entry are taken back from
// memory (the member's own, whose waiter still holds them, once) and that
// every other one decodes as proto.Unmarshal of the whole entry would.
func TestDecodeEntry(t *testing.T) {
	const self, other = 7, 9
	mine := actionsOf("m1", "m2")
	theirs := actionsOf("o1")
	for _, tc := range []struct {
		name string
		own  bool // the state machine takes its own proposals back
		// registered: seq -> actions this member proposed and waits for.
		registered map[uint64][]*api.StoreAction
		cancelled  []uint64 // waiters gone before the entry applies
		data       func(t *testing.T) []byte
		wantErr    bool
		// want: per request, "mem" (taken from memory) or "dec".
		want []string
		// left: seqs whose actions must still be registered afterwards.
		left []uint64
	}{
		{
			name:       "own request taken, the other's decoded",
			own:        true,
			registered: map[uint64][]*api.StoreAction{5: mine},
			data: func(t *testing.T) []byte {
				return encodeBatch(t, &api.InternalRaftRequest{Proposer: other, Seq: 5, Actions: theirs},
					&api.InternalRaftRequest{Proposer: self, Seq: 5, Actions: mine})
			},
			want: []string{"dec", "mem"},
		},
		{
			name:       "another proposer's request with a seq of ours is decoded",
			own:        true,
			registered: map[uint64][]*api.StoreAction{5: mine},
			data: func(t *testing.T) []byte {
				return encodeBatch(t, &api.InternalRaftRequest{Proposer: other, Seq: 5, Actions: mine})
			},
			want: []string{"dec"},
			left: []uint64{5},
		},
		{
			name:       "own request whose waiter gave up is decoded",
			own:        true,
			registered: map[uint64][]*api.StoreAction{5: mine},
			cancelled:  []uint64{5},
			data: func(t *testing.T) []byte {
				return encodeBatch(t, &api.InternalRaftRequest{Proposer: self, Seq: 5, Actions: mine})
			},
			want: []string{"dec"},
		},
		{
			name:       "a state machine that does not take them back gets decoded copies",
			own:        false,
			registered: map[uint64][]*api.StoreAction{5: mine},
			data: func(t *testing.T) []byte {
				return encodeBatch(t, &api.InternalRaftRequest{Proposer: self, Seq: 5, Actions: mine})
			},
			want: []string{"dec"},
			left: []uint64{5},
		},
		{
			name:       "unknown fields and repeated IDs read as proto.Unmarshal does",
			own:        true,
			registered: map[uint64][]*api.StoreAction{5: mine},
			data: func(t *testing.T) []byte {
				req, err := proto.Marshal(&api.InternalRaftRequest{Proposer: other, Seq: 5, Actions: mine})
				if err != nil {
					t.Fatal(err)
				}
				// A later proposer field wins: the request is ours.
				req = protowire.AppendTag(req, requestProposer, protowire.VarintType)
				req = protowire.AppendVarint(req, self)
				req = protowire.AppendTag(req, 99, protowire.BytesType)
				req = protowire.AppendBytes(req, []byte("unknown"))
				var data []byte
				data = protowire.AppendTag(data, 42, protowire.Fixed64Type)
				data = protowire.AppendFixed64(data, 1)
				data = protowire.AppendTag(data, raftBatchRequests, protowire.BytesType)
				data = protowire.AppendBytes(data, req)
				return data
			},
			want: []string{"mem"},
		},
		{
			name:       "an undecodable entry takes nothing back",
			own:        true,
			registered: map[uint64][]*api.StoreAction{5: mine},
			data: func(t *testing.T) []byte {
				data := encodeBatch(t, &api.InternalRaftRequest{Proposer: self, Seq: 5, Actions: mine},
					&api.InternalRaftRequest{Proposer: other, Seq: 6, Actions: theirs})
				return data[:len(data)-3]
			},
			wantErr: true,
			left:    []uint64{5},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWaits()
			for seq, a := range tc.registered {
				w.register(seq, a)
			}
			for _, seq := range tc.cancelled {
				w.cancel(seq)
			}
			data := tc.data(t)
			reqs, err := decodeEntry(data, self, tc.own, w.takeActions)
			if (err != nil) != tc.wantErr {
				t.Fatalf("decodeEntry: %v, want error %v", err, tc.wantErr)
			}
			var batch api.RaftBatch
			if uerr := proto.Unmarshal(data, &batch); (uerr != nil) != tc.wantErr {
				t.Fatalf("proto.Unmarshal: %v, want error %v", uerr, tc.wantErr)
			}
			if len(reqs) != len(tc.want) {
				t.Fatalf("%d requests, want %d", len(reqs), len(tc.want))
			}
			for i, r := range reqs {
				full := batch.GetRequests()[i]
				if r.id != (requestID{full.GetProposer(), full.GetSeq()}) {
					t.Errorf("request %d: id %v, want %d/%d", i, r.id, full.GetProposer(), full.GetSeq())
				}
				got := "dec"
				if r.proposed {
					got = "mem"
					if fmt.Sprintf("%p", r.actions) != fmt.Sprintf("%p", tc.registered[r.id.seq]) {
						t.Errorf("request %d: proposed, but not the registered actions", i)
					}
				}
				if got != tc.want[i] {
					t.Errorf("request %d: %s, want %s", i, got, tc.want[i])
				}
				if !proto.Equal(&api.InternalRaftRequest{Actions: r.actions}, &api.InternalRaftRequest{Actions: full.GetActions()}) {
					t.Errorf("request %d: actions %v, want %v", i, r.actions, full.GetActions())
				}
			}
			left := map[uint64]bool{}
			for _, seq := range tc.left {
				left[seq] = true
			}
			for seq := range tc.registered {
				_, ok := w.takeActions(seq)
				if ok != left[seq] {
					t.Errorf("seq %d: still registered %v, want %v", seq, ok, left[seq])
				}
			}
		})
	}
}

// TestOwnActionsTakenOnce: a request applied twice (an entry seen again)
// is decoded the second time, never handed back twice.
func TestOwnActionsTakenOnce(t *testing.T) {
	w := newWaits()
	mine := actionsOf("m1")
	ch := w.register(3, mine)
	data := encodeBatch(t, &api.InternalRaftRequest{Proposer: 1, Seq: 3, Actions: mine})
	for i, want := range []bool{true, false} {
		reqs, err := decodeEntry(data, 1, true, w.takeActions)
		if err != nil || len(reqs) != 1 {
			t.Fatalf("decode %d: %v, %d requests", i, err, len(reqs))
		}
		if reqs[0].proposed != want {
			t.Fatalf("decode %d: taken from memory %v, want %v", i, reqs[0].proposed, want)
		}
	}
	w.trigger(3, nil)
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}
