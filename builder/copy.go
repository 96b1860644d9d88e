package builder

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// maxRemoteFileSize bounds what ADD downloads.
const maxRemoteFileSize = 8 << 30

// layerFile is a layer tar being written to a temporary file, with a
// digest of what matters for the cache (names, modes, owners, link targets
// and file contents; not modification times, as in dockerd).
type layerFile struct {
	f       *os.File
	tw      *tar.Writer
	key     hash.Hash
	written map[string]bool
	entries int
}

func newLayerFile(root string) (*layerFile, error) {
	f, err := os.CreateTemp(filepath.Join(root, "tmp"), "layer-")
	if err != nil {
		return nil, errdefs.System(err)
	}
	return &layerFile{f: f, tw: tar.NewWriter(f), key: sha256.New(), written: map[string]bool{}}, nil
}

func (lw *layerFile) discard() {
	lw.f.Close()
	os.Remove(lw.f.Name())
}

// finish ends the tar and rewinds it for reading.
func (lw *layerFile) finish() (io.Reader, error) {
	if err := lw.tw.Close(); err != nil {
		return nil, errdefs.System(err)
	}
	if _, err := lw.f.Seek(0, io.SeekStart); err != nil {
		return nil, errdefs.System(err)
	}
	return lw.f, nil
}

func (lw *layerFile) digest() string { return hex.EncodeToString(lw.key.Sum(nil)) }

// tarName is an absolute image path as a layer entry name.
func tarName(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (lw *layerFile) header(h *tar.Header, content hash.Hash) error {
	fmt.Fprintf(lw.key, "%c|%s|%o|%d|%d|%s|", h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid, h.Linkname)
	if content != nil {
		lw.key.Write(content.Sum(nil))
	}
	lw.key.Write([]byte{'\n'})
	lw.entries++
	return nil
}

func (lw *layerFile) addDir(p string, mode fs.FileMode, uid, gid int, mtime time.Time) error {
	name := tarName(p)
	if name == "" || lw.written[name] {
		return nil
	}
	lw.written[name] = true
	h := &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: tarMode(mode), Uid: uid, Gid: gid, ModTime: mtime}
	lw.header(h, nil)
	return lw.tw.WriteHeader(h)
}

func (lw *layerFile) addSymlink(p, target string, uid, gid int, mtime time.Time) error {
	name := tarName(p)
	lw.written[name] = true
	h := &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, Uid: uid, Gid: gid, ModTime: mtime}
	lw.header(h, nil)
	return lw.tw.WriteHeader(h)
}

// addFile writes a regular file of size bytes read from r.
func (lw *layerFile) addFile(p string, mode fs.FileMode, uid, gid int, mtime time.Time, size int64, r io.Reader) error {
	name := tarName(p)
	lw.written[name] = true
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: tarMode(mode), Uid: uid, Gid: gid, ModTime: mtime, Size: size}
	if err := lw.tw.WriteHeader(h); err != nil {
		return errdefs.System(err)
	}
	sum := sha256.New()
	n, err := io.Copy(lw.tw, io.TeeReader(io.LimitReader(r, size), sum))
	if err != nil {
		return errdefs.System(err)
	}
	if n != size {
		return errdefs.System(fmt.Errorf("%s changed while it was copied", p))
	}
	return lw.header(h, sum)
}

// tarMode keeps the permission, setuid, setgid and sticky bits.
func tarMode(m fs.FileMode) int64 {
	out := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		out |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		out |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		out |= 0o1000
	}
	return out
}

// missingDirs lists the directories from / down to dir that the image
// lacks, parents first.
func (bs *buildState) missingDirs(ctx context.Context, imageID, dir string) ([]string, error) {
	dir = path.Clean("/" + dir)
	var chain []string
	for d := dir; d != "/"; d = path.Dir(d) {
		chain = append([]string{d}, chain...)
	}
	if len(chain) == 0 {
		return nil, nil
	}
	if imageID == "" {
		return chain, nil
	}
	modes, err := bs.b.opts.Images.StatImagePaths(ctx, imageID, chain)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, d := range chain {
		m, ok := modes[d]
		if !ok {
			missing = append(missing, d)
			continue
		}
		if !m.IsDir() && m&fs.ModeSymlink == 0 {
			return nil, errdefs.InvalidParameter(fmt.Errorf("cannot create directory %s: %s is not a directory in the image", dir, d))
		}
	}
	return missing, nil
}

