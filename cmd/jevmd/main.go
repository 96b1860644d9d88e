// Command jevmd is the jevm daemon: a Docker Engine API server whose
// containers each run in their own VM, instant-cloned from a booted template.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/sirupsen/logrus"

	"github.com/jevm/jevm/api"
	"github.com/jevm/jevm/daemon"
	"github.com/jevm/jevm/imagestore"
	"github.com/jevm/jevm/vmbackend"
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

	if len(o.hosts) == 0 {
		o.hosts = []string{"unix:///run/jevm/docker.sock"}
	}
	memBytes, err := units.RAMInBytes(o.vmMemory)
	if err != nil {
		return fmt.Errorf("--vm-memory: %w", err)
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
	initrd, err := buildInitrd(o)
	if err != nil {
		return err
	}
	vms, err := qemu.New(ctx, qemu.Options{
		QEMUPath: o.qemu,
		Kernel:   o.kernel,
		Initrd:   initrd,
		Root:     filepath.Join(o.dataRoot, "templates"),
		Accel:    o.accel,
		Logger:   logrus.WithField("component", "qemu"),
	})
	if err != nil {
		return fmt.Errorf("VM backend: %w", err)
	}
	images, err := imagestore.New(ctx, imagestore.Options{
		Root:               filepath.Join(o.dataRoot, "image"),
		Mirrors:            o.registryMirrors,
		InsecureRegistries: o.insecureRegistries,
		DiskSize:           vms.DiskSize(),
		Logger:             logrus.WithField("component", "images"),
	})
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	shape := vmbackend.Shape{MemoryMiB: int(memBytes >> 20), VCPUs: o.vmCPUs}
	d, err := daemon.New(ctx, daemon.Config{
		DataRoot:           o.dataRoot,
		ExecRoot:           o.execRoot,
		DefaultShape:       shape,
		ServerVersion:      version,
		APIVersion:         apiVersion,
		MinAPIVersion:      minAPIVersion,
		GitCommit:          gitCommit,
		RegistryMirrors:    o.registryMirrors,
		InsecureRegistries: o.insecureRegistries,
		Debug:              o.debug,
	}, vms, imageService{images}, logrus.WithField("component", "daemon"))
	if err != nil {
		return err
	}

	// Boot the default template in the background so that the first
	// container does not wait for a cold boot.
	go func() {
		begin := time.Now()
		if err := vms.EnsureTemplate(ctx, shape); err != nil && ctx.Err() == nil {
			log.WithError(err).Error("default VM template")
			return
		}
		log.WithField("elapsed", time.Since(begin).String()).Info("default VM template ready")
	}()

	var listeners []net.Listener
	for _, h := range o.hosts {
		l, err := api.Listen(h)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", h, err)
		}
		listeners = append(listeners, l)
		log.WithField("host", h).Info("API listening")
	}
	srv := api.NewServer(d, api.Options{
		Logger:        logrus.WithField("component", "api"),
		APIVersion:    apiVersion,
		MinAPIVersion: minAPIVersion,
		ServerVersion: version,
	})
	log.WithFields(logrus.Fields{"version": version, "accelerator": vms.Accelerator(), "data-root": o.dataRoot}).Info("jevmd ready")
	serveErr := srv.Serve(ctx, listeners)
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
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
func buildInitrd(o *options) (string, error) {
	dir := filepath.Join(o.dataRoot, "guest")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "initrd.img")
	if _, err := initramfs.Build(initramfs.Options{
		AgentPath:  o.agent,
		ModulesDir: o.kernelModules,
		Output:     out,
	}); err != nil {
		return "", fmt.Errorf("build guest initramfs (agent %s, modules %s): %w", o.agent, strings.TrimSpace(o.kernelModules), err)
	}
	return out, nil
}
