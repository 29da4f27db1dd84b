package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openswarm/swarmd/api"
	"go.etcd.io/raft/v3"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// snapshotChunkBytes keeps every gRPC message of a snapshot far below
	// gRPC's 4 MiB default limit, whatever the snapshot's size.
	snapshotChunkBytes = 1 << 20
	peerQueueLen       = 4096
	// minReconnectWait is the first wait before opening a broken stream
	// again; it doubles, up to a second, while the peer stays unreachable.
	minReconnectWait = 10 * time.Millisecond
	// emptyAppendHold bounds how long an empty append (a commit index
	// update) waits for the next append to the same peer to carry it.
	emptyAppendHold = time.Millisecond
)

// reporter is the part of raft the transport tells about delivery failures.
type reporter interface {
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// transport sends raft messages to peers over one long-lived gRPC stream
// per peer, in order, and snapshots over a separate chunked stream.
type transport struct {
	self    uint64
	log     *slog.Logger
	creds   credentials.TransportCredentials
	raft    reporter
	removed func() // called when a peer says this member was removed
	// drop, when set, loses messages between two members (partitions in
	// tests).
	drop atomic.Pointer[func(from, to uint64) bool]

	mu    sync.Mutex
	peers map[uint64]*peer
}

func newTransport(self uint64, creds credentials.TransportCredentials, r reporter, removed func(), log *slog.Logger) *transport {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return &transport{self: self, log: log, creds: creds, raft: r, removed: removed, peers: map[uint64]*peer{}}
}

// peer is one remote member: a connection and an ordered send queue.
type peer struct {
	t      *transport
	id     uint64
	addr   string
	conn   *grpc.ClientConn
	queue  chan *raftpb.Message
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// lastOK is the unix nano time of the last successful send.
	lastOK atomic.Int64
}

func (t *transport) dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, DialOptions(t.creds)...)
}

// setPeer adds a peer, or moves it to a new address.
func (t *transport) setPeer(id uint64, addr string) error {
	if id == t.self || addr == "" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		if p.addr == addr {
			return nil
		}
		p.stop()
		delete(t.peers, id)
	}
	conn, err := t.dial(addr)
	if err != nil {
		return fmt.Errorf("dial raft peer %x at %s: %w", id, addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{t: t, id: id, addr: addr, conn: conn, queue: make(chan *raftpb.Message, peerQueueLen),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
	t.peers[id] = p
	go p.run()
	return nil
}

func (t *transport) removePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if ok {
		p.stop()
	}
}

func (t *transport) peer(id uint64) (*peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	return p, ok
}

// send queues messages; it never blocks the raft loop. A full queue or an
// unknown peer counts as unreachable and raft retries.
func (t *transport) send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		to := m.GetTo()
		if t.dropped(t.self, to) {
			continue
		}
		p, ok := t.peer(to)
		if !ok {
			t.raft.ReportUnreachable(to)
			if m.GetType() == raftpb.MessageType_MsgSnap {
				t.raft.ReportSnapshot(to, raft.SnapshotFailure)
			}
			continue
		}
		if m.GetType() == raftpb.MessageType_MsgSnap {
			go p.sendSnapshot(m)
			continue
		}
		select {
		case p.queue <- m:
		default:
			t.raft.ReportUnreachable(to)
		}
	}
}

func (t *transport) dropped(from, to uint64) bool {
	f := t.drop.Load()
	return f != nil && (*f)(from, to)
}

// active reports whether the peer took a message within the window.
func (t *transport) active(id uint64, window time.Duration) bool {
	p, ok := t.peer(id)
	if !ok {
		return false
	}
	last := p.lastOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < window
}

func (t *transport) stop() {
	t.mu.Lock()
	peers := t.peers
	t.peers = map[uint64]*peer{}
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
}

func (p *peer) stop() {
	p.cancel()
	<-p.done
	_ = p.conn.Close()
}

