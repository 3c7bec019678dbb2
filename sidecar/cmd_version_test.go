package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		out  []string
	}{
		{[]string{"version"}, exitOK, []string{"fastgen ", "go1.", "kernels: ", "devices: cpu"}},
		{[]string{"--version"}, exitOK, []string{"fastgen ", "kernels: "}},
		{[]string{"version", "extra"}, exitBadInput, nil},
	} {
		var out, errb bytes.Buffer
		if st := dispatch(c.args, &out, &errb); st != c.code {
			t.Fatalf("%v: exit %d, want %d; stderr %s", c.args, st, c.code, errb.String())
		}
		for _, w := range c.out {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: stdout %q lacks %q", c.args, out.String(), w)
			}
		}
	}
}
