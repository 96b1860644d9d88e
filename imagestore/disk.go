package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/content"
	"github.com/docker/docker/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// diskBuild is a base disk build in progress; concurrent callers wait on it.
type diskBuild struct {
	done chan struct{}
	size int64
	err  error
}

// buildSpec says what goes into a base disk and whom to tell about it.
type buildSpec struct {
	layers  []ocispec.Descriptor
	diffIDs []digest.Digest
	// wait, if set, blocks until layer i is in the content store.
	wait func(i int) error
	// progress reports how much of layer i (compressed bytes) is applied.
	progress func(i int, cur, total int64)
	// applied is called after layer i is applied.
	applied func(i int)
}

func (s *Store) diskPath(id digest.Digest) string {
	return filepath.Join(s.root, "disks", id.Encoded()+".ext4")
}

// BaseDisk returns the path of the image's base disk: an ext4 file system of
// exactly DiskSize bytes (sparse) holding the image's root file system. It
// is built once per image (at the end of a pull, or here when missing) and
// must only be used read-only, as the backing file of container overlays
// (the VM backend layers containers' disks over it). id may be anything Resolve accepts.
func (s *Store) BaseDisk(ctx context.Context, id string) (string, error) {
	img, err := s.Resolve(id)
	if err != nil {
		return "", err
	}
	path := s.diskPath(img.ID)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	spec := buildSpec{layers: img.Layers, diffIDs: img.Config.RootFS.DiffIDs}
	size, built, err := s.ensureDisk(ctx, img.ID, spec, true)
	if err != nil {
		return "", err
	}
	if built && size > 0 {
		s.mu.Lock()
		if rec := s.images[img.ID]; rec != nil && rec.Size == 0 {
			rec.Size = size
			if err := s.saveLocked(); err != nil {
				s.log.WithError(err).Warn("saving image size")
			}
		}
		s.mu.Unlock()
	}
	return path, nil
}

// ensureDisk builds the base disk of image id unless it exists; concurrent
// callers for the same image share one build. It returns the image size when
// this call (or the build it waited for) built the disk. With requireRecord,
// a disk finished after the image was deleted is thrown away.
func (s *Store) ensureDisk(ctx context.Context, id digest.Digest, spec buildSpec, requireRecord bool) (int64, bool, error) {
	path := s.diskPath(id)
	for {
		s.mu.Lock()
		if _, err := os.Stat(path); err == nil {
			s.mu.Unlock()
			return 0, false, nil
		}
		if b := s.builds[id]; b != nil {
			s.mu.Unlock()
			select {
			case <-b.done:
			case <-ctx.Done():
				return 0, false, ctx.Err()
			}
			if b.err != nil && (errors.Is(b.err, context.Canceled) || errors.Is(b.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue // the builder went away; try ourselves
			}
			if b.err != nil {
				return 0, false, b.err
			}
			return b.size, false, nil
		}
		b := &diskBuild{done: make(chan struct{})}
		s.builds[id] = b
		s.mu.Unlock()

		b.size, b.err = s.buildDisk(ctx, id, spec, requireRecord)

		s.mu.Lock()
		delete(s.builds, id)
		s.mu.Unlock()
		close(b.done)
		return b.size, b.err == nil, b.err
	}
}

// buildDisk applies the layers into a temporary directory and turns it into
// an ext4 image with mke2fs -d, then moves it into place atomically.
func (s *Store) buildDisk(ctx context.Context, id digest.Digest, spec buildSpec, requireRecord bool) (int64, error) {
	log := s.log.WithField("image", id)
	start := time.Now()
	s.buildCount.Add(1)
	if len(spec.diffIDs) != 0 && len(spec.diffIDs) != len(spec.layers) {
		return 0, errdefs.System(fmt.Errorf("image %s: %d layers but %d diff IDs", shortID(id), len(spec.layers), len(spec.diffIDs)))
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "build-"+shortID(id)+"-")
	if err != nil {
		return 0, errdefs.System(fmt.Errorf("creating unpack directory: %w", err))
	}
	defer func() {
		if err := os.RemoveAll(tmp); err != nil {
			log.WithError(err).Warn("removing unpack directory")
		}
	}()
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return 0, errdefs.System(err)
	}
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return 0, errdefs.System(err)
	}

	var size int64
	for i, l := range spec.layers {
		if spec.wait != nil {
			if err := spec.wait(i); err != nil {
				return 0, err
			}
		}
		var diffID digest.Digest
		if len(spec.diffIDs) > i {
			diffID = spec.diffIDs[i]
		}
		var prog func(cur, total int64)
		if spec.progress != nil {
			i := i
			prog = func(cur, total int64) { spec.progress(i, cur, total) }
		}
		n, err := s.applyLayer(ctx, rootfs, l, diffID, prog)
		if err != nil {
			return 0, err
		}
		size += n
		if spec.applied != nil {
			spec.applied(i)
		}
	}
	unpacked := time.Since(start)

	tmpDisk := filepath.Join(tmp, "disk.ext4")
	if err := s.mkfs(ctx, rootfs, tmpDisk); err != nil {
		return 0, err
	}
	// Free the unpacked tree before the rename so that a crash leaves
	// nothing big behind in tmp/ (New wipes it anyway).
	if err := os.RemoveAll(rootfs); err != nil {
		log.WithError(err).Warn("removing unpacked tree")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if requireRecord {
		if _, ok := s.images[id]; !ok {
			return 0, errdefs.NotFound(fmt.Errorf("image %s was deleted while its disk was built", shortID(id)))
		}
	}
	if err := os.Rename(tmpDisk, s.diskPath(id)); err != nil {
		return 0, errdefs.System(fmt.Errorf("installing base disk: %w", err))
	}
	syncDir(filepath.Dir(s.diskPath(id)))
	log.WithFields(logrus.Fields{
		"layers":  len(spec.layers),
		"size":    size,
		"unpack":  unpacked.Round(time.Millisecond),
		"total":   time.Since(start).Round(time.Millisecond),
		"disk":    s.diskPath(id),
		"virtual": s.diskSize,
	}).Info("built base disk")
	return size, nil
}