// commitLayer records a step whose files are in lw.
func (bs *buildState) commitLayer(ctx context.Context, st *stage, lw *layerFile, comment, contentKey string) error {
	createdBy := strings.Join(append(shellOf(st.config), "#(nop) ", comment), " ")
	key := cacheKey("layer", st.imageID, createdBy, configJSON(st.config), st.author, lw.digest(), contentKey)
	if bs.probeCache(ctx, st, key) {
		return nil
	}
	layer, err := lw.finish()
	if err != nil {
		return err
	}
	id, err := bs.b.opts.Images.CommitLayer(ctx, LayerCommit{Parent: st.imageID, Layer: layer, Config: st.config, Author: st.author, CreatedBy: createdBy})
	if err != nil {
		return err
	}
	st.imageID = id
	bs.rememberCache(key, id)
	return nil
}

// copySource is one resolved source of a COPY or ADD.
type copySource struct {
	host    string // path on the host
	rel     string // name relative to the source root (for .dockerignore)
	fi      fs.FileInfo
	archive bool   // ADD: a local tar to extract
	name    string // file name for a download
}

// dispatchCopy runs COPY and ADD: the files become a layer made on the
// host, with no VM.
func (bs *buildState) dispatchCopy(ctx context.Context, st *stage, cmdName string, sd instructions.SourcesAndDest, from, chown, chmod string, isAdd bool) error {
	if len(sd.SourceContents) > 0 {
		return errdefs.InvalidParameter(fmt.Errorf("heredocs in %s require BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled", cmdName))
	}
	if len(sd.SourcePaths) == 0 {
		return errdefs.InvalidParameter(fmt.Errorf("%s requires at least two arguments", cmdName))
	}
	var perm *fs.FileMode
	if chmod != "" {
		n, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || n > 0o7777 {
			return errdefs.InvalidParameter(fmt.Errorf("invalid chmod parameter: %s", chmod))
		}
		m := fs.FileMode(n & 0o777)
		if n&0o4000 != 0 {
			m |= fs.ModeSetuid
		}
		if n&0o2000 != 0 {
			m |= fs.ModeSetgid
		}
		if n&0o1000 != 0 {
			m |= fs.ModeSticky
		}
		perm = &m
	}
	uid, gid := 0, 0
	if chown != "" {
		var err error
		if uid, gid, err = bs.resolveChown(ctx, st.imageID, chown); err != nil {
			return err
		}
	}

	// Where sources come from: the context, an earlier stage or an image.
	root := bs.bc.dir
	ignored := bs.bc.ignored
	if from != "" {
		dir, err := bs.sourceImageDir(ctx, from)
		if err != nil {
			return err
		}
		root, ignored = dir, func(string) bool { return false }
	}

	dest := sd.DestPath
	destIsDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		wd := st.config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = path.Clean(dest)

	var srcs []copySource
	var tmpFiles []string
	defer func() {
		for _, f := range tmpFiles {
			os.Remove(f)
		}
	}()
	wildcard := false
	for _, src := range sd.SourcePaths {
		if isAdd && isURL(src) {
			f, name, fi, err := bs.download(ctx, src)
			if err != nil {
				return err
			}
			tmpFiles = append(tmpFiles, f)
			srcs = append(srcs, copySource{host: f, fi: fi, name: name})
			continue
		}
		if isURL(src) {
			return errdefs.InvalidParameter(fmt.Errorf("source can't be a URL for %s", cmdName))
		}
		if strings.ContainsAny(src, "*?[") {
			wildcard = true
			pattern, err := contextPath(root, src)
			if err != nil {
				return err
			}
			matches, err := filepath.Glob(pattern)
			if err != nil {
				return errdefs.InvalidParameter(fmt.Errorf("%s failed: invalid pattern %q: %v", cmdName, src, err))
			}
			sort.Strings(matches)
			for _, m := range matches {
				rel, err := filepath.Rel(root, m)
				if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || ignored(filepath.ToSlash(rel)) {
					continue
				}
				fi, err := os.Lstat(m)
				if err != nil {
					continue
				}
				srcs = append(srcs, copySource{host: m, rel: filepath.ToSlash(rel), fi: fi, archive: isAdd && from == "" && isArchive(m, fi)})
			}
			continue
		}
		p, err := contextPath(root, src)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil || ignored(rel) {
			if from != "" {
				return errdefs.InvalidParameter(fmt.Errorf("%s failed: stat %s: file does not exist", cmdName, src))
			}
			return errdefs.InvalidParameter(fmt.Errorf("%s failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", cmdName, src))
		}
		if fi.Mode()&fs.ModeSymlink != 0 && rel != "." {
			// A source that is a link is followed (within the root).
			if target, err := resolveInRoot(root, p); err == nil {
				if tfi, err := os.Stat(target); err == nil {
					p, fi = target, tfi
				}
			}
		}
		srcs = append(srcs, copySource{host: p, rel: rel, fi: fi, archive: isAdd && from == "" && isArchive(p, fi)})
	}
	if len(srcs) == 0 {
		return errdefs.InvalidParameter(fmt.Errorf("%s failed: no source files were specified", cmdName))
	}
	if (len(srcs) > 1 || wildcard) && !destIsDir {
		// dockerd: several sources need a directory, named with a slash.
		if len(srcs) > 1 {
			return errdefs.InvalidParameter(fmt.Errorf("When using %s with more than one source file, the destination must be a directory and end with a /", cmdName))
		}
	}
	if !destIsDir && st.imageID != "" {
		modes, err := bs.b.opts.Images.StatImagePaths(ctx, st.imageID, []string{dest})
		if err != nil {
			return err
		}
		if m, ok := modes[dest]; ok && m.IsDir() {
			destIsDir = true
		}
	}
	if len(srcs) == 1 && srcs[0].fi.IsDir() {
		destIsDir = true
	}
	for _, s := range srcs {
		if s.archive {
			destIsDir = true
		}
	}

	lw, err := newLayerFile(bs.b.opts.Root)
	if err != nil {
		return err
	}
	defer lw.discard()
	parentDir := dest
	if !destIsDir {
		parentDir = path.Dir(dest)
	}
	missing, err := bs.missingDirs(ctx, st.imageID, parentDir)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, d := range missing {
		if err := lw.addDir(d, 0o755, uid, gid, now); err != nil {
			return err
		}
	}
	kind := "file"
	for _, s := range srcs {
		target := dest
		if destIsDir && !s.fi.IsDir() {
			name := s.name
			if name == "" {
				name = filepath.Base(s.host)
			}
			target = path.Join(dest, name)
		}
		switch {
		case s.fi.IsDir():
			kind = "dir"
			err = bs.addTree(ctx, lw, root, s.host, target, ignored, from == "", uid, gid, perm)
		case s.archive:
			err = addArchive(ctx, lw, s.host, dest, chown != "", uid, gid)
		default:
			err = addOne(lw, s.host, target, s.fi, uid, gid, perm)
		}
		if err != nil {
			return err
		}
	}
	if len(srcs) > 1 {
		kind = "multi"
	}
	comment := fmt.Sprintf("%s %s:%s in %s ", cmdName, kind, lw.digest(), dest)
	return bs.commitLayer(ctx, st, lw, comment, "")
}

