package cuda

import (
	"fmt"
	"io"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/llama2c"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// hostWeights are a model's tensors as host views of its file, by the GGUF
// names model.Load uses, for uploading to the device. model.Model keeps its
// weights private, so the backend reopens the file (an mmap: the pages are
// shared with the model's).
type hostWeights struct {
	embed, output *tensor.Matrix
	outNorm       []float32
	layers        []hostLayer
	closer        io.Closer
}

type hostLayer struct {
	attnNorm, ffnNorm []float32
	wq, wk, wv, wo    *tensor.Matrix
	bq, bk, bv        []float32
	gate, up, down    *tensor.Matrix
}

func openWeights(m *model.Model) (*hostWeights, error) {
	var (
		src    func(string) (*tensor.Matrix, bool)
		closer io.Closer
	)
	if f, err := gguf.Open(m.Path); err == nil {
		closer = f
		src = func(name string) (*tensor.Matrix, bool) {
			if _, ok := f.Tensor(name); !ok {
				return nil, false
			}
			mat, err := f.Matrix(name)
			return mat, err == nil
		}
	} else {
		ck, err2 := llama2c.Open(m.Path)
		if err2 != nil {
			return nil, fmt.Errorf("cuda: reopen %s: %v", m.Path, err)
		}
		closer, src = ck, ck.Tensor
	}
	w, err := weightsFrom(m.Config, src)
	if err != nil {
		closer.Close()
		return nil, err
	}
	w.closer = closer
	return w, nil
}

func weightsFrom(c model.Config, src func(string) (*tensor.Matrix, bool)) (*hostWeights, error) {
	var missing error
	mat := func(name string) *tensor.Matrix {
		m, ok := src(name)
		if !ok && missing == nil {
			missing = fmt.Errorf("cuda: model lacks tensor %q", name)
		}
		return m
	}
	vec := func(name string) []float32 {
		m, ok := src(name)
		if !ok {
			return nil
		}
		out := make([]float32, m.Cols*m.Rows)
		for r := 0; r < m.Rows; r++ {
			m.Row(r, out[r*m.Cols:(r+1)*m.Cols])
		}
		return out
	}
	w := &hostWeights{embed: mat("token_embd.weight"), outNorm: vec("output_norm.weight")}
	if o, ok := src("output.weight"); ok {
		w.output = o
	} else {
		w.output = w.embed
	}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		w.layers = append(w.layers, hostLayer{
			attnNorm: vec(p + "attn_norm.weight"), ffnNorm: vec(p + "ffn_norm.weight"),
			wq: mat(p + "attn_q.weight"), wk: mat(p + "attn_k.weight"), wv: mat(p + "attn_v.weight"),
			wo: mat(p + "attn_output.weight"), gate: mat(p + "ffn_gate.weight"), up: mat(p + "ffn_up.weight"),
			down: mat(p + "ffn_down.weight"),
			bq:   vec(p + "attn_q.bias"), bk: vec(p + "attn_k.bias"), bv: vec(p + "attn_v.bias"),
		})
	}
	if missing != nil {
		return nil, missing
	}
	return w, nil
}

// supported reports whether the kernels read a weight type.
func supported(t tensor.DType) bool {
	switch t {
	case tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K:
		return true
	}
	return false
}
