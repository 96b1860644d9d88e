package agentclient

import (
	"context"
	"errors"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// exec is filled in by the exec work (issue: day-two commands).
func (c *client) exec(ctx context.Context, req *agentproto.ProcessRequest, pio ProcessIO) (*Process, error) {
	return nil, errors.New("exec is not implemented yet")
}
