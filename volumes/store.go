// Package volumes is jevm's volume store (the "local" driver) and the
// parsing of container mount specifications (`-v`, `--mount`, `--tmpfs`,
// `--volumes-from`).
//
// A volume is a directory on the host, DATA_ROOT/volumes/<name>/_data as
// with dockerd; containers reach it over virtio-9p (see docs/VOLUMES.md).
// With driver options a volume's _data is the mount point of a host
// filesystem (e.g. `type=tmpfs`), mounted while a running container uses it;
// `o=bind,device=/dir` exports /dir itself.
package volumes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jevm/jevm/internal/mountinfo"

	"github.com/docker/docker/errdefs"
	"golang.org/x/sys/unix"
)

// DefaultDriver is the only volume driver jevm has.
const DefaultDriver = "local"

// AnonymousLabel marks volumes created without a name (dockerd's label):
// `docker volume prune` removes only these unless asked for all.
const AnonymousLabel = "com.docker.volume.anonymous"

// dataDirName is the directory holding a volume's data, as with dockerd.
const dataDirName = "_data"

// metaFileName holds a volume's metadata inside its directory.
const metaFileName = "jevm-volume.json"

var validNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidateName checks a local volume name as dockerd does.
func ValidateName(name string) error {
	if len(name) == 1 {
		return errdefs.InvalidParameter(errors.New("volume name is too short, names should be at least two alphanumeric characters"))
	}
	if !validNameRE.MatchString(name) {
		return errdefs.InvalidParameter(fmt.Errorf("%q includes invalid characters for a local volume name, only %q are allowed. If you intended to pass a host directory, use absolute path", name, "[a-zA-Z0-9][a-zA-Z0-9_.-]"))
	}
	return nil
}

// Volume is one volume's persisted description.
type Volume struct {
	Name      string            `json:"name"`
	Driver    string            `json:"driver"`
	Labels    map[string]string `json:"labels,omitempty"`
	Options   map[string]string `json:"options,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`

	// Mountpoint is DATA_ROOT/volumes/<name>/_data (not persisted).
	Mountpoint string `json:"-"`
}

// Anonymous reports whether the volume was created without a name.
func (v *Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// bindDevice returns the directory a `type=none,o=bind,device=DIR` volume
// stands for.
func (v *Volume) bindDevice() (string, bool) {
	if v.Options["device"] == "" {
		return "", false
	}
	for _, o := range strings.Split(v.Options["o"], ",") {
		if o == "bind" || o == "rbind" {
			return v.Options["device"], true
		}
	}
	return "", false
}

// needsMount: the volume's _data is the mount point of a host filesystem.
func (v *Volume) needsMount() bool {
	if _, ok := v.bindDevice(); ok {
		return false
	}
	return v.Options["type"] != "" || v.Options["device"] != ""
}

func (v *Volume) clone() *Volume {
	c := *v
	c.Labels = maps.Clone(v.Labels)
	c.Options = maps.Clone(v.Options)
	return &c
}

// entry is a volume with its run-time bookkeeping.
type entry struct {
	vol *Volume
	// refs are the containers whose mounts name the volume (created,
	// running or stopped): a referenced volume cannot be removed.
	refs map[string]struct{}
	// active are the running containers using it; a volume with a host
	// filesystem is mounted while there is one.
	active map[string]struct{}
}

// Store keeps the volumes under one root directory. It is safe for
// concurrent use.
type Store struct {
	root string

	mu   sync.Mutex
	vols map[string]*entry
	// shared is the declared shared storage (SetSharedStorage);
	// listMounts reads the host's mounts (hostMounts; tests set theirs).
	shared     []SharedStorage
	listMounts mountLister
}

// New opens (creating if needed) the store at root and loads its volumes.
func New(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o701); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	s := &Store{root: root, vols: map[string]*entry{}, listMounts: hostMounts}
	dirents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	for _, de := range dirents {
		if !de.IsDir() {
			continue
		}
		name := de.Name()
		dir := filepath.Join(root, name)
		if strings.HasPrefix(name, ".tmp-") {
			// An interrupted create.
			os.RemoveAll(dir)
			continue
		}
		if ValidateName(name) != nil {
			continue
		}
		v, err := loadMeta(dir)
		if err != nil {
			// A volume directory without metadata (e.g. copied from
			// dockerd's data root) is a plain local volume.
			if _, serr := os.Stat(filepath.Join(dir, dataDirName)); serr != nil {
				continue
			}
			fi, _ := de.Info()
			v = &Volume{Name: name, Driver: DefaultDriver}
			if fi != nil {
				v.CreatedAt = fi.ModTime()
			}
		}
		v.Name = name
		v.Mountpoint = filepath.Join(dir, dataDirName)
		s.vols[name] = &entry{vol: v, refs: map[string]struct{}{}, active: map[string]struct{}{}}
	}
	return s, nil
}

