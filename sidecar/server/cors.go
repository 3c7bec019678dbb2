package server

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// originAllowed applies the WebSocket's Origin rule to any request: no
// Origin (not a browser), the server's own host, or a host matching one of
// Config.AllowedOrigins (path.Match, case-insensitive, as coder/websocket
// matches them).
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return true
	}
	for _, p := range s.cfg.AllowedOrigins {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

// cors lets browser pages on the allowed origins call the HTTP API, and
// refuses requests a browser sent from any other page: CORS alone would
// only hide the answer, and a page could still spend the server's time
// with a "simple" POST that needs no preflight. Preflights are answered
// here, before auth, because browsers send them without credentials. The
// WebSocket keeps its own check (the upgrade answers 403 itself).
func (s *Server) cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || r.URL.Path == "/v1/ws" {
			h.ServeHTTP(w, r)
			return
		}
		if !s.originAllowed(r) {
			s.metrics.requests.WithLabelValues(routeLabel(r), "refused").Inc()
			writeError(w, http.StatusForbidden, "permission_error", "", "origin_not_allowed",
				"requests from the page at "+origin+" are not allowed: start the server with --allowed-origins listing its host")
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			hd.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}
