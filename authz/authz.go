// Package authz is Fixity's runtime: inside an image it verifies an incoming OIDC token
// against the baked policy bundle and decides whether the request may proceed.
//
// An Authorizer is built once from a bundle (Open) and then called many times
// (Check), like go-oidc's verifier; it is safe for concurrent use. Every check of
// research/oidc-policy.md §6.4 runs in order and fails closed: any error, missing
// value or surprise is a deny with a stable reason code (see the Reason constants).
// The token itself is never logged, returned or put into an error.
//
// The claim rules are decided by policy.Evaluator — the very evaluator that ran the
// policy's tests at build time — so what was tested is what runs.
package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// Options tune an Authorizer. The zero value is the production default.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// HTTPClient fetches keys in the remote JWKS modes (default: a client with a 10 s
	// timeout). The pinned mode never uses it.
	HTTPClient *http.Client
	// MaxTokenBytes bounds the token (default DefaultMaxTokenBytes).
	MaxTokenBytes int
	// Replay remembers single_use token IDs (default: in memory, per process).
	Replay ReplayCache
}

// Request is one authorization question.
type Request struct {
	// Token is the raw compact JWS (without "Bearer ").
	Token string
	// Permission is what the caller wants to do, e.g. "service:deploy" (required).
	Permission string
	// Resource is what it wants to do it to, e.g. "svc/payments/api" (optional).
	Resource string
}

// Decision is the answer, with everything an audit record needs and nothing secret.
type Decision struct {
	Allow bool `json:"allow"`
	// Reason is a stable code: ReasonAllow, one of the Reason* constants, or a
	// policy evaluator reason (no_identity, not_granted, denied_by_binding, …).
	Reason string `json:"reason"`
	// Detail is a human explanation; it never contains the token.
	Detail string `json:"detail,omitempty"`

	Issuer   string `json:"issuer,omitempty"` // issuer ID in the policy (once routed)
	Subject  string `json:"sub,omitempty"`    // only after the signature verified
	JTI      string `json:"jti,omitempty"`
	Identity string `json:"identity,omitempty"`
	Binding  string `json:"binding,omitempty"`
	Profile  string `json:"profile,omitempty"`

	// ExpiresAt bounds a session built on this decision: the token's exp, or
	// iat + the profile's max_session when that is earlier (allows only).
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	Permission   string `json:"permission"`
	Resource     string `json:"resource,omitempty"`
	PolicyDigest string `json:"policy_digest,omitempty"`
}

// Authorizer verifies tokens and decides requests for one policy bundle.
type Authorizer struct {
	pol     *policy.Policy
	eval    *policy.Evaluator
	digest  string
	opts    Options
	issuers map[string]*issuerVerifier // by exact iss URL
}

type issuerVerifier struct {
	cfg      *policy.Issuer
	algs     []string
	keys     *keySet
	verifier *oidc.IDTokenVerifier
}

// Open loads a rendered bundle directory (policy.json, jwks/, manifest.json),
// checking every file against the manifest, and builds an Authorizer for it.
func Open(dir string, opts Options) (*Authorizer, error) {
	before, err := manifestDigest(dir)
	if err != nil {
		return nil, err
	}
	p, _, err := policy.LoadBundle(dir)
	if err != nil {
		return nil, err
	}
	// The digest is read on both sides of the verified load, so a manifest swapped
	// meanwhile cannot lend its digest to other content.
	if after, err := manifestDigest(dir); err != nil || after != before {
		return nil, fmt.Errorf("authz: bundle %s changed while loading; retry once it is stable", dir)
	}
	return New(p, before, opts)
}

