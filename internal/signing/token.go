package signing

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"
)

// Token providers, in the order "auto" tries them.
const (
	ProviderToken     = "token"     // an explicit token value (identity_token)
	ProviderFile      = "file"      // identity_token_file
	ProviderEnv       = "env"       // SIGSTORE_ID_TOKEN (also GitLab id_tokens)
	ProviderGitHub    = "github"    // ACTIONS_ID_TOKEN_REQUEST_URL + _TOKEN
	ProviderGitLab    = "gitlab"    // id_tokens: SIGSTORE_ID_TOKEN
	ProviderBuildkite = "buildkite" // buildkite-agent oidc request-token
	ProviderCircleCI  = "circleci"  // circleci run oidc get
	ProviderGoogle    = "google"    // GCE/GKE/Cloud Build metadata server
)

// DefaultAudience is the audience Fulcio instances expect.
const DefaultAudience = "sigstore"

// TokenOptions says where the signing identity comes from. The zero value means "auto":
// an explicit token or file first, then SIGSTORE_ID_TOKEN, then whichever CI the
// environment says we run in.
type TokenOptions struct {
	Provider  string // "" / "auto" or one of the Provider* constants
	Token     string
	TokenFile string
	Audience  string // default DefaultAudience
	// Getenv, HTTPClient and Exec are injection points for tests; nil means the real ones.
	Getenv     func(string) string
	HTTPClient *http.Client
	Exec       func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// TokenError is a failure to obtain or accept an identity token. Fix says what the user
// should change. The token itself never appears in it.
type TokenError struct {
	Provider string
	Problem  string
	Fix      string
}

func (e *TokenError) Error() string {
	s := "identity token"
	if e.Provider != "" {
		s += " (" + e.Provider + ")"
	}
	s += ": " + e.Problem
	if e.Fix != "" {
		s += ": " + e.Fix
	}
	return s
}

func (o TokenOptions) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

func (o TokenOptions) client() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (o TokenOptions) exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	if o.Exec != nil {
		return o.Exec(ctx, name, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (o TokenOptions) audience() string {
	if o.Audience != "" {
		return o.Audience
	}
	return DefaultAudience
}

// DetectProvider returns the provider FetchToken would use.
func (o TokenOptions) DetectProvider() (string, error) {
	p := strings.ToLower(o.Provider)
	if p != "" && p != "auto" {
		switch p {
		case ProviderToken, ProviderFile, ProviderEnv, ProviderGitHub, ProviderGitLab, ProviderBuildkite, ProviderCircleCI, ProviderGoogle:
			return p, nil
		}
		return "", &TokenError{Problem: fmt.Sprintf("unknown identity provider %q", o.Provider), Fix: "use one of auto, token, file, env, github, gitlab, buildkite, circleci, google"}
	}
	switch {
	case o.Token != "":
		return ProviderToken, nil
	case o.TokenFile != "":
		return ProviderFile, nil
	case o.getenv("GITLAB_CI") == "true":
		return ProviderGitLab, nil
	case o.getenv("SIGSTORE_ID_TOKEN") != "":
		return ProviderEnv, nil
	case o.getenv("GITHUB_ACTIONS") == "true" || o.getenv("ACTIONS_ID_TOKEN_REQUEST_URL") != "":
		return ProviderGitHub, nil
	case o.getenv("BUILDKITE") == "true":
		return ProviderBuildkite, nil
	case o.getenv("CIRCLECI") == "true":
		return ProviderCircleCI, nil
	case o.getenv("GCE_METADATA_HOST") != "":
		return ProviderGoogle, nil
	}
	return "", &TokenError{Problem: "no identity token and no CI identity found",
		Fix: "run in GitHub Actions (with `permissions: id-token: write`), GitLab CI (with id_tokens), Buildkite or CircleCI, or set identity_token / identity_token_file / SIGSTORE_ID_TOKEN, or use key mode"}
}

// FetchToken obtains a fresh OIDC identity token for the configured audience. Call it
// immediately before signing: CI tokens live minutes and Fulcio certificates ten.
func FetchToken(ctx context.Context, o TokenOptions) (token, provider string, err error) {
	provider, err = o.DetectProvider()
	if err != nil {
		return "", "", err
	}
	aud := o.audience()
	switch provider {
	case ProviderToken:
		token = o.Token
	case ProviderFile:
		b, rerr := os.ReadFile(o.TokenFile)
		if rerr != nil {
			return "", provider, &TokenError{provider, fmt.Sprintf("reading %s: %v", o.TokenFile, rerr), "point identity_token_file at a file holding one JWT"}
		}
		token = string(b)
	case ProviderEnv:
		token = o.getenv("SIGSTORE_ID_TOKEN")
	case ProviderGitLab:
		token = o.getenv("SIGSTORE_ID_TOKEN")
		if token == "" {
			return "", provider, &TokenError{provider, "SIGSTORE_ID_TOKEN is not set in this GitLab job",
				"add `id_tokens: { SIGSTORE_ID_TOKEN: { aud: " + aud + " } }` to the job (CI_JOB_JWT is gone since GitLab 17)"}
		}
	case ProviderGitHub:
		token, err = o.github(ctx, aud)
	case ProviderBuildkite:
		var out []byte
		out, err = o.exec(ctx, "buildkite-agent", "oidc", "request-token", "--audience", aud)
		if err != nil {
			return "", provider, &TokenError{provider, err.Error(), "run on a Buildkite agent ≥ 3.48 with OIDC enabled for the pipeline"}
		}
		token = string(out)
	case ProviderCircleCI:
		var out []byte
		out, err = o.exec(ctx, "circleci", "run", "oidc", "get", "--claims", `{"aud":"`+aud+`"}`)
		if err != nil {
			return "", provider, &TokenError{provider, err.Error(), "run inside a CircleCI job with a context that allows OIDC (CIRCLE_OIDC_TOKEN cannot be used: its aud is the org id)"}
		}
		token = string(out)
	case ProviderGoogle:
		token, err = o.google(ctx, aud)
	}
	if err != nil {
		return "", provider, err
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", provider, &TokenError{provider, "empty token", "check the token source"}
	}
	return token, provider, nil
}

// github asks the Actions runtime for a token (the same request actions/core makes),
// retrying transient failures.
func (o TokenOptions) github(ctx context.Context, aud string) (string, error) {
	reqURL, reqTok := o.getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), o.getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL == "" || reqTok == "" {
		return "", &TokenError{ProviderGitHub, "ACTIONS_ID_TOKEN_REQUEST_URL/ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set",
			"add `permissions: id-token: write` to the job (pull requests from forks never get one)"}
	}
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", &TokenError{ProviderGitHub, "ACTIONS_ID_TOKEN_REQUEST_URL is not a URL", ""}
	}
	q := u.Query()
	q.Set("audience", aud)
	u.RawQuery = q.Encode()
	var last error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(1<<attempt) * 250 * time.Millisecond):
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		req.Header.Set("Authorization", "bearer "+reqTok)
		req.Header.Set("Accept", "application/json")
		resp, err := o.client().Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			last = fmt.Errorf("HTTP %d", resp.StatusCode)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return "", &TokenError{ProviderGitHub, fmt.Sprintf("token request answered HTTP %d", resp.StatusCode),
				"check `permissions: id-token: write` on the job; the request token may have expired"}
		}
		var v struct {
			Value string `json:"value"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
			return "", &TokenError{ProviderGitHub, "token response has no value", ""}
		}
		return v.Value, nil
	}
	return "", &TokenError{ProviderGitHub, fmt.Sprintf("token request failed after retries: %v", last), "retry the job; GitHub's token service may be degraded"}
}

// google asks the metadata server for an identity token with the audience.
func (o TokenOptions) google(ctx context.Context, aud string) (string, error) {
	host := o.getenv("GCE_METADATA_HOST")
	if host == "" {
		host = "metadata.google.internal"
	}
	u := "http://" + host + "/computeMetadata/v1/instance/service-accounts/default/identity?format=full&audience=" + url.QueryEscape(aud)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := o.client().Do(req)
	if err != nil {
		return "", &TokenError{ProviderGoogle, fmt.Sprintf("metadata server: %v", err), "run on GCE/GKE/Cloud Build with a service account attached"}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", &TokenError{ProviderGoogle, fmt.Sprintf("metadata server answered HTTP %d", resp.StatusCode), "attach a service account to the VM or build"}
	}
	return string(body), nil
}

// Claims are the JWT claims the preflight looks at. They are read WITHOUT verifying the
// signature: Fulcio verifies it; the preflight only turns Fulcio's generic
// "error processing the identity token" into an error that says what to fix.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  []string `json:"-"`
	ExpiresAt int64    `json:"exp"`
	NotBefore int64    `json:"nbf"`
	IssuedAt  int64    `json:"iat"`
	Email     string   `json:"email"`
}

// ParseUnverifiedClaims decodes a JWT's payload. It never echoes the token.
func ParseUnverifiedClaims(token string) (Claims, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("not a JWT (want three dot-separated parts)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Claims{}, errors.New("JWT payload is not base64url")
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return Claims{}, errors.New("JWT payload is not a JSON object")
	}
	var aud struct {
		Aud json.RawMessage `json:"aud"`
	}
	_ = json.Unmarshal(raw, &aud)
	var one string
	var many []string
	if json.Unmarshal(aud.Aud, &one) == nil && one != "" {
		c.Audience = []string{one}
	} else if json.Unmarshal(aud.Aud, &many) == nil {
		c.Audience = many
	}
	return c, nil
}

// AcceptedIssuer is one OIDC issuer a Fulcio instance accepts: an exact URL or a
// wildcard pattern (https://oidc.circleci.com/org/*), with the audience it expects.
type AcceptedIssuer struct {
	URL      string
	Wildcard bool
	Audience string
}

// Preflight checks a token before Fulcio sees it. provider shapes the advice.
type Preflight struct {
	Provider string
	Audience string           // required audience (default "sigstore")
	Issuers  []AcceptedIssuer // if non-empty, iss must match one (from Fulcio's configuration)
	Issuer   string           // if set, iss must equal it (pinned in config)
	Now      time.Time        // default time.Now()
	// MinValidity is how long the token must still be valid (default 30s): enough for
	// Fulcio to see it unexpired.
	MinValidity time.Duration
}

// Check returns the token's claims or a TokenError that says the fix.
func (p Preflight) Check(token string) (Claims, error) {
	c, err := ParseUnverifiedClaims(token)
	if err != nil {
		return Claims{}, &TokenError{p.Provider, err.Error(), "pass an OIDC ID token (a JWT), not an access token or a file path"}
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	minv := p.MinValidity
	if minv == 0 {
		minv = 30 * time.Second
	}
	const skew = 60 * time.Second
	if c.ExpiresAt == 0 {
		return c, &TokenError{p.Provider, "token has no exp claim", "use an OIDC ID token from your CI"}
	}
	exp := time.Unix(c.ExpiresAt, 0).UTC()
	if now.Add(minv).After(exp) {
		fix := "fetch the token right before signing (fixity-sign does so for CI providers; an explicit identity_token must be fresh)"
		if p.Provider == ProviderGitLab {
			fix = "GitLab id_tokens live until the job times out and cannot be refreshed: sign earlier in the job or raise the job timeout"
		}
		return c, &TokenError{p.Provider, fmt.Sprintf("token expired at %s (now %s)", exp.Format(time.RFC3339), now.UTC().Format(time.RFC3339)), fix}
	}
	if c.NotBefore != 0 && now.Add(skew).Before(time.Unix(c.NotBefore, 0)) {
		return c, &TokenError{p.Provider, fmt.Sprintf("token not valid before %s (now %s)", time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), "check this machine's clock (NTP)"}
	}
	aud := p.Audience
	if aud == "" {
		aud = DefaultAudience
	}
	if !contains(c.Audience, aud) {
		return c, &TokenError{p.Provider, fmt.Sprintf("token audience is %q, Fulcio expects %q", c.Audience, aud), audienceFix(p.Provider, aud)}
	}
	if p.Issuer != "" && c.Issuer != p.Issuer {
		return c, &TokenError{p.Provider, fmt.Sprintf("token issuer is %q, the configuration pins %q", c.Issuer, p.Issuer), "sign from the CI the oidc_issuer setting names, or change oidc_issuer"}
	}
	if len(p.Issuers) > 0 {
		ok := false
		var names []string
		for _, ai := range p.Issuers {
			names = append(names, ai.URL)
			if ai.matches(c.Issuer) {
				ok = true
				if ai.Audience != "" && !contains(c.Audience, ai.Audience) {
					return c, &TokenError{p.Provider, fmt.Sprintf("token audience is %q, this Fulcio expects %q for issuer %s", c.Audience, ai.Audience, c.Issuer), audienceFix(p.Provider, ai.Audience)}
				}
				break
			}
		}
		if !ok {
			return c, &TokenError{p.Provider, fmt.Sprintf("token issuer %q is not accepted by this Fulcio (it accepts %s)", c.Issuer, strings.Join(names, ", ")),
				"sign with a token from one of those issuers, or point fulcio_url/signing_config at a Fulcio that trusts this issuer"}
		}
	}
	return c, nil
}

func audienceFix(provider, aud string) string {
	switch provider {
	case ProviderGitLab:
		return "set `id_tokens: { SIGSTORE_ID_TOKEN: { aud: " + aud + " } }` in the job"
	case ProviderCircleCI:
		return "the default CIRCLE_OIDC_TOKEN carries the org id as audience; use identity_provider = \"circleci\" so fixity requests aud=" + aud
	case ProviderToken, ProviderFile, ProviderEnv:
		return "mint the token with audience " + aud + " (or set identity_audience to what this Fulcio expects)"
	}
	return "request the token with audience " + aud + " (identity_audience)"
}

func (ai AcceptedIssuer) matches(iss string) bool {
	if !ai.Wildcard {
		return ai.URL == iss
	}
	ok, err := path.Match(ai.URL, iss)
	return err == nil && ok
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FulcioIssuers reads the issuers a Fulcio instance accepts (GET /api/v2/configuration).
// It doubles as a reachability check before a token is spent.
func FulcioIssuers(ctx context.Context, client *http.Client, fulcioURL string) ([]AcceptedIssuer, error) {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(fulcioURL, "/")+"/api/v2/configuration", nil)
	if err != nil {
		return nil, fmt.Errorf("fulcio %s: %w", fulcioURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fulcio %s unreachable: %w (is it up? check fulcio_url or the signing config's caUrls; nothing was signed)", fulcioURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fulcio %s: configuration answered HTTP %d", fulcioURL, resp.StatusCode)
	}
	var cfg struct {
		Issuers []struct {
			IssuerURL         string `json:"issuerUrl"`
			WildcardIssuerURL string `json:"wildcardIssuerUrl"`
			Audience          string `json:"audience"`
		} `json:"issuers"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, fmt.Errorf("fulcio %s: configuration: %w", fulcioURL, err)
	}
	var out []AcceptedIssuer
	for _, i := range cfg.Issuers {
		switch {
		case i.IssuerURL != "":
			out = append(out, AcceptedIssuer{URL: i.IssuerURL, Audience: i.Audience})
		case i.WildcardIssuerURL != "":
			out = append(out, AcceptedIssuer{URL: i.WildcardIssuerURL, Wildcard: true, Audience: i.Audience})
		}
	}
	return out, nil
}
