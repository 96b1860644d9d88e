package daemon

import (
	"fmt"

	units "github.com/docker/go-units"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// Resource limits (`docker run --ulimit`, HostConfig.Ulimits) and the
// daemon's defaults (--default-ulimit, daemon.json "default-ulimits",
// Config.DefaultUlimits), as dockerd applies them: the container's own
// limits are validated at create and kept as given; at start they are
// merged with the daemon's defaults (mergeUlimits) and sent to the agent,
// which sets them on the container's process and on every exec'd one
// (runc gives an exec the rlimits of the container's spec).

// validateUlimits applies go-units' rules (those of docker's --ulimit
// parser): a known name, and a soft limit no higher than the hard one
// (-1 is unlimited).
func validateUlimits(uls []*units.Ulimit) error {
	for _, ul := range uls {
		if ul == nil {
			return fmt.Errorf("invalid ulimit: null")
		}
		if _, err := ul.GetRlimit(); err != nil {
			return fmt.Errorf("invalid ulimit type: %s", ul.Name)
		}
		if ul.Hard != -1 {
			if ul.Soft == -1 {
				return fmt.Errorf("ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: %d", ul.Hard)
			}
			if ul.Soft > ul.Hard {
				return fmt.Errorf("ulimit soft limit must be less than or equal to hard limit: %d > %d", ul.Soft, ul.Hard)
			}
		}
	}
	return nil
}

// mergeUlimits is dockerd's mergeUlimits: the container's own limits, then
// each default whose name the container does not set. A name given twice
// in the defaults keeps the last (dockerd keeps them in a map by name).
// own is returned as is when there are no defaults; otherwise the result
// is a new slice (own is not modified).
func mergeUlimits(own, defaults []*units.Ulimit) []*units.Ulimit {
	if len(defaults) == 0 {
		return own
	}
	out := make([]*units.Ulimit, 0, len(own)+len(defaults))
	set := map[string]bool{}
	for _, ul := range own {
		if ul == nil {
			continue
		}
		out = append(out, ul)
		set[ul.Name] = true
	}
	at := map[string]int{}
	for _, ul := range defaults {
		if ul == nil || set[ul.Name] {
			continue
		}
		if i, ok := at[ul.Name]; ok {
			out[i] = ul
			continue
		}
		at[ul.Name] = len(out)
		out = append(out, ul)
	}
	return out
}

// rlimitsFor converts ulimits to the agent's rlimits (-1, unlimited,
// becomes RLIM_INFINITY, as dockerd's uint64 conversion does).
func rlimitsFor(uls []*units.Ulimit) []agentproto.Rlimit {
	var out []agentproto.Rlimit
	for _, ul := range uls {
		if ul == nil {
			continue
		}
		out = append(out, agentproto.Rlimit{Name: ul.Name, Soft: uint64(ul.Soft), Hard: uint64(ul.Hard)})
	}
	return out
}

// containerRlimits are the rlimits of c's processes for a start now: its
// own ulimits merged with the daemon's defaults.
func (d *Daemon) containerRlimits(c *Container) []agentproto.Rlimit {
	return rlimitsFor(mergeUlimits(c.HostConfig.Ulimits, d.cfg.DefaultUlimits))
}
