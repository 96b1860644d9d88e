//go:build linux

package guestagent

// The agent side of the file operations (docker cp, export, diff, commit);
// see "File operations" in docs/AGENT_PROTOCOL.md. The file-system work
// itself is in fsops_linux.go.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// FIFREEZE and FITHAW (linux/fs.h): _IOWR('X', 119/120, int).
const (
	ioctlFIFREEZE = 0xC0045877
	ioctlFITHAW   = 0xC0045878
)

// maxFileChunk bounds one data frame of a file operation.
const maxFileChunk = 256 << 10

var errFileCancelled = errors.New("file operation cancelled by the host")

// files is the agent's file-operation state.
var files = struct {
	sync.Mutex
	streams     map[uint32]*fstream
	maintenance bool              // mounted by MsgMount: power off when the host goes
	bases       map[string]string // base disk serial -> mount point
	seq         int
}{streams: map[uint32]*fstream{}, bases: map[string]string{}}

// fstream is one file operation's stream: credit for what the agent sends,
// and a queue of what the host sends.
type fstream struct {
	a  *agent
	id uint32

	mu        sync.Mutex
	cond      *sync.Cond
	credit    int64 // bytes the agent may still send
	cancelled bool
	in        [][]byte // host data not yet consumed
	inEOF     bool
	unacked   int64 // host data consumed but not yet credited back
}

func registerFileStream(a *agent, id uint32, credit int64) *fstream {
	s := &fstream{a: a, id: id, credit: credit}
	s.cond = sync.NewCond(&s.mu)
	files.Lock()
	if old := files.streams[id]; old != nil {
		old.cancel()
	}
	files.streams[id] = s
	files.Unlock()
	return s
}

func (s *fstream) unregister() {
	files.Lock()
	if files.streams[s.id] == s {
		delete(files.streams, s.id)
	}
	files.Unlock()
}

func lookupFileStream(id uint32) *fstream {
	files.Lock()
	defer files.Unlock()
	return files.streams[id]
}

func (s *fstream) cancel() {
	s.mu.Lock()
	s.cancelled = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *fstream) addCredit(n int64) {
	s.mu.Lock()
	s.credit += n
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Write sends data to the host as FrameStdout frames, within the credit.
func (s *fstream) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		s.mu.Lock()
		for s.credit <= 0 && !s.cancelled {
			s.cond.Wait()
		}
		if s.cancelled {
			s.mu.Unlock()
			return done, errFileCancelled
		}
		k := int64(len(p))
		if k > s.credit {
			k = s.credit
		}
		if k > maxFileChunk {
			k = maxFileChunk
		}
		s.credit -= k
		s.mu.Unlock()
		if err := s.a.w.WriteFrame(agentproto.FrameStdout, s.id, p[:k]); err != nil {
			return done, err
		}
		done += int(k)
		p = p[k:]
	}
	return done, nil
}

