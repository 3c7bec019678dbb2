package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fastgen/fastgen/sidecar/hub"
	"github.com/fastgen/fastgen/sidecar/store"
)

func init() {
	register("pull", "download a model from the Hugging Face hub into the local store", runPull)
}

func runPull(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("pull", stderr)
	revision := fs.String("revision", hub.DefaultRevision, "branch, tag or commit to download from")
	quiet := fs.Bool("quiet", false, "print only the stored path (no progress bar)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: fastgen pull REPO[:FILE|:QUANT] [--revision main] [--quiet]

Downloads one file of a Hugging Face repo into the model store and prints its
path. FILE is a path in the repo or a file name; QUANT (e.g. Q4_K_M) picks the
.gguf whose name carries that tag; with neither, the repo must hold one .gguf.
An interrupted pull resumes where it stopped when run again.

Environment: HF_ENDPOINT (hub mirror, default %s), HF_TOKEN (gated or
private repos), %s (store directory).

Examples:
  fastgen pull ggml-org/models:tinyllamas/stories260K.gguf
  fastgen pull bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M

flags:
`, hub.DefaultEndpoint, store.EnvDir)
		fs.PrintDefaults()
	}
	pos, status := parseFlagsAnywhere(fs, args)
	if status >= 0 {
		return status
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "fastgen pull: want exactly one REPO[:FILE] argument")
		fs.Usage()
		return exitBadInput
	}
	ref, err := hub.ParseRef(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "fastgen pull: %v\n", err)
		return exitBadInput
	}
	// Cancelling the context on SIGINT/SIGTERM lets the download close the
	// partial file cleanly (kept for resume) instead of dying mid-write; the
	// store itself only ever receives whole files by rename.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	path, err := pullModel(ctx, ref, *revision, *quiet, stderr)
	if err != nil {
		return pullFailed(stderr, err)
	}
	fmt.Fprintln(stdout, path)
	return exitOK
}

// pullModel downloads one file of a repo into the store (or finds it there,
// verified) and returns its path.
func pullModel(ctx context.Context, ref hub.Ref, revision string, quiet bool, stderr io.Writer) (string, error) {
	st, err := store.Open()
	if err != nil {
		return "", err
	}
	c := hub.NewClient()
	file, err := c.Resolve(ctx, ref, revision)
	if err != nil {
		return "", err
	}
	dest, err := st.Path(ref.Repo, file.Path)
	if err != nil {
		return "", err
	}
	key := file.SHA256
	if key == "" {
		key = revision
	}
	part, err := st.PartialPath(ref.Repo, file.Path, key)
	if err != nil {
		return "", err
	}
	var prog hub.Progress
	if !quiet {
		prog = hub.NewProgress(stderr)
		size := "size unknown"
		if file.Size >= 0 {
			size = hub.FormatBytes(file.Size)
		}
		fmt.Fprintf(stderr, "pulling %s (%s) from %s\n", store.Name(ref.Repo, file.Path), size, c.Endpoint)
	}
	res, err := c.Download(ctx, hub.Request{
		Repo: ref.Repo, Revision: revision, File: file, PartPath: part, Dest: dest, Progress: prog,
	})
	if err != nil {
		return "", err
	}
	if !quiet {
		switch {
		case res.Existing:
			fmt.Fprintln(stderr, "already in the store and verified")
		case res.SHA256 != "":
			fmt.Fprintf(stderr, "verified sha256 %s\n", res.SHA256)
		}
	}
	return res.Path, nil
}

func pullFailed(stderr io.Writer, err error) int {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "fastgen pull: interrupted: %v\n", err)
	} else {
		fmt.Fprintf(stderr, "fastgen pull: %v\n", err)
	}
	return exitFailure
}

// parseFlagsAnywhere lets flags follow positional arguments ("pull REPO
// --quiet"), which the flag package alone stops parsing at. It returns the
// positional arguments and parseFlags' status.
func parseFlagsAnywhere(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos []string
	for {
		if st := parseFlags(fs, args); st >= 0 {
			return nil, st
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, -1
		}
		// After an explicit "--" everything is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), -1
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
