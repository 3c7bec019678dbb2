//go:build cuda

package main

import (
	"fmt"

	"github.com/fastgen/fastgen/sidecar/cuda"
	"github.com/fastgen/fastgen/sidecar/model"
)

// devices are the compute devices this build can use.
const devices = "cpu, cuda"

// deviceHelp documents --device in this build.
const deviceHelp = "compute device: cpu or cuda (the first GPU)"

// newBackend opens the --device backend; nil means the engine's CPU default.
func newBackend(device string) (model.Backend, error) {
	switch device {
	case "", "cpu":
		return nil, nil
	case "cuda":
		return cuda.New(cuda.Options{})
	}
	return nil, fmt.Errorf("unknown device %q (want cpu or cuda)", device)
}