// push queues host data (called by the reader loop; never blocks).
func (s *fstream) push(b []byte, eof bool) {
	s.mu.Lock()
	if len(b) > 0 {
		s.in = append(s.in, b)
	}
	if eof {
		s.inEOF = true
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Read consumes host data and hands credit back as it goes.
func (s *fstream) Read(p []byte) (int, error) {
	s.mu.Lock()
	for len(s.in) == 0 && !s.inEOF && !s.cancelled {
		s.cond.Wait()
	}
	if s.cancelled {
		s.mu.Unlock()
		return 0, errFileCancelled
	}
	if len(s.in) == 0 {
		s.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(p, s.in[0])
	if s.in[0] = s.in[0][n:]; len(s.in[0]) == 0 {
		s.in[0] = nil
		s.in = s.in[1:]
	}
	s.unacked += int64(n)
	var credit int64
	if s.unacked >= agentproto.DefaultFileWindow/4 || (len(s.in) == 0 && !s.inEOF) {
		credit, s.unacked = s.unacked, 0
	}
	s.mu.Unlock()
	if credit > 0 {
		s.a.send(s.id, &agentproto.Msg{Type: agentproto.MsgCredit, File: &agentproto.FileOp{Credit: credit}})
	}
	return n, nil
}

// handleFileFrame takes FrameStdin/FrameEOF frames of file-operation
// streams; it reports whether the frame was one.
func (a *agent) handleFileFrame(f *agentproto.Frame) bool {
	if f.Stream < agentproto.FileStreamBase {
		return false
	}
	s := lookupFileStream(f.Stream)
	if s == nil {
		return true // a finished operation's late data
	}
	switch f.Type {
	case agentproto.FrameStdin:
		s.push(f.Payload, false)
	case agentproto.FrameEOF:
		s.push(nil, true)
	}
	return true
}

// handleFileMsg dispatches the file-operation messages (IsFileMsg). It runs
// on the reader loop: the operations go on their own goroutines.
func (a *agent) handleFileMsg(stream uint32, m *agentproto.Msg) {
	op := m.File
	if op == nil {
		op = &agentproto.FileOp{}
	}
	switch m.Type {
	case agentproto.MsgCredit:
		if s := lookupFileStream(stream); s != nil {
			s.addCredit(op.Credit)
		}
	case agentproto.MsgCancel:
		if s := lookupFileStream(stream); s != nil {
			s.cancel()
		}
	case agentproto.MsgMount:
		go a.fileMount(stream, m)
	case agentproto.MsgStatPath:
		go a.fileStat(stream, m, op)
	case agentproto.MsgArchiveGet, agentproto.MsgExport, agentproto.MsgChanges, agentproto.MsgDiffLayer:
		if stream < agentproto.FileStreamBase {
			a.fileReply(stream, m, nil, fmt.Errorf("%s needs a stream of its own", m.Type))
			return
		}
		window := op.Window
		if window <= 0 {
			window = agentproto.DefaultFileWindow
		}
		s := registerFileStream(a, stream, window)
		go a.fileProduce(s, m, op)
	case agentproto.MsgArchivePut:
		if stream < agentproto.FileStreamBase {
			a.fileReply(stream, m, nil, fmt.Errorf("%s needs a stream of its own", m.Type))
			return
		}
		s := registerFileStream(a, stream, 0)
		go a.filePut(s, m, op)
	}
}

// fileHostGone is called when the host disconnects: operations in flight
// end, and a maintenance clone (nothing runs in it) powers off, so that a
// daemon that died mid-operation leaves no VM holding the disk.
func (a *agent) fileHostGone() {
	files.Lock()
	for _, s := range files.streams {
		s.cancel()
	}
	maint := files.maintenance
	files.Unlock()
	a.mu.Lock()
	held := a.hold && a.phase == phaseExited
	a.mu.Unlock()
	if maint || held {
		a.logf("host disconnected from a maintenance clone or a held build step: powering off")
		go a.powerOff()
	}
}

// fileReply answers a request: ok with res, or an error with its kind.
func (a *agent) fileReply(stream uint32, m *agentproto.Msg, res *agentproto.FileOp, err error) {
	r := &agentproto.Msg{Type: agentproto.MsgOK, ID: m.ID, File: res}
	if err != nil {
		r = &agentproto.Msg{Type: agentproto.MsgError, ID: m.ID, Message: err.Error(),
			File: &agentproto.FileOp{ErrCode: fileErrCode(err)}}
	}
	a.send(stream, r)
}

func (a *agent) fileEnd(stream uint32, err error) {
	m := &agentproto.Msg{Type: agentproto.MsgStreamEnd}
	if err != nil {
		m.Message = err.Error()
		m.File = &agentproto.FileOp{ErrCode: fileErrCode(err)}
	}
	a.send(stream, m)
}

// fileMount mounts the container's root in a maintenance clone.
func (a *agent) fileMount(stream uint32, m *agentproto.Msg) {
	t := time.Now()
	err := a.mountMaintenance(m.Start)
	if err != nil {
		a.logf("maintenance mount: %v", err)
	} else {
		a.logf("maintenance mount of the container's root in %v", time.Since(t).Round(time.Millisecond))
	}
	a.fileReply(stream, m, nil, err)
}

func (a *agent) mountMaintenance(req *agentproto.StartRequest) error {
	if req == nil {
		return errors.New("mount request without parameters")
	}
	a.mu.Lock()
	phase, mounted := a.phase, a.rootMounted
	a.mu.Unlock()
	if phase != phaseIdle || mounted {
		return fmt.Errorf("the container's root is already set up (phase %s)", phase)
	}
	if req.TimeUnixNano != 0 {
		ts := unix.NsecToTimespec(req.TimeUnixNano)
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			a.logf("set clock: %v", err)
		}
	}
	if len(req.Entropy) > 0 {
		if err := addEntropy(req.Entropy); err != nil {
			a.logf("add entropy: %v", err)
		}
	}
	dev := req.RootDevice
	if dev == "" {
		return errors.New("no root device given")
	}
	if err := waitForFile(dev, 5*time.Second); err != nil {
		return fmt.Errorf("root device: %w", err)
	}
	if err := flushBlockDevice(dev); err != nil {
		a.logf("BLKFLSBUF %s: %v", dev, err)
	}
	fstype, data := req.RootFSType, ""
	if fstype == "" {
		fstype = "ext4"
	}
	if fstype == "ext4" {
		data = "noinit_itable"
	}
	var flags uintptr
	if req.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, containerRoot, fstype, flags, data); err != nil {
		return fmt.Errorf("mount root device %s (%s): %w", dev, fstype, err)
	}
	a.mu.Lock()
	a.rootMounted = true
	a.mu.Unlock()
	files.Lock()
	files.maintenance = true
	files.Unlock()
	// Volumes and bind mounts, so that paths under them reach the volume
	// as they do in the running container.
	if err := a.setupMounts(containerRoot, req.Mounts); err != nil {
		return fmt.Errorf("mount the container's volumes: %w", err)
	}
	return nil
}

func (a *agent) requireRoot() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.rootMounted {
		return errors.New("the container's root file system is not mounted")
	}
	return nil
}

