package builder

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/docker/errdefs"
)

// maxIDFileSize bounds /etc/passwd and /etc/group read from an image.
const maxIDFileSize = 4 << 20

// resolveChown turns a --chown value (user, user:group, uid or uid:gid)
// into numeric IDs, looking names up in the image's /etc/passwd and
// /etc/group. A user without a group takes the group of the same name or
// number, as dockerd's classic builder does.
func (bs *buildState) resolveChown(ctx context.Context, imageID, chown string) (int, int, error) {
	usr, grp, ok := strings.Cut(chown, ":")
	if !ok {
		grp = usr
	}
	uid, err := bs.lookupID(ctx, imageID, "/etc/passwd", usr)
	if err != nil {
		return 0, 0, err
	}
	gid, err := bs.lookupID(ctx, imageID, "/etc/group", grp)
	if err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

func (bs *buildState) lookupID(ctx context.Context, imageID, file, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, errdefs.InvalidParameter(fmt.Errorf("invalid ID %q in --chown", name))
		}
		return n, nil
	}
	if imageID == "" {
		return 0, errdefs.InvalidParameter(fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find uid for user %s: no such user: %s", name, name))
	}
	b, found, err := bs.b.opts.Images.ReadImageFile(ctx, imageID, file, maxIDFileSize)
	if err != nil {
		return 0, err
	}
	if found {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Split(sc.Text(), ":")
			if len(f) >= 3 && f[0] == name {
				if n, err := strconv.Atoi(f[2]); err == nil {
					return n, nil
				}
			}
		}
	}
	kind := "uid for user"
	if file == "/etc/group" {
		kind = "gid for group"
	}
	return 0, errdefs.InvalidParameter(fmt.Errorf("unable to convert uid/gid chown string to host mapping: can't find %s %s: no such entry in %s", kind, name, file))
}
