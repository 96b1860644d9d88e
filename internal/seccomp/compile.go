package seccomp

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// The compiler. A resolved profile becomes a classic BPF program over
// struct seccomp_data (nr at 0, arch at 4, instruction pointer at 8, the
// six 64-bit arguments from 16; all little-endian on the guest):
//
//	ld arch; one jump per covered architecture to its section; else the
//	bad-architecture action (kill, libseccomp's default)
//	section: ld nr; the rules in profile order; nr above the section's
//	largest rule number: ENOSYS (runc's stub, so that a libc falls back
//	from a call the profile does not know of, such as a new clone3);
//	the default action
//
// Calls without argument conditions and with the same action are runs
// of one compare each, ending in one shared return. A call with argument
// conditions is a block of its own: each conditional rule, in profile
// order, returns its action when all its comparisons hold; then the
// call's unconditional rule, if any. Why this and not a library:
// golang.org/x/net/bpf (already a dependency) assembles and, in the
// tests, runs the program; the pure-Go seccomp generators on the module
// proxy either lack argument comparisons (docker's default profile uses
// them for clone and personality) or bring their own syscall tables per
// host architecture, where jevm needs the guest's (x86_64) on any host.

// Return values (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
)

// Audit architectures (linux/audit.h) and x32's system call bit.
const (
	auditArchX86_64 = 0xc000003e
	auditArchI386   = 0x40000003
	x32SyscallBit   = 0x40000000
)

const (
	errnoEPERM  = 1
	errnoENOSYS = 38
)

