package kvcache

import "testing"

func TestBudgetAt(t *testing.T) {
	for _, tc := range []struct {
		b    Budget
		t    int
		want int
	}{
		{Budget{Ratio: 0.3}, 10, 3},
		{Budget{Ratio: 0.3}, 11, 4}, // ceil(3.3)
		{Budget{Ratio: 0.3}, 1, 1},
		{Budget{Ratio: 0.3}, 0, 0},
		{Budget{Ratio: 0.5}, 8, 4},    // exact products must not round up
		{Budget{Ratio: 0.1}, 30, 3},   // 0.1·30 is 3.0000000000000004 in float64
		{Budget{Ratio: 0.7}, 100, 70}, // 0.7·100 is 70.00000000000001
		{Budget{Tokens: 5}, 2, 5},     // absolute budgets ignore t
		{Budget{Tokens: 5, Ratio: 1}, 100, 5},
		{Budget{}, 100, 0},
	} {
		if got := tc.b.At(tc.t); got != tc.want {
			t.Errorf("%+v.At(%d) = %d, want %d", tc.b, tc.t, got, tc.want)
		}
	}
}

func TestParseBudget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Budget
		bad  bool
	}{
		{in: "0.5", want: Budget{Ratio: 0.5}},
		{in: "1.0", want: Budget{Ratio: 1}},
		{in: "1", want: Budget{Tokens: 1}},
		{in: "256", want: Budget{Tokens: 256}},
		{in: "1e2", want: Budget{Tokens: 100}},
		{in: "2.5", bad: true},
		{in: "0", bad: true},
		{in: "-3", bad: true},
		{in: "NaN", bad: true},
		{in: "x", bad: true},
	} {
		got, err := ParseBudget(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseBudget(%q) = %+v, %v; want %+v, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestBaselinePolicy(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		budget Budget
		want   Policy
		name   string
	}{
		{ModeFull, Budget{Ratio: 0.5}, FullPolicy, "full"},
		{ModeLocal, Budget{Tokens: 64}, Policy{Keep: Local, Window: Budget{Tokens: 64}}, "local"},
		{ModeFrequent, Budget{Ratio: 0.4}, Policy{Keep: Frequent, Frequent: Budget{Ratio: 0.4}}, "frequent"},
		{ModeH2O, Budget{Tokens: 64}, Policy{Keep: Local | Frequent, Window: Budget{Tokens: 32}, Frequent: Budget{Tokens: 32}}, "frequent+local"},
		{ModeH2O, Budget{Ratio: 0.5}, Policy{Keep: Local | Frequent, Window: Budget{Ratio: 0.25}, Frequent: Budget{Ratio: 0.25}}, "frequent+local"},
		{ModeStreaming, Budget{Tokens: 12}, Policy{Keep: Sink | Local, Sinks: 4, Window: Budget{Tokens: 8}}, "local+sink"},
		{ModeRandom, Budget{Tokens: 7}, Policy{Keep: Random, Random: Budget{Tokens: 7}}, "random"},
	} {
		got, err := BaselinePolicy(tc.mode, tc.budget)
		if err != nil || got != tc.want {
			t.Errorf("BaselinePolicy(%s, %v) = %+v, %v; want %+v", tc.mode, tc.budget, got, err, tc.want)
		}
		if got.Name() != tc.name {
			t.Errorf("BaselinePolicy(%s).Name() = %q, want %q", tc.mode, got.Name(), tc.name)
		}
	}
	if _, err := BaselinePolicy("fastgen", Budget{Ratio: 0.5}); err == nil {
		t.Error("fastgen is not a fixed baseline, want an error")
	}
}

func TestPolicyName(t *testing.T) {
	// The spec's five FastGen names must come out of the components.
	for _, tc := range []struct {
		keep Component
		want string
	}{
		{Special, "special"},
		{Special | Punct, "special+punct"},
		{Special | Punct | Frequent, "special+punct+frequent"},
		{Special | Punct | Frequent | Local, "special+punct+frequent+local"},
		{Full | Special, "full"},
		{0, "none"},
	} {
		if got := (Policy{Keep: tc.keep}).Name(); got != tc.want {
			t.Errorf("Policy{Keep: %b}.Name() = %q, want %q", tc.keep, got, tc.want)
		}
	}
	for _, cn := range componentNames {
		c, err := ParseComponent(cn.name)
		if err != nil || c != cn.c {
			t.Errorf("ParseComponent(%q) = %v, %v", cn.name, c, err)
		}
	}
	if _, err := ParseComponent("recent"); err == nil {
		t.Error("ParseComponent accepted an unknown name")
	}
}

func TestParseDTypeAndScoreMode(t *testing.T) {
	for in, want := range map[string]DType{"f32": F32, "F16": F16} {
		if got, err := ParseDType(in); err != nil || got != want || got.String() != map[DType]string{F32: "f32", F16: "f16"}[want] {
			t.Errorf("ParseDType(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseDType("q8_0"); err == nil {
		t.Error("ParseDType accepted q8_0")
	}
	for in, want := range map[string]ScoreMode{"": ScoreCumulative, "cumulative": ScoreCumulative, "mean": ScoreMean} {
		if got, err := ParseScoreMode(in); err != nil || got != want {
			t.Errorf("ParseScoreMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseScoreMode("max"); err == nil {
		t.Error("ParseScoreMode accepted max")
	}
}
