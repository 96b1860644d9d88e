// Command jevmd is the jevm daemon: a Docker Engine API server whose
// containers each run in their own VM, instant-cloned from a booted template.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api"
	"github.com/jevm/jevm/builder"
	"github.com/jevm/jevm/cluster"
	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/imagestore"
	"github.com/jevm/jevm/vmbackend/initramfs"
	"github.com/jevm/jevm/vmbackend/qemu"
)

// Set at build time with -ldflags "-X main.version=... -X main.gitCommit=...".
var (
	version   = "0.1.0-dev"
	gitCommit = "unknown"
)

const (
	apiVersion    = "1.51"
	minAPIVersion = "1.24"
)

func main() {
	opts, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "jevmd:", err)
		os.Exit(2)
	}
	if opts.showVersion {
		fmt.Printf("jevm version %s, build %s\n", version, gitCommit)
		return
	}
	if opts.validateOnly {
		// dockerd's --validate: the configuration as a whole, without
		// starting anything.
		if _, err := opts.daemonSettings(); err != nil {
			fmt.Fprintln(os.Stderr, "jevmd:", err)
			os.Exit(1)
		}
		fmt.Println("configuration OK")
		return
	}
	if err := run(opts); err != nil {
		logrus.WithError(err).Error("jevmd failed")
		os.Exit(1)
	}
}

