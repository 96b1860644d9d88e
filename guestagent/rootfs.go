package guestagent

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/jevm/jevm/vmbackend/agentproto"
)

// The container's root filesystem is mounted at a directory of the agent's
// own (initramfs) root. Paths of the container (an image's absolute
// symlinks, PATH entries, /etc/passwd) must be resolved as if that directory
// were "/": these helpers never leave it.

// maxSymlinks bounds symlink expansion, as the kernel's ELOOP does.
const maxSymlinks = 255

// resolveInRoot returns the host path of the container path p inside root,
// following symlinks with root as "/". Components that do not exist are
// appended lexically (so the result can be created); the result never
// escapes root.
func resolveInRoot(root, p string) (string, error) {
	resolved := "/"
	rest := splitPath(p)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, c)
		fi, err := os.Lstat(root + next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return root + path.Join(append([]string{next}, rest...)...), nil
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	if resolved == "/" {
		return root, nil
	}
	return root + resolved, nil
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// mkdirAllInRoot creates the container directory p (and its parents) inside
// root, following the image's symlinks inside root.
func mkdirAllInRoot(root, p string, mode fs.FileMode) error {
	cur := "/"
	for _, c := range splitPath(path.Clean("/" + p)) {
		if c == "" {
			continue
		}
		cur = path.Join(cur, c)
		hp, err := resolveInRoot(root, cur)
		if err != nil {
			return err
		}
		fi, err := os.Stat(hp)
		if err == nil {
			if !fi.IsDir() {
				return &fs.PathError{Op: "mkdir", Path: cur, Err: syscall.ENOTDIR}
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Mkdir(hp, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// defaultPath is used to look up the command when the environment has no
// PATH (the daemon normally sets one).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envValue returns the value of key in a KEY=value list (the last wins).
func envValue(env []string, key string) (string, bool) {
	val, ok := "", false
	for _, kv := range env {
		if k, v, found := strings.Cut(kv, "="); found && k == key {
			val, ok = v, true
		}
	}
	return val, ok
}

// execError is the error for a command that cannot be started; its text
// mirrors runc's so that the daemon can show dockerd-like messages, and
// code classifies it for the host (agentproto.ErrCommandNotFound,
// ErrCommandNotExecutable, or "").
type execError struct{ msg, code string }

func (e *execError) Error() string { return e.msg }

// execveErrCode classifies the error of the execve of a command that
// lookPath found: a missing interpreter (ENOENT) or a noexec mount
// (EACCES).
func execveErrCode(errno error) string {
	switch {
	case errors.Is(errno, syscall.ENOENT):
		return agentproto.ErrCommandNotFound
	case errors.Is(errno, syscall.EACCES):
		return agentproto.ErrCommandNotExecutable
	}
	return ""
}

// processErrCode is Msg.ErrCode for an error of a start or exec.
func processErrCode(err error) string {
	var ee *execError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ""
}

// lookPath resolves argv0 the way runc does (exec.LookPath semantics), but
// inside root: a name with a slash is used as is (relative to cwd), other
// names are searched in PATH. It returns the path to execute, as the
// process sees it after chroot.
func lookPath(root, argv0, pathEnv, cwd string) (string, error) {
	if argv0 == "" {
		return "", &execError{`exec: "": executable file not found in $PATH`, agentproto.ErrCommandNotFound}
	}
	check := func(p string) error {
		cp := p
		if !path.IsAbs(cp) {
			cp = path.Join(cwd, cp)
		}
		hp, err := resolveInRoot(root, cp)
		if err != nil {
			return err
		}
		fi, err := os.Stat(hp)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return syscall.ENOENT
			}
			return err
		}
		if fi.IsDir() {
			return syscall.EISDIR
		}
		if fi.Mode()&0o111 == 0 {
			return fs.ErrPermission
		}
		return nil
	}
	if strings.Contains(argv0, "/") {
		if err := check(argv0); err != nil {
			var pe *fs.PathError
			switch {
			case errors.Is(err, syscall.ENOENT):
				return "", &execError{fmt.Sprintf("exec: %q: stat %s: no such file or directory", argv0, argv0), agentproto.ErrCommandNotFound}
			case errors.Is(err, syscall.EISDIR):
				return "", &execError{fmt.Sprintf("exec: %q: is a directory", argv0), ""}
			case errors.Is(err, fs.ErrPermission):
				return "", &execError{fmt.Sprintf("exec: %q: permission denied", argv0), agentproto.ErrCommandNotExecutable}
			case errors.As(err, &pe):
				return "", &execError{fmt.Sprintf("exec: %q: %v", argv0, pe.Err), ""}
			default:
				return "", &execError{fmt.Sprintf("exec: %q: %v", argv0, err), ""}
			}
		}
		return argv0, nil
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, argv0)
		if err := check(p); err == nil {
			return p, nil
		}
	}
	return "", &execError{fmt.Sprintf("exec: %q: executable file not found in $PATH", argv0), agentproto.ErrCommandNotFound}
}

// execUser is a resolved user spec.
type execUser struct {
	Uid, Gid int
	Sgids    []int
	Home     string
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

func readColonFile(p string, fields int, fn func([]string)) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		for len(parts) < fields {
			parts = append(parts, "")
		}
		fn(parts)
	}
	return s.Err()
}

func parsePasswd(p string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readColonFile(p, 7, func(f []string) {
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
	return out, err
}

func parseGroup(p string) ([]groupEntry, error) {
	var out []groupEntry
	err := readColonFile(p, 4, func(f []string) {
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return
		}
		var members []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		out = append(out, groupEntry{name: f[0], gid: gid, members: members})
	})
	return out, err
}

const maxID = 1<<31 - 1

// resolveUser resolves a user spec ("", "name", "uid", "name:group",
// "uid:gid", ...) against the container's /etc/passwd and /etc/group the
// way runc (moby/sys/user.GetExecUser) does, including its error texts.
func resolveUser(root, spec string) (*execUser, error) {
	u := &execUser{Uid: 0, Gid: 0, Home: "/"}
	userArg, groupArg, _ := strings.Cut(spec, ":")
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	var passwd []passwdEntry
	if hp, err := resolveInRoot(root, "/etc/passwd"); err == nil {
		if p, err := parsePasswd(hp); err == nil {
			passwd = p
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("unable to read passwd file: %w", err)
		}
	}
	var matched *passwdEntry
	for i := range passwd {
		e := &passwd[i]
		var ok bool
		switch {
		case userArg == "":
			ok = e.uid == u.Uid
		case uidErr == nil:
			ok = e.uid == uidArg
		default:
			ok = e.name == userArg
		}
		if ok {
			matched = e
			break
		}
	}
	if matched != nil {
		u.Uid, u.Gid, u.Home = matched.uid, matched.gid, matched.home
	} else if userArg != "" {
		if uidErr != nil {
			return nil, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
		}
		if uidArg < 0 || uidArg > maxID {
			return nil, errors.New("uids and gids must be in range 0-2147483647")
		}
		u.Uid = uidArg
	}

	matchedName := ""
	if matched != nil {
		matchedName = matched.name
	}
	if groupArg != "" || matchedName != "" {
		groups, err := containerGroups(root)
		if err != nil {
			return nil, err
		}
		var sel []groupEntry
		for _, g := range groups {
			var ok bool
			switch {
			case groupArg == "":
				for _, m := range g.members {
					if m == matchedName {
						ok = true
						break
					}
				}
			case gidErr == nil:
				ok = g.gid == gidArg
			default:
				ok = g.name == groupArg
			}
			if ok {
				sel = append(sel, g)
			}
		}
		if groupArg != "" {
			if len(sel) > 0 {
				u.Gid = sel[0].gid
			} else {
				if gidErr != nil {
					return nil, fmt.Errorf("unable to find group %s: no matching entries in group file", groupArg)
				}
				if gidArg < 0 || gidArg > maxID {
					return nil, errors.New("uids and gids must be in range 0-2147483647")
				}
				u.Gid = gidArg
			}
		} else {
			for _, g := range sel {
				u.Sgids = append(u.Sgids, g.gid)
			}
		}
	}
	return u, nil
}

// containerGroups reads the container's /etc/group; a missing file is no
// groups (a scratch image).
func containerGroups(root string) ([]groupEntry, error) {
	hp, err := resolveInRoot(root, "/etc/group")
	if err != nil {
		return nil, nil
	}
	g, err := parseGroup(hp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unable to read group file: %w", err)
	}
	return g, nil
}

// additionalGroups resolves `--group-add` values against the container's
// /etc/group as runc does: a name must be there; a number is taken as is.
func additionalGroups(root string, specs []string) ([]int, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	groups, err := containerGroups(root)
	if err != nil {
		return nil, err
	}
	var out []int
next:
	for _, spec := range specs {
		for _, g := range groups {
			if g.name == spec {
				out = append(out, g.gid)
				continue next
			}
		}
		gid, err := strconv.Atoi(spec)
		if err != nil {
			return nil, fmt.Errorf("Unable to find group %s: no matching entries in group file", spec)
		}
		if gid < 0 || gid > maxID {
			return nil, errors.New("uids and gids must be in range 0-2147483647")
		}
		out = append(out, gid)
	}
	return out, nil
}
