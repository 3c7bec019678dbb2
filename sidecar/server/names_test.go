package server

import (
	"slices"
	"testing"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// TestWireNamesMatchTheEngine: shared/ depends on nothing of ours (the wasm
// client imports it), so it spells the policy and mode names itself; this
// pins those spellings to the engine's single definitions.
func TestWireNamesMatchTheEngine(t *testing.T) {
	want := []string{"special", "special+punct", "special+punct+frequent", "special+punct+frequent+local", "full"}
	if !slices.Equal(fastgen.PolicyNames, want) {
		t.Errorf("fastgen.PolicyNames = %v, want the spec's %v", fastgen.PolicyNames, want)
	}
	if !slices.Equal(shared.Policies, fastgen.PolicyNames) {
		t.Errorf("shared.Policies = %v, engine %v", shared.Policies, fastgen.PolicyNames)
	}
	a, b := slices.Clone(shared.KVModes), slices.Clone(kvcache.Modes)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Errorf("shared.KVModes = %v, kvcache.Modes = %v", shared.KVModes, kvcache.Modes)
	}
}
