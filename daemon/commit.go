package daemon

// docker commit: the container's changes against its image (computed in
// the guest, with the image's base disk hot-plugged read-only) become an
// OCI layer on top of the image's layers; the image config is the
// container's config with the --change instructions applied.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/errdefs"
	"github.com/docker/go-connections/nat"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api/types/backend"
)

// ImageCommitter is implemented by image services that can make an image
// from a container's changes (the image store's adapter does).
type ImageCommitter interface {
	// CommitImage makes an image whose top layer is layer (an
	// uncompressed OCI layer tar) on top of req.Parent, records and tags
	// it, and returns its ID.
	CommitImage(ctx context.Context, layer io.Reader, req CommitRequest) (string, error)
}

// CommitRequest describes the image ImageCommitter.CommitImage makes.
type CommitRequest struct {
	Parent    string // image ID the container was created from
	Config    *container.Config
	Author    string
	Comment   string
	CreatedBy string // history: the container's command
	Repo, Tag string // Repo "" leaves the image untagged
	// LazyDisk leaves the image's base disk to be built when first needed
	// (a build's intermediate steps).
	LazyDisk bool
}

// ContainerCommit serves POST /commit.
func (d *Daemon) ContainerCommit(ctx context.Context, req *backend.CommitConfig) (string, error) {
	start := time.Now()
	if _, ok := d.images.(ImageCommitter); !ok {
		return "", errdefs.NotImplemented(errors.New("the image store cannot commit images"))
	}
	c, err := d.containers.get(req.Container)
	if err != nil {
		return "", err
	}
	if req.Repo != "" {
		if err := validateRepoTag(req.Repo, req.Tag); err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return "", errdefs.Conflict(fmt.Errorf("You cannot commit container %s which is being removed", c.ID))
	}
	if c.State.Status == container.StateDead {
		c.mu.Unlock()
		return "", errdefs.Conflict(fmt.Errorf("You cannot commit container %s which is Dead", c.ID))
	}
	parent := c.ImageID
	ctrCfg := cloneConfig(c.Config)
	c.mu.Unlock()

	base := req.Config
	if base == nil {
		base = ctrCfg
	}
	newCfg, err := applyChanges(cloneConfig(base), req.Changes)
	if err != nil {
		return "", err
	}
	mergeCommitConfig(newCfg, ctrCfg)

	id, layerBytes, frozen, err := d.commitContainer(ctx, c, req.Pause, CommitRequest{
		Parent:    parent,
		Config:    newCfg,
		Author:    req.Author,
		Comment:   req.Comment,
		CreatedBy: strings.Join(ctrCfg.Cmd, " "),
		Repo:      req.Repo,
		Tag:       req.Tag,
	})
	if err != nil {
		return "", err
	}
	imageRef := ""
	if req.Repo != "" {
		if named, err := repoTag(req.Repo, req.Tag); err == nil {
			imageRef = reference.FamiliarString(named)
		}
	}
	d.imageEvent(events.ActionCreate, id, id, nil)
	if imageRef != "" {
		d.imageEvent(events.ActionTag, id, imageRef, nil)
	}
	d.lockedContainerEvent(c, events.ActionCommit, map[string]string{"comment": req.Comment, "imageID": id, "imageRef": imageRef})
	d.log.WithFields(logrus.Fields{
		"container":  c.ID[:12],
		"image":      id,
		"ref":        imageRef,
		"layerBytes": layerBytes,
		"frozen":     frozen,
		"total":      time.Since(start).Round(time.Millisecond).String(),
	}).Info("container committed")
	return id, nil
}

// commitContainer reads the container's changes against its image (in a
// maintenance clone if it is not running; with the VM frozen if pause and
// it is) into a temporary file, then has the image store make req's image
// of them. It returns the image ID, the layer's size and whether the VM
// was frozen.
func (d *Daemon) commitContainer(ctx context.Context, c *Container, pause bool, req CommitRequest) (string, int64, bool, error) {
	committer, ok := d.images.(ImageCommitter)
	if !ok {
		return "", 0, false, errdefs.NotImplemented(errors.New("the image store cannot commit images"))
	}
	baseDisk, err := d.baseDisk(c)
	if err != nil {
		return "", 0, false, err
	}
	// The layer goes to a file first, so that the VM (a maintenance clone
	// of a stopped container) is gone before the image's disk is built.
	var rb [6]byte
	rand.Read(rb[:])
	tmp := filepath.Join(c.Dir, ".commit-"+hex.EncodeToString(rb[:])+".tar")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return "", 0, false, errdefs.System(err)
	}
	defer func() {
		f.Close()
		os.Remove(tmp)
	}()
	var layerBytes int64
	var frozen bool
	err = d.withContainerFS(ctx, c, "commit", func(s *fsSession) error {
		serial, err := attachBaseDisk(ctx, s.machine, baseDisk)
		if err != nil {
			return err
		}
		frozen = pause && s.running
		rc, err := s.agent.DiffLayer(ctx, serial, frozen)
		if err != nil {
			return err
		}
		defer rc.Close()
		layerBytes, err = io.Copy(f, rc)
		return err
	})
	if err != nil {
		return "", 0, false, fileOpError(err, "/", c.ID)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, false, errdefs.System(err)
	}
	id, err := committer.CommitImage(ctx, f, req)
	if err != nil {
		return "", 0, false, err
	}
	return id, layerBytes, frozen, nil
}

