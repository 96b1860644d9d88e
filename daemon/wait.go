package daemon

import (
	"github.com/docker/docker/api/types/container"
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
