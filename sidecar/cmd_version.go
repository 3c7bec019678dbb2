package main

import (
	"fmt"
	"io"

	"github.com/fastgen/fastgen/sidecar/tensor"
	"github.com/fastgen/fastgen/sidecar/version"
)

func init() {
	register("version", "print the build (commit, Go, platform), its CPU kernels and devices", runVersion)
}

// runVersion prints what a bug report needs: the build on the first line,
// then the kernel set this CPU selected and the devices compiled in.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fastgen version: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	fmt.Fprintln(stdout, version.Get())
	fmt.Fprintf(stdout, "kernels: %s; devices: %s\n", tensor.KernelName(), devices)
	return exitOK
}
