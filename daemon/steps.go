package daemon

// Bringing a VM up, as a list of named, timed steps with a cleanup stack
// (as firecracker-go-sdk's handler lists): a step does one thing and
// pushes what undoes it; when a step fails, the stack is unwound in
// reverse, so a failed start leaves nothing behind. Every run logs one
// "start trace" line at debug level with each step's time in ms
// (<step>_ms fields, "steps" giving their order), for benchmarks.
//
// The same steps serve a container's start (startContainer), the
// re-adoption of a running VM after a daemon restart (attachRuntime) and
// maintenance clones of stopped containers (maintenance.go).

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/vmbackend"
	"github.com/jevm/jevm/vmbackend/agentclient"
	"github.com/jevm/jevm/vmbackend/agentproto"
)

// step is one named part of a start.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// cleanup undoes what a step made.
type cleanup struct {
	name string
	fn   func()
}

// cleanups is the stack of what a failed start must undo.
type cleanups struct{ stack []cleanup }

// push adds fn, undone before everything pushed earlier.
func (cs *cleanups) push(name string, fn func()) {
	cs.stack = append(cs.stack, cleanup{name: name, fn: fn})
}

// unwind runs the cleanups in reverse order, empties the stack and
// returns their names in the order they ran.
func (cs *cleanups) unwind() []string {
	var names []string
	for i := len(cs.stack) - 1; i >= 0; i-- {
		cs.stack[i].fn()
		names = append(names, cs.stack[i].name)
	}
	cs.stack = nil
	return names
}

// stepTrace is how long each step of a run took.
type stepTrace struct {
	names  []string
	took   []time.Duration
	failed string // the step that failed, if one did
}

// failedIn tells whether the step that failed is one of names.
func (t *stepTrace) failedIn(names ...string) bool {
	for _, n := range names {
		if t.failed != "" && t.failed == n {
			return true
		}
	}
	return false
}

// duration is the time of the named step (0 if it did not run).
func (t *stepTrace) duration(name string) time.Duration {
	for i, n := range t.names {
		if n == name {
			return t.took[i]
		}
	}
	return 0
}

// since is the time from the start of the named step to the end of the
// last one.
func (t *stepTrace) since(name string) time.Duration {
	var sum time.Duration
	found := false
	for i, n := range t.names {
		found = found || n == name
		if found {
			sum += t.took[i]
		}
	}
	return sum
}

