package integration

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/pkg/stdcopy"
	"golang.org/x/net/websocket"
)

// Small dockerd-parity checks (issue 12) that need no VM.

// moby's test harness and SDK clean-up code list plugins first: the CLI's
// plugin commands answer as with a dockerd that has none.
func TestPluginListEmpty(t *testing.T) {
	if out := mustDocker(t, "plugin", "ls", "--format", "{{.Name}}"); strings.TrimSpace(out) != "" {
		t.Fatalf("docker plugin ls = %q", out)
	}
	r := docker(t, "plugin", "inspect", "vieux/sshfs")
	if r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("docker plugin inspect of a missing plugin:\n%s", r)
	}
}

// Not in a swarm: `docker swarm leave --force` (what clean-up scripts run)
// gets dockerd's answer, and info says inactive.
func TestNotInASwarm(t *testing.T) {
	r := docker(t, "swarm", "leave", "--force")
	if r.code == 0 || !strings.Contains(r.stderr, "This node is not part of a swarm") {
		t.Fatalf("docker swarm leave --force:\n%s", r)
	}
	if got := strings.TrimSpace(mustDocker(t, "info", "--format", "{{.Swarm.LocalNodeState}}")); got != "inactive" {
		t.Fatalf("Swarm.LocalNodeState = %q", got)
	}
}

// attach with logs=1&stream=0 to an exited container returns its logs and
// ends, as SDKs use it to fetch a finished container's output.
func TestAttachLogsOfExitedContainer(t *testing.T) {
	name := uniqueName(t, "done")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2")
	resp, err := unixHTTPClient().Post("http://jevm/v1.45/containers/"+name+"/attach?logs=1&stream=0&stdout=1&stderr=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, resp.Body); err != nil {
		t.Fatalf("attach stream: %v", err)
	}
	if resp.StatusCode != 200 || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Fatalf("attach logs=1 stream=0: status %d, stdout %q, stderr %q", resp.StatusCode, stdout.String(), stderr.String())
	}
}

// --group-add adds supplementary groups (by name from the image's
// /etc/group, or by number) to the process and to execs; --mac-address
// sets eth0's address.
func TestGroupAddAndMacAddress(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "--group-add", "4321", "--group-add", "daemon", "--mac-address", "02:42:ac:11:00:99",
		"busybox", "sh", "-c", "id -G; cat /sys/class/net/eth0/address")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(" "+lines[0]+" ", " 4321 ") || !strings.Contains(" "+lines[0]+" ", " 1 ") {
		t.Fatalf("id -G with --group-add 4321 --group-add daemon: %q", out)
	}
	if lines[1] != "02:42:ac:11:00:99" {
		t.Fatalf("eth0 address with --mac-address: %q", lines[1])
	}
	r := docker(t, "run", "--rm", "--group-add", "no-such-group", "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "Unable to find group no-such-group") {
		t.Fatalf("unknown --group-add group:\n%s", r)
	}
}

// inspect shows the runtime (jevm's only one); another is refused as
// dockerd refuses a runtime it does not know.
func TestRuntimeName(t *testing.T) {
	name := uniqueName(t, "rt")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "busybox", "true")
	if got := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{.HostConfig.Runtime}}", name)); got != "jevm" {
		t.Fatalf("HostConfig.Runtime = %q", got)
	}
	r := docker(t, "create", "--runtime", "runsc", "busybox", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "unknown or invalid runtime name: runsc") {
		t.Fatalf("--runtime runsc:\n%s", r)
	}
}

// dockerd accepts any non-empty network name, spaces included; containers
// attach to such a network by name.
func TestNetworkNameWithSpaces(t *testing.T) {
	name := uniqueName(t, "my net")
	mustDocker(t, "network", "create", name)
	t.Cleanup(func() { docker(t, "network", "rm", name) })
	out := mustDocker(t, "run", "--rm", "--network", name, "busybox", "sh", "-c", "ip -4 -o addr show eth0 | wc -l")
	if strings.TrimSpace(out) != "1" {
		t.Fatalf("container on %q has no IPv4 address: %q", name, out)
	}
	if got := strings.TrimSpace(mustDocker(t, "network", "inspect", "--format", "{{.Name}}", name)); got != name {
		t.Fatalf("network inspect name = %q", got)
	}
}