func nextOpDir(kind string) (string, error) {
	files.Lock()
	files.seq++
	n := files.seq
	files.Unlock()
	dir := filepath.Join(runDir, fmt.Sprintf("%s-%d", kind, n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// withView gives fn a private view of the container's root file system.
// Without mounts it is a bind mount of the container's disk alone: the
// API file systems the agent mounted (/proc, /sys, /dev) are the empty
// mount points they are on the disk, and the files bind-mounted over
// /etc/hostname, /etc/hosts and /etc/resolv.conf are the disk's (docker
// export, diff, commit). With mounts it is a recursive bind that keeps
// the container's other mounts (volumes, bind mounts, those /etc files)
// but not /proc, /sys and /dev, as dockerd's archive operations see a
// container (docker cp).
//
// m names the container (Msg.Container): the main one, or one that joined
// the VM.
func (a *agent) withView(m *agentproto.Msg, mounts bool, fn func(root string) error) error {
	croot, err := a.rootOf(m) // pods_linux.go
	if err != nil {
		return err
	}
	dir, err := nextOpDir("view")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	flags := uintptr(unix.MS_BIND)
	if mounts {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(croot, dir, "", flags, ""); err != nil {
		return fmt.Errorf("bind the container's root: %w", err)
	}
	defer func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			a.logf("unmount %s: %v", dir, err)
		}
	}()
	if mounts {
		// Private, so that taking the API file systems out of the view
		// does not take them out of the container.
		if err := unix.Mount("", dir, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make the view private: %w", err)
		}
		for _, sub := range []string{"proc", "sys", "dev"} {
			p := filepath.Join(dir, sub)
			for isMountPoint(p) {
				if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
					return fmt.Errorf("unmount /%s from the view: %w", sub, err)
				}
			}
		}
	}
	return fn(dir)
}

// isMountPoint reports whether p is a mount point (its own mount ID
// differs from its parent's).
func isMountPoint(p string) bool {
	var st, pst unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st) != nil ||
		unix.Statx(unix.AT_FDCWD, filepath.Dir(p), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &pst) != nil {
		return false
	}
	if st.Mask&unix.STATX_MNT_ID == 0 {
		return st.Dev_major != pst.Dev_major || st.Dev_minor != pst.Dev_minor
	}
	return st.Mnt_id != pst.Mnt_id
}

