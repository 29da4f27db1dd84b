// Package allocator gives cluster objects the network resources they need
// before they can run: overlay networks get a subnet (their IPAM
// configuration) and a VXLAN network identifier, services get their
// published ports and virtual IPs, and tasks get an address on each network
// they attach to. Once a NEW task has all it needs (its service's endpoint
// copied in, its attachments filled), the allocator moves it to PENDING,
// for the scheduler; a task that cannot be allocated stays NEW with the
// reason in Status.Err. It runs on the leader only.
//
// # Design
//
// The decisions are made by pure, store-free types, each tested on its own:
//
//   - portSpace: ingress-published ports, reserved cluster-wide per
//     protocol, with dynamic ports from 30000–32767;
//   - addrPool: one subnet's addresses as a bitmap (lowest free first);
//   - addressPool.carve and vniSpace: subnets from the cluster's default
//     address pool, never overlapping another network's, and VXLAN
//     identifiers;
//   - ledger: all of the above for the whole cluster, with the allocation
//     of every network, service and task as recorded in the store.
//
// The store is the only record: everything allocated is written into the
// objects themselves (Network.Ipam and Vni, Service.Endpoint,
// Task.Networks), so a new leader rebuilds the ledger from the store and
// continues without allocating anything twice.
//
// # Reserve first, release after commit
//
// The Allocator reconciles the objects that changed, in three phases per
// round (networks, then services, then tasks: each needs the previous ones
// committed). For each object it computes the new allocation, reserving any
// new resource at once, and writes the objects of a phase in one
// store.Batch. Afterwards it reads every object back: where the store holds
// what was written, the resources the old allocation held and the new one
// does not are released; where it does not (a concurrent write made ours
// fail with ErrSequenceConflict, or the object was deleted), the new
// reservations are dropped and the object is reconciled again from its
// current state. A resource is thus never free in the ledger while the
// store still records it for someone, and never recorded for two objects.
//
// # Releases and retries
//
// A deleted network frees its subnet and VNI, a deleted service its ports
// and virtual IPs, and a task its addresses once it is deleted or dead
// (desired state past COMPLETE, and observed past RUNNING or never
// assigned to a node). The store keeps what a dead task recorded; the
// ledger no longer reserves it. An object whose allocation failed (a port
// held by another service, an exhausted subnet or dynamic range) is tried
// again whenever a round frees or allocates something; a write the store
// did not take is retried after a delay that doubles while writes keep
// failing.
package allocator
