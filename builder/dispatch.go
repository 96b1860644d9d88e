package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/go-connections/nat"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sys/unix"
)

// defaultPathEnv is the PATH a stage gets when its image sets none (as in
// dockerd, for FROM scratch).
const defaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var defaultShell = []string{"/bin/sh", "-c"}

// buildState is one build in progress.
type buildState struct {
	b     *Builder
	opts  *build.ImageBuildOptions
	bc    *buildContext
	df    *dockerfile
	out   *output
	shlex *shell.Lex
	args  *buildArgs

	stageImages []string // image of each finished stage, by index
	stageNames  []string
	unpacked    map[string]string // image ID -> its root file system on the host (COPY --from)

	step, total            int
	steps, runs, cacheHits int
}

// stage is the state of the stage being built.
type stage struct {
	name    string
	imageID string // "" while a FROM scratch stage has made nothing
	config  *container.Config
	cmdSet  bool // CMD given in this stage (an ENTRYPOINT then keeps it)
	author  string
	args    stageArgs
}

func newBuildState(b *Builder, opts *build.ImageBuildOptions, bc *buildContext, df *dockerfile, w interface {
	Write([]byte) (int, error)
}) *buildState {
	return &buildState{
		b:        b,
		opts:     opts,
		bc:       bc,
		df:       df,
		out:      &output{w: w, quiet: opts.SuppressOutput},
		shlex:    shell.NewLex(df.escapeToken),
		args:     newBuildArgs(opts.BuildArgs),
		unpacked: map[string]string{},
		total:    df.steps(),
	}
}

func (bs *buildState) cleanup() {
	for _, dir := range bs.unpacked {
		os.RemoveAll(dir)
	}
}

func (bs *buildState) printStep(s string) {
	bs.step++
	bs.steps++
	bs.out.stream(fmt.Sprintf("Step %d/%d : %s\n", bs.step, bs.total, s))
}

// run dispatches every stage and returns the last stage's image.
func (bs *buildState) run(ctx context.Context) (string, error) {
	for _, w := range bs.df.warnings {
		bs.out.stream("[Warning] " + w + "\n")
	}
	// Global ARGs: usable in FROM lines.
	for i := range bs.df.metaArgs {
		ma := &bs.df.metaArgs[i]
		bs.printStep(ma.String())
		for _, kv := range ma.Args {
			key, err := bs.expandWith(kv.Key, bs.metaEnv())
			if err != nil {
				return "", err
			}
			var def *string
			if kv.Value != nil {
				v, err := bs.expandWith(*kv.Value, bs.metaEnv())
				if err != nil {
					return "", err
				}
				def = &v
			}
			bs.args.meta[key] = bs.args.declare(key, def, true)
		}
	}
	var last string
	for i := range bs.df.stages {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		s := &bs.df.stages[i]
		st, err := bs.beginStage(ctx, s)
		if err != nil {
			return "", err
		}
		for _, cmd := range s.Commands {
			if err := ctx.Err(); err != nil {
				bs.out.stream("Build cancelled\n")
				return "", errors.New("Build cancelled")
			}
			bs.printStep(commandString(cmd))
			if err := bs.dispatch(ctx, st, cmd); err != nil {
				return "", err
			}
			bs.out.stream(fmt.Sprintf(" ---> %s\n", shortID(st.imageID)))
		}
		if st.imageID != "" {
			bs.out.aux(st.imageID)
		}
		bs.stageImages = append(bs.stageImages, st.imageID)
		bs.stageNames = append(bs.stageNames, s.Name)
		last = st.imageID
	}
	if unused := bs.args.unused(); len(unused) > 0 {
		bs.out.stream(fmt.Sprintf("[Warning] One or more build-args %v were not consumed\n", unused))
	}
	if last == "" {
		return "", errdefs.InvalidParameter(errors.New("No image was generated. Is your Dockerfile empty?"))
	}
	return last, nil
}

func commandString(cmd instructions.Command) string {
	if s, ok := cmd.(fmt.Stringer); ok {
		return s.String()
	}
	return cmd.Name()
}

