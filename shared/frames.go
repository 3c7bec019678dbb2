// Package shared is the fastgen wire protocol: the msgpack frames the server
// and the browser client exchange over the /v1/ws WebSocket.
//
// It is defined once and imported by both ends (the server natively, the
// client as GOOS=js GOARCH=wasm), so the two can only disagree through a
// version bump of Protocol. Field names are part of the contract and are read
// by other tools: fields may be added, never renamed. docs/protocol.md is the
// prose description of the same frames.
package shared

import (
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

// Protocol is the WebSocket subprotocol and the value of Hello.Protocol.
const Protocol = "fastgen.v1"

// Frame types, the value of every frame's "type" key.
const (
	// Client → server.
	TypeGenerate = "generate"
	TypeCancel   = "cancel"
	TypePing     = "ping"

	// Server → client.
	TypeHello     = "hello"
	TypeProgress  = "progress"
	TypeProfile   = "profile"
	TypeToken     = "token"
	TypeOccupancy = "occupancy"
	TypeStats     = "stats"
	TypeDone      = "done"
	TypeError     = "error"
	TypePong      = "pong"
)

// FastGen's five policies (the paper's Eq. 2), cheapest first. Each is a
// superset of the one before, so profiling picks the first that recovers T.
const (
	PolicySpecial                   = "special"
	PolicySpecialPunct              = "special+punct"
	PolicySpecialPunctFrequent      = "special+punct+frequent"
	PolicySpecialPunctFrequentLocal = "special+punct+frequent+local"
	PolicyFull                      = "full"
)

// Policies lists the policy names in the order profiling tries them; a
// policy's index here is its rank in cost.
var Policies = []string{
	PolicySpecial,
	PolicySpecialPunct,
	PolicySpecialPunctFrequent,
	PolicySpecialPunctFrequentLocal,
	PolicyFull,
}

// PolicyIndex returns the rank of a policy name in Policies, or -1.
func PolicyIndex(name string) int {
	for i, p := range Policies {
		if p == name {
			return i
		}
	}
	return -1
}

// KV cache modes a generate request may ask for. Every mode but fastgen is a
// fixed policy applied to all heads; they double as stream names.
const (
	ModeFastGen   = "fastgen"
	ModeFull      = "full"
	ModeLocal     = "local"
	ModeFrequent  = "frequent"
	ModeH2O       = "h2o"
	ModeStreaming = "streaming"
	ModeRandom    = "random"
)

// KVModes lists every accepted KV mode.
var KVModes = []string{ModeFastGen, ModeFull, ModeLocal, ModeFrequent, ModeH2O, ModeStreaming, ModeRandom}

// DefaultThreshold is the paper's near-lossless recovery threshold T.
const DefaultThreshold = 0.98

// Finish reasons carried by Done.
const (
	FinishStop      = "stop"
	FinishLength    = "length"
	FinishCancelled = "cancelled"
	FinishError     = "error"
)

// Error codes carried by Error.
const (
	CodeBadRequest   = "bad_request"
	CodeBusy         = "busy"
	CodeTooLong      = "too_long"
	CodeInternal     = "internal"
	CodeUnauthorized = "unauthorized"
	CodeCancelled    = "cancelled"
	CodeNotFound     = "not_found"
)

// Token classes used in Profile.PromptTokens and Token.Class.
const (
	ClassSpecial = "special"
	ClassPunct   = "punct"
	ClassNormal  = "normal"
)

// Chat roles accepted in Generate.Messages.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Frame is implemented by every frame struct. FrameType is the value Encode
// writes into the "type" key, so callers never set Type by hand.
type Frame interface {
	FrameType() string
}

// ---- client → server ----

// Message is one chat turn of a multi-turn request.
type Message struct {
	Role    string `msgpack:"role"`
	Content string `msgpack:"content"`
}

// KV selects the cache mode of a request. Zero values mean the server's
// defaults, so a bare {"mode":"fastgen"} is a complete request.
type KV struct {
	Mode string `msgpack:"mode,omitempty" json:"mode,omitempty"`
	// Threshold is FastGen's recovery threshold T; nil means DefaultThreshold.
	Threshold *float64 `msgpack:"threshold,omitempty" json:"threshold,omitempty"`
	// Budget is the share of the current length each head of a fixed
	// baseline keeps, in (0,1]; 0 lets the server pick it (for comparisons it
	// matches the FastGen run's realised pruned ratio).
	Budget float64 `msgpack:"budget,omitempty" json:"budget,omitempty"`
	// LocalRatio and FrequentRatio are r_l and r_f; 0 means the paper's 0.3.
	LocalRatio    float64 `msgpack:"local_ratio,omitempty" json:"local_ratio,omitempty"`
	FrequentRatio float64 `msgpack:"frequent_ratio,omitempty" json:"frequent_ratio,omitempty"`
}

// Generate starts one request. Exactly one of Prompt and Messages is set.
// Optional sampling parameters are pointers because their zero values are
// meaningful (temperature 0 is greedy) and must differ from "absent".
type Generate struct {
	Type        string    `msgpack:"type"`
	ID          string    `msgpack:"id"`
	Prompt      string    `msgpack:"prompt,omitempty"`
	Messages    []Message `msgpack:"messages,omitempty"`
	MaxTokens   int       `msgpack:"max_tokens,omitempty"`
	Temperature *float64  `msgpack:"temperature,omitempty"`
	TopP        *float64  `msgpack:"top_p,omitempty"`
	Seed        *int64    `msgpack:"seed,omitempty"`
	KV          *KV       `msgpack:"kv,omitempty"`
	// Compare runs a second stream with the CompareWith cache (default
	// "full") on the same prompt and seed, interleaved on the same socket.
	Compare          bool   `msgpack:"compare,omitempty"`
	CompareWith      string `msgpack:"compare_with,omitempty"`
	TopKAlternatives int    `msgpack:"top_k_alternatives,omitempty"`
}

// Cancel stops the request with the given id; the server answers with its
// Done frames (finish_reason "cancelled").
type Cancel struct {
	Type string `msgpack:"type"`
	ID   string `msgpack:"id"`
}

// Ping asks for a Pong; clients use it to detect dead connections.
type Ping struct {
	Type string `msgpack:"type"`
}

// ---- server → client ----

// ModelInfo describes the loaded model's shape; the client sizes its policy
// grid from NLayers × NKVHeads.
type ModelInfo struct {
	Name      string `msgpack:"name"`
	NLayers   int    `msgpack:"n_layers"`
	NHeads    int    `msgpack:"n_heads"`
	NKVHeads  int    `msgpack:"n_kv_heads"`
	HeadDim   int    `msgpack:"head_dim"`
	NCtx      int    `msgpack:"n_ctx"`
	VocabSize int    `msgpack:"vocab_size"`
}

// Hello is the first frame on every connection.
type Hello struct {
	Type     string    `msgpack:"type"`
	Protocol string    `msgpack:"protocol"`
	Model    ModelInfo `msgpack:"model"`
	Policies []string  `msgpack:"policies"`
	KVModes  []string  `msgpack:"kv_modes,omitempty"`
}

// Progress reports prefill progress in prompt tokens.
type Progress struct {
	Type      string `msgpack:"type"`
	ID        string `msgpack:"id"`
	Processed int    `msgpack:"processed"`
	Total     int    `msgpack:"total"`
}

// Mass splits a head's prompt attention by where it lands (the paper's
// Fig. 4); the four shares sum to about 1.
type Mass struct {
	Special float64 `msgpack:"special"`
	Punct   float64 `msgpack:"punct"`
	Local   float64 `msgpack:"local"`
	Other   float64 `msgpack:"other"`
}

// HeadProfile is the profiling outcome of one (layer, KV head).
type HeadProfile struct {
	Layer  int    `msgpack:"layer"`
	KVHead int    `msgpack:"kv_head"`
	Policy string `msgpack:"policy"`
	// Recovery maps each policy name to the attention mass it recovers.
	Recovery Recovery `msgpack:"recovery"`
	Mass     Mass     `msgpack:"mass"`
}

// Recovery maps policy names to recovered attention mass. It is its own
// type only to encode with sorted keys: msgpack's encoder sorts nothing but
// a few fixed map types, and equal frames must give equal bytes.
type Recovery map[string]float64

// EncodeMsgpack writes the map with its keys in sorted order.
func (r Recovery) EncodeMsgpack(enc *msgpack.Encoder) error {
	if r == nil {
		return enc.EncodeNil()
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if err := enc.EncodeMapLen(len(keys)); err != nil {
		return err
	}
	for _, k := range keys {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := enc.EncodeFloat64(r[k]); err != nil {
			return err
		}
	}
	return nil
}

// PromptToken is one prompt token with its FastGen class.
type PromptToken struct {
	ID    int    `msgpack:"id"`
	Text  string `msgpack:"text"`
	Class string `msgpack:"class"`
}

// Profile is sent once per request after prefill, for the fastgen stream.
type Profile struct {
	Type      string        `msgpack:"type"`
	ID        string        `msgpack:"id"`
	Stream    string        `msgpack:"stream"`
	Threshold float64       `msgpack:"threshold"`
	Heads     []HeadProfile `msgpack:"heads"`
	// PromptTokens are in position order: entry i is at absolute position i.
	PromptTokens []PromptToken `msgpack:"prompt_tokens"`
	// LocalWindow is ceil(r_l · L), the local policy's window in tokens.
	LocalWindow int     `msgpack:"local_window,omitempty"`
	ProfileMS   float64 `msgpack:"profile_ms,omitempty"`
}

// Alternative is one of the top-k candidates at a decode step.
type Alternative struct {
	Token   int     `msgpack:"token"`
	Text    string  `msgpack:"text"`
	Logprob float64 `msgpack:"logprob"`
}

// Token is one generated token of one stream. Index counts from 0 per stream;
// the token's absolute cache position is len(prompt tokens) + Index.
type Token struct {
	Type    string        `msgpack:"type"`
	ID      string        `msgpack:"id"`
	Stream  string        `msgpack:"stream"`
	Index   int           `msgpack:"index"`
	Token   int           `msgpack:"token"`
	Text    string        `msgpack:"text"`
	Logprob float64       `msgpack:"logprob"`
	Top     []Alternative `msgpack:"top,omitempty"`
	// Class is the token's FastGen class, so clients can colour generated
	// positions like prompt ones.
	Class string `msgpack:"class,omitempty"`
	// KL is KL(p_baseline ‖ p_fastgen) at this step, set in compare mode on
	// the fastgen stream once both streams have produced this index.
	KL *float64 `msgpack:"kl,omitempty"`
}

// Eviction lists the positions one head dropped in one step.
type Eviction struct {
	Head      int      `msgpack:"head"`
	Positions []uint32 `msgpack:"positions"`
}

// Occupancy is the cache state after one decode step of one stream. Kept has
// one count per layer × KV head, layer-major (flat index = layer·n_kv_heads +
// kv_head). Evicted is a delta: the first Occupancy of a stream also carries
// the prompt positions dropped by the compression right after prefill, so a
// client that replays every delta knows each head's kept set at every step.
type Occupancy struct {
	Type        string     `msgpack:"type"`
	ID          string     `msgpack:"id"`
	Stream      string     `msgpack:"stream"`
	Index       int        `msgpack:"index"`
	Kept        []uint32   `msgpack:"kept"`
	Evicted     []Eviction `msgpack:"evicted,omitempty"`
	KVBytes     int64      `msgpack:"kv_bytes"`
	KVBytesFull int64      `msgpack:"kv_bytes_full"`
}

// Stats closes a stream's measurements, just before its Done.
type Stats struct {
	Type            string  `msgpack:"type"`
	ID              string  `msgpack:"id"`
	Stream          string  `msgpack:"stream"`
	PrefillTokS     float64 `msgpack:"prefill_tok_s"`
	DecodeTokS      float64 `msgpack:"decode_tok_s"`
	TTFTMS          float64 `msgpack:"ttft_ms"`
	PrunedRatio     float64 `msgpack:"pruned_ratio"`
	KVBytes         int64   `msgpack:"kv_bytes"`
	KVBytesFull     int64   `msgpack:"kv_bytes_full"`
	AttnLoss        float64 `msgpack:"attn_loss"`
	PromptTokens    int     `msgpack:"prompt_tokens"`
	GeneratedTokens int     `msgpack:"generated_tokens"`
	// Compare mode only: top-1 agreement so far and mean KL.
	Agreement *float64 `msgpack:"agreement,omitempty"`
	KL        *float64 `msgpack:"kl,omitempty"`
}

// Done ends one stream of a request.
type Done struct {
	Type         string `msgpack:"type"`
	ID           string `msgpack:"id"`
	Stream       string `msgpack:"stream,omitempty"`
	FinishReason string `msgpack:"finish_reason"`
}

// Error reports a failed request (ID set) or a connection-level problem (ID
// empty).
type Error struct {
	Type    string `msgpack:"type"`
	ID      string `msgpack:"id,omitempty"`
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
}

// Pong answers Ping.
type Pong struct {
	Type string `msgpack:"type"`
}

func (Generate) FrameType() string  { return TypeGenerate }
func (Cancel) FrameType() string    { return TypeCancel }
func (Ping) FrameType() string      { return TypePing }
func (Hello) FrameType() string     { return TypeHello }
func (Progress) FrameType() string  { return TypeProgress }
func (Profile) FrameType() string   { return TypeProfile }
func (Token) FrameType() string     { return TypeToken }
func (Occupancy) FrameType() string { return TypeOccupancy }
func (Stats) FrameType() string     { return TypeStats }
func (Done) FrameType() string      { return TypeDone }
func (Error) FrameType() string     { return TypeError }
func (Pong) FrameType() string      { return TypePong }

// newFrame maps a type name to a fresh value to decode into; client reports
// whether a server may receive it.
func newFrame(typ string) (f Frame, client bool) {
	switch typ {
	case TypeGenerate:
		return &Generate{}, true
	case TypeCancel:
		return &Cancel{}, true
	case TypePing:
		return &Ping{}, true
	case TypeHello:
		return &Hello{}, false
	case TypeProgress:
		return &Progress{}, false
	case TypeProfile:
		return &Profile{}, false
	case TypeToken:
		return &Token{}, false
	case TypeOccupancy:
		return &Occupancy{}, false
	case TypeStats:
		return &Stats{}, false
	case TypeDone:
		return &Done{}, false
	case TypeError:
		return &Error{}, false
	case TypePong:
		return &Pong{}, false
	}
	return nil, false
}
