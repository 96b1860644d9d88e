package volumes

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/mount"
)

// MountPoint is one mount of a container as the daemon keeps it in the
// container's record and shows it in `docker inspect` (Mounts). It is the
// result of parsing a `-v` string, a `--mount` spec, an image VOLUME or a
// `--volumes-from` entry; tmpfs mounts from `--tmpfs` are not mount points
// (dockerd does not list them either).
type MountPoint struct {
	Type mount.Type `json:"type"`
	// Name is the volume's name (type volume); empty until an anonymous
	// volume is created.
	Name string `json:"name,omitempty"`
	// Source is the host path of a bind mount, or the volume's data
	// directory once the volume exists.
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination"`
	Driver      string `json:"driver,omitempty"`
	// Mode is the mode string as dockerd reports it ("ro", "z", "").
	Mode        string            `json:"mode"`
	RW          bool              `json:"rw"`
	Propagation mount.Propagation `json:"propagation,omitempty"`

	// Named: the user named the volume (`-v name:/p`, `--mount
	// source=name`), so `docker rm -v` keeps it.
	Named bool `json:"named,omitempty"`
	// CopyData: fill the volume with the image's content at Destination
	// when the volume is empty, at the container's first start (dockerd
	// does it at create). Cleared once done.
	CopyData bool `json:"copyData,omitempty"`
	// CreateSource: a missing bind source is created as a directory at
	// start (`-v`), as dockerd does; `--mount type=bind` sources must exist.
	CreateSource bool `json:"createSource,omitempty"`
	// Subpath is a path inside the volume to mount instead of its root.
	Subpath string `json:"subpath,omitempty"`
	// TmpfsOptions are the mount options of a `--mount type=tmpfs`.
	TmpfsOptions []string `json:"tmpfsOptions,omitempty"`

	// For creating a missing volume (--mount type=volume): not persisted.
	VolumeDriverOpts map[string]string `json:"-"`
	VolumeLabels     map[string]string `json:"-"`
}

// Parse errors, worded as dockerd's.
var (
	ErrTargetIsRoot           = errors.New("invalid specification: destination can't be '/'")
	errAnonymousWithSubpath   = errors.New("must not set Subpath when using anonymous volumes")
	errInvalidSubpath         = errors.New("subpath must be a relative path within the volume")
	errAnonymousReadOnly      = errors.New("must not set ReadOnly mode when using anonymous volumes")
	errMountTypeUnknown       = errors.New("mount type unknown")
	defaultBindPropagation    = mount.PropagationRPrivate
	validPropagation          = map[mount.Propagation]bool{mount.PropagationPrivate: true, mount.PropagationRPrivate: true, mount.PropagationSlave: true, mount.PropagationRSlave: true, mount.PropagationShared: true, mount.PropagationRShared: true}
	validConsistency          = map[string]bool{"consistent": true, "cached": true, "delegated": true, "default": true}
	errInvalidVolumesFromSpec = errors.New("volumes-from specification cannot be an empty string")
)

// MountConfigError is dockerd's `invalid mount config for type "bind": ...`.
type MountConfigError struct {
	Type mount.Type
	Err  error
}

func (e *MountConfigError) Error() string {
	return fmt.Sprintf("invalid mount config for type %q: %v", string(e.Type), e.Err)
}

func (e *MountConfigError) Unwrap() error { return e.Err }

// BindSourceMissingError is returned for a `--mount type=bind` whose source
// does not exist.
type BindSourceMissingError struct{ Path string }

func (e *BindSourceMissingError) Error() string {
	return "bind source path does not exist: " + e.Path
}

func errInvalidSpec(raw string) error { return fmt.Errorf("invalid volume specification: '%s'", raw) }
func errInvalidMode(mode string) error {
	return fmt.Errorf("invalid mode: %s", mode)
}

// validMode checks a `-v` mode string: at most one of each kind of option.
func validMode(mode string) bool {
	if mode == "" {
		return true
	}
	var rw, label, prop, cp, cons int
	for _, o := range strings.Split(mode, ",") {
		switch {
		case o == "rw" || o == "ro":
			rw++
		case o == "z" || o == "Z":
			label++
		case validPropagation[mount.Propagation(o)]:
			prop++
		case o == "nocopy":
			cp++
		case validConsistency[o]:
			cons++
		default:
			return false
		}
	}
	return rw <= 1 && label <= 1 && prop <= 1 && cp <= 1 && cons <= 1
}

