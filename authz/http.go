package authz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// HTTP headers of the reverse-proxy protocol (nginx auth_request, Envoy ext_authz HTTP).
const (
	// HeaderPermission carries the permission the proxied route needs.
	HeaderPermission = "X-Fixity-Permission"
	// HeaderResource carries the resource explicitly; without it the resource is taken
	// from X-Original-URI (nginx), X-Forwarded-Uri (Traefik) or, under EnvoyPrefix,
	// the request path itself.
	HeaderResource = "X-Fixity-Resource"
	// HeaderOriginalURI is what nginx configurations conventionally set to $request_uri.
	HeaderOriginalURI = "X-Original-URI"
	// HeaderForwardedURI is Traefik's forwardAuth equivalent.
	HeaderForwardedURI = "X-Forwarded-Uri"

	// Response headers (for auth_request_set / allowed_upstream_headers).
	HeaderReason   = "X-Fixity-Reason"
	HeaderIdentity = "X-Fixity-Identity"
	HeaderProfile  = "X-Fixity-Profile"
	HeaderSubject  = "X-Fixity-Subject"
	HeaderDigest   = "X-Fixity-Policy-Digest"
)

// Paths served by Handler.
const (
	CheckPath   = "/check"   // nginx auth_request target
	EnvoyPrefix = "/envoy"   // Envoy ext_authz http_service path_prefix
	HealthPath  = "/healthz" // liveness: 200 once the bundle is loaded
)

// tokenReasons are the codes that mean "this is not a valid token" (401); every other
// deny is "valid token, not allowed" (403).
var tokenReasons = map[string]bool{
	ReasonTokenMissing: true, ReasonTokenTooLarge: true, ReasonTokenMalformed: true,
	ReasonAlgNotAllowed: true, ReasonCritHeader: true, ReasonUnknownIssuer: true,
	ReasonIssuerMismatch: true, ReasonUnknownKID: true, ReasonBadSignature: true,
	ReasonKeysUnavailable: true, ReasonAudienceMismatch: true, ReasonMultipleAudiences: true,
	ReasonAZPMismatch: true, ReasonExpired: true, ReasonNotYetValid: true,
	ReasonIssuedInFuture: true, ReasonLifetimeExceeded: true, ReasonExpMissing: true,
	ReasonIatMissing: true, ReasonBadTimeClaim: true, ReasonJTIMissing: true, ReasonReplay: true,
	policy.ReasonSchemaViolation: true,
}

// IsTokenReason reports whether a deny reason is about the token itself (HTTP 401)
// rather than about what the token's identity may do (HTTP 403).
func IsTokenReason(reason string) bool { return tokenReasons[reason] }

// HandlerOptions configure Handler.
type HandlerOptions struct {
	// DefaultPermission applies when a request carries no X-Fixity-Permission.
	DefaultPermission string
	// Audit receives one JSON line per decision (never the token); nil = no audit.
	Audit io.Writer
}

// Handler serves the reverse-proxy protocol: CheckPath for nginx auth_request (and
// Traefik forwardAuth), EnvoyPrefix/… for Envoy's ext_authz HTTP service, HealthPath.
// Allowed: 200. Missing or invalid token: 401 with WWW-Authenticate. Valid token
// without permission: 403. X-Fixity-Reason carries the reason code either way.
func Handler(a *Authorizer, o HandlerOptions) http.Handler {
	var auditMu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(HeaderDigest, a.PolicyDigest())
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok", "policy_digest": a.PolicyDigest()})
	})
	check := func(w http.ResponseWriter, r *http.Request, resource string, resourceOK bool) {
		perm := r.Header.Get(HeaderPermission)
		if perm == "" {
			perm = o.DefaultPermission
		}
		if v := r.Header.Get(HeaderResource); v != "" {
			resource, resourceOK = v, true
		}
		var d Decision
		if resourceOK {
			d = a.Check(r.Context(), Request{
				Token:      BearerToken(r.Header.Get("Authorization")),
				Permission: perm,
				Resource:   resource,
			})
		} else {
			d = Decision{Reason: ReasonBadRequest, Detail: "request path has dot segments or bad escapes", Permission: perm, PolicyDigest: a.PolicyDigest()}
		}
		if o.Audit != nil {
			rec := struct {
				Time string `json:"time"`
				Decision
			}{time.Now().UTC().Format(time.RFC3339Nano), d}
			line, _ := json.Marshal(rec)
			auditMu.Lock()
			_, _ = o.Audit.Write(append(line, '\n'))
			auditMu.Unlock()
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set(HeaderReason, d.Reason)
		h.Set(HeaderDigest, d.PolicyDigest)
		status := http.StatusOK
		switch {
		case d.Allow:
			h.Set(HeaderIdentity, d.Identity)
			h.Set(HeaderProfile, d.Profile)
			h.Set(HeaderSubject, d.Subject)
		case IsTokenReason(d.Reason):
			status = http.StatusUnauthorized
			h.Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+d.Reason+`"`)
		default:
			status = http.StatusForbidden
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_ = json.NewEncoder(w).Encode(d)
		}
	}
	mux.HandleFunc(CheckPath, func(w http.ResponseWriter, r *http.Request) {
		uri := r.Header.Get(HeaderOriginalURI)
		if uri == "" {
			uri = r.Header.Get(HeaderForwardedURI)
		}
		res, ok := resourceFromURI(uri)
		check(w, r, res, ok)
	})
	mux.HandleFunc(EnvoyPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		res, ok := resourceFromURI(strings.TrimPrefix(r.URL.EscapedPath(), EnvoyPrefix))
		check(w, r, res, ok)
	})
	return mux
}

// resourceFromURI maps a request URI to a policy resource: the unescaped path without
// query and without the leading slash ("/svc/payments/api?x=1" → "svc/payments/api").
// Paths with dot segments are refused rather than normalised, so
// "/svc/a/../b" can never be mistaken for a resource under svc/a.
func resourceFromURI(uri string) (string, bool) {
	if uri == "" {
		return "", true
	}
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	p, err := url.PathUnescape(uri)
	if err != nil {
		return "", false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." {
			return "", false
		}
	}
	return strings.TrimPrefix(p, "/"), true
}