// manifestDigest is "sha256:" + hex sha256 of the bundle's manifest.json, the policy
// digest (see policy.BundleDigest), without verifying the files: Open verifies them
// with policy.LoadBundle between two of these reads.
func manifestDigest(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, policy.BundleManifestFile))
	if err != nil {
		return "", fmt.Errorf("authz: bundle %s: %w", dir, err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// New builds an Authorizer for a compiled policy. digest is reported in decisions
// (the policy digest of the bundle it came from; may be empty).
func New(p *policy.Policy, digest string, opts Options) (*Authorizer, error) {
	if p == nil {
		return nil, fmt.Errorf("authz: nil policy")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.MaxTokenBytes <= 0 {
		opts.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if opts.Replay == nil {
		opts.Replay = NewMemoryReplayCache(0)
	}
	eval, err := policy.NewEvaluator(p)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	a := &Authorizer{pol: p, eval: eval, digest: digest, opts: opts, issuers: map[string]*issuerVerifier{}}
	for i := range p.Issuers {
		is := &p.Issuers[i]
		if _, dup := a.issuers[is.URL]; dup {
			return nil, fmt.Errorf("authz: issuer %q: url %s is configured twice", is.ID, is.URL)
		}
		iv, err := newIssuerVerifier(is, opts)
		if err != nil {
			return nil, fmt.Errorf("authz: issuer %q (%s): %w", is.ID, is.Pos, err)
		}
		a.issuers[is.URL] = iv
	}
	return a, nil
}

func newIssuerVerifier(is *policy.Issuer, opts Options) (*issuerVerifier, error) {
	if is.Audience == "" {
		return nil, fmt.Errorf("no audience: set exactly one audience")
	}
	var algs []string
	for _, a := range is.Algorithms {
		if !slices.Contains(allAlgs, jose.SignatureAlgorithm(a)) {
			return nil, fmt.Errorf("algorithm %q is not an asymmetric JWS algorithm", a)
		}
		algs = append(algs, a)
	}
	if len(algs) == 0 {
		return nil, fmt.Errorf("no algorithms: list the issuer's signing algorithms, e.g. [\"RS256\"]")
	}
	ks := &keySet{
		issuerURL:   is.URL,
		jwksURL:     is.JWKS.URL,
		minInterval: is.JWKS.MinRefreshInterval.D(),
		client:      opts.HTTPClient,
		now:         opts.Now,
	}
	if ks.minInterval <= 0 {
		ks.minInterval = DefaultMinRefreshInterval
	}
	switch is.JWKS.Mode {
	case policy.JWKSPinned, policy.JWKSPinnedRefresh:
		keys, err := parseKeySet(is.JWKS.Keys)
		if err != nil {
			return nil, fmt.Errorf("pinned jwks: %w: re-render the bundle with the issuer's current key set", err)
		}
		ks.pinned = keys
		ks.remote = is.JWKS.Mode == policy.JWKSPinnedRefresh
	case policy.JWKSRemote:
		ks.remote = true
	default:
		return nil, fmt.Errorf("jwks mode %q: want pinned, remote or pinned+refresh", is.JWKS.Mode)
	}
	v := oidc.NewVerifier(is.URL, ks, &oidc.Config{
		ClientID:             is.Audience,
		SupportedSigningAlgs: algs,
		// go-oidc has no exp leeway and a fixed 5 min nbf leeway; the time checks
		// run right after with the issuer's own clock_skew (step 5).
		SkipExpiryCheck: true,
		Now:             opts.Now,
	})
	return &issuerVerifier{cfg: is, algs: algs, keys: ks, verifier: v}, nil
}

// PolicyDigest is the digest of the bundle this Authorizer enforces.
func (a *Authorizer) PolicyDigest() string { return a.digest }

// Check answers one request. It never returns an error: every failure is a deny.
func (a *Authorizer) Check(ctx context.Context, req Request) (d Decision) {
	d = Decision{Permission: req.Permission, Resource: req.Resource, PolicyDigest: a.digest}
	defer func() {
		if r := recover(); r != nil {
			d.Allow, d.Reason, d.Detail = false, ReasonInternal, "internal error while checking the token"
		}
	}()
	denyWith := func(reason, detail string) Decision {
		d.Allow, d.Reason, d.Detail = false, reason, detail
		return d
	}
	if req.Permission == "" {
		return denyWith(ReasonBadRequest, "no permission asked for")
	}
	// 1–2. Size, shape, header.
	h, u, den := splitToken(req.Token, a.opts.MaxTokenBytes)
	if den != nil {
		return denyWith(den.reason, den.detail)
	}
	// 3. Route by the unverified iss, exact match, before any key or network is touched.
	iv := a.issuers[u.Iss]
	if iv == nil {
		return denyWith(ReasonUnknownIssuer, "iss "+quote(u.Iss)+" is not a configured issuer (exact match, trailing slash included)")
	}
	d.Issuer = iv.cfg.ID
	if !slices.Contains(iv.algs, h.Alg) {
		return denyWith(ReasonAlgNotAllowed, "alg "+quote(h.Alg)+" is not allowed for issuer "+iv.cfg.ID)
	}
	// 4. Signature + issuer + audience with go-oidc over our kid-aware key set.
	jws, err := jose.ParseSigned(req.Token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return denyWith(ReasonTokenMalformed, "not a JWS")
	}
	note := &verifyNote{jws: jws}
	tok, err := iv.verifier.Verify(context.WithValue(ctx, noteKey{}, note), req.Token)
	if err != nil {
		if note.reason != "" {
			return denyWith(note.reason, note.detail)
		}
		// The signature verified (the key set reported nothing), so the payload is
		// authentic and go-oidc refused a claim: find which one.
		var aud struct {
			Aud audience `json:"aud"`
		}
		if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &aud) == nil && !slices.Contains(aud.Aud, iv.cfg.Audience) {
			return denyWith(ReasonAudienceMismatch, "aud does not contain "+quote(iv.cfg.Audience))
		}
		return denyWith(ReasonTokenMalformed, "claims rejected by the verifier")
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return denyWith(ReasonTokenMalformed, "claims are not a JSON object")
	}
	d.Subject, _ = claims["sub"].(string)
	d.JTI, _ = claims["jti"].(string)
	now := a.opts.Now()
	// 5. Time, with the issuer's one leeway: the same function the test runner uses.
	if err := policy.CheckTokenTimes(iv.cfg, claims, now); err != nil {
		var ce *policy.CheckError
		if errors.As(err, &ce) {
			return denyWith(ce.Reason, ce.Detail)
		}
		return denyWith(ReasonBadTimeClaim, "time claims rejected")
	}
	// 6. Audience policy: exactly our audience, nothing else; azp if present.
	if ce := policy.CheckAudience(iv.cfg, claims); ce != nil {
		return denyWith(ce.Reason, ce.Detail)
	}
	if azp, ok := claims["azp"]; ok {
		if s, _ := azp.(string); s != iv.cfg.Audience {
			return denyWith(ReasonAZPMismatch, "azp is not "+quote(iv.cfg.Audience))
		}
	}
	// 7–8, 10. Preset schema, tenant pin, identities and bindings: the evaluator that
	// ran the policy's tests at build time (it repeats steps 5–6 on the same claims).
	pd := a.eval.Decide(policy.Request{
		Issuer:     iv.cfg.ID,
		Claims:     claims,
		Permission: req.Permission,
		Resource:   req.Resource,
		Now:        now,
	})
	d.Identity, d.Binding, d.Profile = pd.Identity, pd.Binding, pd.Profile
	if !pd.Allow {
		return denyWith(pd.Reason, pd.Detail)
	}
	exp, _ := numericDate(claims["exp"])
	d.ExpiresAt = exp.UTC()
	if ms := pd.MaxSession.D(); ms > 0 {
		if iat, ok := numericDate(claims["iat"]); ok && iat.Add(ms).Before(exp) {
			d.ExpiresAt = iat.Add(ms).UTC()
		}
	}
	// 9. Replay, for single_use profiles (known once a profile was granted).
	if pd.SingleUse {
		if d.JTI == "" {
			return denyWith(ReasonJTIMissing, "profile "+pd.Profile+" is single_use and the token has no jti")
		}
		until := exp.Add(iv.cfg.ClockSkew.D())
		if !a.opts.Replay.Use(iv.cfg.URL+"\x00"+d.JTI, until, now) {
			return denyWith(ReasonReplay, "jti "+quote(d.JTI)+" was already used for single_use profile "+pd.Profile)
		}
	}
	d.Allow, d.Reason, d.Detail = true, ReasonAllow, pd.Detail
	return d
}

// audience decodes aud as a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// numericDate reads a JWT NumericDate (JSON number of seconds) from decoded claims.
func numericDate(v any) (time.Time, bool) {
	switch n := v.(type) {
	case float64:
		if n != n || n < 0 || n > 1e12 {
			return time.Time{}, false
		}
		sec := int64(n)
		return time.Unix(sec, int64((n-float64(sec))*1e9)), true
	case json.Number:
		f, err := n.Float64()
		if err != nil {
			return time.Time{}, false
		}
		return numericDate(f)
	}
	return time.Time{}, false
}

// BearerToken extracts the token from an Authorization header value ("Bearer X").
func BearerToken(header string) string {
	const p = "bearer "
	if len(header) > len(p) && strings.EqualFold(header[:len(p)], p) {
		return strings.TrimSpace(header[len(p):])
	}
	return ""
}
