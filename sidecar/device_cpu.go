//go:build !cuda

package main

import (
	"errors"
	"fmt"

	"github.com/fastgen/fastgen/sidecar/model"
)

// devices are the compute devices this build can use.
const devices = "cpu"

// deviceHelp documents --device in this build.
const deviceHelp = "compute device: cpu (this binary was built without CUDA; task build:cuda builds one with it)"

// newBackend opens the --device backend; nil means the engine's CPU default.
func newBackend(device string) (model.Backend, error) {
	switch device {
	case "", "cpu":
		return nil, nil
	case "cuda":
		return nil, errors.New("this binary was built without CUDA: build with task build:cuda")
	}
	return nil, fmt.Errorf("unknown device %q (want cpu or cuda)", device)
}
