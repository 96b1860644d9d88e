package daemon

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
)

type waitEvent int

const (
	waitExit waitEvent = iota
	waitRemoved
)

type waiter struct {
	cond container.WaitCondition
	ch   chan container.WaitResponse
}

// notifyWaiters answers the waiters that ev satisfies. Callers hold c.mu.
func (c *Container) notifyWaiters(ev waitEvent) {
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		satisfied := ev == waitRemoved || w.cond != container.WaitConditionRemoved
		if !satisfied {
			kept = append(kept, w)
			continue
		}
		resp := container.WaitResponse{StatusCode: int64(c.State.ExitCode)}
		// As in dockerd, a "removed" waiter hears only of a failed removal
		// (which never answers it); the others get the run's error.
		if c.State.Error != "" && w.cond != container.WaitConditionRemoved {
			resp.Error = &container.WaitExitError{Message: c.State.Error}
		}
		w.ch <- resp // buffered, one response each
	}
	c.waiters = kept
}

// dropWaiter forgets a waiter whose caller went away and closes its
// channel, unless it was answered already. Callers hold c.mu.
func (c *Container) dropWaiter(w *waiter) {
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			close(w.ch)
			return
		}
	}
}

// ContainerWait registers a waiter and returns its channel.
func (d *Daemon) ContainerWait(ctx context.Context, ref string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, err
	}
	switch cond {
	case "", container.WaitConditionNotRunning:
		cond = container.WaitConditionNotRunning
	case container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		return nil, errdefs.InvalidParameter(fmt.Errorf("invalid condition: %q", cond))
	}
	w := &waiter{cond: cond, ch: make(chan container.WaitResponse, 1)}
	c.mu.Lock()
	if cond == container.WaitConditionNotRunning && !c.running() {
		resp := container.WaitResponse{StatusCode: int64(c.State.ExitCode)}
		c.mu.Unlock()
		w.ch <- resp
		return w.ch, nil
	}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		c.dropWaiter(w)
		c.mu.Unlock()
	}()
	return w.ch, nil
}
