// Package diskcopy copies VM disk files: a reflink where the file system
// can (instant, no space), else the blocks that hold data, leaving holes
// where the source reads as zeros (a qcow2 layer is mostly unallocated).
package diskcopy

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Copy copies src to a new file dst (which must not exist), with src's
// permissions, synced. On error dst is removed.
func Copy(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) != nil {
		if err := copySparse(out, in, st.Size()); err != nil {
			return err
		}
	}
	return out.Sync()
}

func copySparse(out, in *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var off int64
	for {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return out.Truncate(size)
}