// repoTag is dockerd's httputils.RepoTagReference for a non-empty repo.
func repoTag(repo, tag string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, errdefs.InvalidParameter(errors.New("cannot commit to digest reference"))
	}
	if tag != "" {
		if named, err = reference.WithTag(named, tag); err != nil {
			return nil, errdefs.InvalidParameter(err)
		}
	}
	return reference.TagNameOnly(named), nil
}

func validateRepoTag(repo, tag string) error {
	_, err := repoTag(repo, tag)
	return err
}

// cloneConfig copies the parts of a config a commit changes.
func cloneConfig(c *container.Config) *container.Config {
	if c == nil {
		return &container.Config{}
	}
	out := *c
	out.Env = cloneStrings(c.Env)
	out.Cmd = cloneStrings(c.Cmd)
	out.Entrypoint = cloneStrings(c.Entrypoint)
	out.OnBuild = cloneStrings(c.OnBuild)
	out.Shell = cloneStrings(c.Shell)
	if c.Labels != nil {
		out.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			out.Labels[k] = v
		}
	}
	if c.ExposedPorts != nil {
		out.ExposedPorts = make(nat.PortSet, len(c.ExposedPorts))
		for k := range c.ExposedPorts {
			out.ExposedPorts[k] = struct{}{}
		}
	}
	if c.Volumes != nil {
		out.Volumes = make(map[string]struct{}, len(c.Volumes))
		for k := range c.Volumes {
			out.Volumes[k] = struct{}{}
		}
	}
	if c.Healthcheck != nil {
		hc := *c.Healthcheck
		hc.Test = cloneStrings(c.Healthcheck.Test)
		out.Healthcheck = &hc
	}
	return &out
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

// mergeCommitConfig is dockerd's merge(userConf, imageConf) of a commit:
// what the changed config lacks comes from the container's config.
func mergeCommitConfig(user, ctr *container.Config) {
	if user.User == "" {
		user.User = ctr.User
	}
	if len(user.ExposedPorts) == 0 {
		user.ExposedPorts = ctr.ExposedPorts
	} else {
		for p := range ctr.ExposedPorts {
			user.ExposedPorts[p] = struct{}{}
		}
	}
	if len(user.Env) == 0 {
		user.Env = ctr.Env
	} else {
		for _, ce := range ctr.Env {
			k, _, _ := strings.Cut(ce, "=")
			found := false
			for _, ue := range user.Env {
				if uk, _, _ := strings.Cut(ue, "="); uk == k {
					found = true
					break
				}
			}
			if !found {
				user.Env = append(user.Env, ce)
			}
		}
	}
	if user.Labels == nil {
		user.Labels = map[string]string{}
	}
	for k, v := range ctr.Labels {
		if _, ok := user.Labels[k]; !ok {
			user.Labels[k] = v
		}
	}
	if len(user.Entrypoint) == 0 {
		if len(user.Cmd) == 0 {
			user.Cmd = ctr.Cmd
		}
		if user.Entrypoint == nil {
			user.Entrypoint = ctr.Entrypoint
		}
	}
	if ctr.Healthcheck != nil {
		if user.Healthcheck == nil {
			user.Healthcheck = ctr.Healthcheck
		} else {
			if len(user.Healthcheck.Test) == 0 {
				user.Healthcheck.Test = ctr.Healthcheck.Test
			}
			if user.Healthcheck.Interval == 0 {
				user.Healthcheck.Interval = ctr.Healthcheck.Interval
			}
			if user.Healthcheck.Timeout == 0 {
				user.Healthcheck.Timeout = ctr.Healthcheck.Timeout
			}
			if user.Healthcheck.StartPeriod == 0 {
				user.Healthcheck.StartPeriod = ctr.Healthcheck.StartPeriod
			}
			if user.Healthcheck.StartInterval == 0 {
				user.Healthcheck.StartInterval = ctr.Healthcheck.StartInterval
			}
			if user.Healthcheck.Retries == 0 {
				user.Healthcheck.Retries = ctr.Healthcheck.Retries
			}
		}
	}
	if user.WorkingDir == "" {
		user.WorkingDir = ctr.WorkingDir
	}
	if len(user.Volumes) == 0 {
		user.Volumes = ctr.Volumes
	} else {
		for k, v := range ctr.Volumes {
			user.Volumes[k] = v
		}
	}
	if user.StopSignal == "" {
		user.StopSignal = ctr.StopSignal
	}
}
