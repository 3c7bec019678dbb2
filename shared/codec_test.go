package shared

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// samples holds one fully populated value of every frame type, keyed by a
// name used for golden files.
func samples() map[string]Frame {
	return map[string]Frame{
		"generate": &Generate{
			ID: "c1", Prompt: "Once upon a time", MaxTokens: 64,
			Temperature: Ptr(0.7), TopP: Ptr(0.9), Seed: Ptr(int64(42)),
			KV:      &KV{Mode: ModeFastGen, Threshold: Ptr(0.95)},
			Compare: true, CompareWith: ModeH2O, TopKAlternatives: 5,
		},
		"generate_messages": &Generate{
			ID: "c2", Messages: []Message{{Role: RoleSystem, Content: "Be brief."}, {Role: RoleUser, Content: "Hi"}},
			Temperature: Ptr(0.0),
		},
		"cancel": &Cancel{ID: "c1"},
		"ping":   &Ping{},
		"hello": &Hello{
			Protocol: Protocol,
			Model:    ModelInfo{Name: "stories260K", NLayers: 5, NHeads: 8, NKVHeads: 4, HeadDim: 8, NCtx: 512, VocabSize: 512},
			Policies: Policies, KVModes: KVModes,
		},
		"progress": &Progress{ID: "c1", Processed: 32, Total: 100},
		"profile": &Profile{
			ID: "c1", Stream: ModeFastGen, Threshold: 0.98,
			Heads: []HeadProfile{{
				Layer: 0, KVHead: 1, Policy: PolicySpecialPunct,
				Recovery: map[string]float64{PolicySpecial: 0.5, PolicySpecialPunct: 0.985, PolicyFull: 1},
				Mass:     Mass{Special: 0.5, Punct: 0.25, Local: 0.125, Other: 0.125},
			}},
			PromptTokens: []PromptToken{{ID: 1, Text: "<s>", Class: ClassSpecial}, {ID: 29889, Text: ".", Class: ClassPunct}, {ID: 450, Text: " The", Class: ClassNormal}},
			LocalWindow:  1, ProfileMS: 0.25,
		},
		"token": &Token{
			ID: "c1", Stream: ModeFastGen, Index: 3, Token: 450, Text: " The", Logprob: -0.5,
			Top:   []Alternative{{Token: 450, Text: " The", Logprob: -0.5}, {Token: 319, Text: " A", Logprob: -1.25}},
			Class: ClassNormal, KL: Ptr(0.001),
		},
		"occupancy": &Occupancy{
			ID: "c1", Stream: ModeFastGen, Index: 3,
			Kept:    []uint32{3, 4, 100000, 7},
			Evicted: []Eviction{{Head: 2, Positions: []uint32{0, 5}}},
			KVBytes: 1 << 20, KVBytesFull: 1 << 22,
		},
		"stats": &Stats{
			ID: "c1", Stream: ModeFastGen, PrefillTokS: 1000, DecodeTokS: 50.5, TTFTMS: 12.5,
			PrunedRatio: 0.4, KVBytes: 600, KVBytesFull: 1000, AttnLoss: 0.02,
			PromptTokens: 10, GeneratedTokens: 20, Agreement: Ptr(0.95), KL: Ptr(0.01),
		},
		"done":  &Done{ID: "c1", Stream: ModeFull, FinishReason: FinishLength},
		"error": &Error{ID: "c1", Code: CodeBusy, Message: "another request is running"},
		"pong":  &Pong{},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, f := range samples() {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want := reflect.New(reflect.TypeOf(f).Elem())
			want.Elem().Set(reflect.ValueOf(f).Elem())
			want.Elem().FieldByName("Type").SetString(f.FrameType())
			if !reflect.DeepEqual(got, want.Interface()) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, want.Interface())
			}
			if reflect.ValueOf(f).Elem().FieldByName("Type").String() != "" {
				t.Fatal("Encode mutated its argument")
			}
		})
	}
}

