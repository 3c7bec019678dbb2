package store

import (
	"fmt"
	"strings"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Info is what `fastgen models` shows about a stored file beyond its size.
// Fields are empty when the file is not GGUF or does not say.
type Info struct {
	Architecture  string `json:"architecture,omitempty"`
	Quantization  string `json:"quantization,omitempty"`
	ContextLength uint64 `json:"context_length,omitempty"`
}

// Describe reads a model's GGUF header. Only the header pages are touched
// (the reader maps the file), so listing a store of large models is cheap.
func Describe(path string) (Info, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	var info Info
	info.Architecture, _ = f.String("general.architecture")
	if info.Architecture != "" {
		info.ContextLength, _ = f.Uint(info.Architecture + ".context_length")
	}
	if ft, ok := f.Uint("general.file_type"); ok {
		info.Quantization = FileTypeName(ft)
	} else {
		info.Quantization = dominantType(f)
	}
	return info, nil
}

// FileTypeName names a general.file_type value (llama.cpp's llama_ftype,
// which is a file-level label, not a tensor type id: 15 is Q4_K_M).
func FileTypeName(ft uint64) string {
	if int(ft) < len(fileTypes) && ft < 1<<16 && fileTypes[ft] != "" {
		return fileTypes[ft]
	}
	return fmt.Sprintf("file type %d", ft)
}

var fileTypes = [...]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
	10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
	16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
	22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
	28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
	36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

// dominantType labels a file without general.file_type by the tensor type
// holding most of its bytes among matrices, which is what a quantization
// label means; vectors (norms, biases) stay F32 in every file and are skipped.
func dominantType(f *gguf.File) string {
	bytes := map[tensor.DType]int{}
	for _, t := range f.Tensors {
		if len(t.Dims) >= 2 {
			bytes[t.Type] += len(t.Data)
		}
	}
	best, most := tensor.DType(0), -1
	for dt, n := range bytes {
		if n > most || n == most && dt < best {
			best, most = dt, n
		}
	}
	if most < 0 {
		return ""
	}
	return strings.ToUpper(best.String())
}
