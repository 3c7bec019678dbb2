package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxSSELines bounds the read loop of one stream.
const maxSSELines = 200_000

// sse runs one OpenAI streaming request (chat or completions).
func (r *runner) sse(ctx context.Context, p plan) reqResult {
	body := map[string]any{"model": "loadtest", "max_tokens": p.maxTokens, "temperature": p.temp, "seed": p.seed,
		"stream": true, "stream_options": map[string]any{"include_usage": true}}
	path := "/v1/completions"
	if p.chat {
		path = "/v1/chat/completions"
		body["messages"] = []map[string]string{{"role": "user", "content": p.prompt}}
	} else {
		body["prompt"] = p.prompt
	}
	if p.seed%3 == 0 {
		body["kv_compression"] = map[string]any{"mode": "fastgen"}
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint(path), bytes.NewReader(b))
	if err != nil {
		return errf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.APIKey)
	}
	if p.cancelAt == 0 {
		// Abandon the request before its first token: queued or in prefill.
		t := time.AfterFunc(time.Duration(uint64(p.seed)%30)*time.Millisecond, func() { cancel(errStop) })
		defer t.Stop()
	}
	start := time.Now()
	resp, err := r.hc.Do(req)
	if err != nil {
		if errors.Is(context.Cause(ctx), errStop) {
			return reqResult{out: cancelled}
		}
		return errf("%s %s: %v", path, p.id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusTooManyRequests && strings.Contains(string(msg), "busy") {
			return reqResult{out: refused}
		}
		if errors.Is(context.Cause(ctx), errStop) {
			return reqResult{out: cancelled}
		}
		return errf("%s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	var rr reqResult
	chunks := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for range maxSSELines {
		if !sc.Scan() {
			break
		}
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			rr.out = completed
			return rr
		}
		var ev struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error *struct {
				Message string `json:"message"`
				Code    string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			if errors.Is(context.Cause(ctx), errStop) {
				// Our own cancel cut the body mid-event; the scanner
				// hands the torn last line over at EOF.
				rr.out = cancelled
				return rr
			}
			return errf("%s: bad event %q: %v", path, line, err)
		}
		if ev.Error != nil {
			return errf("%s: error event %s: %s", path, ev.Error.Code, ev.Error.Message)
		}
		if ev.Usage != nil {
			rr.tokens = ev.Usage.CompletionTokens
		}
		if len(ev.Choices) > 0 && ev.Choices[0].Text+ev.Choices[0].Delta.Content != "" {
			if chunks == 0 {
				rr.ttft = time.Since(start)
			}
			chunks++
			if p.cancelAt > 0 && chunks == p.cancelAt {
				// Closing the stream is how an HTTP client cancels.
				cancel(errStop)
				rr.tokens = chunks
				rr.out = cancelled
				return rr
			}
		}
	}
	if errors.Is(context.Cause(ctx), errStop) {
		rr.out = cancelled
		return rr
	}
	if err := sc.Err(); err != nil {
		return errf("%s %s: reading the stream: %v", path, p.id, err)
	}
	return errf("%s %s: the stream ended without [DONE] (%d chunks)", path, p.id, chunks)
}

// scrape reads the unlabelled samples of the server's /metrics.
func (r *runner) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.endpoint("/metrics"), nil)
	if err != nil {
		return nil, err
	}
	if r.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.APIKey)
	}
	resp, err := r.mc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20))
}

func parseMetrics(rd io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(val, &v); err == nil {
			out[name] = v
		}
	}
	if _, ok := out["go_goroutines"]; !ok {
		return nil, fmt.Errorf("/metrics has no go_goroutines")
	}
	return out, sc.Err()
}
