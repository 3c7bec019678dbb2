//go:build !unix

package main

import "time"

// processCPU is unavailable here; per-CPU-second rates are left out.
func processCPU() time.Duration { return 0 }
