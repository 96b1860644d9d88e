package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	nfshelper "github.com/willscott/go-nfs/helpers"
)

// nfsServer is an NFSv3 server on the test machine, serving a directory
// of the test's: go-nfs, a userspace server (the kernel's nfsd needs a
// kernel module and privileges that CI sandboxes do not all give). Its
// MOUNT and NFS programs share one TCP port, and it has no lock manager,
// so clients mount it with nfsOptions.
type nfsServer struct {
	dir  string
	ip   string
	port int
}

// startNFSServer serves a new directory at ip until the test ends.
func startNFSServer(t *testing.T, ip string) *nfsServer {
	t.Helper()
	return startNFSServerOf(t, ip, t.TempDir())
}

// startNFSServerOf serves dir (which may not exist yet) at ip until the
// test ends.
func startNFSServerOf(t *testing.T, ip, dir string) *nfsServer {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &nfsServer{dir: dir, ip: ip, port: l.Addr().(*net.TCPAddr).Port}
	nfs.Log.SetLevel(nfs.ErrorLevel)
	handler := nfshelper.NewCachingHandler(exportHandler{nfshelper.NewNullAuthHandler(osfs.New(s.dir)), s.dir}, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = nfs.Serve(l, handler)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return s
}

// exportHandler serves dir as one export: a client mounts it or a
// directory in it (the MOUNT request's path), as a kernel's nfsd lets
// clients mount a directory of an export.
type exportHandler struct {
	nfs.Handler
	dir string
}

func (h exportHandler) Mount(ctx context.Context, conn net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	p := filepath.Join(h.dir, filepath.Clean("/"+string(req.Dirpath)))
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return nfs.MountStatusErrNoEnt, nil, nil
	}
	return nfs.MountStatusOk, osfs.New(p), []nfs.AuthFlavor{nfs.AuthFlavorNull}
}

// Change changes files in the file system the client mounted.
func (h exportHandler) Change(fs billy.Filesystem) billy.Change {
	c, _ := fs.(billy.Change)
	return c
}

// volumeOptions are `docker volume create` options of a local volume on
// this server, as a user gives dockerd's local driver.
func (s *nfsServer) volumeOptions() []string {
	return []string{
		"--opt", "type=nfs",
		"--opt", fmt.Sprintf("o=addr=%s,vers=3,proto=tcp,port=%d,mountport=%d,mountproto=tcp,nolock,noacl", s.ip, s.port, s.port),
		"--opt", "device=:/",
	}
}

// sharedStorage is a jevmd --shared-storage declaration that host
// directory dir holds the server's export (dir itself).
func (s *nfsServer) sharedStorage() string {
	return fmt.Sprintf("%s=nfs://%s:%d/?vers=3&proto=tcp&mountport=%d&mountproto=tcp&nolock&noacl", s.dir, s.ip, s.port, s.port)
}
