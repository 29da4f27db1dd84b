package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openswarm/swarmd/ca"
)

// The texts docker prints when a manager is asked to leave without force.
const (
	leaveLastManagerText = "You are attempting to leave the swarm on a node that is participating as a manager. " +
		"Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message."
	leaveManagerText = "You are attempting to leave the swarm on a node that is participating as a manager. " +
		"Removing this node leaves %d managers out of %d. Without a Raft quorum your swarm will be inaccessible. " +
		"The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. " +
		"Use `--force` to suppress this message."
)

// ErrManagerLeave is the refusal of a manager's leave without force; the
// error returned says it in docker's words.
var ErrManagerLeave = errors.New("manager must be forced to leave")

// managerLeaveError carries docker's text and matches ErrManagerLeave.
type managerLeaveError struct{ text string }

func (e *managerLeaveError) Error() string        { return e.text }
func (e *managerLeaveError) Is(target error) bool { return target == ErrManagerLeave }

// Leave takes the node out of its swarm and erases its swarm state, as
// `docker swarm leave` does. A worker leaves at once. A manager is refused
// without force; with force it first leaves the raft group (through the
// leader) when other managers remain, so the others keep their quorum
// arithmetic right.
func (n *Node) Leave(ctx context.Context, force bool) error {
	if err := n.CanLeave(force); err != nil {
		return err
	}
	if m := n.Manager(); m != nil {
		if members := len(m.Raft().Members()); members > 1 {
			if err := m.Raft().LeaveCluster(ctx); err != nil {
				return fmt.Errorf("node: leave the raft group: %w", err)
			}
		}
	}
	n.leaving.Store(true)
	if err := n.Stop(ctx); err != nil {
		return err
	}
	return n.eraseState()
}

// removeTasksIfLeaving runs Config.RemoveTasks when the node stops because
// it leaves its swarm.
func (n *Node) removeTasksIfLeaving() {
	if !n.leaving.Load() || n.cfg.RemoveTasks == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.cfg.RemoveTasks(ctx, n.NodeID()); err != nil {
		n.log.Warn("node: remove the containers of the node's tasks", "error", err)
	}
}

// CanLeave reports whether Leave(force) would go ahead: a manager leaves
// only with force (an error wrapping ErrManagerLeave says why not).
func (n *Node) CanLeave(force bool) error {
	m := n.Manager()
	if m == nil || force {
		return nil
	}
	if members := len(m.Raft().Members()); members > 1 {
		return &managerLeaveError{fmt.Sprintf(leaveManagerText, members-1, members)}
	}
	return &managerLeaveError{leaveLastManagerText}
}

// eraseState removes what makes this node a member of its swarm.
func (n *Node) eraseState() error {
	if err := EraseState(n.cfg.StateDir); err != nil {
		return err
	}
	n.log.Info("node: left the swarm; its swarm state is erased", "state_dir", n.cfg.StateDir)
	return nil
}

// EraseState removes the swarm state a node keeps under stateDir
// (certificates, raft, worker DB, known managers), e.g. after a join that
// failed. The node must not run.
func EraseState(stateDir string) error {
	for _, name := range []string{ca.CertificatesDir, "raft", "worker", stateFile, bootstrapFile} {
		if err := os.RemoveAll(filepath.Join(stateDir, name)); err != nil {
			return fmt.Errorf("node: erase swarm state: %w", err)
		}
	}
	return nil
}