func loadMeta(dir string) (*Volume, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFileName))
	if err != nil {
		return nil, err
	}
	v := new(Volume)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	if v.Driver == "" {
		v.Driver = DefaultDriver
	}
	return v, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// OpError is dockerd's volume error form: "remove NAME: volume is in use -
// [ID]".
type OpError struct {
	Op, Name string
	Err      error
	Refs     []string
}

func (e *OpError) Error() string {
	msg := e.Op
	if e.Name != "" {
		msg += " " + e.Name
	}
	msg += ": " + e.Err.Error()
	if len(e.Refs) > 0 {
		msg += " - [" + strings.Join(e.Refs, ", ") + "]"
	}
	return msg
}

func (e *OpError) Unwrap() error { return e.Err }

// Errors wrapped in OpError; they carry their errdefs kind.
var (
	ErrNoSuchVolume = errdefs.NotFound(errors.New("no such volume"))
	ErrInUse        = errdefs.Conflict(errors.New("volume is in use"))
)

// opErr wraps err in an OpError that keeps err's errdefs kind.
func opErr(op, name string, err error, refs []string) error {
	e := &OpError{Op: op, Name: name, Err: err, Refs: refs}
	switch {
	case errdefs.IsNotFound(err):
		return errdefs.NotFound(e)
	case errdefs.IsConflict(err):
		return errdefs.Conflict(e)
	case errdefs.IsInvalidParameter(err):
		return errdefs.InvalidParameter(e)
	}
	return errdefs.System(e)
}

// validOpts are the local driver's options (dockerd's): "size" needs a
// quota-capable filesystem, which jevm does not set up.
var validOpts = map[string]bool{"type": true, "device": true, "o": true, "size": true}

// mandatoryOpts: an option needs the others listed (dockerd's rules).
var mandatoryOpts = map[string][]string{
	"device": {"type"},
	"type":   {"device"},
	"o":      {"device", "type"},
}

// ValidateOptions checks local driver options as dockerd does.
func ValidateOptions(opts map[string]string) error {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !validOpts[k] {
			return errdefs.InvalidParameter(fmt.Errorf("invalid option: %q", k))
		}
	}
	if _, ok := opts["size"]; ok {
		return errdefs.InvalidParameter(errors.New("quota size requested but no quota support"))
	}
	for _, k := range keys {
		for _, req := range mandatoryOpts[k] {
			if _, ok := opts[req]; !ok {
				return errdefs.InvalidParameter(fmt.Errorf("missing required option: %q", req))
			}
		}
	}
	return nil
}

