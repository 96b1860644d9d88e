package qemu

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestResolveUser(t *testing.T) {
	for _, root := range []string{"root", "0"} {
		if u, err := resolveUser(root); u != nil || err != nil {
			t.Errorf("resolveUser(%q) = %+v, %v; want QEMU left as root", root, u, err)
		}
	}
	// Only the default user is created on demand.
	if _, err := resolveUser("jevm-no-such-user"); err == nil || !strings.Contains(err.Error(), "jevm-no-such-user") {
		t.Errorf("unknown user: %v", err)
	}
	var attr syscall.SysProcAttr
	var none *vmUser
	none.apply(&attr, vmIdentity{uid: 1, gid: 1})
	if attr.Credential != nil || attr.AmbientCaps != nil {
		t.Errorf("root's SysProcAttr changed: %+v", attr)
	}
	u := &vmUser{uid: 4242, gid: 4343, groups: []uint32{77}}
	u.apply(&attr, vmIdentity{uid: 4242, gid: 4343})
	if c := attr.Credential; c == nil || c.Uid != 4242 || c.Gid != 4343 || len(c.Groups) != 1 || c.Groups[0] != 77 {
		t.Errorf("credential: %+v", attr.Credential)
	}
	if VMCapMask() != 0x1b || len(attr.AmbientCaps) != 4 {
		t.Errorf("capabilities: mask %#x, ambient %v", VMCapMask(), attr.AmbientCaps)
	}
}

// TestGrantTap gives a tap to a group: QEMU, running as the VM user, then
// attaches to it without CAP_NET_ADMIN.
func TestGrantTap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a tap)")
	}
	name := "jvtestgrant"
	_ = netlink.LinkDel(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}})
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Skipf("create a tap: %v", err)
	}
	defer netlink.LinkDel(tap)
	u := &vmUser{uid: 1, gid: 1}
	if err := u.grantTap(name, vmIdentity{uid: 4242, gid: 4343}); err != nil {
		t.Fatal(err)
	}
	for attr, want := range map[string]string{"owner": "4242", "group": "4343"} {
		b, err := os.ReadFile("/sys/class/net/" + name + "/" + attr)
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Fatalf("tap's %s: %q, %v; want %s", attr, b, err, want)
		}
	}
	// Root QEMU: nothing to grant.
	var root *vmUser
	if err := root.grantTap(name, vmIdentity{}); err != nil {
		t.Fatal(err)
	}
}