// addOne adds a file or symbolic link.
func addOne(lw *layerFile, host, target string, fi fs.FileInfo, uid, gid int, perm *fs.FileMode) error {
	mode := fi.Mode()
	if perm != nil {
		mode = *perm
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(host)
		if err != nil {
			return errdefs.System(err)
		}
		return lw.addSymlink(target, link, uid, gid, fi.ModTime())
	case fi.Mode().IsRegular():
		f, err := os.Open(host)
		if err != nil {
			return errdefs.System(err)
		}
		defer f.Close()
		return lw.addFile(target, mode, uid, gid, fi.ModTime(), fi.Size(), f)
	}
	return nil // devices, sockets and fifos are not copied
}

// addTree adds a directory's contents under target.
func (bs *buildState) addTree(ctx context.Context, lw *layerFile, root, dir, target string, ignored func(string) bool, fromContext bool, uid, gid int, perm *fs.FileMode) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errdefs.System(err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if fromContext && ignored(filepath.ToSlash(rel)) && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		sub, _ := filepath.Rel(dir, p)
		dst := path.Join(target, filepath.ToSlash(sub))
		fi, err := d.Info()
		if err != nil {
			return errdefs.System(err)
		}
		if d.IsDir() {
			mode := fi.Mode()
			if perm != nil {
				mode = *perm
			}
			if p == dir {
				// The destination itself was made by missingDirs when
				// missing; an existing one keeps its mode and owner.
				return nil
			}
			return lw.addDir(dst, mode, uid, gid, fi.ModTime())
		}
		return addOne(lw, p, dst, fi, uid, gid, perm)
	})
}

// addArchive extracts a local tar (ADD) under dest.
func addArchive(ctx context.Context, lw *layerFile, host, dest string, chown bool, uid, gid int) error {
	f, err := os.Open(host)
	if err != nil {
		return errdefs.System(err)
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.InvalidParameter(fmt.Errorf("ADD %s: %w", filepath.Base(host), err))
		}
		rel := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if rel == "" {
			continue
		}
		target := path.Join(dest, rel)
		u, g := h.Uid, h.Gid
		if chown {
			u, g = uid, gid
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			err = lw.addDir(target, mode, u, g, h.ModTime)
		case tar.TypeReg, tar.TypeRegA:
			err = lw.addFile(target, mode, u, g, h.ModTime, h.Size, tr)
		case tar.TypeSymlink:
			err = lw.addSymlink(target, h.Linkname, u, g, h.ModTime)
		case tar.TypeLink:
			lh := &tar.Header{Typeflag: tar.TypeLink, Name: tarName(target), Linkname: tarName(path.Join(dest, strings.TrimPrefix(path.Clean("/"+h.Linkname), "/"))), Mode: h.Mode, Uid: u, Gid: g, ModTime: h.ModTime}
			lw.header(lh, nil)
			err = lw.tw.WriteHeader(lh)
		}
		if err != nil {
			return err
		}
	}
}

