package raft

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Flow-control windows of the connections that carry raft messages. They
// are static: with gRPC's dynamic windows, the receiver of every burst of
// data answers with a window update and a bandwidth-probing ping, which the
// sender acknowledges, so each small raft message cost three writes and
// three wake-ups instead of one. 1 MiB per stream and 4 MiB per connection
// keep a 256 KiB append pipeline full on a LAN and bound what one peer may
// make the server buffer.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// ServerOptions are the options the gRPC server that serves Register's
// services needs besides its credentials.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
	}
}

// DialOptions are the options of a member's connections to its peers.
func DialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
	}
}
