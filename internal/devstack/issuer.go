//go:build unix

package devstack

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Kind names the CI whose issuer an Issuer impersonates: it decides the discovery
// layout, the Fulcio claim templates and which Mint call applies.
type Kind string

const (
	// KindGitHub impersonates https://token.actions.githubusercontent.com and, on the
	// same listener, the ACTIONS_ID_TOKEN_REQUEST_URL endpoint of a job.
	KindGitHub Kind = "github"
	// KindGitLab impersonates a GitLab instance's `id_tokens:` issuer.
	KindGitLab Kind = "gitlab"
)

// GitHubRequestPath is the path of the endpoint that answers like GitHub's
// ACTIONS_ID_TOKEN_REQUEST_URL (the real URL also carries ?api-version=2.0).
const GitHubRequestPath = "/_apis/actions/idtoken"

// MintPath is the development-only endpoint that mints any token for another process
// (`fixity-devstack token`): POST a GitHubToken or GitLabToken as JSON with
// "Authorization: bearer" RequestToken; the answer is {"value": "<jwt>"}.
const MintPath = "/_devstack/mint"

// Issuer is a local OpenID Connect provider on 127.0.0.1 that signs ID tokens with the
// claim sets of a real CI. Fulcio trusts it through its discovery document and JWKS,
// exactly as it trusts the real issuers. It is the only stand-in of the stack: GitHub's
// and GitLab's issuers cannot be reached from tests.
type Issuer struct {
	// URL is the issuer identifier (iss claim), http://127.0.0.1:PORT.
	URL  string
	kind Kind

	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	strayKey *rsa.PrivateKey // never published: tokens it signs must fail verification
	rsaKID   string
	ecKID    string

	// requestToken guards the GitHub token request endpoint, like
	// ACTIONS_ID_TOKEN_REQUEST_TOKEN does on a runner.
	requestToken string

	mu       sync.Mutex
	job      GitHubToken // what the request endpoint mints
	failLeft int         // token requests still to fail (SetTokenRequestFailures)
	failCode int
	ln       net.Listener
	srv      *http.Server
	stopped  bool
}

// NewIssuer generates fresh RS256 and ES256 keys and starts serving on a free
// 127.0.0.1 port. Close stops it.
func NewIssuer(kind Kind) (*Issuer, error) {
	if kind != KindGitHub && kind != KindGitLab {
		return nil, fmt.Errorf("devstack: issuer kind %q: want %q or %q", kind, KindGitHub, KindGitLab)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devstack: issuer key: %w", err)
	}
	sk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devstack: issuer key: %w", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devstack: issuer key: %w", err)
	}
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devstack: issuer listen on 127.0.0.1: %w", err)
	}
	is := &Issuer{
		URL:          "http://" + ln.Addr().String(),
		kind:         kind,
		rsaKey:       rk,
		ecKey:        ek,
		strayKey:     sk,
		requestToken: hex.EncodeToString(tok[:]),
		ln:           ln,
	}
	if is.rsaKID, err = thumbprint(&rk.PublicKey); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if is.ecKID, err = thumbprint(&ek.PublicKey); err != nil {
		_ = ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.serveDiscovery)
	mux.HandleFunc("GET "+is.jwksPath(), is.serveJWKS)
	if kind == KindGitHub {
		mux.HandleFunc(GitHubRequestPath, is.serveTokenRequest)
	}
	mux.HandleFunc("POST "+MintPath, is.serveMint)
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("devstack: key thumbprint: %w", err)
	}
	return hex.EncodeToString(tp[:16]), nil
}

// Kind reports which CI this issuer impersonates.
func (is *Issuer) Kind() Kind { return is.kind }

// jwksPath is where each real issuer publishes its keys.
func (is *Issuer) jwksPath() string {
	if is.kind == KindGitLab {
		return "/oauth/discovery/keys"
	}
	return "/.well-known/jwks"
}

// Close stops serving. Tokens already minted stay valid JWTs, but nobody can fetch the
// keys to verify them any more.
func (is *Issuer) Close() error {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.stopped {
		return nil
	}
	is.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return is.srv.Shutdown(ctx)
}

func (is *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	doc := map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.URL + is.jwksPath(),
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public", "pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		"scopes_supported":                      []string{"openid"},
	}
	switch is.kind {
	case KindGitHub:
		doc["claims_supported"] = []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha",
			"repository", "repository_id", "repository_owner", "repository_owner_id", "enterprise", "enterprise_id",
			"run_id", "run_number", "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha",
			"head_ref", "base_ref", "event_name", "ref_type", "ref_protected", "environment", "environment_node_id",
			"job_workflow_ref", "job_workflow_sha", "repository_visibility", "runner_environment", "check_run_id"}
	case KindGitLab:
		doc["authorization_endpoint"] = is.URL + "/oauth/authorize"
		doc["token_endpoint"] = is.URL + "/oauth/token"
		doc["claims_supported"] = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "namespace_id",
			"namespace_path", "project_id", "project_path", "user_id", "user_login", "user_email",
			"user_access_level", "pipeline_id", "pipeline_source", "job_id", "ref", "ref_type", "ref_path",
			"ref_protected", "environment", "environment_protected", "deployment_tier", "environment_action",
			"runner_id", "runner_environment", "sha", "ci_config_ref_uri", "ci_config_sha", "project_visibility"}
	}
	writeJSON(w, http.StatusOK, doc)
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &is.rsaKey.PublicKey, KeyID: is.rsaKID, Algorithm: "RS256", Use: "sig"},
		{Key: &is.ecKey.PublicKey, KeyID: is.ecKID, Algorithm: "ES256", Use: "sig"},
	}}
	writeJSON(w, http.StatusOK, set)
}