// randomName is a 64-hex-digit name, as dockerd gives anonymous volumes.
func randomName() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Create makes the volume name (a random name if empty, labelled
// anonymous) or returns the existing one of that name. ref, if not empty,
// is recorded as a reference in the same step, so that a volume created
// for a container cannot be removed before the container is saved.
func (s *Store) Create(name, driver string, opts, labels map[string]string, ref string) (*Volume, bool, error) {
	if driver == "" {
		driver = DefaultDriver
	}
	if driver != DefaultDriver {
		return nil, false, errdefs.NotFound(fmt.Errorf("error looking up volume plugin %s: plugin %q not found", driver, driver))
	}
	if name == "" {
		name = randomName()
		labels = maps.Clone(labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[AnonymousLabel] = ""
	} else if err := ValidateName(name); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.vols[name]; ok {
		if ref != "" {
			e.refs[ref] = struct{}{}
		}
		return e.vol.clone(), false, nil
	}
	if err := ValidateOptions(opts); err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	v := &Volume{
		Name:      name,
		Driver:    driver,
		Labels:    maps.Clone(labels),
		Options:   maps.Clone(opts),
		CreatedAt: time.Now().UTC().Truncate(time.Second),
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Options == nil {
		v.Options = map[string]string{}
	}
	// Made in a temporary directory and renamed into place whole.
	tmp, err := os.MkdirTemp(s.root, ".tmp-")
	if err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o701); err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	if err := os.Mkdir(filepath.Join(tmp, dataDirName), 0o755); err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	if err := writeFileSync(filepath.Join(tmp, metaFileName), b); err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	dir := filepath.Join(s.root, name)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, false, opErr("create", name, err, nil)
	}
	syncDir(s.root)
	v.Mountpoint = filepath.Join(dir, dataDirName)
	e := &entry{vol: v, refs: map[string]struct{}{}, active: map[string]struct{}{}}
	if ref != "" {
		e.refs[ref] = struct{}{}
	}
	s.vols[name] = e
	return v.clone(), true, nil
}

func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// Get returns the volume name.
func (s *Store) Get(name string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok {
		return nil, opErr("get", name, ErrNoSuchVolume, nil)
	}
	return e.vol.clone(), nil
}

// List returns every volume, sorted by name.
func (s *Store) List() []*Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Volume, 0, len(s.vols))
	for _, e := range s.vols {
		out = append(out, e.vol.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Reference records that container ref uses the volume.
func (s *Store) Reference(name, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok {
		return opErr("get", name, ErrNoSuchVolume, nil)
	}
	e.refs[ref] = struct{}{}
	return nil
}

// Release drops container ref's reference (no error if there was none).
func (s *Store) Release(name, ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.vols[name]; ok {
		delete(e.refs, ref)
	}
}

// Refs returns the containers referencing the volume, sorted.
func (s *Store) Refs(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok {
		return nil
	}
	return sortedKeys(e.refs)
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Remove deletes the volume and its data. A volume referenced by a
// container cannot be removed (Conflict, dockerd's message).
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok {
		return opErr("remove", name, ErrNoSuchVolume, nil)
	}
	return s.removeLocked(e)
}

func (s *Store) removeLocked(e *entry) error {
	name := e.vol.Name
	if len(e.refs) > 0 {
		return opErr("remove", name, ErrInUse, sortedKeys(e.refs))
	}
	if len(e.active) > 0 {
		return opErr("remove", name, ErrInUse, sortedKeys(e.active))
	}
	data := e.vol.Mountpoint
	if mounted, _ := isMountPoint(data); mounted {
		if err := unix.Unmount(data, 0); err != nil {
			return opErr("remove", name, errdefs.System(fmt.Errorf("unmount %s: %w", data, err)), nil)
		}
	}
	// Never recurse into a filesystem that is still mounted there.
	if mounted, _ := isMountPoint(data); mounted {
		return opErr("remove", name, errdefs.System(fmt.Errorf("%s is still mounted", data)), nil)
	}
	dir := filepath.Join(s.root, name)
	// Rename first, so a crash never leaves a half-removed volume that
	// still loads.
	gone := filepath.Join(s.root, ".tmp-rm-"+name)
	if err := os.Rename(dir, gone); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opErr("remove", name, errdefs.System(err), nil)
	}
	delete(s.vols, name)
	if err := os.RemoveAll(gone); err != nil {
		return opErr("remove", name, errdefs.System(err), nil)
	}
	return nil
}

// Mount marks the volume in use by running container ref and returns the
// host directory to export to its VM. A volume with a host filesystem
// (`--opt type=tmpfs` ...) is mounted on its _data by the first user.
func (s *Store) Mount(name, ref string) (string, error) {
	var resolved *nfsHostOptions
	for attempt := 0; ; attempt++ {
		path, need, err := s.mount(name, ref, resolved)
		if need == nil {
			return path, err
		}
		if attempt > 0 { // re-created with other options meanwhile, twice
			return "", opErr("mount", name, errdefs.Conflict(errors.New("the volume changed while it was being mounted")), nil)
		}
		// An NFS volume the host mounts (a VM without a network: --network
		// none, a maintenance VM): its server's name is looked up (up to
		// addrLookupTimeout) without the store's lock, which every volume
		// call takes, and the mount is tried again.
		if resolved, err = resolveNFSHostOptions(name, need); err != nil {
			return "", err
		}
	}
}

// mount is Mount under the store's lock, with resolved the options of an
// NFS volume the host mounts (resolveNFSHostOptions) if known; if they are
// needed and not those, it returns the volume to resolve them for.
func (s *Store) mount(name, ref string, resolved *nfsHostOptions) (string, *Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok {
		return "", nil, opErr("mount", name, ErrNoSuchVolume, nil)
	}
	v := e.vol
	if dev, ok := v.bindDevice(); ok {
		fi, err := os.Stat(dev)
		if err != nil {
			return "", nil, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("failed to mount local volume: %w", err)), nil)
		}
		if !fi.IsDir() {
			return "", nil, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("failed to mount local volume: %s is not a directory", dev)), nil)
		}
		e.active[ref] = struct{}{}
		return dev, nil, nil
	}
	if v.needsMount() {
		mounted, err := isMountPoint(v.Mountpoint)
		if err != nil {
			return "", nil, opErr("mount", name, errdefs.System(err), nil)
		}
		if !mounted {
			o := v.Options["o"]
			if v.guestMountable() {
				// With the server's address resolved as for the guests.
				if resolved == nil || resolved.device != v.Options["device"] || resolved.o != o {
					return "", v.clone(), nil
				}
				o = resolved.resolved
			}
			flags, data := parseMountOptions(o)
			if err := unix.Mount(v.Options["device"], v.Mountpoint, v.Options["type"], flags, data); err != nil {
				err = fmt.Errorf("failed to mount local volume: mount %s:%s, flags: %#x, data: %s: %w", v.Options["device"], v.Mountpoint, flags, data, err)
				if v.guestMountable() && errors.Is(err, unix.ENODEV) {
					// Only a container without a network (or a maintenance
					// VM) has the host mount an NFS volume.
					err = fmt.Errorf("%w (this host has no NFS client: a container with a network mounts the volume in its VM instead)", err)
				}
				return "", nil, opErr("mount", name, errdefs.System(err), nil)
			}
		}
	}
	e.active[ref] = struct{}{}
	return v.Mountpoint, nil, nil
}

