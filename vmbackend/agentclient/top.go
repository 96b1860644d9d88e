package agentclient

import (
	"context"
	"errors"
	"strings"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Top lists the container's processes, formatted for psArgs (empty or
// "-ef": UID PID PPID C STIME TTY TIME CMD; "aux": USER PID %CPU ...).
// The agent refuses arguments it does not support.
func (c *Client) Top(ctx context.Context, psArgs string) (*agentproto.TopResult, error) {
	r, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgTop, Container: c.container, PsArgs: psArgs})
	if err != nil {
		return nil, err
	}
	if r.Top == nil {
		return nil, errors.New("agentclient: top reply without a table")
	}
	return r.Top, nil
}

// Stats samples the guest's resource usage.
func (c *Client) Stats(ctx context.Context) (*agentproto.GuestStats, error) {
	r, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgStats, Container: c.container})
	if err != nil {
		return nil, err
	}
	if r.Stats == nil {
		return nil, errors.New("agentclient: stats reply without a sample")
	}
	return r.Stats, nil
}

// CheckUser resolves user in the container as an exec would; the error
// is the agent's (runc's wording). ErrUnsupported: the agent predates it.
func (c *Client) CheckUser(ctx context.Context, user string) error {
	_, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgCheckUser, Container: c.container, Process: &agentproto.ProcessRequest{User: user}})
	if err != nil && strings.Contains(err.Error(), "unknown request") {
		return errors.ErrUnsupported
	}
	return err
}