// baseDisk mounts (once) the read-only base disk with the given virtio
// serial, hot-plugged by the host, and returns its mount point.
func (a *agent) baseDisk(serial string) (string, error) {
	if serial == "" {
		return "", errors.New("no base disk given")
	}
	files.Lock()
	mp := files.bases[serial]
	files.Unlock()
	if mp != "" {
		return mp, nil
	}
	t := time.Now()
	dev, rescanned, err := findDiskBySerial(serial, 20*time.Second)
	if err != nil {
		return "", err
	}
	tFound := time.Since(t)
	mp = filepath.Join(runDir, "base-"+serial)
	if err := os.MkdirAll(mp, 0o700); err != nil {
		return "", err
	}
	if err := unix.Mount(dev, mp, "ext4", unix.MS_RDONLY, ""); err != nil {
		if err2 := unix.Mount(dev, mp, "ext4", unix.MS_RDONLY, "noload"); err2 != nil {
			return "", fmt.Errorf("mount base disk %s: %w", dev, err)
		}
	}
	files.Lock()
	files.bases[serial] = mp
	files.Unlock()
	how := "hot-plug"
	if rescanned {
		how = "PCI rescan"
	}
	a.logf("base disk %s (%s) found in %v (%s), mounted in %v", dev, serial, tFound.Round(time.Millisecond), how, time.Since(t).Round(time.Millisecond))
	return mp, nil
}