func run(o *options) error {
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	level, err := logrus.ParseLevel(o.logLevel)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	if o.debug {
		level = logrus.DebugLevel
	}
	logrus.SetLevel(level)
	log := logrus.WithField("component", "jevmd")

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	settings, err := o.daemonSettings()
	if err != nil {
		return err
	}
	if len(o.hosts) == 0 {
		o.hosts = []string{"unix://" + api.DefaultUnixSocket}
	}
	if !o.userlandProxy {
		log.Warn("userland-proxy=false is not implemented: jevm publishes ports through its userland proxy")
	}
	for _, dir := range []string{o.dataRoot, o.execRoot} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return err
		}
	}
	if o.pidfile != "" {
		if err := os.WriteFile(o.pidfile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
		defer os.Remove(o.pidfile)
	}

	// The initramfs is the agent plus the kernel modules it loads; it is
	// rebuilt when either changes, and its hash keys the templates.
	initrd, err := buildInitrd(o.dataRoot, settings.guest)
	if err != nil {
		return err
	}
	vms, err := qemu.New(ctx, qemu.Options{
		QEMUPath: o.qemu,
		Kernel:   settings.guest.kernel,
		Initrd:   initrd,
		Root:     filepath.Join(o.dataRoot, "templates"),
		Accel:    o.accel,
		// TCG's translated-code buffer per VM (qemu.DefaultTCGTBSizeMiB).
		TCGTBSizeMiB: o.tcgTBSize,
		User:         o.vmUser, // QEMU's user, with 9p's capabilities only
		CgroupParent: o.cgroupParent,
		Logger:       logrus.WithField("component", "qemu"),
	})
	if err != nil {
		return fmt.Errorf("VM backend: %w", err)
	}
	images, err := imagestore.New(ctx, imagestore.Options{
		Root:                   filepath.Join(o.dataRoot, "image"),
		Mirrors:                o.registryMirrors,
		InsecureRegistries:     o.insecureRegistries,
		DiskSize:               vms.DiskSize(),
		MaxConcurrentDownloads: o.maxDownloads,
		Logger:                 logrus.WithField("component", "images"),
	})
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	shape := settings.daemon.DefaultShape
	d, err := daemon.New(ctx, settings.daemon, vms, imageService{images}, logrus.WithField("component", "daemon"))
	if err != nil {
		return err
	}
	// Templates no container can use (another shape, an older agent or
	// kernel) hold disk; the API does not serve yet (daemon/templates.go).
	if err := d.CollectTemplates(); err != nil {
		log.WithError(err).Warn("collect unused VM templates")
	}

	// Boot the default template in the background so that the first
	// container does not wait for a cold boot; then fill the warm pool
	// (daemon/pool.go), whose blanks are clones of it.
	go func() {
		begin := time.Now()
		if err := vms.EnsureTemplate(ctx, shape); err != nil && ctx.Err() == nil {
			log.WithError(err).Error("default VM template")
			return
		}
		log.WithField("elapsed", time.Since(begin).String()).Info("default VM template ready")
	}()
	d.StartPool()

	listenOpts := settings.listen
	listenOpts.SocketGroup, listenOpts.SocketGroupExplicit, listenOpts.Logger = o.group, o.groupExplicit, log
	listeners, err := api.ListenHosts(o.hosts, listenOpts)
	if err != nil {
		return err
	}
	for _, l := range listeners {
		log.WithField("address", l.Addr().String()).Info("API listening")
	}
	bld, err := builder.New(builder.Options{
		Root:       filepath.Join(o.dataRoot, "builder"),
		Images:     buildImages{s: images, d: d},
		Containers: d,
		Log:        logrus.WithField("component", "builder"),
	})
	if err != nil {
		return fmt.Errorf("builder: %w", err)
	}
	// Swarm mode (cluster/): a node this engine ran before comes back.
	swarmNode := cluster.New(cluster.Config{
		Root:          filepath.Join(o.dataRoot, "swarm"),
		ControlSocket: filepath.Join(o.execRoot, "swarm", "control.sock"),
		EngineVersion: version,
		Containers:    d,
		Overlays:      d,
		LocalNetwork:  d.LocalNetwork,
		Log:           logrus.WithField("component", "swarm"),
	})
	// docker run --network on attachable swarm networks (cluster/attach.go).
	d.SetSwarmAttacher(swarmNode)
	if err := swarmNode.Start(ctx); err != nil {
		log.WithError(err).Error("swarm node")
	}
	defer swarmNode.Stop(context.Background())
	srv := api.NewServer(engine{Daemon: d, b: bld, c: swarmNode}, api.Options{
		Logger:        logrus.WithField("component", "api"),
		APIVersion:    apiVersion,
		MinAPIVersion: minAPIVersion,
		ServerVersion: version,
		Experimental:  o.experimental,
	})
	log.WithFields(logrus.Fields{"version": version, "accelerator": vms.Accelerator(), "data-root": o.dataRoot}).Info("jevmd ready")
	// Type=notify in jevm.service: systemd counts the service started
	// once the API answers. Outside systemd this does nothing.
	if _, err := sdnotify.SdNotify(false, sdnotify.SdNotifyReady); err != nil {
		log.WithError(err).Warn("notify systemd")
	}
	go func() {
		<-ctx.Done()
		_, _ = sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
	}()
	serveErr := srv.Serve(ctx, listeners)
	shutdownCtx, done := context.Background(), func() {}
	if t := d.ShutdownTimeout(time.Duration(o.shutdownSecs) * time.Second); t >= 0 {
		shutdownCtx, done = context.WithTimeout(context.Background(), t)
	}
	defer done()
	if err := d.Shutdown(shutdownCtx); err != nil {
		log.WithError(err).Warn("shutdown")
	}
	if serveErr != nil && !errors.Is(serveErr, context.Canceled) {
		return serveErr
	}
	log.Info("jevmd stopped")
	return nil
}

// buildInitrd writes DATA_ROOT/guest/initrd.img from the agent and modules.
func buildInitrd(dataRoot string, g guestPaths) (string, error) {
	dir := filepath.Join(dataRoot, "guest")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "initrd.img")
	if _, err := initramfs.Build(initramfs.Options{
		AgentPath:  g.agent,
		ModulesDir: g.modules,
		Output:     out,
	}); err != nil {
		return "", fmt.Errorf("build guest initramfs (agent %s, modules %s): %w", g.agent, g.modules, err)
	}
	return out, nil
}
