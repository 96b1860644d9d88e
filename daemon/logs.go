package daemon

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/internal/filterutil"
)

// ContainerLogs reads the container's log (json-file or local; logfile.go).
func (d *Daemon) ContainerLogs(ctx context.Context, ref string, opts container.LogsOptions) (<-chan backend.LogMessage, bool, error) {
	c, err := d.containers.get(ref)
	if err != nil {
		return nil, false, err
	}
	if !opts.ShowStdout && !opts.ShowStderr {
		return nil, false, errdefs.InvalidParameter(fmt.Errorf("You must choose at least one stream"))
	}
	c.mu.Lock()
	logDriver, logPath := c.logConfig().Type, c.logFilePath()
	c.mu.Unlock()
	if logDriver == logDriverNone {
		return nil, false, errReadLogsNotSupported
	}
	ro := logReadOptions{Stdout: opts.ShowStdout, Stderr: opts.ShowStderr, Tail: -1, Follow: opts.Follow}
	if opts.Tail != "" && opts.Tail != "all" {
		n, err := strconv.Atoi(opts.Tail)
		if err == nil && n >= 0 {
			ro.Tail = n
		}
	}
	now := time.Now()
	if opts.Since != "" {
		if ro.Since, err = filterutil.ParseTime(opts.Since, now); err != nil {
			return nil, false, err
		}
	}
	if opts.Until != "" {
		if ro.Until, err = filterutil.ParseTime(opts.Until, now); err != nil {
			return nil, false, err
		}
	}
	c.mu.Lock()
	tty := c.Config.Tty
	c.mu.Unlock()
	stillRunning := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.run != nil
	}
	out := make(chan backend.LogMessage, 64)
	go readLog(ctx, logPath, ro, stillRunning, out)
	return out, tty, nil
}
