package agentclient

import (
	"context"
	"errors"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Pods: containers that join a running VM (docs/AGENT_PROTOCOL.md,
// "Pods"). The joined container's process runs on a stream of its own,
// like an exec's; For(req.Container) scopes later requests to it.

// Join starts the container req.Container in the VM (MsgJoin) and waits
// for Started. Output flows to pio; its exit does not stop the VM.
func (c *Client) Join(ctx context.Context, req *agentproto.StartRequest, pio ProcessIO) (*Process, error) {
	if req == nil || req.Container == "" {
		return nil, errors.New("agentclient: join needs a container name")
	}
	if len(req.Process.Args) == 0 {
		return nil, errors.New("agentclient: join needs a command")
	}
	return c.impl.startOnStream(ctx, &agentproto.Msg{Type: agentproto.MsgJoin, Container: req.Container, Start: req}, req.Process.Stdin, pio)
}

// Joined is what the agent's Hello said about the containers that joined
// the VM (running, or exited since).
func (c *Client) Joined() []agentproto.JoinedState {
	c.impl.mu.Lock()
	defer c.impl.mu.Unlock()
	if c.impl.hello == nil {
		return nil
	}
	return append([]agentproto.JoinedState(nil), c.impl.hello.Joined...)
}

// ReattachJoined returns the process of the joined container named
// container after a reconnect (Hello listed it), delivering its output
// from then on to pio. ok is false if Hello did not list it: its process
// is then gone with the VM's previous life.
func (c *Client) ReattachJoined(container string, pio ProcessIO) (p *Process, ok bool) {
	c.impl.mu.Lock()
	proc := c.impl.joined[container]
	delete(c.impl.joined, container)
	c.impl.mu.Unlock()
	if proc == nil {
		return nil, false
	}
	proc.attach(pio)
	return &Process{impl: proc}, true
}

// Freeze freezes the processes of c's container (a joined one): `docker
// pause` of one container of a pod.
func (c *Client) Freeze(ctx context.Context) error {
	_, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgFreeze, Container: c.container})
	return err
}

// Thaw undoes Freeze.
func (c *Client) Thaw(ctx context.Context) error {
	_, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgThaw, Container: c.container})
	return err
}
