// Command fastgen runs Llama-family models with the FastGen adaptive KV cache:
// generate, profile, eval, bench, serve, and manage local model files.
//
// Each subcommand lives in its own cmd_*.go file and registers itself in
// init, so commands stay independent and main stays a dispatcher.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. run returns the process exit status.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string, stdout, stderr io.Writer) int) {
	if _, dup := commands[name]; dup {
		panic("fastgen: command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

// Exit statuses shared by every command.
const (
	exitOK       = 0
	exitFailure  = 1 // runtime failure
	exitBadInput = 2 // bad flags, bad model file, bad prompt
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitBadInput
		}
		return exitOK
	}
	name := args[0]
	if name == "--version" {
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "fastgen: unknown command %q\n\n", name)
		usage(stderr)
		return exitBadInput
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fastgen <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'fastgen <command> -h' for a command's flags.")
}

// newFlags returns a FlagSet that reports errors instead of exiting, so every
// command maps bad flags to exitBadInput the same way.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fastgen "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and returns the exit status to use when parsing
// stopped the command (help requested or a bad flag), or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitBadInput
	}
	return -1
}

// flagSet reports whether the command line gave flag name explicitly.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
