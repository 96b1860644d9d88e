package agentclient

import (
	"context"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// InterfaceUp asks the agent to configure one more network interface (a
// NIC just hot-plugged into the running guest): it waits for the NIC with
// cfg.MAC to appear, names it cfg.Name and sets its addresses, MTU and
// (with a gateway) default route.
func (c *Client) InterfaceUp(ctx context.Context, cfg agentproto.InterfaceConfig) error {
	_, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgInterfaceUp, Interface: &cfg})
	return err
}

// Restored tells the agent of a VM restored from a checkpoint the time,
// fresh entropy and, for a fork, its new identity.
func (c *Client) Restored(ctx context.Context, r agentproto.RestoredRequest) error {
	_, err := c.impl.request(ctx, 0, &agentproto.Msg{Type: agentproto.MsgRestored, Restored: &r})
	return err
}