// nfsHostOptions are an NFS volume's options (device, o) and o with its
// server's address resolved, for the host's mount.
type nfsHostOptions struct{ device, o, resolved string }

// resolveNFSHostOptions looks up the NFS server of volume name (v) for
// the host's mount, as MountInGuest does for a guest's.
func resolveNFSHostOptions(name string, v *Volume) (*nfsHostOptions, error) {
	device, o := v.Options["device"], v.Options["o"]
	opts, err := resolveServerAddr(context.Background(), device, o)
	if err != nil {
		return nil, opErr("mount", name, errdefs.InvalidParameter(fmt.Errorf("failed to mount local volume: %w", err)), nil)
	}
	return &nfsHostOptions{device: device, o: o, resolved: strings.Join(opts, ",")}, nil
}

// Unmount ends running container ref's use; the last user of a volume with
// a host filesystem unmounts it (a tmpfs volume's data goes then, as with
// dockerd).
// It reports whether ref was using the volume.
func (s *Store) Unmount(name, ref string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.vols[name]
	if !ok {
		return false, nil
	}
	if _, ok := e.active[ref]; !ok {
		return false, nil
	}
	delete(e.active, ref)
	if len(e.active) > 0 || !e.vol.needsMount() {
		return true, nil
	}
	if mounted, _ := isMountPoint(e.vol.Mountpoint); mounted {
		if err := unix.Unmount(e.vol.Mountpoint, 0); err != nil {
			return true, opErr("unmount", name, errdefs.System(err), nil)
		}
	}
	return true, nil
}

