// Command init is PID 1 of the throwaway initramfs that .ci/avx512/run boots
// inside Bochs (an emulated x86-64 CPU with AVX-512). It is built by that
// script with CGO_ENABLED=0; the ".ci" directory keeps it out of
// `go build ./...` and `go vet ./...` of the module.
//
// It runs /test with the arguments listed in /args (one per line, so
// arguments may contain spaces or regexp characters) and the environment
// additions in /env (KEY=VALUE per line), sends everything to the serial
// console, prints "FASTGEN-AVX512-EXIT <code> run=<nonce>" and powers the
// machine off. The nonce (from /nonce, fresh per run) keeps output of the
// test itself from faking the marker. The host script treats the absence of
// the marker as a failure.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

const marker = "FASTGEN-AVX512-EXIT"

func main() {
	code := run()
	// The marker is the only thing the host trusts for the verdict; print it
	// on a line of its own even if the test left a partial line behind.
	nonce := strings.TrimSpace(string(must(os.ReadFile("/nonce"))))
	fmt.Printf("\n%s %d run=%s\n", marker, code, nonce)
	// Wait until the UART has really sent everything (tcdrain); otherwise
	// the power-off below can cut the marker line short.
	const tcsbrk = 0x5409 // TCSBRK; with arg 1 it is tcdrain()
	syscall.Syscall(syscall.SYS_IOCTL, os.Stdout.Fd(), tcsbrk, 1)
	syscall.Sync()
	// PID 1 must never exit (the kernel would panic); power off instead.
	// If power-off fails the host script still stops Bochs after the marker.
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() int {
	mounts := []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"}, // the kernel does not auto-mount it for an initramfs
		{"tmpfs", "/tmp", "tmpfs"},
	}
	for _, m := range mounts {
		os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && err != syscall.EBUSY {
			fmt.Printf("init: mount %s: %v\n", m.dir, err)
		}
	}

	printCPUFlags()

	args := readLines("/args")
	env := []string{
		"PATH=/", "HOME=/tmp", "TMPDIR=/tmp", "USER=root",
	}
	env = append(env, readLines("/env")...)

	cmd := exec.Command("/test", args...)
	cmd.Dir = "/work" // holds a copy of $AVX512_WORKDIR (e.g. testdata) when given
	if _, err := os.Stat(cmd.Dir); err != nil {
		cmd.Dir = "/"
	}
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	fmt.Printf("init: running /test %q\n", args)
	err := cmd.Run()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Printf("init: /test killed by signal %v\n", ws.Signal())
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Printf("init: cannot run /test: %v\n", err)
	return 127
}

// printCPUFlags shows which AVX-512 subsets the guest kernel reports, so a
// log makes clear whether the emulated CPU (and the kernel's XSAVE setup)
// really exposes them.
func printCPUFlags() {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		fmt.Printf("init: /proc/cpuinfo: %v\n", err)
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "model name") {
			fmt.Printf("init: cpu %s\n", strings.TrimSpace(strings.SplitN(line, ":", 2)[1]))
		}
		if strings.HasPrefix(line, "flags") {
			var avx []string
			for _, fl := range strings.Fields(line) {
				if strings.HasPrefix(fl, "avx512") {
					avx = append(avx, fl)
				}
			}
			fmt.Printf("init: cpu flags: %s\n", strings.Join(avx, " "))
			return
		}
	}
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func must(b []byte, err error) []byte {
	if err != nil {
		fmt.Printf("init: %v\n", err)
	}
	return b
}