// metaEnv is the environment FROM lines and global ARGs expand with.
func (bs *buildState) metaEnv() []string {
	var env []string
	keys := make([]string, 0, len(bs.args.meta))
	for k := range bs.args.meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := bs.args.meta[k]; v != nil {
			env = append(env, k+"="+*v)
		}
	}
	return env
}

func (bs *buildState) expandWith(word string, env []string) (string, error) {
	out, _, err := bs.shlex.ProcessWord(word, shell.EnvsFromSlice(env))
	if err != nil {
		return "", errdefs.InvalidParameter(err)
	}
	return out, nil
}

// stageEnv is what a stage's instructions expand with: its ENV, then its
// ARGs where ENV does not set them.
func (st *stage) expandEnv(given map[string]*string) []string {
	env := append([]string{}, st.config.Env...)
	return append(env, st.args.env(st.config.Env, given, false)...)
}

// beginStage runs a FROM: the base is an earlier stage, scratch, or an
// image (pulled when missing, or always with pull=1); its ONBUILD
// triggers run first.
func (bs *buildState) beginStage(ctx context.Context, s *instructions.Stage) (*stage, error) {
	bs.printStep(s.SourceCode)
	base, err := bs.expandWith(s.BaseName, bs.metaEnv())
	if err != nil {
		return nil, err
	}
	if base == "" {
		return nil, errdefs.InvalidParameter(fmt.Errorf("base name (%s) should not be blank", s.BaseName))
	}
	if s.Platform != "" {
		p, err := bs.expandWith(s.Platform, bs.metaEnv())
		if err != nil {
			return nil, err
		}
		if err := checkPlatform(p); err != nil {
			return nil, err
		}
	}
	st := &stage{name: s.Name}
	switch idx := bs.stageByName(base); {
	case idx >= 0:
		st.imageID = bs.stageImages[idx]
	case strings.EqualFold(base, "scratch"):
	default:
		img, err := bs.getOrPull(ctx, base)
		if err != nil {
			return nil, err
		}
		st.imageID = img.ID
	}
	st.config = &container.Config{}
	if st.imageID != "" {
		img, err := bs.b.opts.Images.GetImage(ctx, st.imageID)
		if err != nil {
			return nil, err
		}
		if img.Config != nil {
			st.config = cloneConfig(img.Config)
		}
	}
	st.config.Image = ""
	if _, ok := envLookup(st.config.Env, "PATH"); !ok {
		st.config.Env = append(st.config.Env, "PATH="+defaultPathEnv)
	}
	triggers := st.config.OnBuild
	st.config.OnBuild = nil
	if len(triggers) > 0 {
		plural := ""
		if len(triggers) > 1 {
			plural = "s"
		}
		bs.out.stream(fmt.Sprintf("# Executing %d build trigger%s\n", len(triggers), plural))
		for _, t := range triggers {
			cmd, err := parseTrigger(t)
			if err != nil {
				return nil, err
			}
			if err := bs.dispatch(ctx, st, cmd); err != nil {
				return nil, err
			}
		}
	}
	bs.out.stream(fmt.Sprintf(" ---> %s\n", shortID(st.imageID)))
	return st, nil
}

