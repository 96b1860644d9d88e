// Package seccomp turns a docker seccomp profile (the JSON that dockerd
// takes with --security-opt seccomp=..., and its built-in default) into a
// classic BPF program for seccomp(SECCOMP_SET_MODE_FILTER) in a jeVM's
// guest. It runs on the host: the guest agent is static (no libseccomp)
// and only installs the program it is sent (docs/AGENT_PROTOCOL.md,
// "Seccomp").
//
// The guest is x86_64 (its compat ABIs: i386 and x32), whatever the host's
// architecture, so the profile is resolved for that architecture and the
// system call numbers are those of sysnum.go.
package seccomp

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultProfileJSON is dockerd's default profile (moby's
// profiles/seccomp/default.json, v28.3.3), the one a container gets
// without --security-opt seccomp=...
//
//go:embed default.json
var DefaultProfileJSON []byte

// Profile is docker's seccomp profile format.
type Profile struct {
	DefaultAction   string    `json:"defaultAction"`
	DefaultErrnoRet *uint     `json:"defaultErrnoRet,omitempty"`
	Architectures   []string  `json:"architectures,omitempty"`
	ArchMap         []ArchMap `json:"archMap,omitempty"`
	Flags           []string  `json:"flags,omitempty"`
	ListenerPath    string    `json:"listenerPath,omitempty"`
	Syscalls        []Syscall `json:"syscalls,omitempty"`
}

// ArchMap is an architecture with the sub-architectures (compat ABIs) a
// filter for it also covers.
type ArchMap struct {
	Arch      string   `json:"architecture"`
	SubArches []string `json:"subArchitectures"`
}

// Syscall is one rule: what happens to the named calls, when the
// arguments match Args (all of them).
type Syscall struct {
	Name     string   `json:"name,omitempty"`
	Names    []string `json:"names,omitempty"`
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Args     []Arg    `json:"args,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	Includes *Filter  `json:"includes,omitempty"`
	Excludes *Filter  `json:"excludes,omitempty"`
}

// Arg compares one argument of the call.
type Arg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// Filter selects where a rule applies: architectures (docker's names:
// "amd64", "x86", "arm64", ...), capabilities the container has, and the
// lowest kernel version.
type Filter struct {
	Arches    []string `json:"arches,omitempty"`
	Caps      []string `json:"caps,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// guestArch is the guest's architecture in the profile's two spellings.
const (
	guestArch        = "amd64" // includes/excludes "arches"
	guestSeccompArch = "SCMP_ARCH_X86_64"
)

// Parse decodes a profile as dockerd does (dockerd's error message).
func Parse(body []byte) (*Profile, error) {
	var p Profile
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("Decoding seccomp profile failed: %v", err)
	}
	return &p, nil
}

// Default is dockerd's default profile.
func Default() *Profile {
	p, err := Parse(DefaultProfileJSON)
	if err != nil {
		panic(err) // embedded, checked by the tests
	}
	return p
}

// Rule is a profile's rule as it applies to one container: its names
// are syscalls of the guest's architecture (or unknown to it: skipped).
type Rule struct {
	Names    []string
	Action   string
	ErrnoRet *uint
	Args     []Arg
}

// Resolved is a profile for one container: the architectures its filter
// covers and the rules whose includes/excludes match the container.
type Resolved struct {
	DefaultAction   string
	DefaultErrnoRet *uint
	Arches          []string // SCMP_ARCH_*; empty: the native one only
	Flags           []string
	Rules           []Rule
}

// Resolve applies p's conditions to a container whose capability
// bounding set is caps ("CAP_CHOWN", ...) and whose kernel is
// kernelRelease ("6.1.0-..."; "" counts as new enough for any
// minKernel), as dockerd does before handing the profile to runc. It
// returns nil for a profile that confines nothing (no default action and
// no rules), as dockerd does.
func (p *Profile) Resolve(caps []string, kernelRelease string) (*Resolved, error) {
	if p.DefaultAction == "" && len(p.Syscalls) == 0 {
		return nil, nil
	}
	if len(p.Architectures) != 0 && len(p.ArchMap) != 0 {
		return nil, errors.New("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'")
	}
	if p.ListenerPath != "" {
		return nil, errors.New("seccomp profile: listenerPath (SCMP_ACT_NOTIFY) is not supported by jevm")
	}
	r := &Resolved{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet, Flags: p.Flags}
	r.Arches = append(r.Arches, p.Architectures...)
	for _, a := range p.ArchMap {
		if a.Arch == guestSeccompArch {
			r.Arches = append(r.Arches, a.Arch)
			r.Arches = append(r.Arches, a.SubArches...)
			break
		}
	}
	has := make(map[string]bool, len(caps))
	for _, c := range caps {
		has[c] = true
	}
	for _, call := range p.Syscalls {
		names := call.Names
		if call.Name != "" {
			if len(call.Names) != 0 {
				return nil, errors.New("both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'")
			}
			names = []string{call.Name}
		}
		if ex := call.Excludes; ex != nil {
			if contains(ex.Arches, guestArch) || containsAny(ex.Caps, has) {
				continue
			}
			if ex.MinKernel != "" {
				ok, err := kernelAtLeast(kernelRelease, ex.MinKernel)
				if err != nil {
					return nil, err
				}
				if ok {
					continue
				}
			}
		}
		if in := call.Includes; in != nil {
			if len(in.Arches) > 0 && !contains(in.Arches, guestArch) {
				continue
			}
			if !containsAll(in.Caps, has) {
				continue
			}
			if in.MinKernel != "" {
				ok, err := kernelAtLeast(kernelRelease, in.MinKernel)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
			}
		}
		r.Rules = append(r.Rules, Rule{Names: names, Action: call.Action, ErrnoRet: call.ErrnoRet, Args: call.Args})
	}
	return r, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func containsAny(list []string, set map[string]bool) bool {
	for _, v := range list {
		if set[v] {
			return true
		}
	}
	return false
}

func containsAll(list []string, set map[string]bool) bool {
	for _, v := range list {
		if !set[v] {
			return false
		}
	}
	return true
}

// kernelAtLeast compares release's major.minor with min ("4.8"). An
// unknown release ("") counts as new enough: the guest kernels jevm
// ships are recent.
func kernelAtLeast(release, min string) (bool, error) {
	wantMaj, wantMin, err := parseKernel(min)
	if err != nil {
		return false, fmt.Errorf("seccomp profile: invalid minKernel %q", min)
	}
	if release == "" {
		return true, nil
	}
	maj, mn, err := parseKernel(release)
	if err != nil {
		return true, nil
	}
	return maj > wantMaj || (maj == wantMaj && mn >= wantMin), nil
}

func parseKernel(v string) (int, int, error) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, errors.New("no minor version")
	}
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, err
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	mn, err := strconv.Atoi(minor)
	if err != nil {
		return 0, 0, err
	}
	return maj, mn, nil
}