// run keeps a stream open to the peer and drains the queue into it.
func (p *peer) run() {
	defer close(p.done)
	backoff := minReconnectWait
	for p.ctx.Err() == nil {
		sent := p.lastOK.Load()
		err := p.stream()
		if p.ctx.Err() != nil {
			return
		}
		if isRemovedErr(err) {
			p.t.log.Error("a raft peer says this member was removed from the cluster", "raft.peer", fmt.Sprintf("%x", p.id))
			p.t.removed()
			return
		}
		p.t.raft.ReportUnreachable(p.id)
		p.t.log.Debug("raft stream to peer broke", "raft.peer", fmt.Sprintf("%x", p.id), "addr", p.addr, "error", err)
		if p.lastOK.Load() != sent {
			// The stream carried messages: the peer was up until now,
			// so waiting starts over from the shortest time.
			backoff = minReconnectWait
		}
		select {
		case <-time.After(backoff):
		case <-p.ctx.Done():
			return
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (p *peer) stream() error {
	stream, err := api.NewRaftClient(p.conn).Stream(p.ctx)
	if err != nil {
		return err
	}
	send := func(m *raftpb.Message) error {
		b, err := proto.Marshal(m)
		if err != nil {
			p.t.log.Error("encode raft message", "error", err)
			return nil
		}
		if err := stream.Send(&api.RaftMessage{Message: b}); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.CloseAndRecv()
			}
			return err
		}
		p.lastOK.Store(time.Now().UnixNano())
		return nil
	}
	// held is an empty append (it only tells the peer a new commit index),
	// kept back for up to emptyAppendHold: when the next append to the peer
	// comes first, it carries that commit index and the held one is
	// dropped. Under a stream of writes this halves the messages between
	// members (and the acknowledgements and raft Readies they cause).
	var held *raftpb.Message
	hold := time.NewTimer(emptyAppendHold)
	hold.Stop()
	defer hold.Stop()
	for {
		var expired <-chan time.Time
		if held != nil {
			expired = hold.C
		}
		var m *raftpb.Message
		select {
		case m = <-p.queue:
		case <-expired:
			m, held = held, nil
			if err := send(m); err != nil {
				return err
			}
			continue
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
		if held != nil {
			switch {
			case replaces(m, held) && isEmptyAppend(m):
				held = m // the first deadline stays
				continue
			case !replaces(m, held):
				if err := send(held); err != nil {
					return err
				}
			}
			held = nil
			hold.Stop()
		}
		if isEmptyAppend(m) {
			held = m
			hold.Reset(emptyAppendHold)
			continue
		}
		if err := send(m); err != nil {
			return err
		}
	}
}

// isEmptyAppend reports whether m is an append without entries: the leader
// sends one to each follower every time the commit index moves.
func isEmptyAppend(m *raftpb.Message) bool {
	return m.GetType() == raftpb.MessageType_MsgApp && len(m.GetEntries()) == 0
}

// replaces reports whether sending m makes the held empty append useless:
// m is an append from the same leader and term telling at least the same
// commit index.
func replaces(m, held *raftpb.Message) bool {
	return m.GetType() == raftpb.MessageType_MsgApp && m.GetTerm() == held.GetTerm() &&
		m.GetFrom() == held.GetFrom() && m.GetCommit() >= held.GetCommit()
}

// sendSnapshot streams a snapshot message in chunks and tells raft how it
// went.
func (p *peer) sendSnapshot(m *raftpb.Message) {
	err := p.snapshot(m)
	if err != nil {
		p.t.log.Warn("sending raft snapshot failed", "raft.peer", fmt.Sprintf("%x", p.id), "error", err)
		p.t.raft.ReportUnreachable(p.id)
		p.t.raft.ReportSnapshot(p.id, raft.SnapshotFailure)
		return
	}
	p.t.raft.ReportSnapshot(p.id, raft.SnapshotFinish)
}

func (p *peer) snapshot(m *raftpb.Message) error {
	data := m.GetSnapshot().GetData()
	header := proto.Clone(m).(*raftpb.Message)
	header.Snapshot.Data = nil
	hb, err := proto.Marshal(header)
	if err != nil {
		return fmt.Errorf("encode snapshot header: %w", err)
	}
	stream, err := api.NewRaftClient(p.conn).Snapshot(p.ctx)
	if err != nil {
		return err
	}
	first := true
	for first || len(data) > 0 {
		n := min(len(data), snapshotChunkBytes)
		chunk := &api.SnapshotChunk{Data: data[:n], Last: n == len(data)}
		if first {
			chunk.Header = hb
			first = false
		}
		data = data[n:]
		if err := stream.Send(chunk); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.CloseAndRecv()
			}
			return err
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func removedStatus() error {
	return status.Error(codes.FailedPrecondition, ErrMemberRemoved.Error())
}

func isRemovedErr(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.FailedPrecondition && s.Message() == ErrMemberRemoved.Error()
}