func (bs *buildState) stageByName(name string) int {
	for i, n := range bs.stageNames {
		if n != "" && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// getOrPull resolves an image for FROM or COPY --from.
func (bs *buildState) getOrPull(ctx context.Context, ref string) (*Image, error) {
	if !bs.opts.PullParent {
		img, err := bs.b.opts.Images.GetImage(ctx, ref)
		if err == nil {
			return img, nil
		}
		if !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	auth := authFor(bs.opts.AuthConfigs, ref)
	if err := bs.b.opts.Images.PullImage(ctx, ref, bs.opts.Platform, auth, bs.out.raw()); err != nil {
		return nil, err
	}
	return bs.b.opts.Images.GetImage(ctx, ref)
}

// parseTrigger parses an ONBUILD trigger as an instruction.
func parseTrigger(expr string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, errdefs.InvalidParameter(fmt.Errorf("failed to parse ONBUILD trigger %q: %w", expr, err))
	}
	if len(res.AST.Children) != 1 {
		return nil, errdefs.InvalidParameter(fmt.Errorf("ONBUILD trigger %q is not one instruction", expr))
	}
	cmd, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return nil, errdefs.InvalidParameter(err)
	}
	return cmd, nil
}

// dispatch runs one instruction.
func (bs *buildState) dispatch(ctx context.Context, st *stage, cmd instructions.Command) error {
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		env := st.expandEnv(bs.opts.BuildArgs)
		if err := ex.Expand(func(word string) (string, error) { return bs.expandWith(word, env) }); err != nil {
			return errdefs.InvalidParameter(err)
		}
	}
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		return bs.dispatchRun(ctx, st, c)
	case *instructions.CopyCommand:
		if c.Link || c.Parents || len(c.ExcludePatterns) > 0 {
			return requiresBuildKit(copyFlag(c.Link, c.Parents, c.ExcludePatterns))
		}
		return bs.dispatchCopy(ctx, st, "COPY", c.SourcesAndDest, c.From, c.Chown, c.Chmod, false)
	case *instructions.AddCommand:
		if c.Link || len(c.ExcludePatterns) > 0 || c.Checksum != "" || c.KeepGitDir || c.Unpack != nil {
			return requiresBuildKit(addFlag(c))
		}
		return bs.dispatchCopy(ctx, st, "ADD", c.SourcesAndDest, "", c.Chown, c.Chmod, true)
	case *instructions.WorkdirCommand:
		return bs.dispatchWorkdir(ctx, st, c.Path)
	case *instructions.ArgCommand:
		var parts []string
		for _, kv := range c.Args {
			st.args.set(kv.Key, bs.args.declare(kv.Key, kv.Value, false))
			// As dockerd records it: the Dockerfile's default, not the
			// --build-arg value (which RUN steps record themselves).
			if kv.Value != nil {
				parts = append(parts, kv.Key+"="+*kv.Value)
			} else {
				parts = append(parts, kv.Key)
			}
		}
		return bs.commitConfig(ctx, st, "ARG "+strings.Join(parts, " "))
	}
	comment, err := applyConfig(st, cmd, bs.shlex, st.expandEnv(bs.opts.BuildArgs), bs.out.stream)
	if err != nil {
		return err
	}
	return bs.commitConfig(ctx, st, comment)
}