// Sizes are real: a container that wrote 4 MiB shows it in `ps -s` and
// `inspect --size`, and `container prune` reports the space it freed.
func TestContainerSizesAndPruneReclaimed(t *testing.T) {
	name := uniqueName(t, "writer")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "--name", name, "--label", "jevm-test="+name, "busybox", "sh", "-c", "dd if=/dev/urandom of=/data bs=1M count=4 2>/dev/null; sync")
	var rw, rootfs int64
	if _, err := fmt.Sscanf(strings.TrimSpace(mustDocker(t, "inspect", "--size", "--format", "{{.SizeRw}} {{.SizeRootFs}}", name)), "%d %d", &rw, &rootfs); err != nil {
		t.Fatal(err)
	}
	if rw < 4<<20 || rootfs <= rw {
		t.Fatalf("inspect --size: SizeRw %d, SizeRootFs %d", rw, rootfs)
	}
	if out := mustDocker(t, "ps", "-a", "-s", "--filter", "name="+name, "--format", "{{.Size}}"); !strings.Contains(out, "MB") {
		t.Fatalf("docker ps -s: %q", out)
	}
	out := mustDocker(t, "container", "prune", "-f", "--filter", "label=jevm-test="+name)
	if !strings.Contains(out, "Total reclaimed space: 4.") && !strings.Contains(out, "Total reclaimed space: 5.") {
		t.Fatalf("container prune: %q", out)
	}
}

// Capabilities as dockerd gives them: the default set, --cap-add and
// --cap-drop, everything for --privileged (which also gets a writable /sys
// and the guest's devices, not the agent's channel) and for
// `exec --privileged`.
func TestCapabilitiesAndPrivileged(t *testing.T) {
	capEff := "grep '^CapEff:' /proc/self/status | cut -f2"
	if got := strings.TrimSpace(mustDocker(t, "run", "--rm", "busybox", "sh", "-c", capEff)); got != "00000000a80425fb" {
		t.Fatalf("default CapEff = %s, dockerd's is 00000000a80425fb", got)
	}
	if r := docker(t, "run", "--rm", "busybox", "ip", "link", "set", "lo", "mtu", "1400"); r.code == 0 {
		t.Fatalf("NET_ADMIN without --cap-add:\n%s", r)
	}
	mustDocker(t, "run", "--rm", "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "busybox", "ip", "link", "set", "lo", "mtu", "1400")
	if r := docker(t, "run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "1:1", "/tmp"); r.code == 0 {
		t.Fatalf("chown with --cap-drop CHOWN:\n%s", r)
	}
	if r := docker(t, "run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "unknown capability") {
		t.Fatalf("unknown capability:\n%s", r)
	}

	out := mustDocker(t, "run", "--rm", "--privileged", "busybox", "sh", "-c",
		capEff+"; grep '^CapBnd:' /proc/self/status | cut -f2; mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && echo mounted; grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; ls /dev/vda; ls /dev | grep -c vport || true")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || lines[0] != lines[1] || lines[2] != "mounted" || lines[3] != "rw" || lines[4] != "/dev/vda" || lines[5] != "0" {
		t.Fatalf("--privileged: %q (want CapEff = CapBnd, a tmpfs mount, rw /sys, /dev/vda, no vport)", out)
	}

	name := uniqueName(t, "execpriv")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "300")
	if got := strings.TrimSpace(mustDocker(t, "exec", name, "sh", "-c", capEff)); got != "00000000a80425fb" {
		t.Fatalf("exec CapEff = %s", got)
	}
	if got := strings.TrimSpace(mustDocker(t, "exec", "--privileged", name, "sh", "-c", capEff)); got != lines[0] {
		t.Fatalf("exec --privileged CapEff = %s, want %s", got, lines[0])
	}
}

