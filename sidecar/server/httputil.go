package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fastgen/fastgen/shared"
)

// apiError is OpenAI's error object; every JSON route answers errors in this
// shape so clients need one parser.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    any     `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding the response failed","type":"server_error","param":null,"code":"internal"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, typ, param, code, msg string) {
	e := apiError{Message: msg, Type: typ, Code: code}
	if param != "" {
		e.Param = &param
	}
	writeJSON(w, status, map[string]apiError{"error": e})
}

// writeReqError writes a reqError with the OpenAI type matching its status.
func writeReqError(w http.ResponseWriter, re *reqError) {
	status := re.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	typ := "invalid_request_error"
	code := re.Code
	switch status {
	case http.StatusTooManyRequests:
		typ, code = "rate_limit_error", "rate_limit_exceeded"
	case http.StatusServiceUnavailable:
		typ = "unavailable_error"
	case http.StatusInternalServerError:
		typ = "server_error"
	case 499:
		// The client is gone; nobody reads this, but keep the status honest.
		typ = "invalid_request_error"
	}
	if code == shared.CodeTooLong && re.Param == "prompt" {
		code = "context_length_exceeded"
	}
	writeError(w, status, typ, re.Param, code, re.Msg)
}

// readJSON decodes a bounded request body. Unknown fields are ignored, as
// OpenAI clients send many this server has no use for.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) *reqError {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &reqError{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
				Msg: fmt.Sprintf("the request body exceeds %d bytes", s.cfg.MaxBodyBytes)}
		}
		return badRequest("", "reading the body: %v", err)
	}
	if len(b) == 0 {
		return badRequest("", "the request body is empty; send a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(te.Field, "field %q must be %s, not %s", te.Field, te.Type.String(), te.Value)
		}
		return badRequest("", "the body is not valid JSON: %v", err)
	}
	return nil
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// stopFilter holds back text that might be the start of a stop sequence, so
// streamed text never shows a stop string the final text would cut.
type stopFilter struct {
	stops   []string
	pending string
	stopped bool
}

// add takes newly decoded text and returns what can be released now.
func (f *stopFilter) add(text string) string {
	if f.stopped {
		return ""
	}
	f.pending += text
	if len(f.stops) == 0 {
		out := f.pending
		f.pending = ""
		return out
	}
	cut := -1
	for _, s := range f.stops {
		if s == "" {
			continue
		}
		if i := strings.Index(f.pending, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out := f.pending[:cut]
		f.pending, f.stopped = "", true
		return out
	}
	// Keep the longest suffix that is a proper prefix of some stop.
	hold := 0
	for _, s := range f.stops {
		for k := min(len(s)-1, len(f.pending)); k > hold; k-- {
			if strings.HasSuffix(f.pending, s[:k]) {
				hold = k
				break
			}
		}
	}
	out := f.pending[:len(f.pending)-hold]
	f.pending = f.pending[len(f.pending)-hold:]
	return out
}
