package main

import (
	"context"
	"fmt"
	"io"

	"github.com/fastgen/fastgen/sidecar/hub"
	"github.com/fastgen/fastgen/sidecar/store"
)

// DefaultModel is what `serve` runs when given no model: the tiny real
// TinyStories model, small enough to pull on first run.
const DefaultModel = "ggml-org/models:tinyllamas/stories260K.gguf"

// defaultModel finds the default model in the store, or pulls it when
// online. Its error says plainly what to do instead.
func defaultModel(ctx context.Context, stderr io.Writer) (string, error) {
	if path, err := store.Resolve(DefaultModel); err == nil {
		return path, nil
	}
	ref, err := hub.ParseRef(DefaultModel)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "fastgen: no model given; pulling the default model %s on first run\n", DefaultModel)
	path, err := pullModel(ctx, ref, hub.DefaultRevision, false, stderr)
	if err != nil {
		return "", fmt.Errorf("no model given, and the default model %s is not in the local store and could not be downloaded (%v).\n"+
			"  pass --model PATH (a .gguf file, a llama2.c .bin, or a name from 'fastgen models'), set FASTGEN_MODEL=PATH,\n"+
			"  or run 'fastgen pull %s' once online", DefaultModel, err, DefaultModel)
	}
	return path, nil
}
