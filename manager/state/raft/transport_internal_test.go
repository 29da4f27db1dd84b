package raft

import (
	"testing"

	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestEmptyAppendReplaced(t *testing.T) {
	app := func(term, from, commit uint64, entries int) *raftpb.Message {
		m := &raftpb.Message{
			Type:   raftpb.MessageType_MsgApp.Enum(),
			Term:   proto.Uint64(term),
			From:   proto.Uint64(from),
			Commit: proto.Uint64(commit),
		}
		for range entries {
			m.Entries = append(m.Entries, &raftpb.Entry{})
		}
		return m
	}
	heartbeat := &raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), Term: proto.Uint64(3), From: proto.Uint64(1), Commit: proto.Uint64(9)}
	held := app(3, 1, 7, 0)
	tests := []struct {
		name     string
		m        *raftpb.Message
		empty    bool
		replaces bool
	}{
		{"append with entries, same commit", app(3, 1, 7, 1), false, true},
		{"append with entries, newer commit", app(3, 1, 8, 2), false, true},
		{"empty append, newer commit", app(3, 1, 8, 0), true, true},
		{"append with an older commit", app(3, 1, 6, 1), false, false},
		{"append of a newer term", app(4, 1, 9, 1), false, false},
		{"append from another leader", app(3, 2, 9, 1), false, false},
		{"heartbeat", heartbeat, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isEmptyAppend(tt.m); got != tt.empty {
				t.Errorf("isEmptyAppend = %v, want %v", got, tt.empty)
			}
			if got := replaces(tt.m, held); got != tt.replaces {
				t.Errorf("replaces = %v, want %v", got, tt.replaces)
			}
		})
	}
}
