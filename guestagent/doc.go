// Package guestagent is the jeVM guest agent: PID 1 of the initramfs in
// every container VM (built as cmd/jevm-agent). It loads the kernel modules
// the initramfs builder listed, opens the virtio-serial port
// agentproto.PortName and serves the agent protocol (docs/AGENT_PROTOCOL.md):
// it mounts the container's root disk, runs the main process inside it,
// streams its I/O, reaps every process, and powers the VM off when the main
// process exits.
//
// Only Linux is supported; on other systems the package holds just the
// portable helpers.
package guestagent
