package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	gogotypes "github.com/gogo/protobuf/types"
	"github.com/moby/swarmkit/v2/agent/exec"
	swarmapi "github.com/moby/swarmkit/v2/api"

	"github.com/jevm/jevm/api/types/backend"
)

// Logs of services and tasks (docker service logs): the manager's log
// broker (SwarmKit's) asks the nodes that run the tasks for them; on each
// node the task's controller reads its container's log from the engine
// and publishes it. Each message carries the node, service and task it
// comes from as details, which the docker CLI prints as
// "name.slot.task@node |".

// Detail keys of a service log message, as dockerd names them.
const (
	logAttrNode    = "com.docker.swarm.node.id"
	logAttrService = "com.docker.swarm.service.id"
	logAttrTask    = "com.docker.swarm.task.id"
)

// ServiceLogs streams the logs of the services and tasks named (by name,
// ID or ID prefix) from wherever in the swarm they run. The channel is
// closed at the end (after the last message unless opts.Follow), or when
// ctx ends.
func (c *Cluster) ServiceLogs(ctx context.Context, services, tasks []string, opts container.LogsOptions) (<-chan backend.LogMessage, error) {
	conn, err := c.managerConn()
	if err != nil {
		return nil, err
	}
	sel := &swarmapi.LogSelector{}
	for _, ref := range services {
		s, err := c.Service(ctx, ref)
		if err != nil {
			return nil, err
		}
		sel.ServiceIDs = append(sel.ServiceIDs, s.ID)
	}
	for _, ref := range tasks {
		t, err := c.Task(ctx, ref)
		if err != nil {
			return nil, err
		}
		sel.TaskIDs = append(sel.TaskIDs, t.ID)
	}
	subOpts, err := subscriptionOptions(opts)
	if err != nil {
		return nil, err
	}
	stream, err := swarmapi.NewLogsClient(conn).SubscribeLogs(ctx, &swarmapi.SubscribeLogsRequest{Selector: sel, Options: subOpts})
	if err != nil {
		return nil, fromGRPC(err)
	}
	out := make(chan backend.LogMessage, 16)
	go func() {
		defer close(out)
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return
			}
			if err != nil {
				select {
				case out <- backend.LogMessage{Err: fromGRPC(err)}:
				case <-ctx.Done():
				}
				return
			}
			for _, msg := range m.Messages {
				lm := backend.LogMessage{Stream: "stdout", Line: msg.Data}
				if msg.Stream == swarmapi.LogStreamStderr {
					lm.Stream = "stderr"
				}
				if msg.Timestamp != nil {
					lm.Timestamp, _ = gogotypes.TimestampFromProto(msg.Timestamp)
				}
				lm.Attrs = []backend.LogAttr{
					{Key: logAttrNode, Value: msg.Context.NodeID},
					{Key: logAttrService, Value: msg.Context.ServiceID},
					{Key: logAttrTask, Value: msg.Context.TaskID},
				}
				select {
				case out <- lm:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// subscriptionOptions converts the API's options to SwarmKit's, whose
// tail counts differently: -(n+1) is the last n lines, 0 all of them.
func subscriptionOptions(opts container.LogsOptions) (*swarmapi.LogSubscriptionOptions, error) {
	o := &swarmapi.LogSubscriptionOptions{Follow: opts.Follow}
	if opts.ShowStdout {
		o.Streams = append(o.Streams, swarmapi.LogStreamStdout)
	}
	if opts.ShowStderr {
		o.Streams = append(o.Streams, swarmapi.LogStreamStderr)
	}
	if opts.Tail != "" && opts.Tail != "all" {
		n, err := strconv.Atoi(opts.Tail)
		if err != nil || n < 0 {
			return nil, errdefs.InvalidParameter(fmt.Errorf("invalid value for \"tail\": %q", opts.Tail))
		}
		o.Tail = -int64(n) - 1
	}
	if opts.Since != "" {
		since, err := parseAPITime(opts.Since)
		if err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
		if o.Since, err = gogotypes.TimestampProto(since); err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
	}
	if opts.Until != "" {
		return nil, errdefs.InvalidParameter(errors.New("the until option is not supported for service logs"))
	}
	return o, nil
}

// parseAPITime parses the API's "seconds[.nanoseconds]" time.
func parseAPITime(v string) (time.Time, error) {
	sec, frac := v, ""
	for i := 0; i < len(v); i++ {
		if v[i] == '.' {
			sec, frac = v[:i], v[i+1:]
			break
		}
	}
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q", v)
	}
	var ns int64
	if frac != "" {
		for len(frac) < 9 {
			frac += "0"
		}
		if ns, err = strconv.ParseInt(frac[:9], 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("invalid time %q", v)
		}
	}
	return time.Unix(s, ns), nil
}

var _ exec.ControllerLogs = (*controller)(nil)

// Logs implements exec.ControllerLogs: the task's container's log, as
// the log broker asked for it, published until it ends (or, following,
// until ctx ends).
func (r *controller) Logs(ctx context.Context, publisher exec.LogPublisher, options swarmapi.LogSubscriptionOptions) error {
	opts := container.LogsOptions{Follow: options.Follow}
	if len(options.Streams) == 0 {
		opts.ShowStdout, opts.ShowStderr = true, true
	}
	for _, s := range options.Streams {
		switch s {
		case swarmapi.LogStreamStdout:
			opts.ShowStdout = true
		case swarmapi.LogStreamStderr:
			opts.ShowStderr = true
		}
	}
	if options.Tail < 0 {
		opts.Tail = strconv.FormatInt(-options.Tail-1, 10)
	}
	if options.Since != nil {
		since, err := gogotypes.TimestampFromProto(options.Since)
		if err != nil {
			return err
		}
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	// The container may not be there yet (the task is being prepared).
	for {
		if _, err := r.c.ContainerInspect(ctx, r.name, false); err == nil {
			break
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, _, err := r.c.ContainerLogs(lctx, r.name, opts)
	if err != nil {
		return err
	}
	logCtx := swarmapi.LogContext{NodeID: r.task.NodeID, ServiceID: r.task.ServiceID, TaskID: r.task.ID}
	for msg := range msgs {
		if msg.Err != nil {
			return msg.Err
		}
		ts, err := gogotypes.TimestampProto(msg.Timestamp)
		if err != nil {
			return err
		}
		stream := swarmapi.LogStreamStdout
		if msg.Stream == "stderr" {
			stream = swarmapi.LogStreamStderr
		}
		if err := publisher.Publish(ctx, swarmapi.LogMessage{Context: logCtx, Timestamp: ts, Stream: stream, Data: msg.Line}); err != nil {
			return fmt.Errorf("publish a log message: %w", err)
		}
	}
	return nil
}
