package agentclient

import (
	"context"
	"errors"
	"strings"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// maxStreamRetries bounds the retries of an exec whose stream the agent
// still uses (a process exec'd through a previous connection, before a
// daemon restart).
const maxStreamRetries = 16

// exec starts a process in the running container on a stream of its own.
func (c *client) exec(ctx context.Context, container string, req *agentproto.ProcessRequest, pio ProcessIO) (*Process, error) {
	if req == nil || len(req.Args) == 0 {
		return nil, errors.New("agentclient: exec needs a command")
	}
	return c.startOnStream(ctx, &agentproto.Msg{Type: agentproto.MsgExec, Container: container, Process: req}, req.Stdin, pio)
}

// startOnStream sends m (an exec or a join) on a new stream and waits
// for Started.
func (c *client) startOnStream(ctx context.Context, m *agentproto.Msg, stdin bool, pio ProcessIO) (*Process, error) {
	for attempt := 0; ; attempt++ {
		p := newProcess(c, 0)
		p.pio = pio
		p.stdinOK = stdin
		c.mu.Lock()
		if c.errv != nil {
			err := c.errv
			c.mu.Unlock()
			return nil, err
		}
		p.stream = c.allocStream()
		// Registered before the request: output may precede Started.
		c.procs[p.stream] = p
		c.mu.Unlock()

		r, err := c.request(ctx, p.stream, m)
		if err != nil {
			c.mu.Lock()
			if c.procs[p.stream] == p {
				delete(c.procs, p.stream)
			}
			c.mu.Unlock()
			var ae *AgentError
			if errors.As(err, &ae) && strings.Contains(ae.Message, "is in use") && attempt < maxStreamRetries {
				continue
			}
			return nil, err
		}
		p.mu.Lock()
		p.pid = r.Pid
		p.mu.Unlock()
		p.grantStdin(r.StdinWindow, true)
		return &Process{impl: p}, nil
	}
}

// allocStream picks the next unused stream above MainStream; streams are
// not reused on a connection. Callers hold c.mu.
func (c *client) allocStream() uint32 {
	for {
		c.lastStream++
		if c.lastStream <= agentproto.MainStream {
			c.lastStream = agentproto.MainStream + 1
		}
		if _, used := c.procs[c.lastStream]; !used {
			return c.lastStream
		}
	}
}
