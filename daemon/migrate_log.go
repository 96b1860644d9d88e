package daemon

// The container's log moves with a live migration (docs/MIGRATION.md):
// its files (the current one and the rotated ones) go to the target
// before the run, while the container runs on; what the current file got
// since goes with the commit, while the guest is paused, and the target
// appends it before the guest resumes there, so `docker logs` on the
// target shows the whole log, without a gap or a repeated line.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/docker/docker/errdefs"
	"github.com/sirupsen/logrus"
)

const (
	// maxMigratedLog bounds the log files a migration sends (and a
	// target takes); a larger log stays behind, with a warning.
	maxMigratedLog = 1 << 30
	// maxMigratedLogTail bounds what the commit carries (it is sent
	// while the guest is paused); a larger tail stays behind.
	maxMigratedLogTail = 8 << 20
)

// rotatedSuffix is what follows the current log file's name in a rotated
// one's (logfile.go's rotatedLogName).
var rotatedSuffix = regexp.MustCompile(`^\.[0-9]{1,4}(\.gz)?$`)

// logFilesToMigrate are c's log files, as paths relative to its
// directory: the current one first, then the rotated ones.
func logFilesToMigrate(c *Container) ([]string, error) {
	cur := c.logFilePath()
	if _, err := os.Stat(cur); errors.Is(err, os.ErrNotExist) {
		return nil, nil // the "none" driver, or nothing logged yet
	}
	rotated, err := filepath.Glob(cur + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range append([]string{cur}, rotated...) {
		if p != cur && !rotatedSuffix.MatchString(p[len(cur):]) {
			continue
		}
		rel, err := filepath.Rel(c.Dir, p)
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// sentLog is what sendLog sent of the current log file.
type sentLog struct {
	path string
	ino  uint64
	size int64
}

// sendLog sends c's log files to the target (PUT /jevm/migrations/{id}/
// log). It returns nil, with nothing sent, for a container without a log
// or with one larger than maxMigratedLog.
func (d *Daemon) sendLog(ctx context.Context, c *Container, tc *targetClient, pg *migrateProgress, log *logrus.Entry) (*sentLog, error) {
	files, err := logFilesToMigrate(c)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	var total int64
	for _, f := range files {
		if st, err := os.Stat(filepath.Join(c.Dir, f)); err == nil {
			total += st.Size()
		}
	}
	if total > maxMigratedLog {
		log.WithField("bytes", total).Warn("the container's log is too large to migrate: it stays here")
		pg.status("The container's log (%d MiB) is too large to send: docker logs on the target starts now", total>>20)
		return nil, nil
	}
	if total > 1<<20 {
		pg.status("Sending the container's log (%d MiB)", total>>20)
	}
	sent := &sentLog{path: filepath.Join(c.Dir, files[0])}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeLogTar(c.Dir, files, pw, sent)) }()
	defer pr.Close()
	if err := tc.stream(ctx, http.MethodPut, "/jevm/migrations/"+c.ID+"/log", "application/x-tar", pr, io.Discard); err != nil {
		return nil, err
	}
	return sent, nil
}

// writeLogTar writes the files (relative to dir) as a tar stream, each as
// long as it was when its header was written; sent gets the first's
// (the current file's) inode and size.
func writeLogTar(dir string, files []string, w io.Writer, sent *sentLog) error {
	tw := tar.NewWriter(w)
	for i, name := range files {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away meanwhile
		}
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		if i == 0 {
			sent.size = st.Size()
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				sent.ino = sys.Ino
			}
		}
		err = tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(name), Size: st.Size(), Mode: 0o640, Typeflag: tar.TypeReg, ModTime: st.ModTime()})
		if err == nil {
			_, err = io.CopyN(tw, f, st.Size())
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// tail is what the current log file got since it was sent: nil if the
// file was rotated meanwhile or the tail is larger than
// maxMigratedLogTail (those lines then stay behind).
func (s *sentLog) tail(log *logrus.Entry) []byte {
	f, err := os.Open(s.path)
	if err != nil {
		log.WithError(err).Warn("read the log's tail")
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Ino != s.ino || st.Size() < s.size {
		log.Warn("the container's log was rotated during the migration: its last lines stay here")
		return nil
	}
	n := st.Size() - s.size
	if n > maxMigratedLogTail {
		log.WithField("bytes", n).Warn("the log's tail is too large to send with the commit: it stays here")
		return nil
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, s.size); err != nil && !errors.Is(err, io.EOF) {
		log.WithError(err).Warn("read the log's tail")
		return nil
	}
	return b
}

// MigrationLog serves PUT /jevm/migrations/{id}/log: the container's log
// files, a tar stream of the names its log driver uses (the current
// file, rotated ones), at most maxMigratedLog bytes.
func (d *Daemon) MigrationLog(ctx context.Context, id string, r io.Reader) error {
	im, release, err := d.takeIncoming(id)
	if err != nil {
		return err
	}
	defer release()
	return receiveLogTar(im.c, r)
}

// receiveLogTar writes the log files of the stream into c's directory;
// on error it removes what it wrote.
func receiveLogTar(c *Container, r io.Reader) (retErr error) {
	cur, err := filepath.Rel(c.Dir, c.logFilePath())
	if err != nil {
		return err
	}
	cur = filepath.ToSlash(cur)
	var written []string
	defer func() {
		if retErr != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	var total int64
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.InvalidParameter(fmt.Errorf("the log's stream: %w", err))
		}
		name := h.Name
		if h.Typeflag != tar.TypeReg || h.Size < 0 || len(name) < len(cur) || name[:len(cur)] != cur ||
			(name != cur && !rotatedSuffix.MatchString(name[len(cur):])) {
			return errdefs.InvalidParameter(fmt.Errorf("%q is not a file of this container's log", name))
		}
		if total += h.Size; total > maxMigratedLog {
			return errdefs.InvalidParameter(fmt.Errorf("the log is larger than %d bytes", maxMigratedLog))
		}
		p := filepath.Join(c.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			return err
		}
		written = append(written, p)
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
}

// appendLogTail appends the commit's tail to c's current log file.
func appendLogTail(c *Container, tail []byte) error {
	if len(tail) == 0 {
		return nil
	}
	p := c.logFilePath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(tail)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