// applyConfig applies an instruction that changes only the image config
// (everything but RUN, COPY, ADD and ARG; WORKDIR only sets the
// directory) and returns how the history records it. env is what EXPOSE
// expands with; note gets the builder's remarks (an overridden
// HEALTHCHECK). The builder and `docker commit --change` share it.
func applyConfig(st *stage, cmd instructions.Command, shlex *shell.Lex, env []string, note func(string)) (string, error) {
	cfg := st.config
	switch c := cmd.(type) {
	case *instructions.WorkdirCommand:
		cfg.WorkingDir = resolveWorkdir(cfg.WorkingDir, c.Path)
		return "WORKDIR " + cfg.WorkingDir, nil
	case *instructions.EnvCommand:
		parts := []string{}
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return "ENV " + strings.Join(parts, " "), nil
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		parts := []string{}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, fmt.Sprintf("%s=%s", strconv.Quote(kv.Key), strconv.Quote(kv.Value)))
		}
		return "LABEL " + strings.Join(parts, " "), nil
	case *instructions.MaintainerCommand:
		st.author = c.Maintainer
		return "MAINTAINER " + c.Maintainer, nil
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			words, err := shlex.ProcessWords(p, shell.EnvsFromSlice(env))
			if err != nil {
				return "", errdefs.InvalidParameter(err)
			}
			ports = append(ports, words...)
		}
		set, _, err := nat.ParsePortSpecs(ports)
		if err != nil {
			return "", errdefs.InvalidParameter(err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = nat.PortSet{}
		}
		var names []string
		for p := range set {
			cfg.ExposedPorts[p] = struct{}{}
			names = append(names, string(p))
		}
		sort.Strings(names)
		return "EXPOSE " + strings.Join(names, " "), nil
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			v = strings.TrimSpace(v)
			if v == "" {
				return "", errdefs.InvalidParameter(errors.New("VOLUME specified can not be an empty string"))
			}
			cfg.Volumes[v] = struct{}{}
		}
		return fmt.Sprintf("VOLUME %v", c.Volumes), nil
	case *instructions.UserCommand:
		cfg.User = c.User
		return "USER " + c.User, nil
	case *instructions.StopSignalCommand:
		if err := checkSignal(c.Signal); err != nil {
			return "", err
		}
		cfg.StopSignal = c.Signal
		return "STOPSIGNAL " + c.Signal, nil
	case *instructions.CmdCommand:
		cfg.Cmd = commandLine(cfg, c.ShellDependantCmdLine)
		st.cmdSet = true
		return fmt.Sprintf("CMD %q", []string(cfg.Cmd)), nil
	case *instructions.EntrypointCommand:
		if len(c.CmdLine) == 0 && !c.PrependShell {
			cfg.Entrypoint = nil
		} else {
			cfg.Entrypoint = commandLine(cfg, c.ShellDependantCmdLine)
		}
		if !st.cmdSet {
			cfg.Cmd = nil
		}
		return fmt.Sprintf("ENTRYPOINT %q", []string(cfg.Entrypoint)), nil
	case *instructions.ShellCommand:
		cfg.Shell = append([]string{}, c.Shell...)
		return fmt.Sprintf("SHELL %v", c.Shell), nil
	case *instructions.HealthCheckCommand:
		h := c.Health
		hc := &container.HealthConfig{Test: append([]string{}, h.Test...), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
		if cfg.Healthcheck != nil && len(cfg.Healthcheck.Test) > 0 && cfg.Healthcheck.Test[0] != "NONE" {
			note(fmt.Sprintf("Note: overriding previous HEALTHCHECK: %v\n", cfg.Healthcheck.Test))
		}
		cfg.Healthcheck = hc
		return fmt.Sprintf("HEALTHCHECK %q", hc.Test), nil
	case *instructions.OnbuildCommand:
		trigger, err := parseTrigger(c.Expression)
		if err != nil {
			return "", err
		}
		switch strings.ToUpper(trigger.Name()) {
		case "ONBUILD":
			return "", errdefs.InvalidParameter(errors.New("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
		case "FROM", "MAINTAINER":
			return "", errdefs.InvalidParameter(fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(trigger.Name())))
		}
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
		return "ONBUILD " + c.Expression, nil
	}
	return "", errdefs.InvalidParameter(fmt.Errorf("the %s instruction is not supported by the classic builder", strings.ToUpper(cmd.Name())))
}

func requiresBuildKit(flag string) error {
	return errdefs.InvalidParameter(fmt.Errorf("the --%s option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled", flag))
}

func copyFlag(link, parents bool, exclude []string) string {
	switch {
	case link:
		return "link"
	case parents:
		return "parents"
	}
	return "exclude"
}

func addFlag(c *instructions.AddCommand) string {
	switch {
	case c.Link:
		return "link"
	case len(c.ExcludePatterns) > 0:
		return "exclude"
	case c.Checksum != "":
		return "checksum"
	case c.KeepGitDir:
		return "keep-git-dir"
	}
	return "unpack"
}

// commandLine is CMD's, ENTRYPOINT's or RUN's argv: the shell form is run
// by the stage's SHELL.
func commandLine(cfg *container.Config, cl instructions.ShellDependantCmdLine) []string {
	if !cl.PrependShell {
		return append([]string{}, cl.CmdLine...)
	}
	return append(shellOf(cfg), strings.Join(cl.CmdLine, " "))
}

func shellOf(cfg *container.Config) []string {
	if len(cfg.Shell) > 0 {
		return append([]string{}, cfg.Shell...)
	}
	return append([]string{}, defaultShell...)
}

