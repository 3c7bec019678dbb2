package server

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// originAllowed is the Origin rule of every route, the WebSocket's
// included: no Origin (not a browser), the server's own host, or a host
// matching one of Config.AllowedOrigins (path.Match, case-insensitive, the
// syntax of coder/websocket's OriginPatterns).
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
// here, before auth, because browsers send them without credentials. A
// WebSocket upgrade from a foreign page is refused here too, before it
// reaches the upgrade.
func (s *Server) cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		if !s.originAllowed(r) {
			s.log.Warn("request from a foreign origin refused", "remote", r.RemoteAddr, "path", r.URL.Path, "origin", origin)
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