// runSteps runs steps in order. When one fails, cs is unwound and the
// step's error returned. It logs the start trace (kind: "container",
// "maintenance", "readopt").
func runSteps(ctx context.Context, log *logrus.Entry, kind string, cs *cleanups, steps []step) (*stepTrace, error) {
	tr := &stepTrace{}
	begin := time.Now()
	var err error
	failed := ""
	for _, s := range steps {
		t := time.Now()
		err = s.run(ctx)
		tr.names = append(tr.names, s.name)
		tr.took = append(tr.took, time.Since(t))
		if err != nil {
			failed = s.name
			tr.failed = s.name
			break
		}
	}
	var undone []string
	if err != nil {
		undone = cs.unwind()
	}
	fields := logrus.Fields{
		"kind":     kind,
		"steps":    strings.Join(tr.names, ","),
		"total_ms": ms(time.Since(begin)),
	}
	for i, n := range tr.names {
		fields[n+"_ms"] = ms(tr.took[i])
	}
	if err != nil {
		fields["failed"] = failed
		fields["undone"] = strings.Join(undone, ",")
		fields[logrus.ErrorKey] = err
	}
	log.WithFields(fields).Debug("start trace")
	return tr, err
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startEntropyBytes is how many random bytes every clone's agent mixes
// into the guest RNG before anything runs (StartRequest.Entropy): clones
// share the template's RNG state, so each must be reseeded. 64 bytes
// (512 bits) is twice what the kernel needs to consider its CRNG seeded
// (256 bits), so the estimate can be halved and still suffice; it costs
// nothing next to a clone. Maintenance clones get the same: their file
// operations (tar, mktemp in the guest) deserve the same unpredictability.
const startEntropyBytes = 64

func startEntropy() ([]byte, error) {
	b := make([]byte, startEntropyBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("entropy for the guest: %w", err)
	}
	return b, nil
}

// vmStart is what the steps of one start share: the machine spec and
// what the steps made so far.
type vmStart struct {
	d    *Daemon
	c    *Container
	spec vmbackend.MachineSpec
	cs   cleanups

	machine vmbackend.Machine
	agent   *agentclient.Client
	hello   *agentproto.Msg
	logw    *logWriter
}

// stateDirStep creates the VM's run-time directory (sockets, pid file).
func (s *vmStart) stateDirStep() step {
	return step{"state-dir", func(context.Context) error {
		if err := os.MkdirAll(s.spec.StateDir, 0o700); err != nil {
			return fmt.Errorf("create VM state dir: %w", err)
		}
		s.cs.push("remove-state-dir", func() { _ = os.RemoveAll(s.spec.StateDir) })
		return nil
	}}
}

// startMachineStep clones the template into a running VM, or claims the
// warm pool's blank *pooled if there is one (pool.go). what names the VM
// in the error ("VM", "maintenance VM").
func (s *vmStart) startMachineStep(what string, pooled **blank) step {
	return step{"start-machine", func(ctx context.Context) error {
		if pooled != nil && *pooled != nil {
			if err := s.claimBlank(ctx, *pooled); err == nil {
				s.cs.push("kill-machine", func() { _ = s.machine.Kill(context.Background()) })
				return nil
			} else {
				s.d.log.WithError(err).WithField("container", s.c.ID[:12]).Warn("cannot claim a blank VM; cloning the template")
			}
			// Gone: the cold start below needs its state dir free.
			(*pooled).discard(s.d)
			s.d.pool.counted(false)
			if err := os.MkdirAll(s.spec.StateDir, 0o700); err != nil {
				return fmt.Errorf("create VM state dir: %w", err)
			}
		}
		m, err := s.d.vms.Start(ctx, s.spec)
		if err != nil {
			return fmt.Errorf("start %s: %w", what, err)
		}
		s.machine = m
		s.cs.push("kill-machine", func() { _ = m.Kill(context.Background()) })
		return nil
	}}
}

// connectAgentStep connects to the guest agent of s.machine.
func (s *vmStart) connectAgentStep(what string) step {
	return step{"connect-agent", func(ctx context.Context) error {
		if s.agent != nil {
			// A claimed blank's: connected in the pool (pool.go).
			client := s.agent
			s.cs.push("close-agent", func() { client.Close() })
			return nil
		}
		client, hello, err := agentclient.Connect(ctx, s.machine.Agent())
		if err != nil {
			if what == "" {
				return err
			}
			return fmt.Errorf("connect to %s: %w", what, err)
		}
		s.agent, s.hello = client, hello
		s.cs.push("close-agent", func() { client.Close() })
		return nil
	}}
}

// openLogStep opens the container's log and directs its output hub to it.
func (s *vmStart) openLogStep(wrap bool) step {
	return step{"open-log", func(context.Context) error {
		logw, err := openContainerLog(s.c)
		if err != nil {
			if wrap {
				return fmt.Errorf("open container log: %w", err)
			}
			return err
		}
		s.logw = logw
		hub := s.c.hub()
		hub.beginRun(logw)
		s.cs.push("close-log", func() {
			hub.endRun()
			logw.Close()
		})
		return nil
	}}
}

// beginRun makes proc the container's run. Callers hold c.mu.
func (s *vmStart) beginRun(proc *agentclient.Process) *runtime {
	r := &runtime{machine: s.machine, agent: s.agent, proc: proc, logw: s.logw, detachCh: make(chan struct{}), finished: make(chan struct{})}
	s.c.run = r
	return r
}

// monitorRun connects the run's stdin and starts its monitor and health
// checks. Callers hold c.mu and saved the record.
func (d *Daemon) monitorRun(c *Container, r *runtime) {
	if c.Config.OpenStdin {
		d.connectStdin(c, r.proc)
	}
	d.wg.Add(1)
	go d.monitor(c, r)
	d.runStarted(c, r) // health checks (health.go)
}
