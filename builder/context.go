package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/errdefs"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	decomp "github.com/jevm/jevm/internal/decompress"
)

// maxDockerfileSize bounds the Dockerfile the daemon reads.
const maxDockerfileSize = 16 << 20

// buildContext is a build's context, extracted on the host.
type buildContext struct {
	dir        string
	dockerfile []byte
	ignore     *patternmatcher.PatternMatcher // nil: nothing is ignored
}

// openContext extracts the context tar (plain, gzip, bzip2 or xz) into dir,
// reads the Dockerfile (name, relative to the context's root; "" is
// "Dockerfile") and the .dockerignore patterns.
func openContext(ctx context.Context, r io.Reader, dir, name string) (*buildContext, error) {
	dr, err := decompress(r)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(dr, 1024)
	if !looksLikeTar(br) {
		// `docker build - < Dockerfile`: the body is the Dockerfile and
		// the context is empty, as in dockerd.
		b, err := io.ReadAll(io.LimitReader(br, maxDockerfileSize+1))
		if err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("reading the Dockerfile: %w", err))
		}
		if len(b) > maxDockerfileSize {
			return nil, errdefs.InvalidParameter(fmt.Errorf("the Dockerfile is larger than %d bytes", maxDockerfileSize))
		}
		return &buildContext{dir: dir, dockerfile: b}, nil
	}
	if err := extractTar(ctx, tar.NewReader(br), dir, nil); err != nil {
		return nil, err
	}
	bc := &buildContext{dir: dir}
	if name == "" {
		name = "Dockerfile"
	}
	p, err := contextPath(dir, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) && name == "Dockerfile" {
		// dockerd falls back to the lower-case name.
		f, err = os.Open(filepath.Join(dir, "dockerfile"))
	}
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("Cannot locate specified Dockerfile: %s", name))
	}
	defer f.Close()
	bc.dockerfile, err = io.ReadAll(io.LimitReader(f, maxDockerfileSize+1))
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("reading Dockerfile: %w", err))
	}
	if len(bc.dockerfile) > maxDockerfileSize {
		return nil, errdefs.InvalidParameter(fmt.Errorf("the Dockerfile is larger than %d bytes", maxDockerfileSize))
	}
	if ig, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err := ignorefile.ReadAll(ig)
		ig.Close()
		if err != nil {
			return nil, errdefs.InvalidParameter(fmt.Errorf("reading .dockerignore: %w", err))
		}
		if len(patterns) > 0 {
			pm, err := patternmatcher.New(patterns)
			if err != nil {
				return nil, errdefs.InvalidParameter(fmt.Errorf("invalid .dockerignore: %w", err))
			}
			bc.ignore = pm
		}
	}
	return bc, nil
}

// ignored reports whether rel (a slash path relative to the context root)
// is excluded by .dockerignore, which the client usually applied already.
func (bc *buildContext) ignored(rel string) bool {
	if bc.ignore == nil || rel == "" || rel == "." {
		return false
	}
	ok, err := bc.ignore.MatchesOrParentMatches(rel)
	return err == nil && ok
}

// contextPath joins a path of the Dockerfile's (sources, the Dockerfile's
// name) to root, refusing one that leaves it.
func contextPath(root, p string) (string, error) {
	rel := path.Clean("/" + filepath.ToSlash(p))
	out := filepath.Join(root, filepath.FromSlash(rel))
	if out != root && !strings.HasPrefix(out, root+string(filepath.Separator)) {
		return "", errdefs.InvalidParameter(fmt.Errorf("forbidden path outside the build context: %s", p))
	}
	return out, nil
}

// looksLikeTar checks the first header block: a POSIX/GNU magic, or a
// valid header checksum for old tars. An empty body is an empty tar.
func looksLikeTar(br *bufio.Reader) bool {
	head, _ := br.Peek(512)
	if len(head) == 0 {
		return true
	}
	if len(head) < 512 {
		return false
	}
	if bytes.Equal(head[257:262], []byte("ustar")) {
		return true
	}
	if bytes.Count(head, []byte{0}) == 512 {
		return true // end-of-archive: an empty context
	}
	// Checksum: the sum of the header's bytes with the checksum field
	// taken as spaces.
	want, err := strconv.ParseUint(strings.TrimRight(strings.TrimSpace(string(head[148:156])), "\x00"), 8, 32)
	if err != nil {
		return false
	}
	var sum uint64
	for i, b := range head {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += uint64(b)
	}
	return sum == want
}

// decompress opens a context or a local ADD archive: gzip, bzip2, xz,
// zstd or plain (internal/decompress).
func decompress(r io.Reader) (io.Reader, error) {
	rc, err := decomp.Stream(r)
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("reading the build context: %w", err))
	}
	return rc, nil
}

// extractTar writes a tar's regular files, directories, symbolic and hard
// links under dir, keeping modes and modification times (not owners).
// Entries that would land outside dir, or be written through a symbolic
// link, are refused. keep, if set, filters entries by their clean relative
// name.
func extractTar(ctx context.Context, tr *tar.Reader, dir string, keep func(rel string) bool) error {
	type dirTime struct {
		path string
		h    *tar.Header
	}
	var dirs []dirTime
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return errdefs.InvalidParameter(fmt.Errorf("reading the build context: %w", err))
		}
		rel := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if rel == "" {
			continue
		}
		if keep != nil && !keep(rel) {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		if err := checkNoSymlinkParents(dir, target); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return errdefs.System(err)
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
				os.Remove(target)
			}
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return errdefs.System(err)
			}
			os.Chmod(target, mode.Perm()|mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
			dirs = append(dirs, dirTime{target, h})
			continue
		case tar.TypeReg, tar.TypeRegA:
			os.RemoveAll(target)
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return errdefs.System(err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return errdefs.InvalidParameter(fmt.Errorf("reading the build context: %w", err))
			}
			os.Chmod(target, mode.Perm()|mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
		case tar.TypeSymlink:
			os.RemoveAll(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return errdefs.System(err)
			}
			continue // no times on the link itself
		case tar.TypeLink:
			lrel := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			src := filepath.Join(dir, filepath.FromSlash(lrel))
			if err := checkNoSymlinkParents(dir, src); err != nil {
				return err
			}
			if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
				return errdefs.InvalidParameter(fmt.Errorf("hard link %s to %s: no such regular file in the context", rel, h.Linkname))
			}
			os.RemoveAll(target)
			if err := os.Link(src, target); err != nil {
				return errdefs.System(err)
			}
		default:
			continue // devices and fifos have no place in a context
		}
		os.Chtimes(target, h.AccessTime, h.ModTime)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chtimes(dirs[i].path, dirs[i].h.AccessTime, dirs[i].h.ModTime)
	}
	return nil
}

// checkNoSymlinkParents refuses target if a directory between root and it
// is a symbolic link (an entry could otherwise be written outside root).
func checkNoSymlinkParents(root, target string) error {
	if target != root && !strings.HasPrefix(target, root+string(filepath.Separator)) {
		return errdefs.InvalidParameter(fmt.Errorf("forbidden path outside the build context: %s", target))
	}
	rel, err := filepath.Rel(root, filepath.Dir(target))
	if err != nil || rel == "." {
		return nil
	}
	p := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return errdefs.System(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return errdefs.InvalidParameter(fmt.Errorf("context entry %s is written through a symbolic link", target[len(root):]))
		}
	}
	return nil
}
