package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	dtypes "github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/checkpoint"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/jevm/jevm/api/types/backend"
	"github.com/jevm/jevm/api/types/migration"
)

// fakeBackend is an in-memory api.Backend: containers "run" when
// started, write the configured output to every attach registered before
// the start, then exit with exitCode.
type fakeBackend struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*fakeContainer // by ID
	images     map[string]string         // familiar "name:tag" -> ID
	errs       map[string]error          // injected per method name

	// behaviour
	output, errOutput string
	exitCode          int
	pullOutput        []string
	pullErr           error // after pullOutput
	pullHook          func(ctx context.Context, out io.Writer) error
	waitHook          func(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error)
	logs              []backend.LogMessage
	attachDelay       time.Duration // before GetStreams

	// recorded
	lastCreateName string
	lastCreate     *container.Config
	lastHostConfig *container.HostConfig
	lastNetConfig  *network.NetworkingConfig
	lastPlatform   *ocispec.Platform
	lastStop       container.StopOptions
	lastRestart    container.StopOptions
	lastKill       string
	lastRemove     container.RemoveOptions
	lastList       container.ListOptions
	lastInspect    string
	lastInspectSz  bool
	lastRename     [2]string
	lastResize     [2]uint
	lastLogs       container.LogsOptions
	lastAttach     backend.AttachConfig
	lastPrune      filters.Args
	lastPullRef    string
	lastPullPlat   string
	lastPullAuth   *registry.AuthConfig
	lastImageName  string
	lastImageList  image.ListOptions
	lastTag        [3]string
	lastImageDel   []any
	stdin          map[string]string // by container ID
	build          fakeBuild
	imageIO        fakeImageIO // save, load, import, history (images_io_test.go)
}

type fakeContainer struct {
	id, name string
	config   *container.Config
	host     *container.HostConfig
	created  time.Time
	running  bool
	ran      bool
	exitCode int
	started  chan struct{}
	exited   chan struct{}
	removed  chan struct{}
	attached []chan struct{} // done channels of attaches
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		containers: map[string]*fakeContainer{},
		images:     map[string]string{},
		errs:       map[string]error{},
		stdin:      map[string]string{},
	}
}

func (f *fakeBackend) injected(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[method]
}

func familiar(ref string) (string, error) {
	r, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	return reference.FamiliarString(reference.TagNameOnly(r)), nil
}

func fakeID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (f *fakeBackend) addImage(ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fam, err := familiar(ref)
	if err != nil {
		panic(err)
	}
	f.images[fam] = "sha256:" + fakeID(fam)
}

// lookup must be called with f.mu held.
func (f *fakeBackend) lookup(nameOrID string) (*fakeContainer, error) {
	n := strings.TrimPrefix(nameOrID, "/")
	for _, c := range f.containers {
		if c.id == n || c.name == n {
			return c, nil
		}
	}
	for _, c := range f.containers {
		if len(n) >= 3 && strings.HasPrefix(c.id, n) {
			return c, nil
		}
	}
	return nil, errdefs.NotFound(fmt.Errorf("No such container: %s", nameOrID))
}