// Legacy links on the default bridge: the alias resolves through
// /etc/hosts and dockerd's ALIAS_* variables are set; the linked container
// must exist and run; `docker rm --link` removes the link.
func TestLegacyLinks(t *testing.T) {
	db, web := uniqueName(t, "db"), uniqueName(t, "web")
	rmOnCleanup(t, web, db)
	mustDocker(t, "run", "-d", "--name", db, "-e", "SECRET=s3", "--expose", "5432", "busybox", "sleep", "300")
	ip := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", db))
	out := mustDocker(t, "run", "--name", web, "--link", db+":database", "busybox", "sh", "-c",
		"echo $DATABASE_NAME $DATABASE_PORT $DATABASE_PORT_5432_TCP_ADDR $DATABASE_ENV_SECRET; grep -w database /etc/hosts")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := "/" + web + "/database tcp://" + ip + ":5432 " + ip + " s3"
	if len(lines) != 2 || lines[0] != want || !strings.HasPrefix(lines[1], ip+"\tdatabase "+db) {
		t.Fatalf("linked container's view:\n%s\nwant %q and an /etc/hosts line for %s", out, want, ip)
	}
	if got := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{json .HostConfig.Links}}", web)); got != `["/`+db+`:/`+web+`/database"]` {
		t.Fatalf("HostConfig.Links = %s", got)
	}
	mustDocker(t, "rm", "--link", "/"+web+"/database")
	if got := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{json .HostConfig.Links}}", web)); got != "null" && got != "[]" {
		t.Fatalf("after rm --link: HostConfig.Links = %s", got)
	}
	if r := docker(t, "run", "--rm", "--link", "no-such-container-jevm:x", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "could not get container for no-such-container-jevm") {
		t.Fatalf("link to a missing container:\n%s", r)
	}
}

// Websocket attach (browser-based tools): what is typed reaches the
// container's stdin and its output comes back, unframed.
func TestAttachWebsocket(t *testing.T) {
	name := uniqueName(t, "ws")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "-i", "--name", name, "busybox", "cat")
	cfg, err := websocket.NewConfig("ws://jevm/v1.51/containers/"+name+"/attach/ws?stream=1&stdin=1&stdout=1&stderr=1", "http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("unix", env.sock)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := websocket.NewClient(cfg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("over the websocket\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte("over the websocket\n")) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
}