// isArchive reports whether a local file is a tar (possibly compressed),
// which ADD extracts.
func isArchive(p string, fi fs.FileInfo) bool {
	if !fi.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return false
	}
	_, err = tar.NewReader(r).Next()
	return err == nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// resolveInRoot follows p's symbolic links as if root were /.
func resolveInRoot(root, p string) (string, error) {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return "", err
	}
	cur := "/"
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		next := path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(next)))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if hops++; hops > 40 {
				return "", errors.New("too many levels of symbolic links")
			}
			link, err := os.Readlink(filepath.Join(root, filepath.FromSlash(next)))
			if err != nil {
				return "", err
			}
			if path.IsAbs(link) {
				cur = "/"
			}
			parts = append(strings.Split(strings.TrimPrefix(link, "/"), "/"), parts...)
			continue
		}
		cur = next
	}
	return filepath.Join(root, filepath.FromSlash(cur)), nil
}

// sourceImageDir unpacks the stage or image COPY --from names (once per
// build).
func (bs *buildState) sourceImageDir(ctx context.Context, from string) (string, error) {
	imageID := ""
	if i := bs.stageByName(from); i >= 0 {
		imageID = bs.stageImages[i]
	} else if n, err := strconv.Atoi(from); err == nil {
		if n < 0 || n >= len(bs.stageImages) {
			return "", errdefs.InvalidParameter(fmt.Errorf("invalid from flag value %s: stage index out of range", from))
		}
		imageID = bs.stageImages[n]
	} else {
		img, err := bs.getOrPull(ctx, from)
		if err != nil {
			return "", err
		}
		imageID = img.ID
	}
	if dir, ok := bs.unpacked[imageID]; ok {
		return dir, nil
	}
	dir, err := os.MkdirTemp(filepath.Join(bs.b.opts.Root, "tmp"), "from-")
	if err != nil {
		return "", errdefs.System(err)
	}
	bs.unpacked[imageID] = dir
	if imageID == "" {
		return dir, nil // a FROM scratch stage that made nothing
	}
	if err := bs.b.opts.Images.UnpackImage(ctx, imageID, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// download fetches an ADD URL into a temporary file.
func (bs *buildState) download(ctx context.Context, src string) (string, string, fs.FileInfo, error) {
	u, err := url.Parse(src)
	if err != nil {
		return "", "", nil, errdefs.InvalidParameter(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return "", "", nil, errdefs.InvalidParameter(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", nil, errdefs.System(fmt.Errorf("ADD %s: %w", src, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return "", "", nil, errdefs.InvalidParameter(fmt.Errorf("failed to GET %s with status %s", src, resp.Status))
	}
	f, err := os.CreateTemp(filepath.Join(bs.b.opts.Root, "tmp"), "download-")
	if err != nil {
		return "", "", nil, errdefs.System(err)
	}
	n, err := io.Copy(f, io.LimitReader(resp.Body, maxRemoteFileSize+1))
	f.Close()
	if err == nil && n > maxRemoteFileSize {
		err = fmt.Errorf("larger than %d bytes", int64(maxRemoteFileSize))
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", nil, errdefs.System(fmt.Errorf("ADD %s: %w", src, err))
	}
	mtime := time.Now()
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		mtime = lm
	}
	os.Chmod(f.Name(), 0o600)
	os.Chtimes(f.Name(), mtime, mtime)
	fi, err := os.Stat(f.Name())
	if err != nil {
		os.Remove(f.Name())
		return "", "", nil, errdefs.System(err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		name = "index.html"
	}
	return f.Name(), name, fi, nil
}

// authFor picks the credentials the client sent for ref's registry.
func authFor(configs map[string]registry.AuthConfig, ref string) *registry.AuthConfig {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil || len(configs) == 0 {
		return &registry.AuthConfig{}
	}
	host := reference.Domain(named)
	keys := []string{host}
	if host == "docker.io" {
		keys = append(keys, "https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")
	}
	for _, k := range keys {
		if a, ok := configs[k]; ok {
			return &a
		}
		if a, ok := configs["https://"+k]; ok {
			return &a
		}
		if a, ok := configs["http://"+k]; ok {
			return &a
		}
	}
	return &registry.AuthConfig{}
}