// MarkActive records running container ref as a user without mounting
// anything: a restarted daemon re-adopting running containers (their host
// mounts are still there).
func (s *Store) MarkActive(name, ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.vols[name]; ok {
		e.active[ref] = struct{}{}
	}
}

// InUse reports the volume's references (containers naming it).
func (s *Store) InUse(name string) bool {
	return len(s.Refs(name)) > 0
}

// Prune removes the unreferenced volumes without driver options for which
// keep returns false, and reports their names and the space reclaimed.
// Volumes with options are skipped as with dockerd (their data is not
// really local).
func (s *Store) Prune(match func(*Volume) bool) ([]string, uint64, error) {
	s.mu.Lock()
	var cands []*entry
	for _, e := range s.vols {
		if len(e.refs) > 0 || len(e.active) > 0 || len(e.vol.Options) > 0 {
			continue
		}
		if match != nil && !match(e.vol.clone()) {
			continue
		}
		cands = append(cands, e)
	}
	s.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].vol.Name < cands[j].vol.Name })
	deleted := []string{}
	var reclaimed uint64
	for _, e := range cands {
		size, _ := DirSize(e.vol.Mountpoint)
		s.mu.Lock()
		cur, ok := s.vols[e.vol.Name]
		var err error
		if ok && cur == e {
			err = s.removeLocked(e)
		}
		s.mu.Unlock()
		if !ok || err != nil {
			continue
		}
		deleted = append(deleted, e.vol.Name)
		if size > 0 {
			reclaimed += uint64(size)
		}
	}
	return deleted, reclaimed, nil
}

// Size is the volume's size as `docker system df` reports it, or -1 for a
// volume with driver options (dockerd does not size those).
func (s *Store) Size(name string) (int64, error) {
	v, err := s.Get(name)
	if err != nil {
		return -1, err
	}
	if len(v.Options) > 0 {
		return -1, nil
	}
	return DirSize(v.Mountpoint)
}

// DirSize sums the apparent sizes of the files under dir, counting hard
// links once (as dockerd's directory.Size).
func DirSize(dir string) (int64, error) {
	var size int64
	seen := map[uint64]struct{}{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && p != dir {
			// Stay on one filesystem.
			if mounted, _ := isMountPoint(p); mounted {
				return filepath.SkipDir
			}
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if _, dup := seen[st.Ino]; dup {
				return nil
			}
			seen[st.Ino] = struct{}{}
		}
		if fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0 {
			size += fi.Size()
		}
		return nil
	})
	return size, err
}

// isMountPoint reports whether p is the root of a mounted filesystem
// (other device than its parent, or the same inode as its parent's
// parent: a bind mount of a directory onto itself is not detected).
func isMountPoint(p string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(p), &pst); err != nil {
		return false, err
	}
	if st.Dev != pst.Dev {
		return true, nil
	}
	// Same device: a bind mount from the same filesystem shows up only in
	// mountinfo.
	return inMountinfo(p), nil
}

func inMountinfo(p string) bool {
	ok, _ := mountinfo.IsMountPoint(p)
	return ok
}

// mountFlagOpts maps mount(8) flag options to MS_ flags (set, or cleared
// when the bool is false).
var mountFlagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"noatime": {false, unix.MS_NOATIME}, "atime": {true, unix.MS_NOATIME},
	"nodiratime": {false, unix.MS_NODIRATIME}, "diratime": {true, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"dirsync": {false, unix.MS_DIRSYNC}, "mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"defaults": {true, 0},
}

// parseMountOptions splits a mount(8) option string into flags and the
// filesystem's data string.
func parseMountOptions(o string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, opt := range strings.Split(o, ",") {
		if opt == "" {
			continue
		}
		if f, ok := mountFlagOpts[opt]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		data = append(data, opt)
	}
	return flags, strings.Join(data, ",")
}