// TestEncodeValue checks that frames passed by value encode like pointers.
func TestEncodeValue(t *testing.T) {
	a, err := Encode(Cancel{ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Encode(&Cancel{ID: "x"})
	if !bytes.Equal(a, b) {
		t.Fatal("value and pointer encodings differ")
	}
	if _, err := Encode((*Cancel)(nil)); err == nil {
		t.Fatal("nil pointer encoded")
	}
}

// TestGolden pins the exact wire bytes of a few frames, so a changed tag or
// encoder option shows up as a diff instead of silently breaking other
// readers. Run with -update after an intended change.
func TestGolden(t *testing.T) {
	s := samples()
	for _, name := range []string{"generate", "hello", "profile", "token", "occupancy", "stats", "done"} {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(s[name])
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".msgpack")
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("wire bytes of %s changed:\n got %x\nwant %x", name, b, want)
			}
		})
	}
}

// TestFieldNames decodes the encoded frames generically and checks the key
// names other tools rely on.
func TestFieldNames(t *testing.T) {
	tests := []struct {
		frame string
		keys  []string
	}{
		{"generate", []string{"type", "id", "prompt", "max_tokens", "temperature", "top_p", "seed", "kv", "compare", "compare_with", "top_k_alternatives"}},
		{"generate_messages", []string{"type", "id", "messages"}},
		{"hello", []string{"type", "protocol", "model", "policies"}},
		{"progress", []string{"type", "id", "processed", "total"}},
		{"profile", []string{"type", "id", "stream", "threshold", "heads", "prompt_tokens"}},
		{"token", []string{"type", "id", "stream", "index", "token", "text", "logprob", "top"}},
		{"occupancy", []string{"type", "id", "stream", "index", "kept", "evicted", "kv_bytes", "kv_bytes_full"}},
		{"stats", []string{"type", "id", "stream", "prefill_tok_s", "decode_tok_s", "ttft_ms", "pruned_ratio", "kv_bytes", "kv_bytes_full", "attn_loss", "prompt_tokens", "generated_tokens", "agreement", "kl"}},
		{"done", []string{"type", "id", "stream", "finish_reason"}},
		{"error", []string{"type", "id", "code", "message"}},
	}
	s := samples()
	for _, tt := range tests {
		b, err := Encode(s[tt.frame])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := msgpack.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range tt.keys {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: missing key %q in %v", tt.frame, k, m)
			}
		}
		if m["type"] != s[tt.frame].FrameType() {
			t.Errorf("%s: type = %v", tt.frame, m["type"])
		}
	}
	// Nested names.
	b, _ := Encode(s["profile"])
	var p map[string]any
	_ = msgpack.Unmarshal(b, &p)
	head := p["heads"].([]any)[0].(map[string]any)
	for _, k := range []string{"layer", "kv_head", "policy", "recovery", "mass"} {
		if _, ok := head[k]; !ok {
			t.Errorf("profile head: missing %q", k)
		}
	}
	mass := head["mass"].(map[string]any)
	for _, k := range []string{"special", "punct", "local", "other"} {
		if _, ok := mass[k]; !ok {
			t.Errorf("profile mass: missing %q", k)
		}
	}
}