// dockerd's default sysctls (unprivileged ping and low ports), --sysctl
// over them, and --domainname, set in the guest before the process runs.
func TestSysctlsAndDomainname(t *testing.T) {
	out := mustDocker(t, "run", "--rm", "--domainname", "baz.example", "busybox", "sh", "-c",
		"cat /proc/sys/net/ipv4/ping_group_range /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/domainname")
	if got := strings.Fields(out); strings.Join(got, " ") != "0 2147483647 0 baz.example" {
		t.Fatalf("defaults and domainname: %q", out)
	}
	out = mustDocker(t, "run", "--rm", "--sysctl", "net.ipv4.ip_unprivileged_port_start=1024", "--sysctl", "kernel.msgmax=65536",
		"busybox", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/msgmax")
	if got := strings.Fields(out); strings.Join(got, " ") != "1024 65536" {
		t.Fatalf("--sysctl: %q", out)
	}
	if r := docker(t, "run", "--rm", "--sysctl", "kernel.no_such_key_jevm=1", "busybox", "true"); r.code == 0 || !strings.Contains(r.stderr, "kernel.no_such_key_jevm") {
		t.Fatalf("unknown sysctl:\n%s", r)
	}
}

// On a user network the embedded DNS answers a container's own hostname
// (with /etc/hosts emptied, so that only DNS can), and a container's name
// after a rename, capitals and all (DNS queries come lower case).
func TestEmbeddedDNSHostnameAndRename(t *testing.T) {
	netName := newNetwork(t, "dnsnet")
	first, renamed := uniqueName(t, "anon"), uniqueName(t, "Renamed")
	rmOnCleanup(t, first, renamed)
	mustDocker(t, "run", "-d", "--name", first, "--network", netName, "--hostname", "foobar", "busybox", "sleep", "300")
	out := mustDocker(t, "exec", first, "sh", "-c", "echo 127.0.0.1 localhost > /etc/hosts && nslookup foobar")
	ip := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{(index .NetworkSettings.Networks \""+netName+"\").IPAddress}}", first))
	if !strings.Contains(out, "Address: "+ip) && !strings.Contains(out, "Address 1: "+ip) {
		t.Fatalf("own hostname through the embedded DNS (want %s):\n%s", ip, out)
	}
	if got := mustDocker(t, "inspect", "--format", "{{json (index .NetworkSettings.Networks \""+netName+"\").DNSNames}}", first); !strings.Contains(got, `"foobar"`) {
		t.Fatalf("DNSNames lacks the hostname: %s", got)
	}
	mustDocker(t, "rename", first, renamed)
	out = mustDocker(t, "run", "--rm", "--network", netName, "busybox", "ping", "-c", "1", "-W", "5", renamed)
	if !strings.Contains(out, ip) {
		t.Fatalf("ping %s after the rename (want %s):\n%s", renamed, ip, out)
	}
}

// As dockerd: a create may name networks that do not exist yet; the start
// is what fails. An image of another platform than --platform is "not
// found", and with --pull never the CLI says so.
func TestCreateNetworksLaterAndOtherPlatform(t *testing.T) {
	name := uniqueName(t, "later")
	rmOnCleanup(t, name)
	mustDocker(t, "create", "--name", name, "--network", "no-such-net-jevm-1", "--network", "no-such-net-jevm-2", "busybox", "true")
	if r := docker(t, "start", name); r.code == 0 || !strings.Contains(r.stderr, "network no-such-net-jevm-1 not found") {
		t.Fatalf("start with a missing network:\n%s", r)
	}
	r := docker(t, "create", "--pull", "never", "--platform", "linux/arm64", "busybox")
	if r.code == 0 || !strings.Contains(r.stderr, "does not match the specified platform (linux/arm64)") {
		t.Fatalf("create for another platform:\n%s", r)
	}
	if r := docker(t, "create", "--pull", "never", "--platform", "linux/amd64", "--name", name+"-amd64", "busybox", "true"); r.code != 0 {
		t.Fatalf("create for the image's platform:\n%s", r)
	}
	rmOnCleanup(t, name+"-amd64")
}

// --mac-address on a user network: the guest's NIC has it, and inspect
// shows it while the container runs.
func TestMacAddressOnUserNetwork(t *testing.T) {
	netName := newNetwork(t, "macnet")
	name := uniqueName(t, "mac")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "--network", netName, "--mac-address", "02:32:1c:23:00:04", "busybox", "sleep", "300")
	if out := mustDocker(t, "exec", name, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "link/ether 02:32:1c:23:00:04 ") {
		t.Fatalf("eth0 in the guest: %q", out)
	}
	if got := strings.TrimSpace(mustDocker(t, "inspect", "--format", "{{(index .NetworkSettings.Networks \""+netName+"\").MacAddress}}", name)); got != "02:32:1c:23:00:04" {
		t.Fatalf("inspect MacAddress = %q", got)
	}
}

// As dockerd 28: an exec's user is looked up when the exec is created (a
// missing one is a 400 then), a missing command is exit 127 at the start,
// and the primary group is a supplementary group too.
func TestExecStartErrorsAndGroups(t *testing.T) {
	name := uniqueName(t, "c")
	rmOnCleanup(t, name)
	mustDocker(t, "run", "-d", "--name", name, "busybox", "sleep", "1000")
	if out := mustDocker(t, "exec", "-u", "0", name, "id"); !strings.Contains(out, "uid=0(root) gid=0(root) groups=0(root)") {
		t.Errorf("exec -u 0 id: %q", out)
	}
	r := docker(t, "exec", "-u", "no-such-user", name, "id")
	if r.code == 0 || !strings.Contains(r.stderr, "Error response from daemon: unable to find user no-such-user: no matching entries in passwd file") {
		t.Errorf("exec as a missing user:\n%s", r)
	}
	r = docker(t, "exec", name, "no-such-command")
	if r.code != 127 || !strings.Contains(r.stdout+r.stderr, "no-such-command") {
		t.Errorf("exec of a missing command:\n%s", r)
	}
}