// applyLayer applies one layer blob (gzip, zstd or plain tar) onto dir,
// honouring whiteouts and opaque directories, checks its diff ID, and
// returns the size of its files.
func (s *Store) applyLayer(ctx context.Context, dir string, desc ocispec.Descriptor, diffID digest.Digest, progress func(cur, total int64)) (int64, error) {
	ra, err := s.cs.ReaderAt(ctx, desc)
	if err != nil {
		return 0, errdefs.System(fmt.Errorf("opening layer %s: %v", desc.Digest, err))
	}
	defer ra.Close()
	cr := &countingReader{r: content.NewReader(ra)}
	if progress != nil {
		cr.fn = func(n int64) { progress(n, desc.Size) }
	}
	ds, err := compression.DecompressStream(cr)
	if err != nil {
		return 0, errdefs.System(fmt.Errorf("decompressing layer %s: %v", desc.Digest, err))
	}
	defer ds.Close()
	// Decompress and hash in a second goroutine so that it overlaps with
	// writing the files.
	digester := digest.Canonical.Digester()
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, io.TeeReader(ds, digester.Hash()))
		pw.CloseWithError(err)
		copied <- err
	}()
	n, err := archive.Apply(ctx, dir, pr)
	if err == nil {
		// The tar reader stops at the end-of-archive marker; hash the rest.
		_, err = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(errors.New("layer application stopped"))
	cerr := <-copied
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, errdefs.System(fmt.Errorf("applying layer %s: %v", desc.Digest, err))
	}
	if cerr != nil {
		return 0, errdefs.System(fmt.Errorf("reading layer %s: %v", desc.Digest, cerr))
	}
	if diffID != "" && digester.Digest() != diffID {
		return 0, errdefs.System(fmt.Errorf("layer %s: diff ID mismatch: config says %s, content is %s", desc.Digest, diffID, digester.Digest()))
	}
	if progress != nil {
		progress(desc.Size, desc.Size)
	}
	return n, nil
}

// mkfs makes an ext4 file system of exactly s.diskSize bytes at file from
// the tree at dir. The journal is kept: containers write to the disk through
// their overlays.
func (s *Store) mkfs(ctx context.Context, dir, file string) error {
	mke2fs, err := findTool("mke2fs")
	if err != nil {
		return errdefs.System(err)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return errdefs.System(err)
	}
	if err := f.Truncate(s.diskSize); err != nil {
		f.Close()
		return errdefs.System(err)
	}
	if err := f.Close(); err != nil {
		return errdefs.System(err)
	}
	args := []string{
		"-q", "-F",
		"-t", "ext4",
		"-b", "4096",
		"-m", "0",
		"-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
		"-d", dir,
		file,
	}
	cmd := exec.CommandContext(ctx, mke2fs, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "Could not allocate block") || strings.Contains(msg, "No space left") {
			return errdefs.System(fmt.Errorf("image does not fit in a %s base disk: mke2fs: %s", humanBytes(s.diskSize), msg))
		}
		return errdefs.System(fmt.Errorf("mke2fs: %v: %s", err, msg))
	}
	if st, err := os.Stat(file); err == nil && st.Size() != s.diskSize {
		if err := os.Truncate(file, s.diskSize); err != nil {
			return errdefs.System(err)
		}
	}
	if err := os.Chmod(file, 0o444); err != nil {
		return errdefs.System(err)
	}
	if f, err := os.Open(file); err == nil {
		_ = f.Sync()
		f.Close()
	}
	return nil
}

// findTool looks a program up in PATH and then in the sbin directories a
// daemon's PATH may lack.
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (install e2fsprogs / qemu-utils)", name)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// cleanDisks removes base disks no record or orphan entry accounts for
// (left by a crash between installing a disk and recording its image).
func (s *Store) cleanDisks() {
	entries, err := os.ReadDir(filepath.Join(s.root, "disks"))
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".ext4") {
			continue
		}
		id := digest.NewDigestFromEncoded(digest.Canonical, strings.TrimSuffix(name, ".ext4"))
		if _, ok := s.images[id]; ok {
			continue
		}
		if _, ok := s.orphans[id]; ok {
			continue
		}
		s.log.WithField("disk", name).Info("removing base disk of unknown image")
		os.Remove(filepath.Join(s.root, "disks", name))
	}
}

// allocated returns the bytes a file occupies on disk.
func allocated(st os.FileInfo) int64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Blocks * 512
	}
	return st.Size()
}
