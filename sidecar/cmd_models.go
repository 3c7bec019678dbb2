package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/fastgen/fastgen/sidecar/hub"
	"github.com/fastgen/fastgen/sidecar/store"
)

func init() {
	register("models", "list the models in the local store", runModels)
	register("rm", "remove a model from the local store", runRm)
}

// modelRow is one line of `fastgen models`, and its --json form.
type modelRow struct {
	store.Entry
	store.Info
}

func runModels(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("models", stderr)
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fastgen models [--json]\n\nLists the model store (%s, or $%s).\n\nflags:\n", storeDirForHelp(), store.EnvDir)
		fs.PrintDefaults()
	}
	pos, status := parseFlagsAnywhere(fs, args)
	if status >= 0 {
		return status
	}
	if len(pos) != 0 {
		fmt.Fprintf(stderr, "fastgen models: unexpected argument %q\n", pos[0])
		return exitBadInput
	}
	st, err := store.Open()
	if err != nil {
		fmt.Fprintf(stderr, "fastgen models: %v\n", err)
		return exitFailure
	}
	entries, err := st.List()
	if err != nil {
		fmt.Fprintf(stderr, "fastgen models: %v\n", err)
		return exitFailure
	}
	rows := make([]modelRow, len(entries))
	for i, e := range entries {
		rows[i].Entry = e
		// Non-GGUF files (llama2c checkpoints, tokenizers) simply have no
		// metadata columns; that is not an error worth reporting here.
		rows[i].Info, _ = store.Describe(e.Path)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintf(stderr, "fastgen models: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if len(rows) == 0 {
		fmt.Fprintf(stderr, "no models in %s; fetch one with 'fastgen pull REPO[:FILE]'\n", st.Root)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tARCHITECTURE\tQUANTIZATION\tCONTEXT")
	for _, r := range rows {
		ctx := "-"
		if r.ContextLength > 0 {
			ctx = strconv.FormatUint(r.ContextLength, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, hub.FormatBytes(r.Size), dash(r.Architecture), dash(r.Quantization), ctx)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "fastgen models: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func runRm(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rm", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fastgen rm NAME...\n\nRemoves models from the store; NAME is as 'fastgen models' shows it, or any\nunambiguous part of it (a file name, REPO:QUANT).")
	}
	names, status := parseFlagsAnywhere(fs, args)
	if status >= 0 {
		return status
	}
	if len(names) == 0 {
		fmt.Fprintln(stderr, "fastgen rm: want at least one model NAME")
		fs.Usage()
		return exitBadInput
	}
	st, err := store.Open()
	if err != nil {
		fmt.Fprintf(stderr, "fastgen rm: %v\n", err)
		return exitFailure
	}
	code := exitOK
	for _, n := range names {
		e, err := st.Remove(n)
		if err != nil {
			fmt.Fprintf(stderr, "fastgen rm: %v\n", err)
			code = exitFailure
			continue
		}
		fmt.Fprintf(stdout, "removed %s (%s)\n", e.Name, hub.FormatBytes(e.Size))
	}
	return code
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func storeDirForHelp() string {
	d, err := store.Dir()
	if err != nil {
		return "unknown: " + err.Error()
	}
	return d
}
