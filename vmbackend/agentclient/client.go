// Package agentclient is the host side of the agent protocol
// (vmbackend/agentproto): it connects to a guest agent over the VM's
// virtio-serial stream, starts the container's main process and streams its
// I/O and exit status.
//
// CONTRACT (implemented by the guest-agent work; signatures are fixed):
package agentclient

import (
	"context"
	"io"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// ProcessIO receives a process's output. Writes come from the client's
// single reader goroutine, in order; they must not block for long (the
// daemon copies into its log and attach buffers). Stdout receives the TTY's
// output when the process has a TTY.
type ProcessIO struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Client is one connection to one guest agent.
type Client struct {
	impl *client
	// container scopes the requests made through this Client to one
	// container of the VM (For); empty is the VM's main container.
	container string
}

// For returns a Client on the same connection whose requests (Exec, Top,
// Stats, CheckUser, the file operations, Freeze, Thaw) are about the
// container that joined the VM under that name (Join); "" is the VM's
// main container. Closing either closes the connection.
func (c *Client) For(container string) *Client {
	return &Client{impl: c.impl, container: container}
}

// Container is the container c's requests are about ("" for the main one).
func (c *Client) Container() string { return c.container }

// Connect sends a host-hello with a fresh nonce on conn, skips anything
// that is not the agent's matching Hello (resynchronising on a partial
// frame left by a previous connection), and returns the client and that
// Hello (whose Phase says whether the guest is idle, running or exited).
// It fails if the agent speaks another protocol version.
func Connect(ctx context.Context, conn io.ReadWriteCloser) (*Client, *agentproto.Msg, error) {
	return connect(ctx, conn)
}

// Start sends the StartRequest and waits for Started (or the agent's Error,
// returned as an error). Output starts flowing to pio from then on.
func (c *Client) Start(ctx context.Context, req *agentproto.StartRequest, pio ProcessIO) (*Process, error) {
	return c.impl.start(ctx, req, pio)
}

// Reattach returns the main process of an agent whose Hello said "running"
// (after a daemon restart), delivering further output to pio.
func (c *Client) Reattach(pio ProcessIO) *Process { return c.impl.reattach(pio) }

// Shutdown asks the agent to kill everything, unmount and power off.
func (c *Client) Shutdown(ctx context.Context) error { return c.impl.shutdown(ctx) }

// Done is closed when the connection is lost (the VM powered off, or the
// stream broke); Err then says why.
func (c *Client) Done() <-chan struct{} { return c.impl.done }

// Err is the reason the connection ended (nil while it is up).
func (c *Client) Err() error { return c.impl.err() }

// Close closes the connection; the guest keeps running.
func (c *Client) Close() error { return c.impl.close() }

// Process is a process started through the agent.
type Process struct {
	impl *process
}

// Pid is the process ID inside the guest.
func (p *Process) Pid() int { return p.impl.pid }

// Timings are the agent's phases of the start that made the main process
// (ms by phase name, names checked and bounded); empty for others.
func (p *Process) Timings() map[string]float64 {
	p.impl.mu.Lock()
	defer p.impl.mu.Unlock()
	return p.impl.timings
}

// Stdin returns a writer to the process's stdin (only if the request set
// Stdin); Close sends EOF.
func (p *Process) Stdin() io.WriteCloser { return p.impl.stdin() }

// Signal sends a signal (by number) to the process.
func (p *Process) Signal(ctx context.Context, sig int) error { return p.impl.signal(ctx, sig) }

// Resize sets the TTY size of a process started with TTY.
func (p *Process) Resize(ctx context.Context, rows, cols uint16) error {
	return p.impl.resize(ctx, rows, cols)
}

// Exited is closed after the process's exit status arrived and all its
// output was delivered to ProcessIO.
func (p *Process) Exited() <-chan struct{} { return p.impl.exited }

// Status is the exit status; valid once Exited is closed. If the connection
// was lost first, ok is false.
func (p *Process) Status() (status agentproto.ExitStatus, ok bool) { return p.impl.status() }

// Exec starts another process in the running container, on a new stream,
// and waits for Started (or the agent's Error). Output flows to pio; its
// exit does not stop the container.
func (c *Client) Exec(ctx context.Context, req *agentproto.ProcessRequest, pio ProcessIO) (*Process, error) {
	return c.impl.exec(ctx, c.container, req, pio)
}
