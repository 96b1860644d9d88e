//go:build !linux

package guestagent

import (
	"fmt"
	"os"
)

// BuildID identifies the agent build (see the Linux implementation).
var BuildID = ""

// Main exits: the agent runs only as PID 1 of a Linux guest.
func Main() {
	fmt.Fprintln(os.Stderr, "jevm-agent runs only on Linux (as PID 1 of a jeVM)")
	os.Exit(1)
}
