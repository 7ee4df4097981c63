package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// DefaultMinRefreshInterval rate-limits JWKS fetches when the policy sets none: an
// attacker minting tokens with fresh random kids gets at most one fetch per interval
// (go-oidc's RemoteKeySet would fetch for every one of them).
const DefaultMinRefreshInterval = 5 * time.Minute

// maxJWKSBytes bounds a fetched key set document.
const maxJWKSBytes = 1 << 20

// keySet is the oidc.KeySet given to go-oidc for one issuer. Unlike
// oidc.StaticKeySet it honours kid, the key's alg and use; unlike oidc.RemoteKeySet it
// fetches at most once per minInterval, and only in the remote modes.
type keySet struct {
	issuerURL   string
	jwksURL     string // explicit, or found by discovery on first fetch
	remote      bool   // may fetch (remote, pinned+refresh)
	minInterval time.Duration
	client      *http.Client
	now         func() time.Time

	mu        sync.RWMutex
	pinned    []jose.JSONWebKey
	fetched   []jose.JSONWebKey
	lastFetch time.Time
	fetchMu   sync.Mutex // one fetch at a time; waiters reuse its result
}

var _ oidc.KeySet = (*keySet)(nil)

// noteKey carries a *verifyNote through go-oidc into VerifySignature, because go-oidc
// flattens the key set's error into a string and the reason code would be lost.
type noteKey struct{}

type verifyNote struct {
	jws    *jose.JSONWebSignature // parsed once by the caller
	reason string
	detail string
}

// parseKeySet reads an RFC 7517 JWK Set and keeps the keys this verifier can use:
// public, asymmetric, for signatures. Keys of unknown types are skipped (RFC 7517
// §5); a set that ends up empty is an error.
func parseKeySet(doc []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(r, &k); err != nil {
			continue
		}
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch k.Key.(type) {
		case []byte: // symmetric: never a verification key here
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable public signing keys")
	}
	return keys, nil
}

// VerifySignature implements oidc.KeySet.
func (s *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	note, _ := ctx.Value(noteKey{}).(*verifyNote)
	if note == nil {
		note = &verifyNote{}
	}
	fail := func(reason, detail string) ([]byte, error) {
		note.reason, note.detail = reason, detail
		return nil, errors.New(reason)
	}
	jws := note.jws
	if jws == nil {
		var err error
		if jws, err = jose.ParseSigned(jwt, allAlgs); err != nil {
			return fail(ReasonTokenMalformed, "not a JWS")
		}
	}
	if len(jws.Signatures) != 1 {
		return fail(ReasonTokenMalformed, "want exactly one signature")
	}
	hdr := jws.Signatures[0].Header
	try := func(keys []jose.JSONWebKey) (payload []byte, matched bool) {
		for i := range keys {
			k := &keys[i]
			if hdr.KeyID != "" && k.KeyID != hdr.KeyID {
				continue
			}
			if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
				continue
			}
			matched = true
			if p, err := jws.Verify(k); err == nil {
				return p, true
			}
		}
		return nil, matched
	}
	s.mu.RLock()
	pinned, fetched := s.pinned, s.fetched
	s.mu.RUnlock()
	p, matched := try(pinned)
	if p != nil {
		return p, nil
	}
	p, m2 := try(fetched)
	if p != nil {
		return p, nil
	}
	matched = matched || m2
	// A kid we do not know may be a rotation: the remote modes look once (rate
	// limited). A known kid whose signature fails is a forgery: never refetch for it.
	if !matched && s.remote {
		// refresh returns the newest keys even when it did not fetch (rate limited, or
		// another caller's fetch just finished); only no keys at all is "unavailable".
		keys, err := s.refresh(ctx)
		if err != nil && len(keys) == 0 && len(pinned) == 0 {
			return fail(ReasonKeysUnavailable, "no keys for issuer: "+err.Error())
		}
		if p, m3 := try(keys); p != nil {
			return p, nil
		} else if m3 {
			matched = true
		}
	}
	if !matched {
		return fail(ReasonUnknownKID, "no key with kid "+quote(hdr.KeyID)+" and alg "+quote(hdr.Algorithm))
	}
	return fail(ReasonBadSignature, "signature does not verify")
}

// refresh fetches the key set unless one was fetched less than minInterval ago (then
// it returns the cached keys). Concurrent callers share one fetch.
func (s *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	s.mu.RLock()
	last, cached := s.lastFetch, s.fetched
	s.mu.RUnlock()
	if !last.IsZero() && s.now().Sub(last) < s.minInterval {
		return cached, errors.New("rate limited: keys were fetched " + s.now().Sub(last).Round(time.Second).String() + " ago")
	}
	s.mu.Lock()
	s.lastFetch = s.now()
	s.mu.Unlock()
	keys, err := s.fetch(ctx)
	if err != nil {
		return cached, err
	}
	s.mu.Lock()
	s.fetched = keys
	s.mu.Unlock()
	return keys, nil
}

func (s *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.jwksURL == "" {
		// OIDC discovery; go-oidc checks that the document's issuer is exactly ours.
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, s.client), s.issuerURL)
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
			return nil, errors.New("discovery: no jwks_uri")
		}
		s.jwksURL = meta.JWKSURI
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", s.jwksURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: key set over %d bytes", s.jwksURL, maxJWKSBytes)
	}
	return parseKeySet(body)
}

// allAlgs are the asymmetric algorithms go-jose may parse; the per-issuer allowlist
// is enforced before (splitToken + Check) and again by go-oidc.
var allAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.EdDSA,
}