// dispatchRun runs a RUN step in a jeVM and commits its changes.
func (bs *buildState) dispatchRun(ctx context.Context, st *stage, c *instructions.RunCommand) error {
	if len(c.FlagsUsed) > 0 {
		return requiresBuildKit(c.FlagsUsed[0])
	}
	if len(c.Files) > 0 {
		return errdefs.InvalidParameter(errors.New("heredocs in RUN require BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"))
	}
	if st.imageID == "" {
		return errdefs.InvalidParameter(errors.New("RUN needs a file system to run in: this stage is FROM scratch and has no files yet"))
	}
	cmd := commandLine(st.config, c.ShellDependantCmdLine)
	declared := st.args.env(st.config.Env, bs.opts.BuildArgs, false)
	saveCmd := cmd
	if len(declared) > 0 {
		saveCmd = append(append([]string{"|" + strconv.Itoa(len(declared))}, declared...), cmd...)
	}
	createdBy := strings.Join(saveCmd, " ")
	key := cacheKey("run", st.imageID, createdBy, configJSON(st.config))
	if bs.probeCache(ctx, st, key) {
		return nil
	}

	runCfg := cloneConfig(st.config)
	runCfg.Image = st.imageID
	runCfg.Cmd = cmd
	runCfg.Entrypoint = []string{""}
	runCfg.Env = append(append([]string{}, st.config.Env...), st.args.env(st.config.Env, bs.opts.BuildArgs, true)...)
	runCfg.Healthcheck = nil
	runCfg.OnBuild = nil
	runCfg.AttachStdout, runCfg.AttachStderr = true, true
	runCfg.Tty, runCfg.OpenStdin = false, false
	hostCfg := &container.HostConfig{
		NetworkMode: container.NetworkMode(bs.opts.NetworkMode),
		ExtraHosts:  bs.opts.ExtraHosts,
		ShmSize:     bs.opts.ShmSize,
		Isolation:   bs.opts.Isolation,
		Resources: container.Resources{
			Memory:     bs.opts.Memory,
			MemorySwap: bs.opts.MemorySwap,
			CPUShares:  bs.opts.CPUShares,
			CPUQuota:   bs.opts.CPUQuota,
			CPUPeriod:  bs.opts.CPUPeriod,
			CpusetCpus: bs.opts.CPUSetCPUs,
			CpusetMems: bs.opts.CPUSetMems,
			Ulimits:    bs.opts.Ulimits,
		},
	}
	if hostCfg.NetworkMode == "" {
		hostCfg.NetworkMode = "default"
	}
	cb := bs.b.opts.Containers
	resp, err := cb.ContainerCreate(ctx, "", runCfg, hostCfg, nil, nil)
	if err != nil {
		return err
	}
	id := resp.ID
	for _, w := range resp.Warnings {
		bs.out.stream(fmt.Sprintf(" ---> [Warning] %s\n", w))
	}
	bs.out.stream(fmt.Sprintf(" ---> Running in %s\n", shortID(id)))
	bs.runs++
	exit, err := cb.RunBuildContainer(ctx, id, bs.out.streamWriter(), bs.out.streamWriter())
	if err == nil && exit != 0 {
		err = &jsonmessage.JSONError{
			Message: fmt.Sprintf("The command '%s' returned a non-zero code: %d", strings.Join(cmd, " "), exit),
			Code:    exit,
		}
	}
	if err != nil {
		// As dockerd: the failed step's container stays for inspection
		// (stopped: its VM is gone) unless forcerm; a cancelled build
		// leaves nothing.
		if bs.opts.ForceRemove || ctx.Err() != nil {
			bs.removeContainer(id, false)
		}
		return err
	}
	imageID, err := cb.CommitBuildContainer(ctx, id, st.config, createdBy)
	if err != nil {
		if bs.opts.ForceRemove {
			bs.removeContainer(id, false)
		}
		return err
	}
	if bs.opts.Remove || bs.opts.ForceRemove {
		bs.removeContainer(id, true)
	}
	st.imageID = imageID
	bs.rememberCache(key, imageID)
	return nil
}

// removeContainer removes a step's container even when the build's
// context is done (a cancelled build leaves nothing behind).
func (bs *buildState) removeContainer(id string, report bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := bs.b.opts.Containers.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err != nil:
		bs.b.log.WithError(err).WithField("container", shortID(id)).Warn("removing a build step's container")
		if report {
			bs.out.stream(fmt.Sprintf("Removing intermediate container %s: %v\n", shortID(id), err))
		}
	case report:
		bs.out.stream(fmt.Sprintf(" ---> Removed intermediate container %s\n", shortID(id)))
	}
}

