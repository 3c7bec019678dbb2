package tensor

// ExpSum replaces x[i] by e^(x[i]−shift) and returns their sum, with the
// same vector exp as Softmax (about 2 ulp in float32). FastGen's profiler
// sums recomputed attention probabilities with it.
func ExpSum(x []float32, shift float32) float32 {
	if len(x) == 0 {
		return 0
	}
	return kern.expSum(x, shift)
}
