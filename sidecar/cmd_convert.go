package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fastgen/fastgen/sidecar/convert"
	"github.com/fastgen/fastgen/sidecar/model"
)

func init() {
	register("convert", "convert a llama2.c checkpoint to GGUF", runConvert)
}

func runConvert(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("convert", stderr)
	tok := fs.String("tokenizer", "", "llama2.c tokenizer.bin (required)")
	out := fs.String("o", "", "output GGUF file (required)")
	if len(args) == 0 || args[0] != "llama2c" {
		fmt.Fprintln(stderr, "usage: fastgen convert llama2c IN.bin --tokenizer tok.bin -o OUT.gguf")
		return exitBadInput
	}
	pos, st := parseFlagsAnywhere(fs, args[1:])
	if st >= 0 {
		return st
	}
	if len(pos) != 1 || *tok == "" || *out == "" {
		fmt.Fprintln(stderr, "usage: fastgen convert llama2c IN.bin --tokenizer tok.bin -o OUT.gguf")
		return exitBadInput
	}
	if err := convert.Llama2c(pos[0], *tok, *out); err != nil {
		fmt.Fprintln(stderr, "fastgen convert:", err)
		if model.IsBadModel(err) || errors.Is(err, os.ErrNotExist) {
			return exitBadInput
		}
		return exitFailure
	}
	fmt.Fprintln(stdout, *out)
	return exitOK
}
