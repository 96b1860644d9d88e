// Command jevm-agent is the guest agent of a jeVM: /init of the initramfs
// built by vmbackend/initramfs. See package guestagent and
// docs/AGENT_PROTOCOL.md. Build it static:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o jevm-agent ./cmd/jevm-agent
package main

import "github.com/jevm/jevm/guestagent"

func main() { guestagent.Main() }
