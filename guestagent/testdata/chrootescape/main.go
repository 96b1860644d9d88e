// Command chrootescape tries the classic chroot escape (chroot into a
// subdirectory without entering it, climb out with "..", chroot there)
// and then reads the files named by its arguments, printing each one's
// content or error. The guest agent's tests run it in a container to show
// that a mount namespace of its own leaves nothing of the other
// containers to reach.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	if err := os.MkdirAll("/tmp/.escape", 0o700); err != nil {
		fmt.Println("mkdir:", err)
		os.Exit(1)
	}
	if err := syscall.Chroot("/tmp/.escape"); err != nil {
		fmt.Println("chroot:", err)
		os.Exit(1)
	}
	for i := 0; i < 64; i++ {
		syscall.Chdir("..")
	}
	if err := syscall.Chroot("."); err != nil {
		fmt.Println("chroot .:", err)
		os.Exit(1)
	}
	for _, p := range os.Args[1:] {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Printf("%s: %v\n", p, err)
			continue
		}
		fmt.Printf("%s: %s", p, b)
	}
}
