package daemon

import (
	"context"
	"fmt"
	"strconv"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
)

// ContainerAttach streams the container's output (and input) until the
// current or next run ends.
func (d *Daemon) ContainerAttach(ctx context.Context, ref string, cfg *backend.AttachConfig) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("container %s is being removed", c.ID))
	}
	tty := c.Config.Tty
	openStdin := c.Config.OpenStdin
	stdinOnce := c.Config.StdinOnce
	logDriver, logPath := c.logConfig().Type, c.logFilePath()
	c.mu.Unlock()
	if cfg.Logs && logDriver == logDriverNone {
		return errReadLogsNotSupported
	}
	detachKeys, err := attachDetachKeys(cfg.DetachKeys)
	if err != nil {
		return err
	}

	stdin, stdout, stderr, err := cfg.GetStreams(!tty)
	if err != nil {
		return err
	}
	if !cfg.UseStdout {
		stdout = nil
	}
	if !cfg.UseStderr || tty {
		stderr = nil
	}
	if cfg.Logs {
		msgs := make(chan backend.LogMessage)
		go readLog(ctx, logPath, logReadOptions{Stdout: stdout != nil, Stderr: stderr != nil, Tail: -1}, func() bool { return false }, msgs)
		for m := range msgs {
			w := stdout
			if m.Stream == "stderr" {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(m.Line); err != nil {
					return nil
				}
			}
		}
	}
	if !cfg.Stream {
		return nil
	}
	c.mu.Lock()
	hub := c.hub()
	sub := hub.subscribe(stdout, stderr)
	var pipe *stdinPipe
	if cfg.UseStdin && openStdin && stdin != nil {
		if c.stdin == nil {
			c.stdin = newStdinPipe()
		}
		pipe = c.stdin
	}
	d.containerEvent(c, events.ActionAttach, nil)
	c.mu.Unlock()
	defer hub.unsubscribe(sub)

	d.attachStreams(ctx, c, sub, pipe, stdin, tty, stdinOnce, detachKeys)
	return nil
}

// ContainerResize sets the TTY size of the main process.
func (d *Daemon) ContainerResize(ctx context.Context, ref string, height, width uint) error {
	c, err := d.containers.get(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	r := c.run
	tty := c.Config.Tty
	c.mu.Unlock()
	if r == nil {
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.ID))
	}
	if !tty {
		return nil
	}
	if err := r.proc.Resize(ctx, uint16(height), uint16(width)); err != nil {
		return err
	}
	d.lockedContainerEvent(c, events.ActionResize, map[string]string{"height": strconv.FormatUint(uint64(height), 10), "width": strconv.FormatUint(uint64(width), 10)})
	return nil
}
