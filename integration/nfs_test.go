package integration

import (
	"fmt"
	"net"
	"testing"

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
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &nfsServer{dir: t.TempDir(), ip: ip, port: l.Addr().(*net.TCPAddr).Port}
	nfs.Log.SetLevel(nfs.ErrorLevel)
	handler := nfshelper.NewCachingHandler(nfshelper.NewNullAuthHandler(osfs.New(s.dir)), 4096)
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

// volumeOptions are `docker volume create` options of a local volume on
// this server, as a user gives dockerd's local driver.
func (s *nfsServer) volumeOptions() []string {
	return []string{
		"--opt", "type=nfs",
		"--opt", fmt.Sprintf("o=addr=%s,vers=3,proto=tcp,port=%d,mountport=%d,mountproto=tcp,nolock,noacl", s.ip, s.port, s.port),
		"--opt", "device=:/",
	}
}