// raw encodes an arbitrary value, for hand-built bad frames.
func raw(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nested(depth int) any {
	var v any = "leaf"
	for i := 0; i < depth; i++ {
		v = []any{v}
	}
	return v
}

func TestDecodeBad(t *testing.T) {
	huge := make([]byte, MaxClientFrameBytes+1)
	huge[0] = 0x80
	tests := []struct {
		name   string
		in     []byte
		client bool
		check  func(error) bool
	}{
		{"empty", nil, true, isDecodeErr},
		{"not msgpack", []byte("hello world"), true, isDecodeErr},
		{"json", []byte(`{"type":"ping"}`), true, isDecodeErr},
		{"array top level", raw(t, []any{"ping"}), true, isDecodeErr},
		{"string top level", raw(t, "ping"), false, isDecodeErr},
		{"no type", raw(t, map[string]any{"id": "x"}), true, isDecodeErr},
		{"type not string", raw(t, map[string]any{"type": 3}), true, isDecodeErr},
		{"int key", raw(t, map[any]any{1: "x", "type": "ping"}), true, isDecodeErr},
		{"unknown type", raw(t, map[string]any{"type": "launch"}), false, isUnknown},
		{"server frame to server", raw(t, map[string]any{"type": "token", "id": "x"}), true, isUnknown},
		{"wrong field type", raw(t, map[string]any{"type": "generate", "id": "x", "prompt": "p", "max_tokens": "many"}), true, isDecodeErr},
		{"wrong nested type", raw(t, map[string]any{"type": "generate", "id": "x", "prompt": "p", "kv": "fastgen"}), true, isDecodeErr},
		{"id is int", raw(t, map[string]any{"type": "cancel", "id": 7}), true, isDecodeErr},
		{"kept not array", raw(t, map[string]any{"type": "occupancy", "kept": "abc"}), false, isDecodeErr},
		{"truncated", raw(t, map[string]any{"type": "cancel", "id": "abcdef"})[:10], true, isDecodeErr},
		{"trailing bytes", append(raw(t, map[string]any{"type": "ping"}), 0xc0), true, isDecodeErr},
		{"invalid code", []byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xc1}, true, isDecodeErr},
		{"huge declared array", []byte{0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff}, true, isDecodeErr},
		{"huge declared string", []byte{0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff}, true, isDecodeErr},
		{"ext type", []byte{0x82, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'i', 'n', 'g', 0xa1, 'x', 0xd4, 0x01, 0x00}, true, isDecodeErr},
		{"too large", huge, true, func(err error) bool { return errors.Is(err, ErrTooLarge) }},
		{"too deep", raw(t, map[string]any{"type": "ping", "x": nested(20)}), true, func(err error) bool { return errors.Is(err, ErrTooDeep) }},
		{"duplicate type", []byte{0x82, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'i', 'n', 'g', 0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'o', 'n', 'g'}, false, isDecodeErr},
		{"invalid generate", raw(t, map[string]any{"type": "generate", "id": "x"}), true, isValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := Decode
			if tt.client {
				dec = DecodeClient
			}
			f, err := dec(tt.in)
			if err == nil {
				t.Fatalf("decoded %#v, want error", f)
			}
			if !tt.check(err) {
				t.Fatalf("wrong error kind: %T %v", err, err)
			}
			if f != nil {
				t.Fatal("frame returned with an error")
			}
		})
	}
}

func isDecodeErr(err error) bool {
	var e *DecodeError
	return errors.As(err, &e) && ErrorCode(err) != ""
}

func isUnknown(err error) bool {
	var e *UnknownTypeError
	return errors.As(err, &e) && ErrorCode(err) == CodeBadRequest
}

func isValidation(err error) bool {
	var e *ValidationError
	return errors.As(err, &e) && ErrorCode(err) == CodeBadRequest
}

