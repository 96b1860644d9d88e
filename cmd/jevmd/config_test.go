package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileKeys(t *testing.T) {
	p := writeConfig(t, `{"hosts":["tcp://127.0.0.1:2375"],"data-root":"/srv/jevm","registry-mirrors":["http://127.0.0.1:5000"],
		"insecure-registries":["10.0.0.1:5000"],"debug":true,"accelerator":"tcg","vm-memory":"512M","vm-cpus":2,"kernel":"/k","vm-user":"qemu-runner"}`)
	o, err := parseOptions([]string{"--config-file", p, "--log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.hosts, ",") != "tcp://127.0.0.1:2375" || o.logLevel != "warn" || o.dataRoot != "/srv/jevm" || !o.debug ||
		o.accel != "tcg" || o.vmMemory != "512M" || o.vmCPUs != 2 || o.kernel != "/k" || o.vmUser != "qemu-runner" ||
		len(o.registryMirrors) != 1 || len(o.insecureRegistries) != 1 {
		t.Fatalf("options = %+v", o)
	}
}

func TestVMUserDefault(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.vmUser != "jevm-vm" {
		t.Fatalf("QEMU's user by default: %q", o.vmUser)
	}
	if o, err = parseOptions([]string{"--vm-user", "root"}); err != nil || o.vmUser != "root" {
		t.Fatalf("--vm-user root: %q, %v", o.vmUser, err)
	}
}

func TestConfigConflictWithFlag(t *testing.T) {
	// dockerd refuses a setting given both ways, hosts included.
	h := writeConfig(t, `{"hosts":["tcp://127.0.0.1:2375"]}`)
	if _, err := parseOptions([]string{"--config-file", h, "-H", "unix:///tmp/x.sock"}); err == nil {
		t.Fatal("-H with hosts in the file accepted")
	}
	p := writeConfig(t, `{"data-root":"/a","accelerator":"kvm"}`)
	_, err := parseOptions([]string{"--config-file", p, "--data-root", "/b"})
	if err == nil || !strings.Contains(err.Error(), "specified both as a flag and in the configuration file") || !strings.Contains(err.Error(), "data-root") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigUnknownKeyAndMissingFile(t *testing.T) {
	p := writeConfig(t, `{"no-such-key":1}`)
	if _, err := parseOptions([]string{"--config-file", p}); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := parseOptions([]string{"--config-file", "/nonexistent/daemon.json"}); err == nil {
		t.Fatal("an explicitly named missing config file was accepted")
	}
	o, err := parseOptions([]string{"--config-file", "/dev/null"})
	if err != nil || o.dataRoot != "/var/lib/jevm" || o.accel != "auto" {
		t.Fatalf("empty file: %+v %v", o, err)
	}
}

// An admin's dockerd daemon.json carries over: every key jevm shares with
// dockerd is read with dockerd's name and shape.
func TestConfigDockerdKeys(t *testing.T) {
	p := writeConfig(t, `{"bridge":"br-test","bip":"10.123.0.1/24","default-address-pools":[{"base":"10.200.0.0/16","size":24}],
		"dns":["192.0.2.53"],"dns-search":["example.test"],"dns-opts":["ndots:2"],"iptables":false,"ip-forward":false,
		"userland-proxy":true,"experimental":true,"live-restore":false,"log-driver":"json-file","log-opts":{"max-size":"10m"},
		"default-ulimits":{"nofile":{"Name":"nofile","Hard":4096,"Soft":1024}},"max-concurrent-downloads":5,"shutdown-timeout":30,
		"group":"wheel"}`)
	o, err := parseOptions([]string{"--config-file", p})
	if err != nil {
		t.Fatal(err)
	}
	if o.bridge != "br-test" || o.bip != "10.123.0.1/24" || len(o.addressPools) != 1 || o.addressPools[0] != (addressPool{"10.200.0.0/16", 24}) ||
		strings.Join(o.dns, ",") != "192.0.2.53" || strings.Join(o.dnsSearch, ",") != "example.test" || strings.Join(o.dnsOptions, ",") != "ndots:2" ||
		o.iptables || o.ipForward || !o.userlandProxy || !o.experimental || o.liveRestore || o.logDriver != "json-file" ||
		o.logOpts["max-size"] != "10m" || o.defaultUlimits["nofile"].Soft != 1024 || o.defaultUlimits["nofile"].Hard != 4096 ||
		o.maxDownloads != 5 || o.shutdownSecs != 30 || o.group != "wheel" || !o.groupExplicit {
		t.Fatalf("options = %+v", o)
	}
}

func TestConfigDockerdFlags(t *testing.T) {
	o, err := parseOptions([]string{"--config-file", "/dev/null", "-b", "br0", "--bip", "10.124.0.1/16",
		"--default-address-pool", "base=10.201.0.0/16,size=24", "--default-address-pool", "base=10.202.0.0/16,size=20",
		"--dns", "192.0.2.1", "--dns", "192.0.2.2", "--dns-search", "a.test", "--dns-opt", "ndots:1", "--iptables=false",
		"--ip-forward=false", "--experimental", "--live-restore=false", "--log-driver", "json-file", "--log-opt", "max-size=1m",
		"--log-opt", "max-file=2", "--default-ulimit", "nproc=512:1024", "--max-concurrent-downloads", "1", "--shutdown-timeout", "-1", "-G", "adm"})
	if err != nil {
		t.Fatal(err)
	}
	if o.bridge != "br0" || o.bip != "10.124.0.1/16" || len(o.addressPools) != 2 || o.addressPools[1].Size != 20 ||
		len(o.dns) != 2 || o.iptables || o.ipForward || !o.experimental || o.liveRestore || o.logOpts["max-file"] != "2" ||
		o.defaultUlimits["nproc"].Hard != 1024 || o.maxDownloads != 1 || o.shutdownSecs != -1 || o.group != "adm" || !o.groupExplicit {
		t.Fatalf("options = %+v", o)
	}
	// dockerd's defaults when nothing is said.
	d, err := parseOptions([]string{"--config-file", "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.iptables || !d.ipForward || !d.userlandProxy || d.experimental || !d.liveRestore || d.maxDownloads != 3 ||
		d.shutdownSecs != 15 || d.group != "docker" || d.groupExplicit {
		t.Fatalf("defaults = %+v", d)
	}
}

func TestConfigDockerdKeysConflictWithFlags(t *testing.T) {
	p := writeConfig(t, `{"bip":"10.1.0.1/16","log-opts":{"max-size":"1m"},"iptables":false}`)
	for _, flagArgs := range [][]string{{"--bip", "10.2.0.1/16"}, {"--log-opt", "max-size=2m"}, {"--iptables=true"}} {
		_, err := parseOptions(append([]string{"--config-file", p}, flagArgs...))
		if err == nil || !strings.Contains(err.Error(), "specified both as a flag and in the configuration file") {
			t.Fatalf("%v: err = %v", flagArgs, err)
		}
	}
}

func TestConfigBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--default-address-pool", "base=10.0.0.0/8"}, // no size
		{"--default-address-pool", "bogus=1,size=24"}, // unknown key
		{"--default-ulimit", "nofile=2048:1024"},      // soft above hard
		{"--bip", "10.1.0.1"},                         // no prefix length
		{"-b", "none", "--bip", "10.1.0.1/16"},        // dockerd: mutually exclusive
		{"--max-concurrent-downloads", "0"},           // dockerd refuses < 1
		{"--shutdown-timeout", "-2"},                  // -1 is the only negative
		{"--log-opt", "novalue"},                      // KEY=VALUE
		{"--vm-cpus", "0"},
		{"--shared-storage", "/srv/x=smb://files/x"}, // NFS only
		{"--shared-storage", "srv/x=nfs://files/x"},  // a relative directory
	} {
		if _, err := parseOptions(append([]string{"--config-file", "/dev/null"}, args...)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	p := writeConfig(t, `{"default-ulimits":{"nofile":{"Name":"nproc","Hard":1,"Soft":1}}}`)
	if _, err := parseOptions([]string{"--config-file", p}); err == nil {
		t.Error("a default-ulimits key that is not its Name was accepted")
	}
}

func TestConfigSharedStorage(t *testing.T) {
	p := writeConfig(t, `{"shared-storage":["/srv/shared=nfs://files:2049/export?vers=3"]}`)
	o, err := parseOptions([]string{"--config-file", p})
	if err != nil || len(o.sharedStorage) != 1 {
		t.Fatalf("shared-storage from daemon.json: %v %v", o.sharedStorage, err)
	}
	if _, err := parseOptions([]string{"--config-file", p, "--shared-storage", "/x=nfs://h/"}); err == nil {
		t.Fatal("shared-storage given both ways accepted")
	}
	o, err = parseOptions([]string{"--config-file", "/dev/null", "--shared-storage", "/a=nfs://h1/", "--shared-storage", "/b=nfs4://h2/e?vers=4.2"})
	if err != nil || len(o.sharedStorage) != 2 {
		t.Fatalf("--shared-storage twice: %v %v", o.sharedStorage, err)
	}
}

func TestVersionNeedsNoConfig(t *testing.T) {
	o, err := parseOptions([]string{"--version", "--config-file", "/nonexistent/daemon.json"})
	if err != nil || !o.showVersion {
		t.Fatalf("--version: %+v %v", o, err)
	}
}

// The guest is found from --guest-dir (or the install directories); each
// of --kernel, --kernel-modules and --agent overrides its part.
func TestResolveGuest(t *testing.T) {
	dir := t.TempDir()
	rel := "9.9.9-1-test"
	for _, p := range []string{"lib/modules/" + rel} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"vmlinuz": "k", "release": rel + "\n", "jevm-agent": "a"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o, err := parseOptions([]string{"--config-file", "/dev/null", "--guest-dir", dir})
	if err != nil {
		t.Fatal(err)
	}
	g, err := o.resolveGuest()
	if err != nil {
		t.Fatal(err)
	}
	if g.kernel != filepath.Join(dir, "vmlinuz") || g.modules != filepath.Join(dir, "lib/modules", rel) || g.agent != filepath.Join(dir, "jevm-agent") {
		t.Fatalf("guest = %+v", g)
	}
	other := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(other, []byte("a"), 0o755); err != nil {
		t.Fatal(err)
	}
	o.agent = other
	if g, err = o.resolveGuest(); err != nil || g.agent != other {
		t.Fatalf("--agent: %+v %v", g, err)
	}
	o.guestDir = t.TempDir() // empty: no release
	if _, err := o.resolveGuest(); err == nil {
		t.Fatal("an empty guest directory was accepted")
	}
}
