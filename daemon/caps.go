package daemon

import (
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// defaultCapabilities are dockerd's default capabilities of a container's
// processes (moby's oci/caps); the agent sets them as the bounding set in
// the guest, so root in a container has what it has under dockerd, not
// all of root's powers over its VM.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

const allCapabilities = "ALL"

// normalizeCapabilities turns --cap-add/--cap-drop values into docker's
// names ("net_admin" → "CAP_NET_ADMIN"), keeping ALL, and refuses unknown
// ones with dockerd's message.
func normalizeCapabilities(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, c := range in {
		if strings.EqualFold(c, allCapabilities) {
			out = append(out, allCapabilities)
			continue
		}
		c = strings.ToUpper(c)
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if _, ok := agentproto.CapabilityNumbers[c]; !ok {
			return nil, errdefs.InvalidParameter(fmt.Errorf("unknown capability: %q", c))
		}
		out = append(out, c)
	}
	return out, nil
}

func everyCapability() []string {
	all := make([]string, 0, len(agentproto.CapabilityNumbers))
	for c := range agentproto.CapabilityNumbers {
		all = append(all, c)
	}
	sort.Slice(all, func(i, j int) bool {
		return agentproto.CapabilityNumbers[all[i]] < agentproto.CapabilityNumbers[all[j]]
	})
	return all
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// containerCapabilities is the bounding set of a container's processes as
// dockerd computes it: all for --privileged (nil: the agent keeps every
// capability), else the defaults less --cap-drop plus --cap-add, with ALL
// on either side meaning what it means to dockerd.
func containerCapabilities(hc *container.HostConfig) (*[]string, error) {
	if hc.Privileged {
		return nil, nil
	}
	drops, err := normalizeCapabilities(hc.CapDrop)
	if err != nil {
		return nil, err
	}
	adds, err := normalizeCapabilities(hc.CapAdd)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case contains(adds, allCapabilities):
		for _, c := range everyCapability() {
			if !contains(drops, c) {
				caps = append(caps, c)
			}
		}
	case contains(drops, allCapabilities):
		caps = append(caps, adds...)
	default:
		for _, c := range defaultCapabilities {
			if !contains(drops, c) {
				caps = append(caps, c)
			}
		}
		for _, c := range adds {
			if !contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	if caps == nil {
		caps = []string{} // none at all, which differs from nil (all)
	}
	return &caps, nil
}

// execCapabilities: an exec gets the container's capabilities, or all of
// them with `docker exec --privileged`, as in dockerd.
func execCapabilities(c *Container, privileged bool) *[]string {
	if privileged {
		return nil
	}
	caps, err := containerCapabilities(c.HostConfig)
	if err != nil {
		// Checked at create; a record from before cannot be wrong here,
		// but a process never gets more than the defaults by mistake.
		d := append([]string(nil), defaultCapabilities...)
		return &d
	}
	return caps
}