func (f *fakeBackend) SystemInfo(context.Context) (*system.Info, error) {
	if err := f.injected("SystemInfo"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &system.Info{
		ID: "FAKE", Name: "fakehost", Containers: len(f.containers), Images: len(f.images),
		ServerVersion: "0.0.1-fake", OperatingSystem: "jevm fake", OSType: "linux",
		Architecture: "x86_64", NCPU: 2, MemTotal: 1 << 30, Driver: "fake",
	}, nil
}

func (f *fakeBackend) SystemVersion(context.Context) dtypes.Version {
	return dtypes.Version{Version: "0.0.1-fake", GitCommit: "fake"}
}

func (f *fakeBackend) ContainerCreate(_ context.Context, name string, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, platform *ocispec.Platform) (container.CreateResponse, error) {
	if err := f.injected("ContainerCreate"); err != nil {
		return container.CreateResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCreateName, f.lastCreate, f.lastHostConfig = name, cfg, hostCfg
	f.lastNetConfig, f.lastPlatform = netCfg, platform
	fam, err := familiar(cfg.Image)
	if err != nil {
		return container.CreateResponse{}, errdefs.InvalidParameter(err)
	}
	if _, ok := f.images[fam]; !ok {
		return container.CreateResponse{}, errdefs.NotFound(fmt.Errorf("No such image: %s", fam))
	}
	f.seq++
	if name == "" {
		name = fmt.Sprintf("fake_%d", f.seq)
	}
	if _, err := f.lookup(name); err == nil {
		return container.CreateResponse{}, errdefs.Conflict(fmt.Errorf("Conflict. The container name \"/%s\" is already in use", name))
	}
	c := &fakeContainer{
		id: fakeID(fmt.Sprint(f.seq, name)), name: name, config: cfg, host: hostCfg,
		created: time.Now(), started: make(chan struct{}), exited: make(chan struct{}), removed: make(chan struct{}),
	}
	f.containers[c.id] = c
	return container.CreateResponse{ID: c.id}, nil
}

func (f *fakeBackend) ContainerStart(_ context.Context, nameOrID string) error {
	if err := f.injected("ContainerStart"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	if c.running {
		return errdefs.NotModified(errors.New("container already started"))
	}
	if c.ran {
		return errdefs.Conflict(errors.New("fake containers run once"))
	}
	c.running, c.ran = true, true
	attached := append([]chan struct{}(nil), c.attached...)
	exitCode := f.exitCode
	close(c.started)
	go func() {
		for _, ch := range attached {
			<-ch
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		c.running = false
		c.exitCode = exitCode
		close(c.exited)
		if c.host != nil && c.host.AutoRemove {
			delete(f.containers, c.id)
			close(c.removed)
		}
	}()
	return nil
}

func (f *fakeBackend) ContainerStop(_ context.Context, nameOrID string, opts container.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastStop = opts
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	if !c.running {
		return errdefs.NotModified(errors.New("container already stopped"))
	}
	return nil
}

func (f *fakeBackend) ContainerKill(_ context.Context, nameOrID string, signal string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastKill = signal
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	if !c.running {
		return errdefs.Conflict(fmt.Errorf("Container %s is not running", c.id))
	}
	return nil
}

func (f *fakeBackend) ContainerRestart(_ context.Context, nameOrID string, opts container.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRestart = opts
	_, err := f.lookup(nameOrID)
	return err
}

func (f *fakeBackend) ContainerWait(ctx context.Context, nameOrID string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	if f.waitHook != nil {
		return f.waitHook(ctx, nameOrID, cond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.lookup(nameOrID)
	if err != nil {
		return nil, err
	}
	target := c.exited
	switch cond {
	case container.WaitConditionRemoved:
		target = c.removed
	case container.WaitConditionNotRunning:
		if !c.running {
			closed := make(chan struct{})
			close(closed)
			target = closed
		}
	}
	ch := make(chan container.WaitResponse, 1)
	go func() {
		select {
		case <-target:
		case <-ctx.Done():
			return
		}
		f.mu.Lock()
		code := c.exitCode
		f.mu.Unlock()
		ch <- container.WaitResponse{StatusCode: int64(code)}
	}()
	return ch, nil
}

func (f *fakeBackend) ContainerAttach(ctx context.Context, nameOrID string, cfg *backend.AttachConfig) error {
	if err := f.injected("ContainerAttach"); err != nil {
		return err
	}
	f.mu.Lock()
	f.lastAttach = *cfg
	c, err := f.lookup(nameOrID)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	defer close(done)
	c.attached = append(c.attached, done)
	tty := c.config.Tty
	output, errOutput := f.output, f.errOutput
	delay := f.attachDelay
	f.mu.Unlock()

	time.Sleep(delay)
	stdin, stdout, stderr, err := cfg.GetStreams(!tty)
	if err != nil {
		return err
	}
	defer stdin.Close()
	select {
	case <-c.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	if cfg.UseStdin {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.stdin[c.id] = string(b)
		f.mu.Unlock()
		if _, err := fmt.Fprintf(stdout, "stdin: %s", b); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(stdout, output); err != nil {
		return err
	}
	if _, err := io.WriteString(stderr, errOutput); err != nil {
		return err
	}
	return nil
}

func (f *fakeBackend) ContainerLogs(ctx context.Context, nameOrID string, opts container.LogsOptions) (<-chan backend.LogMessage, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLogs = opts
	c, err := f.lookup(nameOrID)
	if err != nil {
		return nil, false, err
	}
	msgs := append([]backend.LogMessage(nil), f.logs...)
	ch := make(chan backend.LogMessage)
	go func() {
		defer close(ch)
		for _, m := range msgs {
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, c.config.Tty, nil
}

func (f *fakeBackend) ContainerResize(_ context.Context, nameOrID string, height, width uint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastResize = [2]uint{height, width}
	_, err := f.lookup(nameOrID)
	return err
}

func (f *fakeBackend) ContainerRemove(_ context.Context, nameOrID string, opts container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRemove = opts
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	if c.running && !opts.Force {
		return errdefs.Conflict(fmt.Errorf("cannot remove container %q: container is running", c.name))
	}
	delete(f.containers, c.id)
	return nil
}

func (f *fakeBackend) state(c *fakeContainer) string {
	switch {
	case c.running:
		return container.StateRunning
	case c.ran:
		return container.StateExited
	default:
		return container.StateCreated
	}
}

func (f *fakeBackend) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastList = opts
	var out []container.Summary
	for _, c := range f.containers {
		if !opts.All && !c.running {
			continue
		}
		out = append(out, container.Summary{
			ID: c.id, Names: []string{"/" + c.name}, Image: c.config.Image,
			Created: c.created.Unix(), State: f.state(c), Status: f.state(c),
		})
		out[len(out)-1].HostConfig.Annotations = c.host.Annotations
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Names[0] < out[j].Names[0] })
	return out, nil
}

func (f *fakeBackend) ContainerInspect(_ context.Context, nameOrID string, size bool) (*container.InspectResponse, error) {
	if err := f.injected("ContainerInspect"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastInspect, f.lastInspectSz = nameOrID, size
	c, err := f.lookup(nameOrID)
	if err != nil {
		return nil, err
	}
	return &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID: c.id, Name: "/" + c.name, Image: f.images[c.config.Image], Created: c.created.Format(time.RFC3339Nano),
			State:      &container.State{Status: f.state(c), Running: c.running, ExitCode: c.exitCode},
			HostConfig: c.host,
		},
		Config: c.config,
	}, nil
}

func (f *fakeBackend) ContainerRename(_ context.Context, nameOrID, newName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRename = [2]string{nameOrID, newName}
	c, err := f.lookup(nameOrID)
	if err != nil {
		return err
	}
	c.name = newName
	return nil
}

func (f *fakeBackend) ContainersPrune(_ context.Context, pruneFilters filters.Args) (*container.PruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPrune = pruneFilters
	rep := &container.PruneReport{ContainersDeleted: []string{}}
	for id, c := range f.containers {
		if !c.running {
			delete(f.containers, id)
			rep.ContainersDeleted = append(rep.ContainersDeleted, id)
		}
	}
	return rep, nil
}

func (f *fakeBackend) PullImage(ctx context.Context, ref string, platform string, auth *registry.AuthConfig, out io.Writer) error {
	f.mu.Lock()
	f.lastPullRef, f.lastPullPlat, f.lastPullAuth = ref, platform, auth
	lines, pullErr, hook := f.pullOutput, f.pullErr, f.pullHook
	f.mu.Unlock()
	if err := f.injected("PullImage"); err != nil {
		return err
	}
	if hook != nil {
		return hook(ctx, out)
	}
	for _, l := range lines {
		if _, err := io.WriteString(out, l+"\r\n"); err != nil {
			return err
		}
	}
	if pullErr != nil {
		return pullErr
	}
	f.addImage(ref)
	return nil
}

func (f *fakeBackend) ImageList(_ context.Context, opts image.ListOptions) ([]image.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastImageList = opts
	var out []image.Summary
	for ref, id := range f.images {
		s := image.Summary{ID: id, Size: 4096}
		if !strings.HasPrefix(ref, "<none>") {
			s.RepoTags = []string{ref}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeBackend) ImageInspect(_ context.Context, nameOrID string) (*image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastImageName = nameOrID
	if fam, err := familiar(nameOrID); err == nil {
		if id, ok := f.images[fam]; ok {
			return &image.InspectResponse{ID: id, RepoTags: []string{fam}}, nil
		}
	}
	for fam, id := range f.images {
		if id == nameOrID {
			return &image.InspectResponse{ID: id, RepoTags: []string{fam}}, nil
		}
	}
	return nil, errdefs.NotFound(fmt.Errorf("No such image: %s", nameOrID))
}

func (f *fakeBackend) ImageTag(_ context.Context, source, repo, tag string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastTag = [3]string{source, repo, tag}
	fam, err := familiar(source)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	id, ok := f.images[fam]
	if !ok {
		return errdefs.NotFound(fmt.Errorf("No such image: %s", source))
	}
	target, err := familiar(repo + ":" + tag)
	if err != nil {
		return errdefs.InvalidParameter(err)
	}
	f.images[target] = id
	return nil
}

func (f *fakeBackend) ImageDelete(_ context.Context, nameOrID string, force, prune bool) ([]image.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastImageDel = []any{nameOrID, force, prune}
	fam, err := familiar(nameOrID)
	if err == nil {
		if _, ok := f.images[fam]; ok {
			delete(f.images, fam)
			return []image.DeleteResponse{{Untagged: fam}}, nil
		}
	}
	return nil, errdefs.NotFound(fmt.Errorf("No such image: %s", nameOrID))
}

func (f *fakeBackend) ImagesPrune(_ context.Context, pruneFilters filters.Args) (*image.PruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPrune = pruneFilters
	return &image.PruneReport{ImagesDeleted: []image.DeleteResponse{}, SpaceReclaimed: 0}, nil
}

var _ Backend = (*fakeBackend)(nil)

// The fake engine is never part of a swarm.

func (f *fakeBackend) SwarmInit(context.Context, swarm.InitRequest) (string, error) {
	return "", errdefs.NotImplemented(errors.New("fake: no swarm"))
}
func (f *fakeBackend) SwarmLeave(context.Context, bool) error             { return errNotInSwarm }
func (f *fakeBackend) SwarmJoin(context.Context, swarm.JoinRequest) error { return errNotInSwarm }
func (f *fakeBackend) SwarmUnlock(context.Context, string) error          { return errNotInSwarm }
func (f *fakeBackend) SwarmInspect(context.Context) (swarm.Swarm, error) {
	return swarm.Swarm{}, errNotInSwarm
}
func (f *fakeBackend) SwarmUnlockKey(context.Context) (string, error) { return "", errNotInSwarm }
func (f *fakeBackend) SwarmNodes(context.Context, filters.Args) ([]swarm.Node, error) {
	return nil, errNotInSwarm
}
func (f *fakeBackend) SwarmNode(context.Context, string) (swarm.Node, error) {
	return swarm.Node{}, errNotInSwarm
}
func (f *fakeBackend) SwarmStatus() string { return string(swarm.LocalNodeStateInactive) }
func (f *fakeBackend) SwarmUpdate(context.Context, swarm.Spec, backend.SwarmUpdateOptions) error {
	return errNotInSwarm
}
func (f *fakeBackend) SwarmNodeUpdate(context.Context, string, uint64, swarm.NodeSpec) error {
	return errNotInSwarm
}
func (f *fakeBackend) SwarmNodeRemove(context.Context, string, bool) error { return errNotInSwarm }
func (f *fakeBackend) ServiceCreate(context.Context, swarm.ServiceSpec) (swarm.ServiceCreateResponse, error) {
	return swarm.ServiceCreateResponse{}, errNotInSwarm
}
func (f *fakeBackend) Services(context.Context, filters.Args, bool) ([]swarm.Service, error) {
	return nil, errNotInSwarm
}
func (f *fakeBackend) Service(context.Context, string) (swarm.Service, error) {
	return swarm.Service{}, errNotInSwarm
}
func (f *fakeBackend) ServiceUpdate(context.Context, string, uint64, swarm.ServiceSpec, bool) (swarm.ServiceUpdateResponse, error) {
	return swarm.ServiceUpdateResponse{}, errNotInSwarm
}
func (f *fakeBackend) ServiceRemove(context.Context, string) error { return errNotInSwarm }
func (f *fakeBackend) Tasks(context.Context, filters.Args) ([]swarm.Task, error) {
	return nil, errNotInSwarm
}
func (f *fakeBackend) Task(context.Context, string) (swarm.Task, error) {
	return swarm.Task{}, errNotInSwarm
}
func (f *fakeBackend) SecretCreate(context.Context, swarm.SecretSpec) (string, error) {
	return "", errNotInSwarm
}
func (f *fakeBackend) Secrets(context.Context, filters.Args) ([]swarm.Secret, error) {
	return nil, errNotInSwarm
}
func (f *fakeBackend) Secret(context.Context, string) (swarm.Secret, error) {
	return swarm.Secret{}, errNotInSwarm
}
func (f *fakeBackend) SecretUpdate(context.Context, string, uint64, swarm.SecretSpec) error {
	return errNotInSwarm
}
func (f *fakeBackend) SecretRemove(context.Context, string) error { return errNotInSwarm }
func (f *fakeBackend) ConfigCreate(context.Context, swarm.ConfigSpec) (string, error) {
	return "", errNotInSwarm
}
func (f *fakeBackend) Configs(context.Context, filters.Args) ([]swarm.Config, error) {
	return nil, errNotInSwarm
}
func (f *fakeBackend) Config(context.Context, string) (swarm.Config, error) {
	return swarm.Config{}, errNotInSwarm
}
func (f *fakeBackend) ConfigUpdate(context.Context, string, uint64, swarm.ConfigSpec) error {
	return errNotInSwarm
}
func (f *fakeBackend) ConfigRemove(context.Context, string) error { return errNotInSwarm }
func (f *fakeBackend) ServiceLogs(context.Context, []string, []string, container.LogsOptions) (<-chan backend.LogMessage, error) {
	return nil, errNotInSwarm
}

// The fake engine has no checkpoints (checkpoints_test.go has one that does).

// The fake engine migrates nothing (migrate_test.go has one that does).

var errNoMigration = errdefs.NotImplemented(errors.New("no migrations"))

func (f *fakeBackend) ContainerMigrate(context.Context, string, migration.Request, io.Writer) error {
	return errNoMigration
}
func (f *fakeBackend) MigrationOffer(context.Context, *migration.Offer) (migration.OfferResponse, error) {
	return migration.OfferResponse{}, errNoMigration
}
func (f *fakeBackend) MigrationBase(context.Context, string, io.Reader) error { return errNoMigration }
func (f *fakeBackend) MigrationLog(context.Context, string, io.Reader) error  { return errNoMigration }
func (f *fakeBackend) MigrationRun(context.Context, string, func() (net.Conn, *bufio.Reader, error)) error {
	return errNoMigration
}
func (f *fakeBackend) MigrationAbort(context.Context, string) error { return errNoMigration }

func (f *fakeBackend) CheckpointCreate(context.Context, string, checkpoint.CreateOptions) error {
	return errdefs.NotImplemented(errors.New("fake: no checkpoints"))
}
func (f *fakeBackend) CheckpointList(context.Context, string, checkpoint.ListOptions) ([]checkpoint.Summary, error) {
	return nil, errdefs.NotImplemented(errors.New("fake: no checkpoints"))
}
func (f *fakeBackend) CheckpointDelete(context.Context, string, checkpoint.DeleteOptions) error {
	return errdefs.NotImplemented(errors.New("fake: no checkpoints"))
}
func (f *fakeBackend) ContainerRestore(context.Context, string, string, string) error {
	return errdefs.NotImplemented(errors.New("fake: no checkpoints"))
}
