// Command jevm-testimages builds jevm's offline test images and serves them
// from a local registry.
//
//	jevm-testimages build [--cache DIR] [--images a,b] [--mirror URL]
//	jevm-testimages serve [--addr 127.0.0.1:5000] [--dir DIR] [build flags]
//	jevm-testimages push  --registry HOST:PORT [build flags]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jevm/jevm/hack/testimages"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: jevm-testimages COMMAND [flags]

commands:
  build   build missing images into the cache and print them
  serve   build, start docker-registry, push every image, then wait for
          SIGINT/SIGTERM and stop the registry
  push    build, then push every image to an already-running registry

Images are pushed as NAME:latest and library/NAME:latest. Images: %s.
Cache: --cache, else $%s, else %s.
`, strings.Join(testimages.Names(), ", "), testimages.CacheEnv, testimages.DefaultCacheDir)
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("jevm-testimages: ")
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	cache := fs.String("cache", "", "cache directory")
	names := fs.String("images", "", "comma-separated images (default: all)")
	mirror := fs.String("mirror", "", "Debian mirror URL (default: $"+testimages.MirrorEnv+" or the host's apt sources)")
	var addr, dir, registry *string
	switch cmd {
	case "build":
	case "serve":
		addr = fs.String("addr", "127.0.0.1:5000", "registry listen address")
		dir = fs.String("dir", "", "registry directory (default: a temporary directory, removed on exit)")
	case "push":
		registry = fs.String("registry", "", "registry address HOST:PORT (plain HTTP)")
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	fs.Parse(os.Args[2:])

	opts := testimages.Options{CacheDir: *cache, Mirror: *mirror, Logf: log.Printf}
	if *names != "" {
		opts.Names = strings.Split(*names, ",")
	}
	start := time.Now()
	imgs, err := testimages.Ensure(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("images ready in %s (cache %s)", time.Since(start).Round(10*time.Millisecond), imgs.CacheDir)

	switch cmd {
	case "build":
		for _, img := range imgs.List {
			fmt.Printf("%-8s %s %d layer(s) %s\n", img.Name, img.Manifest.Digest, len(img.Layers), img.Dir)
		}
		if imgs.BusyboxTar != "" {
			fmt.Printf("%-8s %s\n", "save", imgs.BusyboxTar)
		}
	case "push":
		if *registry == "" {
			log.Fatal("push: --registry is required")
		}
		if err := testimages.PushAll(ctx, *registry, imgs); err != nil {
			log.Fatal(err)
		}
		printRefs(*registry, imgs)
	case "serve":
		if err := serve(ctx, *addr, *dir, imgs); err != nil {
			log.Fatal(err)
		}
	}
}

func printRefs(addr string, imgs *testimages.Images) {
	for _, img := range imgs.List {
		for _, repo := range testimages.Repositories(img.Name) {
			fmt.Printf("%s/%s:%s %s\n", addr, repo, testimages.Tag, img.Manifest.Digest)
		}
	}
}

func serve(ctx context.Context, addr, dir string, imgs *testimages.Images) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "jevm-registry-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	reg, err := testimages.StartRegistry(ctx, dir, addr)
	if err != nil {
		return err
	}
	defer reg.Stop()
	log.Printf("registry pid %d on %s, storage %s", reg.Pid(), reg.Addr, dir)
	if err := reg.PushAll(ctx, imgs); err != nil {
		return err
	}
	printRefs(reg.Addr, imgs)
	log.Printf("serving; SIGINT/SIGTERM to stop")
	select {
	case <-ctx.Done():
		log.Printf("stopping registry")
	case <-reg.Done():
		return fmt.Errorf("docker-registry exited unexpectedly (log: %s/registry.log)", dir)
	}
	return reg.Stop()
}