// findDiskBySerial waits for the virtio disk with that serial and returns
// its device node. The ACPI hot-plug notification can take the guest a
// while (under TCG more than a second), so after a short wait it rescans
// the PCI bus itself, which probes the new slot at once.
func findDiskBySerial(serial string, timeout time.Duration) (dev string, rescanned bool, err error) {
	start := time.Now()
	for {
		ms, _ := filepath.Glob("/sys/block/vd*/serial")
		for _, m := range ms {
			b, err := os.ReadFile(m)
			if err != nil || strings.TrimSpace(string(b)) != serial {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(m))
			if _, err := os.Stat(dev); err == nil {
				return dev, rescanned, nil
			}
		}
		if !rescanned && time.Since(start) > 50*time.Millisecond {
			rescanned = true
			os.WriteFile("/sys/bus/pci/rescan", []byte("1"), 0o200)
			continue
		}
		if time.Since(start) > timeout {
			return "", rescanned, fmt.Errorf("disk with serial %q did not appear in %v", serial, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// withWorkspace gives fn a directory with the image's base disk at /b and
// the container's root (its disk alone) at /c, for walks over both.
func (a *agent) withWorkspace(serial string, fn func(ws string) error) error {
	if err := a.requireRoot(); err != nil {
		return err
	}
	base, err := a.baseDisk(serial)
	if err != nil {
		return err
	}
	ws, err := nextOpDir("ws")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ws)
	var mounts []string
	defer func() {
		for i := len(mounts) - 1; i >= 0; i-- {
			unix.Unmount(mounts[i], unix.MNT_DETACH)
		}
	}()
	for _, m := range [][2]string{{base, "b"}, {containerRoot, "c"}} {
		dst := filepath.Join(ws, m[1])
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if err := unix.Mount(m[0], dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", m[0], err)
		}
		mounts = append(mounts, dst)
	}
	return fn(ws)
}

func (a *agent) fileStat(stream uint32, m *agentproto.Msg, op *agentproto.FileOp) {
	var st *agentproto.PathStat
	err := a.withView(m, true, func(root string) error {
		return runInRoot(root, func() error {
			var err error
			st, err = statPath(statArg(op.Path))
			return err
		})
	})
	a.fileReply(stream, m, &agentproto.FileOp{Stat: st}, err)
}

// statArg is the path dockerd's stat gets (relative ones from "/").
func statArg(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// fileProduce runs an operation that sends data to the host.
func (a *agent) fileProduce(s *fstream, m *agentproto.Msg, op *agentproto.FileOp) {
	defer s.unregister()
	t := time.Now()
	replied := false
	ok := func(res *agentproto.FileOp) {
		a.fileReply(s.id, m, res, nil)
		replied = true
	}
	var err error
	switch m.Type {
	case agentproto.MsgArchiveGet:
		err = a.withView(m, true, func(root string) error {
			return runInRoot(root, func() error {
				abs := containerAbsPath(op.Path)
				st, err := statPath(abs)
				if err != nil {
					return err
				}
				ok(&agentproto.FileOp{Stat: st})
				return archivePath(abs, s)
			})
		})
	case agentproto.MsgExport:
		err = a.withView(m, false, func(root string) error {
			return runInRoot(root, func() error {
				ok(nil)
				return exportRoot(s)
			})
		})
	case agentproto.MsgChanges, agentproto.MsgDiffLayer:
		if c, cerr := a.containerOf(m); cerr != nil || c != nil {
			err = cerr
			if err == nil {
				err = fmt.Errorf("%s is not supported for a container that joined the VM (%s)", m.Type, c.name)
			}
			break
		}
		err = a.withWorkspace(op.BaseSerial, func(ws string) error {
			if m.Type == agentproto.MsgDiffLayer && op.Freeze {
				if thaw := a.freezeRoot(); thaw != nil {
					defer thaw()
				}
			}
			return runInRoot(ws, func() error {
				changes, err := diffTrees("/b", "/c")
				if err != nil {
					return err
				}
				ok(nil)
				if m.Type == agentproto.MsgDiffLayer {
					return writeLayer("/c", changes, s)
				}
				enc := json.NewEncoder(s)
				for _, c := range changes {
					if err := enc.Encode(&c); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	if !replied {
		if err == nil {
			err = errors.New("operation produced no reply")
		}
		a.fileReply(s.id, m, nil, err)
		return
	}
	if err != nil {
		a.logf("%s: %v", m.Type, err)
	}
	a.debugf("%s done in %v", m.Type, time.Since(t).Round(time.Millisecond))
	a.fileEnd(s.id, err)
}

// freezeRoot freezes the container's root file system (writers wait) and
// returns the function that thaws it, or nil if it could not be frozen.
func (a *agent) freezeRoot() func() {
	f, err := os.Open(containerRoot)
	if err != nil {
		a.logf("freeze: %v", err)
		return nil
	}
	if err := unix.IoctlSetInt(int(f.Fd()), ioctlFIFREEZE, 0); err != nil {
		f.Close()
		a.logf("freeze %s: %v", containerRoot, err)
		return nil
	}
	return func() {
		if err := unix.IoctlSetInt(int(f.Fd()), ioctlFITHAW, 0); err != nil {
			a.logf("thaw %s: %v", containerRoot, err)
		}
		f.Close()
	}
}

// filePut extracts the tar the host sends into a directory.
func (a *agent) filePut(s *fstream, m *agentproto.Msg, op *agentproto.FileOp) {
	defer s.unregister()
	replied := false
	err := a.withView(m, true, func(root string) error {
		return runInRoot(root, func() error {
			dest, err := resolveExtractDir(op.Path)
			if err != nil {
				return err
			}
			opts := extractOptions{NoOverwriteDirNonDir: op.NoOverwriteDirNonDir}
			if op.CopyUIDGID && op.User != "" {
				u, err := resolveUser("", op.User)
				if err != nil {
					return &invalidError{err.Error()}
				}
				opts.Chown = &[2]int{u.Uid, u.Gid}
			}
			a.fileReply(s.id, m, &agentproto.FileOp{Window: agentproto.DefaultFileWindow}, nil)
			replied = true
			if err := extractArchive(s, dest, opts); err != nil {
				return err
			}
			// Take what follows the tar's end marker (padding) so the
			// host's send completes.
			_, err = io.Copy(io.Discard, io.LimitReader(s, 16<<20))
			if errors.Is(err, errFileCancelled) {
				err = nil
			}
			return err
		})
	})
	if !replied {
		a.fileReply(s.id, m, nil, err)
		return
	}
	if err != nil {
		a.logf("archive-put %s: %v", op.Path, err)
	}
	a.fileEnd(s.id, err)
}