// serveTokenRequest answers like GitHub's ACTIONS_ID_TOKEN_REQUEST_URL: GET with
// "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" and an optional audience query
// parameter returns {"value": "<jwt>"}. Without audience the token's aud is the owner's
// URL, as on GitHub.
func (is *Issuer) serveTokenRequest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "use GET"})
		return
	}
	if !is.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials: send Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN"})
		return
	}
	is.mu.Lock()
	job := is.job
	fail := is.failLeft > 0
	if fail {
		is.failLeft--
	}
	code := is.failCode
	is.mu.Unlock()
	if fail {
		writeJSON(w, code, map[string]string{"message": "devstack: injected failure"})
		return
	}
	if aud := r.URL.Query().Get("audience"); aud != "" {
		job.Audience = []string{aud}
	} else if len(job.Audience) == 0 {
		owner, _, _ := strings.Cut(or(job.Repository, "acme/images"), "/")
		job.Audience = []string{"https://github.com/" + owner}
	}
	tok, err := is.MintGitHub(job)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": 1, "value": tok})
}

// serveMint mints a token described by the JSON body for scripts that cannot call Mint.
func (is *Issuer) serveMint(w http.ResponseWriter, r *http.Request) {
	if !is.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "send Authorization: bearer <request token of this issuer>"})
		return
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	var (
		tok string
		err error
	)
	switch is.kind {
	case KindGitHub:
		var g GitHubToken
		if err = dec.Decode(&g); err == nil {
			tok, err = is.MintGitHub(g)
		}
	case KindGitLab:
		var g GitLabToken
		if err = dec.Decode(&g); err == nil {
			tok, err = is.MintGitLab(g)
		}
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": tok})
}

func (is *Issuer) authorized(r *http.Request) bool {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "bearer") && subtle.ConstantTimeCompare([]byte(cred), []byte(is.requestToken)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// SetGitHubJob sets the job context the token request endpoint mints tokens for (its
// Audience is replaced by the request's audience parameter). Tests use it to make
// "ambient" signing run as another repository, a pull request, a self-hosted runner…
func (is *Issuer) SetGitHubJob(job GitHubToken) {
	is.mu.Lock()
	is.job = job
	is.mu.Unlock()
}

// SetTokenRequestFailures makes the next n requests to the GitHub token request
// endpoint fail with HTTP status code (e.g. 503 or 429), to test clients' retries.
func (is *Issuer) SetTokenRequestFailures(n, code int) {
	is.mu.Lock()
	is.failLeft, is.failCode = n, code
	is.mu.Unlock()
}

// GitHubJob returns the job context the token request endpoint currently mints for.
func (is *Issuer) GitHubJob() GitHubToken {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.job
}

// RequestURL is the value for ACTIONS_ID_TOKEN_REQUEST_URL (GitHub issuers only).
func (is *Issuer) RequestURL() string {
	return is.URL + GitHubRequestPath + "?api-version=2.0"
}

// RequestToken is the value for ACTIONS_ID_TOKEN_REQUEST_TOKEN (GitHub issuers) and
// the credential of MintPath. It is a secret of the stack: do not print it.
func (is *Issuer) RequestToken() string { return is.requestToken }

// MintGitHub signs a GitHub Actions ID token.
func (is *Issuer) MintGitHub(g GitHubToken) (string, error) {
	if is.kind != KindGitHub {
		return "", fmt.Errorf("devstack: issuer %s impersonates %s, not GitHub Actions", is.URL, is.kind)
	}
	c, err := g.Claims()
	if err != nil {
		return "", err
	}
	return is.Mint(c, g.TokenOptions)
}

// MintGitLab signs a GitLab CI `id_tokens:` token.
func (is *Issuer) MintGitLab(g GitLabToken) (string, error) {
	if is.kind != KindGitLab {
		return "", fmt.Errorf("devstack: issuer %s impersonates %s, not GitLab CI", is.URL, is.kind)
	}
	c, err := g.Claims()
	if err != nil {
		return "", err
	}
	return is.Mint(c, g.TokenOptions)
}

// Mint signs an arbitrary claim set; iss, aud, iat, nbf and exp come from o.
func (is *Issuer) Mint(claims map[string]any, o TokenOptions) (string, error) {
	c := make(map[string]any, len(claims)+6)
	for k, v := range claims {
		c[k] = v
	}
	now := o.IssuedAt
	if now.IsZero() {
		now = time.Now()
	}
	life := o.Lifetime
	if life == 0 {
		life = 5 * time.Minute
	}
	aud := o.Audience
	if aud == nil {
		aud = []string{"sigstore"}
	}
	c["iss"] = or(o.Issuer, is.URL)
	if len(aud) == 1 {
		c["aud"] = aud[0]
	} else {
		c["aud"] = aud
	}
	c["iat"] = now.Unix()
	c["nbf"] = now.Unix()
	c["exp"] = now.Add(life).Unix()
	for k, v := range o.Extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}

	var key jose.SigningKey
	switch or(o.Algorithm, "RS256") {
	case "RS256":
		key = jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: is.rsaKey, KeyID: is.rsaKID}}
		if o.UntrustedKey {
			key.Key = jose.JSONWebKey{Key: is.strayKey, KeyID: is.rsaKID}
		}
	case "ES256":
		if o.UntrustedKey {
			return "", errors.New("devstack: UntrustedKey is only available with RS256")
		}
		key = jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: is.ecKey, KeyID: is.ecKID}}
	default:
		return "", fmt.Errorf("devstack: token algorithm %q: want RS256 or ES256", o.Algorithm)
	}
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("devstack: token signer: %w", err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("devstack: sign token: %w", err)
	}
	return tok, nil
}
