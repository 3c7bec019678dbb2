package model

import (
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Backend is a device that runs a model's forward passes: the pure-Go CPU
// backend here, CUDA in the cuda build (sidecar/cuda). The KV cache's policy
// decisions stay in kvcache whatever the device, so every backend compresses
// the same way.
type Backend interface {
	// Name is a short name for logs and flags ("cpu", "cuda").
	Name() string
	// NewRunner prepares one sequence's working memory for m.
	NewRunner(m *Model) (Runner, error)
	Close() error
}

// Runner runs one sequence's forward passes; one goroutine at a time.
type Runner interface {
	Forward(cache *kvcache.Cache, b Batch) ([]float32, error)
}

// CPU runs forward passes on a pool of CPU threads.
type CPU struct {
	Pool *tensor.Pool
}

// NewCPU starts a CPU backend with threads workers (0 = every core).
func NewCPU(threads int) *CPU { return &CPU{Pool: tensor.NewPool(threads)} }

func (c *CPU) Name() string { return "cpu" }

func (c *CPU) NewRunner(m *Model) (Runner, error) { return NewState(m, c.Pool), nil }

func (c *CPU) Close() error {
	c.Pool.Close()
	return nil
}