// Filter flags for seccomp(2) by the profile's names.
var filterFlags = map[string]uint32{
	"SECCOMP_FILTER_FLAG_TSYNC":              1,
	"SECCOMP_FILTER_FLAG_LOG":                2,
	"SECCOMP_FILTER_FLAG_SPEC_ALLOW":         4,
	"SECCOMP_FILTER_FLAG_TSYNC_ESRCH":        16,
	"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}

// maxInstructions is the kernel's BPF_MAXINSNS.
const maxInstructions = 4096

// Program is a compiled filter.
type Program struct {
	Instructions []bpf.RawInstruction
	// Flags for seccomp(SECCOMP_SET_MODE_FILTER, flags, ...).
	Flags uint32
}

// actionValue is the filter's return value for a profile action.
func actionValue(action string, errnoRet *uint) (uint32, error) {
	ret := func(def uint) uint32 {
		if errnoRet != nil {
			return uint32(*errnoRet & 0xffff)
		}
		return uint32(def)
	}
	switch action {
	case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD":
		return retKillThread, nil
	case "SCMP_ACT_KILL_PROCESS":
		return retKillProcess, nil
	case "SCMP_ACT_TRAP":
		return retTrap, nil
	case "SCMP_ACT_ERRNO":
		return retErrno | ret(errnoEPERM), nil
	case "SCMP_ACT_TRACE":
		return retTrace | ret(errnoEPERM), nil
	case "SCMP_ACT_LOG":
		return retLog, nil
	case "SCMP_ACT_ALLOW":
		return retAllow, nil
	case "SCMP_ACT_NOTIFY":
		return 0, fmt.Errorf("seccomp action %s is not supported by jevm", action)
	}
	return 0, fmt.Errorf("unknown seccomp action %q", action)
}

// section is one architecture's part of the program.
type section struct {
	arch   string
	table  map[string]uint32
	nrBits uint32 // or-ed into every number (x32)
	is32   bool   // arguments are 32 bits wide
}

var sections = map[string]section{
	"SCMP_ARCH_X86_64": {arch: "SCMP_ARCH_X86_64", table: sysnumX86_64},
	"SCMP_ARCH_X86":    {arch: "SCMP_ARCH_X86", table: sysnumX86, is32: true},
	// x32 shares x86_64's numbers (with the x32 bit) but for a few calls
	// with compat structures (512 and up), which the table does not
	// name: those get the default action.
	"SCMP_ARCH_X32": {arch: "SCMP_ARCH_X32", table: sysnumX86_64, nrBits: x32SyscallBit},
}

// Compile turns r into the guest's filter program.
func Compile(r *Resolved) (*Program, error) {
	def, err := actionValue(r.DefaultAction, r.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	prog := &Program{}
	for _, f := range r.Flags {
		v, ok := filterFlags[f]
		if !ok {
			return nil, fmt.Errorf("seccomp profile: unsupported flag %q", f)
		}
		prog.Flags |= v
	}
	covered := map[string]bool{"SCMP_ARCH_X86_64": true}
	for _, a := range r.Arches {
		if _, ok := sections[a]; ok {
			covered[a] = true
		}
		// Others (another architecture's names) cannot occur in the
		// guest: the kernel never reports them.
	}

	a := &asm{}
	lX86_64, lX86, lX32 := a.label(), a.label(), a.label()
	// Sections lie further apart than a conditional jump reaches: each
	// test jumps over an unconditional (32-bit) jump to its section.
	a.load(4)
	l := a.label()
	a.jumpIf(bpf.JumpEqual, auditArchX86_64, next, l)
	a.jump(lX86_64)
	a.bind(l)
	if covered["SCMP_ARCH_X86"] {
		l := a.label()
		a.jumpIf(bpf.JumpEqual, auditArchI386, next, l)
		a.jump(lX86)
		a.bind(l)
	}
	a.ret(retKillThread)

	a.bind(lX86_64)
	a.load(0)
	lNative := a.label()
	a.jumpIf(bpf.JumpBitsSet, x32SyscallBit, next, lNative)
	if covered["SCMP_ARCH_X32"] {
		a.jump(lX32)
	} else {
		a.ret(retKillThread)
	}
	a.bind(lNative)
	if err := a.section(sections["SCMP_ARCH_X86_64"], r, def); err != nil {
		return nil, err
	}
	if covered["SCMP_ARCH_X32"] {
		a.bind(lX32)
		a.load(0)
		if err := a.section(sections["SCMP_ARCH_X32"], r, def); err != nil {
			return nil, err
		}
	}
	if covered["SCMP_ARCH_X86"] {
		a.bind(lX86)
		a.load(0)
		if err := a.section(sections["SCMP_ARCH_X86"], r, def); err != nil {
			return nil, err
		}
	}
	ins, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if len(ins) > maxInstructions {
		return nil, fmt.Errorf("seccomp profile: the filter has %d instructions, more than the kernel's %d", len(ins), maxInstructions)
	}
	prog.Instructions = ins
	return prog, nil
}

// callRules is what the rules say about one call of a section.
type callRules struct {
	nr     uint32
	cond   []condRule
	uncond *uint32 // the first unconditional rule's action
}

type condRule struct {
	args   []Arg
	action uint32
}

// section emits one architecture's rules; A holds the call's number.
func (a *asm) section(s section, r *Resolved, def uint32) error {
	var order []*callRules
	byNr := map[uint32]*callRules{}
	var maxNr uint32
	for _, rule := range r.Rules {
		act, err := actionValue(rule.Action, rule.ErrnoRet)
		if err != nil {
			return err
		}
		for _, arg := range rule.Args {
			if arg.Index > 5 {
				return fmt.Errorf("seccomp profile: argument index %d out of range", arg.Index)
			}
			if _, ok := argOps[arg.Op]; !ok {
				return fmt.Errorf("seccomp profile: unknown comparison %q", arg.Op)
			}
		}
		for _, name := range rule.Names {
			nr, ok := s.table[name]
			if !ok {
				continue // not a call of this architecture (chown32 on x86_64)
			}
			nr |= s.nrBits
			c := byNr[nr]
			if c == nil {
				c = &callRules{nr: nr}
				byNr[nr] = c
				order = append(order, c)
			}
			if nr > maxNr {
				maxNr = nr
			}
			if len(rule.Args) == 0 {
				if c.uncond == nil {
					v := act
					c.uncond = &v
				}
				continue
			}
			// Comparisons of the same argument more than once are
			// alternatives (runc's reading), else all must hold.
			if sameIndexTwice(rule.Args) {
				for _, arg := range rule.Args {
					c.cond = append(c.cond, condRule{args: []Arg{arg}, action: act})
				}
			} else {
				c.cond = append(c.cond, condRule{args: rule.Args, action: act})
			}
		}
	}

	// Runs of unconditional calls with one action share a return.
	const maxRun = 200
	for i := 0; i < len(order); {
		c := order[i]
		if len(c.cond) > 0 || c.uncond == nil {
			if err := a.block(s, c); err != nil {
				return err
			}
			i++
			continue
		}
		j := i
		for j < len(order) && j-i < maxRun && len(order[j].cond) == 0 && order[j].uncond != nil && *order[j].uncond == *c.uncond {
			j++
		}
		lRet, lAfter := a.label(), a.label()
		for k := i; k < j; k++ {
			if k == j-1 {
				a.jumpIf(bpf.JumpEqual, order[k].nr, lRet, lAfter)
			} else {
				a.jumpIf(bpf.JumpEqual, order[k].nr, lRet, next)
			}
		}
		a.bind(lRet)
		a.ret(*c.uncond)
		a.bind(lAfter)
		i = j
	}
	if def != retAllow && def != retLog && len(order) > 0 {
		lKnown := a.label()
		a.jumpIf(bpf.JumpGreaterThan, maxNr, next, lKnown)
		a.ret(retErrno | errnoENOSYS)
		a.bind(lKnown)
	}
	a.ret(def)
	return nil
}

func sameIndexTwice(args []Arg) bool {
	seen := map[uint]bool{}
	for _, a := range args {
		if seen[a.Index] {
			return true
		}
		seen[a.Index] = true
	}
	return false
}

// block emits one call with argument conditions; A holds the number on
// entry and, when nothing matched, on exit.
func (a *asm) block(s section, c *callRules) error {
	lSkip := a.label()
	a.jumpIf(bpf.JumpEqual, c.nr, next, lSkip)
	for _, cr := range c.cond {
		lFail := a.label()
		for _, arg := range cr.args {
			a.compare(arg, s.is32, lFail)
		}
		a.ret(cr.action)
		a.bind(lFail)
	}
	if c.uncond != nil {
		a.ret(*c.uncond)
	} else {
		a.load(0)
	}
	a.bind(lSkip)
	return nil
}

var argOps = map[string]bool{
	"SCMP_CMP_NE": true, "SCMP_CMP_LT": true, "SCMP_CMP_LE": true, "SCMP_CMP_EQ": true,
	"SCMP_CMP_GE": true, "SCMP_CMP_GT": true, "SCMP_CMP_MASKED_EQ": true,
}

// compare emits a test of one argument that jumps to fail unless it
// holds; it falls through when it holds. 64-bit arguments are compared as
// their high then low words; a 32-bit architecture's as the low word.
func (a *asm) compare(arg Arg, is32 bool, fail label) {
	lo := uint32(16 + 8*arg.Index)
	hi := lo + 4
	v, v2 := arg.Value, arg.ValueTwo
	vh, vl := uint32(v>>32), uint32(v)
	ok := a.label()
	switch arg.Op {
	case "SCMP_CMP_EQ":
		if !is32 {
			a.load(hi)
			a.jumpIf(bpf.JumpEqual, vh, next, fail)
		}
		a.load(lo)
		a.jumpIf(bpf.JumpEqual, vl, next, fail)
	case "SCMP_CMP_NE":
		if !is32 {
			a.load(hi)
			a.jumpIf(bpf.JumpEqual, vh, next, ok)
		}
		a.load(lo)
		a.jumpIf(bpf.JumpEqual, vl, fail, next)
	case "SCMP_CMP_MASKED_EQ":
		if !is32 {
			a.load(hi)
			a.and(vh)
			a.jumpIf(bpf.JumpEqual, uint32(v2>>32), next, fail)
		}
		a.load(lo)
		a.and(vl)
		a.jumpIf(bpf.JumpEqual, uint32(v2), next, fail)
	case "SCMP_CMP_GT", "SCMP_CMP_GE":
		cond := bpf.JumpGreaterThan
		if arg.Op == "SCMP_CMP_GE" {
			cond = bpf.JumpGreaterOrEqual
		}
		if !is32 {
			a.load(hi)
			a.jumpIf(bpf.JumpGreaterThan, vh, ok, next)
			a.jumpIf(bpf.JumpEqual, vh, next, fail)
		}
		a.load(lo)
		a.jumpIf(cond, vl, next, fail)
	case "SCMP_CMP_LT", "SCMP_CMP_LE":
		// arg < v is !(arg >= v); arg <= v is !(arg > v).
		cond := bpf.JumpGreaterOrEqual
		if arg.Op == "SCMP_CMP_LE" {
			cond = bpf.JumpGreaterThan
		}
		if !is32 {
			a.load(hi)
			a.jumpIf(bpf.JumpGreaterThan, vh, fail, next)
			a.jumpIf(bpf.JumpEqual, vh, next, ok)
		}
		a.load(lo)
		a.jumpIf(cond, vl, fail, next)
	}
	a.bind(ok)
}

// asm is a small assembler with forward labels: conditional jumps reach
// at most 255 instructions ahead (an error beyond), which the layout
// above keeps to.
type asm struct {
	items  []item
	labels []int // label → instruction index
}

type label int

// next is "the following instruction".
const next label = -1

type item struct {
	ins      bpf.Instruction
	cond     bool
	jt, jf   label
	ja       bool
	jaTarget label
}

func (a *asm) label() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

func (a *asm) bind(l label) { a.labels[l] = len(a.items) }

func (a *asm) load(off uint32) {
	a.items = append(a.items, item{ins: bpf.LoadAbsolute{Off: off, Size: 4}})
}

func (a *asm) and(v uint32) {
	a.items = append(a.items, item{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: v}})
}

func (a *asm) ret(v uint32) {
	a.items = append(a.items, item{ins: bpf.RetConstant{Val: v}})
}

func (a *asm) jump(l label) {
	a.items = append(a.items, item{ja: true, jaTarget: l})
}

func (a *asm) jumpIf(c bpf.JumpTest, v uint32, jt, jf label) {
	a.items = append(a.items, item{ins: bpf.JumpIf{Cond: c, Val: v}, cond: true, jt: jt, jf: jf})
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	ins := make([]bpf.Instruction, len(a.items))
	skip := func(i int, l label) (uint8, error) {
		if l == next {
			return 0, nil
		}
		t := a.labels[l]
		if t < 0 {
			return 0, fmt.Errorf("seccomp compiler: unbound label %d", l)
		}
		d := t - (i + 1)
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("seccomp compiler: jump of %d instructions at %d", d, i)
		}
		return uint8(d), nil
	}
	for i, it := range a.items {
		if it.ja {
			t := a.labels[it.jaTarget]
			if t <= i {
				return nil, fmt.Errorf("seccomp compiler: bad jump at %d", i)
			}
			ins[i] = bpf.Jump{Skip: uint32(t - (i + 1))}
			continue
		}
		if !it.cond {
			ins[i] = it.ins
			continue
		}
		j := it.ins.(bpf.JumpIf)
		var err error
		if j.SkipTrue, err = skip(i, it.jt); err != nil {
			return nil, err
		}
		if j.SkipFalse, err = skip(i, it.jf); err != nil {
			return nil, err
		}
		ins[i] = j
	}
	return bpf.Assemble(ins)
}