func modeHas(mode, opt string) bool {
	for _, o := range strings.Split(mode, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

func modePropagation(mode string) (mount.Propagation, bool) {
	for _, o := range strings.Split(mode, ",") {
		if validPropagation[mount.Propagation(o)] {
			return mount.Propagation(o), true
		}
	}
	return "", false
}

func validateTarget(t string) error {
	if t == "" {
		return errors.New("field Target must not be empty")
	}
	if path.Clean(t) == "/" {
		return ErrTargetIsRoot
	}
	if !path.IsAbs(t) {
		return fmt.Errorf("invalid mount path: '%s' mount path must be absolute", t)
	}
	return nil
}

// ParseBind parses one HostConfig.Binds entry (`-v src:dst[:mode]`): an
// absolute source is a bind mount, anything else a named volume.
// `-v /path` alone never gets here: the CLI puts it in Config.Volumes.
func ParseBind(raw string) (*MountPoint, error) {
	arr := strings.SplitN(raw, ":", 4)
	if arr[0] == "" {
		return nil, errInvalidSpec(raw)
	}
	var src, dst, mode string
	switch len(arr) {
	case 1:
		dst = arr[0]
	case 2:
		if validMode(arr[1]) {
			// "/foo:rw": a destination with a mode is not a volume.
			return nil, errInvalidSpec(raw)
		}
		src, dst = arr[0], arr[1]
	case 3:
		src, dst, mode = arr[0], arr[1], arr[2]
	default:
		return nil, errInvalidSpec(raw)
	}
	if !validMode(mode) {
		return nil, errInvalidMode(mode)
	}
	mp := &MountPoint{
		Destination: path.Clean(dst),
		RW:          !modeHas(mode, "ro"),
		Mode:        mode,
	}
	typ := mount.TypeVolume
	if path.IsAbs(src) {
		typ = mount.TypeBind
	}
	mp.Type = typ
	if err := validateTarget(dst); err != nil {
		return nil, fmt.Errorf("%v: %w", errInvalidSpec(raw), &MountConfigError{Type: typ, Err: err})
	}
	switch typ {
	case mount.TypeBind:
		mp.Source = path.Clean(src)
		mp.CreateSource = true
		mp.Propagation = defaultBindPropagation
		if p, ok := modePropagation(mode); ok {
			mp.Propagation = p
		}
		if modeHas(mode, "nocopy") {
			// dockerd accepts nocopy only for volumes.
			return nil, fmt.Errorf("%v: %w", errInvalidSpec(raw), &MountConfigError{Type: typ, Err: errors.New("field VolumeOptions must not be specified")})
		}
	case mount.TypeVolume:
		if src != "" {
			if err := ValidateName(src); err != nil {
				return nil, err
			}
			mp.Name = src
			mp.Named = true
		}
		mp.Driver = DefaultDriver
		mp.CopyData = !modeHas(mode, "nocopy")
		if _, ok := modePropagation(mode); ok {
			return nil, fmt.Errorf("%v: %w", errInvalidSpec(raw), &MountConfigError{Type: typ, Err: errors.New("field BindOptions must not be specified")})
		}
		if mp.Mode == "" {
			mp.Mode = "z" // dockerd's setBindModeIfNull for the local driver
		}
	}
	return mp, nil
}

// ParseMount parses one HostConfig.Mounts entry (`--mount`, already split
// into fields by the CLI). statSource reports whether a bind source exists
// (os.Stat in the daemon; injectable for tests).
func ParseMount(m mount.Mount, sourceExists func(string) (bool, error)) (*MountPoint, error) {
	cfgErr := func(err error) error { return &MountConfigError{Type: m.Type, Err: err} }
	if err := validateTarget(m.Target); err != nil {
		return nil, cfgErr(err)
	}
	mp := &MountPoint{
		Type:        m.Type,
		Destination: path.Clean(m.Target),
		RW:          !m.ReadOnly,
	}
	// Consistency (cached, delegated) is accepted and ignored, as dockerd
	// on Linux does: 9p with cache=loose measured no faster here
	// (docs/VOLUMES.md).
	if m.ImageOptions != nil && m.Type != mount.TypeImage {
		return nil, cfgErr(errors.New("field ImageOptions must not be specified"))
	}
	switch m.Type {
	case mount.TypeBind:
		if m.Source == "" {
			return nil, cfgErr(errors.New("field Source must not be empty"))
		}
		if m.VolumeOptions != nil {
			return nil, cfgErr(errors.New("field VolumeOptions must not be specified"))
		}
		if m.TmpfsOptions != nil {
			return nil, cfgErr(errors.New("field TmpfsOptions must not be specified"))
		}
		if !path.IsAbs(m.Source) {
			return nil, cfgErr(fmt.Errorf("invalid mount path: '%s' mount path must be absolute", m.Source))
		}
		mp.Source = path.Clean(m.Source)
		mp.Propagation = defaultBindPropagation
		if bo := m.BindOptions; bo != nil {
			if bo.Propagation != "" {
				if !validPropagation[bo.Propagation] {
					return nil, cfgErr(fmt.Errorf("invalid propagation mode: %s", bo.Propagation))
				}
				mp.Propagation = bo.Propagation
			}
			if bo.NonRecursive {
				return nil, cfgErr(errors.New("bind-recursive=disabled is not supported by jevm (host directories reach the VM over 9p, with their submounts)"))
			}
			mp.CreateSource = bo.CreateMountpoint
		}
		if !mp.CreateSource && sourceExists != nil {
			ok, err := sourceExists(mp.Source)
			if err != nil {
				return nil, cfgErr(err)
			}
			if !ok {
				return nil, cfgErr(&BindSourceMissingError{Path: mp.Source})
			}
		}
	case mount.TypeVolume:
		if m.BindOptions != nil {
			return nil, cfgErr(errors.New("field BindOptions must not be specified"))
		}
		if m.TmpfsOptions != nil {
			return nil, cfgErr(errors.New("field TmpfsOptions must not be specified"))
		}
		anonymous := m.Source == ""
		mp.Driver = DefaultDriver
		mp.CopyData = true
		mp.Mode = "z"
		if vo := m.VolumeOptions; vo != nil {
			if vo.Subpath != "" {
				if anonymous {
					return nil, cfgErr(errAnonymousWithSubpath)
				}
				if !filepath.IsLocal(vo.Subpath) {
					return nil, cfgErr(errInvalidSubpath)
				}
				mp.Subpath = path.Clean(vo.Subpath)
			}
			if vo.NoCopy {
				mp.CopyData = false
			}
			if vo.DriverConfig != nil {
				if vo.DriverConfig.Name != "" {
					mp.Driver = vo.DriverConfig.Name
				}
				mp.VolumeDriverOpts = vo.DriverConfig.Options
			}
			mp.VolumeLabels = vo.Labels
		}
		if m.ReadOnly && anonymous {
			return nil, cfgErr(errAnonymousReadOnly)
		}
		if !anonymous {
			if err := ValidateName(m.Source); err != nil {
				return nil, err
			}
			mp.Name = m.Source
			mp.Named = true
		}
	case mount.TypeTmpfs:
		if m.BindOptions != nil {
			return nil, cfgErr(errors.New("field BindOptions must not be specified"))
		}
		if m.VolumeOptions != nil {
			return nil, cfgErr(errors.New("field VolumeOptions must not be specified"))
		}
		if m.Source != "" {
			return nil, cfgErr(errors.New("field Source must not be specified"))
		}
		opts, err := TmpfsSpecOptions(m.TmpfsOptions, m.ReadOnly)
		if err != nil {
			return nil, cfgErr(err)
		}
		mp.TmpfsOptions = opts
	case mount.TypeImage:
		return nil, cfgErr(errors.New("image mounts are not supported by jevm"))
	case mount.TypeNamedPipe, mount.TypeCluster:
		return nil, cfgErr(fmt.Errorf("mount type %q is not supported on linux", m.Type))
	default:
		return nil, cfgErr(errMountTypeUnknown)
	}
	return mp, nil
}

// ParseVolumesFrom splits a `--volumes-from container[:ro|rw]` entry.
func ParseVolumesFrom(spec string) (id string, rw bool, err error) {
	if spec == "" {
		return "", false, errInvalidVolumesFromSpec
	}
	id, mode, _ := strings.Cut(spec, ":")
	if mode == "" {
		return id, true, nil
	}
	if !validMode(mode) {
		return "", false, errInvalidMode(mode)
	}
	if _, ok := modePropagation(mode); ok || modeHas(mode, "nocopy") {
		return "", false, errInvalidMode(mode)
	}
	return id, !modeHas(mode, "ro"), nil
}

// ValidateTmpfsDestination checks a `--tmpfs` destination.
func ValidateTmpfsDestination(dest string) error {
	if path.Clean(dest) == "/" {
		return ErrTargetIsRoot
	}
	if !path.IsAbs(dest) {
		return fmt.Errorf("invalid mount path: '%s' mount path must be absolute", dest)
	}
	return nil
}

// TmpfsSpecOptions converts `--mount type=tmpfs` options to mount options
// (dockerd's ConvertTmpfsOptions).
func TmpfsSpecOptions(o *mount.TmpfsOptions, readOnly bool) ([]string, error) {
	var out []string
	if readOnly {
		out = append(out, "ro")
	}
	if o == nil {
		return out, nil
	}
	if o.Mode != 0 {
		out = append(out, fmt.Sprintf("mode=%o", o.Mode))
	}
	if o.SizeBytes < 0 {
		return nil, errors.New("invalid tmpfs size")
	}
	if o.SizeBytes != 0 {
		size, suffix := o.SizeBytes, ""
		for _, r := range []struct {
			s string
			d int64
		}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
			if size%r.d == 0 {
				size, suffix = size/r.d, r.s
				break
			}
		}
		out = append(out, fmt.Sprintf("size=%d%s", size, suffix))
	}
	for _, opt := range o.Options {
		if len(opt) < 1 || len(opt) > 2 {
			return nil, errors.New("invalid option array length")
		}
		if opt[0] != "exec" && opt[0] != "noexec" {
			return nil, errors.New("invalid option: " + opt[0])
		}
		out = append(out, strings.Join(opt, "="))
	}
	return out, nil
}

// tmpfsFlagOpts are the tmpfs options that are mount flags, by pair.
var tmpfsFlagOpts = map[string]string{
	"ro": "rw", "rw": "ro",
	"exec": "noexec", "noexec": "exec",
	"suid": "nosuid", "nosuid": "suid",
	"dev": "nodev", "nodev": "dev",
	"atime": "noatime", "noatime": "atime",
	"diratime": "nodiratime", "nodiratime": "diratime",
	"relatime": "norelatime", "norelatime": "relatime",
	"strictatime": "nostrictatime", "nostrictatime": "strictatime",
	"sync": "async", "async": "sync",
}

// propagation options that dockerd accepts in tmpfs options and that mean
// nothing inside a jeVM (its mounts are private to it).
var ignoredTmpfsOpts = map[string]bool{
	"private": true, "rprivate": true, "shared": true, "rshared": true,
	"slave": true, "rslave": true, "bind": true, "rbind": true,
}

// MergeTmpfsOptions applies dockerd's defaults (noexec, nosuid, nodev) and
// lets later options override earlier ones, as moby's MergeTmpfsOptions.
// data is the comma-separated `--tmpfs` option string.
func MergeTmpfsOptions(user []string) ([]string, error) {
	opts := append([]string{"noexec", "nosuid", "nodev"}, user...)
	var out []string
	seenFlag := map[string]int{}
	seenKey := map[string]int{}
	for _, o := range opts {
		o = strings.TrimSpace(o)
		if o == "" || ignoredTmpfsOpts[o] {
			continue
		}
		if other, ok := tmpfsFlagOpts[o]; ok {
			if i, dup := seenFlag[other]; dup {
				out[i] = o
				delete(seenFlag, other)
				seenFlag[o] = i
				continue
			}
			if _, dup := seenFlag[o]; dup {
				continue
			}
			seenFlag[o] = len(out)
			out = append(out, o)
			continue
		}
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return nil, fmt.Errorf("invalid tmpfs option %q", o)
		}
		switch k {
		case "size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol", "inode64", "inode32":
		case "tmpcopyup":
			return nil, fmt.Errorf("invalid tmpfs option %q: tmpcopyup is not supported by jevm", o)
		default:
			return nil, fmt.Errorf("invalid tmpfs option %q", o)
		}
		if k == "size" || k == "nr_blocks" || k == "nr_inodes" {
			if err := checkSize(v); err != nil {
				return nil, fmt.Errorf("invalid tmpfs option %q: %v", o, err)
			}
		}
		if k == "mode" {
			if _, err := strconv.ParseUint(v, 8, 32); err != nil {
				return nil, fmt.Errorf("invalid tmpfs option %q: mode must be octal", o)
			}
		}
		if i, dup := seenKey[k]; dup {
			out[i] = o
			continue
		}
		seenKey[k] = len(out)
		out = append(out, o)
	}
	return out, nil
}

// checkSize accepts a tmpfs size: a number with an optional k/m/g suffix,
// or a percentage.
func checkSize(v string) error {
	s := strings.TrimSuffix(v, "%")
	if s == v {
		s = strings.TrimRight(v, "kKmMgGtTpPeE")
	}
	if _, err := strconv.ParseUint(s, 10, 64); err != nil || s == "" {
		return errors.New("not a size")
	}
	return nil
}

// DuplicateMountPointError is dockerd's error for two mounts on one path.
type DuplicateMountPointError string

func (e DuplicateMountPointError) Error() string { return "Duplicate mount point: " + string(e) }

// SortByDestination orders mount points so that parents are mounted
// before their children (/a before /a/b), as dockerd does.
func SortByDestination(mps []*MountPoint) {
	sort.SliceStable(mps, func(i, j int) bool {
		di := strings.Count(path.Clean(mps[i].Destination), "/")
		dj := strings.Count(path.Clean(mps[j].Destination), "/")
		if di != dj {
			return di < dj
		}
		return mps[i].Destination < mps[j].Destination
	})
}

// SourceExists is the os.Stat-based check ParseMount uses in the daemon.
func SourceExists(p string) (bool, error) {
	_, err := os.Stat(p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}