func TestDecodeClientAccepts(t *testing.T) {
	s := samples()
	for _, name := range []string{"generate", "generate_messages", "cancel", "ping"} {
		b, _ := Encode(s[name])
		if _, err := DecodeClient(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Forward compatibility: unknown keys are ignored and the depth limit
	// leaves room for them.
	b := raw(t, map[string]any{"type": "cancel", "id": "x", "future": map[string]any{"a": nested(10)}})
	f, err := DecodeClient(b)
	if err != nil {
		t.Fatal(err)
	}
	if c := f.(*Cancel); c.ID != "x" {
		t.Fatalf("got %+v", c)
	}
	// Integer encodings of floats are accepted: other tools write 1 for 1.0.
	b = raw(t, map[string]any{"type": "generate", "id": "x", "prompt": "p", "top_p": 1, "temperature": 0})
	if _, err := DecodeClient(b); err != nil {
		t.Fatal(err)
	}
	if ErrorCode(nil) != "" || ErrorCode(errors.New("x")) != CodeInternal {
		t.Fatal("ErrorCode fallbacks")
	}
}

func TestValidate(t *testing.T) {
	ok := func() Generate { return Generate{ID: "a", Prompt: "p"} }
	tests := []struct {
		name  string
		edit  func(*Generate)
		field string // "" = valid
	}{
		{"minimal", func(*Generate) {}, ""},
		{"all modes", func(g *Generate) { g.KV = &KV{Mode: ModeStreaming, Budget: 0.5}; g.Compare = true }, ""},
		{"no id", func(g *Generate) { g.ID = "" }, "id"},
		{"long id", func(g *Generate) { g.ID = strings.Repeat("x", MaxIDLen+1) }, "id"},
		{"neither", func(g *Generate) { g.Prompt = "" }, "prompt"},
		{"both", func(g *Generate) { g.Messages = []Message{{Role: RoleUser, Content: "x"}} }, "prompt"},
		{"bad role", func(g *Generate) { g.Prompt = ""; g.Messages = []Message{{Role: "tool", Content: "x"}} }, "messages[0].role"},
		{"negative max", func(g *Generate) { g.MaxTokens = -1 }, "max_tokens"},
		{"zero max", func(g *Generate) { g.MaxTokens = 0 }, ""},
		{"negative temp", func(g *Generate) { g.Temperature = Ptr(-0.1) }, "temperature"},
		{"zero temp", func(g *Generate) { g.Temperature = Ptr(0.0) }, ""},
		{"top_p zero", func(g *Generate) { g.TopP = Ptr(0.0) }, "top_p"},
		{"top_p one", func(g *Generate) { g.TopP = Ptr(1.0) }, ""},
		{"top_p over", func(g *Generate) { g.TopP = Ptr(1.01) }, "top_p"},
		{"threshold over", func(g *Generate) { g.KV = &KV{Threshold: Ptr(1.5)} }, "kv.threshold"},
		{"threshold zero", func(g *Generate) { g.KV = &KV{Threshold: Ptr(0.0)} }, ""},
		{"unknown mode", func(g *Generate) { g.KV = &KV{Mode: "lru"} }, "kv.mode"},
		{"budget", func(g *Generate) { g.KV = &KV{Mode: ModeLocal, Budget: 2} }, "kv.budget"},
		{"bad baseline", func(g *Generate) { g.Compare = true; g.CompareWith = "lru" }, "compare_with"},
		{"self compare", func(g *Generate) { g.Compare = true; g.KV = &KV{Mode: ModeFull} }, "compare_with"},
		{"top k", func(g *Generate) { g.TopKAlternatives = MaxTopKAlternatives + 1 }, "top_k_alternatives"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := ok()
			tt.edit(&g)
			err := g.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Fatalf("got %v, want a problem with %s", err, tt.field)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	g := Generate{ID: "a", Prompt: "p", Compare: true}
	if g.Mode() != ModeFastGen || g.Threshold() != DefaultThreshold || g.Baseline() != ModeFull {
		t.Fatal("defaults")
	}
	if s := g.Streams(); !reflect.DeepEqual(s, []string{"fastgen", "full"}) {
		t.Fatal(s)
	}
	if PolicyIndex(PolicyFull) != 4 || PolicyIndex("x") != -1 {
		t.Fatal("PolicyIndex")
	}
}

func FuzzDecodeClient(f *testing.F) {
	for _, fr := range samples() {
		b, _ := Encode(fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeClient(b)
		if err != nil {
			if fr != nil {
				t.Fatal("frame with error")
			}
			return
		}
		switch fr.(type) {
		case *Generate, *Cancel, *Ping:
		default:
			t.Fatalf("DecodeClient returned %T", fr)
		}
		// What was accepted must survive a re-encode unchanged.
		b2, err := Encode(fr)
		if err != nil {
			t.Fatal(err)
		}
		fr2, err := DecodeClient(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		b3, err := Encode(fr2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("re-encode differs: %x vs %x (%v)", b2, b3, err)
		}
	})
}

// Map iteration order is random; the encoding must not be.
func TestEncodeDeterministic(t *testing.T) {
	rec := Recovery{}
	for _, p := range Policies {
		rec[p] = float64(len(p))
	}
	f := &Profile{ID: "x", Heads: []HeadProfile{{Recovery: rec}}}
	first, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		b, _ := Encode(f)
		if !bytes.Equal(b, first) {
			t.Fatal("encoding depends on map order")
		}
	}
	// A nil map stays nil across the wire.
	b, _ := Encode(&Profile{Heads: []HeadProfile{{}}})
	g, err := Decode(b)
	if err != nil || g.(*Profile).Heads[0].Recovery != nil {
		t.Fatal(err)
	}
}
