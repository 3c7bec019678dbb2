package kernels

import (
	"strings"
	"testing"
)

// TestPTXHasEveryKernel checks that the committed PTX matches fastgen.cu's
// list of kernels and targets the architecture it is picked for, so a stale
// or half-regenerated file fails here rather than on a GPU.
func TestPTXHasEveryKernel(t *testing.T) {
	for _, c := range []struct {
		major int
		arch  string
	}{{8, "sm_80"}, {9, "sm_90"}} {
		p := PTX(c.major, 0)
		if !strings.Contains(p, ".target "+c.arch) {
			t.Errorf("PTX for %d.x does not target %s", c.major, c.arch)
		}
		for _, n := range Names {
			if !strings.Contains(p, ".entry "+n+"(") {
				t.Errorf("%s PTX lacks kernel %s: run task kernels", c.arch, n)
			}
		}
	}
	if PTX(7, 5) != "" {
		t.Error("a pre-Ampere device must get no PTX")
	}
}