// commitConfig records a step that changes only the config.
func (bs *buildState) commitConfig(ctx context.Context, st *stage, comment string) error {
	createdBy := strings.Join(append(shellOf(st.config), "#(nop) ", comment), " ")
	key := cacheKey("config", st.imageID, createdBy, configJSON(st.config), st.author)
	if bs.probeCache(ctx, st, key) {
		return nil
	}
	id, err := bs.b.opts.Images.CommitLayer(ctx, LayerCommit{Parent: st.imageID, Config: st.config, Author: st.author, CreatedBy: createdBy})
	if err != nil {
		return err
	}
	st.imageID = id
	bs.rememberCache(key, id)
	return nil
}

// probeCache looks a step up; on a hit the stage moves to the cached image.
func (bs *buildState) probeCache(ctx context.Context, st *stage, key string) bool {
	if bs.opts.NoCache {
		return false
	}
	id, ok := bs.b.cache.get(key)
	if !ok {
		return false
	}
	img, err := bs.b.opts.Images.GetImage(ctx, id)
	if err != nil {
		bs.b.cache.forget(key) // the image was deleted
		return false
	}
	if img.Config != nil {
		cfg := cloneConfig(img.Config)
		cfg.Image = ""
		st.config = cfg
	}
	st.imageID = img.ID
	bs.cacheHits++
	bs.out.stream(" ---> Using cache\n")
	return true
}

func (bs *buildState) rememberCache(key, imageID string) {
	if err := bs.b.cache.put(key, imageID); err != nil {
		bs.b.log.WithError(err).Warn("saving the build cache index")
	}
}

func configJSON(cfg *container.Config) string {
	b, _ := json.Marshal(cfg)
	return string(b)
}

func cloneConfig(c *container.Config) *container.Config {
	b, err := json.Marshal(c)
	if err != nil {
		return &container.Config{}
	}
	out := &container.Config{}
	if err := json.Unmarshal(b, out); err != nil {
		return &container.Config{}
	}
	return out
}

func envLookup(env []string, key string) (string, bool) {
	for _, e := range env {
		if k, v, _ := strings.Cut(e, "="); k == key {
			return v, true
		}
	}
	return "", false
}

func setEnv(env []string, key, value string) []string {
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

// checkSignal accepts what docker run --stop-signal does: a number or a
// name, with or without SIG.
func checkSignal(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return errdefs.InvalidParameter(fmt.Errorf("Invalid signal: %s", s))
		}
		return nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if strings.HasPrefix(name, "SIGRTMIN") || strings.HasPrefix(name, "SIGRTMAX") || unix.SignalNum(name) != 0 {
		return nil
	}
	return errdefs.InvalidParameter(fmt.Errorf("Invalid signal: %s", s))
}

// dispatchWorkdir sets the working directory and creates it in the image
// when it is missing.
func (bs *buildState) dispatchWorkdir(ctx context.Context, st *stage, p string) error {
	p = resolveWorkdir(st.config.WorkingDir, p)
	st.config.WorkingDir = p
	comment := "WORKDIR " + p
	missing, err := bs.missingDirs(ctx, st.imageID, p)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return bs.commitConfig(ctx, st, comment)
	}
	lw, err := newLayerFile(bs.b.opts.Root)
	if err != nil {
		return err
	}
	defer lw.discard()
	now := time.Now()
	for _, d := range missing {
		if err := lw.addDir(d, 0o755, 0, 0, now); err != nil {
			return err
		}
	}
	return bs.commitLayer(ctx, st, lw, comment, "")
}

// resolveWorkdir is WORKDIR's path: relative ones from the current one.
func resolveWorkdir(cur, p string) string {
	if !path.IsAbs(p) {
		if cur == "" {
			cur = "/"
		}
		p = path.Join(cur, p)
	}
	return path.Clean(p)
}
