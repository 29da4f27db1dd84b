package allocator

import (
	"slices"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// allocateTask computes t's network attachments, reserving an address on
// each network: the ingress network (ingressID, "" if there is none) when
// the service's endpoint ep publishes ingress ports, then the networks of
// t's spec. An address t's recorded attachments have on the network is
// kept. On error nothing new is reserved. The caller commits or aborts the
// result.
func (l *ledger) allocateTask(t *api.Task, ep *api.Endpoint, ingressID string) ([]*api.NetworkAttachment, error) {
	var wanted []*api.NetworkAttachmentConfig
	if ingressID != "" && publishesIngress(ep.GetPorts()) {
		wanted = append(wanted, &api.NetworkAttachmentConfig{Target: ingressID})
	}
	wanted = append(wanted, taskNetworks(t.GetSpec())...)

	o := taskOwner(t)
	prev := l.tasks[t.GetId()]
	var atts []*api.NetworkAttachment
	for _, w := range wanted {
		n := l.networks[w.GetTarget()]
		if n == nil {
			l.abortTask(o, atts)
			return nil, &notReadyError{network: w.GetTarget()}
		}
		att := &api.NetworkAttachment{Network: proto.CloneOf(n.obj), Aliases: slices.Clone(w.GetAliases())}
		i := slices.IndexFunc(prev, func(a *api.NetworkAttachment) bool { return a.GetNetwork().GetId() == w.GetTarget() })
		if i >= 0 && l.holdsAll(o, attachmentHoldings(prev[i:i+1])) {
			att.Addresses = slices.Clone(prev[i].GetAddresses())
		} else {
			addr, err := l.allocAddr(w.GetTarget(), o)
			if err != nil {
				l.abortTask(o, atts)
				return nil, err
			}
			att.Addresses = []string{addr}
		}
		atts = append(atts, att)
	}
	return atts, nil
}

// commitTask records that the store holds atts as o's attachments.
func (l *ledger) commitTask(o owner, atts []*api.NetworkAttachment) {
	l.releaseExcept(o, attachmentHoldings(l.tasks[o.id]), attachmentHoldings(atts))
	if len(atts) == 0 {
		delete(l.tasks, o.id)
		return
	}
	l.tasks[o.id] = cloneAttachments(atts)
}

// abortTask drops attachments the store did not take.
func (l *ledger) abortTask(o owner, atts []*api.NetworkAttachment) {
	l.releaseExcept(o, attachmentHoldings(atts), attachmentHoldings(l.tasks[o.id]))
}

// releaseTask frees the addresses of a task deleted or dead.
func (l *ledger) releaseTask(id string) {
	o := owner{kind: "task", id: id}
	for _, h := range attachmentHoldings(l.tasks[id]) {
		l.release(o, h)
	}
	delete(l.tasks, id)
}
