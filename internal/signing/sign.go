package signing

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// SignOptions configures a Service. With no trusted root, signing config or URLs at all,
// the public-good Sigstore instance is used (trusted root and signing config through
// TUF). A private instance needs TrustedRootPath plus SigningConfigPath, or explicit
// URLs; explicit URLs override what the signing config selects.
type SignOptions struct {
	TrustedRootPath   string
	SigningConfigPath string
	TrustedRoot       root.TrustedMaterial // overrides TrustedRootPath
	SigningConfig     *root.SigningConfig  // overrides SigningConfigPath

	FulcioURL string
	RekorURL  string
	TSAURL    string // full URL, e.g. https://tsa.example/api/v1/timestamp
	// RekorVersion for an explicit RekorURL: 1 or 2 (default 2 when a TSA is configured, else 1).
	RekorVersion uint32
	// NoTlog skips the transparency log (key mode on air-gapped sites only).
	NoTlog bool

	// Token says where the OIDC identity comes from (keyless mode).
	Token TokenOptions
	// OIDCIssuer pins the token issuer (checked before Fulcio sees the token).
	OIDCIssuer string
	// Key switches to key mode: no Fulcio, the bundle carries the key hint.
	Key *KeyPair

	// Retries per service call on 5xx/429/network errors, with exponential backoff (default 3).
	Retries uint
	// Timeout per request (default 30s) and Deadline for the whole signing (default 5m).
	Timeout  time.Duration
	Deadline time.Duration
	// Transport for Fulcio, TSA and configuration requests (tests); nil = default.
	Transport http.RoundTripper
}

// Timings splits the latency of one signing by step.
type Timings struct {
	Token  time.Duration `json:"token"`
	Fulcio time.Duration `json:"fulcio"`
	TSA    time.Duration `json:"tsa"`
	Rekor  time.Duration `json:"rekor"`
	Verify time.Duration `json:"verify"`
	Total  time.Duration `json:"total"`
}

// SignResult is one signed statement.
type SignResult struct {
	Bundle   []byte    // bundle v0.3 JSON
	Verified *Verified // the signer's own verification of Bundle
	Provider string    // where the token came from ("" in key mode)
	Timings  Timings
}

// Service signs statements against one resolved set of services; build once per run.
type Service struct {
	opts         SignOptions
	trusted      root.TrustedMaterial
	fulcioURL    string
	tsaURLs      []string
	rekorURL     string
	rekorVersion uint32
}

// NewService loads the trusted root and signing config and selects services.
func NewService(opts SignOptions) (*Service, error) {
	if opts.Retries == 0 {
		opts.Retries = 3
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Deadline == 0 {
		opts.Deadline = 5 * time.Minute
	}
	s := &Service{opts: opts, trusted: opts.TrustedRoot}
	explicit := opts.FulcioURL != "" || opts.RekorURL != "" || opts.TSAURL != ""
	private := explicit || opts.Key != nil || opts.SigningConfigPath != "" || opts.SigningConfig != nil || opts.TrustedRootPath != ""
	var err error
	if s.trusted == nil {
		switch {
		case opts.TrustedRootPath != "":
			s.trusted, err = root.NewTrustedRootFromPath(opts.TrustedRootPath)
			if err != nil {
				return nil, fmt.Errorf("trusted_root %s: %w", opts.TrustedRootPath, err)
			}
		case private && opts.Key == nil:
			return nil, errors.New("trusted_root: required with signing_config or explicit fulcio_url/rekor_url/tsa_url, so the new bundle can be verified against the private instance (create one with `cosign trusted-root create`)")
		case !private:
			s.trusted, err = root.FetchTrustedRoot()
			if err != nil {
				return nil, fmt.Errorf("public-good trusted root via TUF: %w (offline? give trusted_root and signing_config for a private instance)", err)
			}
		}
	}
	sc := opts.SigningConfig
	if sc == nil && opts.SigningConfigPath != "" {
		sc, err = root.NewSigningConfigFromPath(opts.SigningConfigPath)
		if err != nil {
			return nil, fmt.Errorf("signing_config %s: %w", opts.SigningConfigPath, err)
		}
	}
	if sc == nil && !private {
		sc, err = root.FetchSigningConfig()
		if err != nil {
			return nil, fmt.Errorf("public-good signing config via TUF: %w", err)
		}
	}
	now := time.Now()
	if sc != nil {
		if opts.Key == nil && opts.FulcioURL == "" {
			svc, err := root.SelectService(sc.FulcioCertificateAuthorityURLs(), sign.FulcioAPIVersions, now)
			if err != nil {
				return nil, fmt.Errorf("signing_config: no usable Fulcio: %w", err)
			}
			s.fulcioURL = svc.URL
		}
		if opts.TSAURL == "" && len(sc.TimestampAuthorityURLs()) > 0 {
			svcs, err := root.SelectServices(sc.TimestampAuthorityURLs(), sc.TimestampAuthorityURLsConfig(), sign.TimestampAuthorityAPIVersions, now)
			if err != nil {
				return nil, fmt.Errorf("signing_config: no usable timestamp authority: %w", err)
			}
			for _, svc := range svcs {
				s.tsaURLs = append(s.tsaURLs, svc.URL)
			}
		}
		if opts.RekorURL == "" && !opts.NoTlog && len(sc.RekorLogURLs()) > 0 {
			svc, err := root.SelectService(sc.RekorLogURLs(), sign.RekorAPIVersions, now)
			if err != nil {
				return nil, fmt.Errorf("signing_config: no usable Rekor: %w", err)
			}
			s.rekorURL, s.rekorVersion = svc.URL, svc.MajorAPIVersion
		}
	}
	if opts.FulcioURL != "" {
		s.fulcioURL = opts.FulcioURL
	}
	if opts.TSAURL != "" {
		s.tsaURLs = []string{opts.TSAURL}
	}
	if opts.RekorURL != "" && !opts.NoTlog {
		s.rekorURL, s.rekorVersion = opts.RekorURL, opts.RekorVersion
		if s.rekorVersion == 0 {
			s.rekorVersion = 1
			if len(s.tsaURLs) > 0 {
				s.rekorVersion = 2
			}
		}
	}
	if s.rekorVersion != 0 && s.rekorVersion != 1 && s.rekorVersion != 2 {
		return nil, fmt.Errorf("rekor_version %d: want 1 or 2", s.rekorVersion)
	}
	if opts.Key == nil {
		if s.fulcioURL == "" {
			return nil, errors.New("fulcio_url: no Fulcio configured: set fulcio_url or a signing_config with caUrls, or use key mode")
		}
		if s.rekorURL == "" && len(s.tsaURLs) == 0 {
			return nil, errors.New("keyless signing needs a signing time from a timestamp authority (tsa_url) or Rekor v1 (rekor_url): the Fulcio certificate lives only 10 minutes")
		}
	}
	if s.rekorVersion == 2 && len(s.tsaURLs) == 0 && opts.Key == nil {
		return nil, errors.New("rekor v2 gives no signing time: configure a timestamp authority (tsa_url or signing_config tsaUrls) or use Rekor v1")
	}
	return s, nil
}

// Services describes the selected services (for logs).
func (s *Service) Services() string {
	var parts []string
	if s.opts.Key != nil {
		parts = append(parts, "key "+string(s.opts.Key.GetHint()))
	} else {
		parts = append(parts, "fulcio "+s.fulcioURL)
	}
	for _, t := range s.tsaURLs {
		parts = append(parts, "tsa "+t)
	}
	if s.rekorURL != "" {
		parts = append(parts, fmt.Sprintf("rekor v%d %s", s.rekorVersion, s.rekorURL))
	}
	return strings.Join(parts, ", ")
}

// Sign signs one in-toto statement (DSSE), then verifies the bundle it made with the
// signer's own identity pinned and the first subject's digest. The token is fetched
// here — right before Fulcio needs it — never earlier.
func (s *Service) Sign(ctx context.Context, statement []byte) (*SignResult, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.opts.Deadline)
	defer cancel()
	subjects, _, _, err := ParseStatement(statement)
	if err != nil || len(subjects) == 0 {
		return nil, fmt.Errorf("statement has no sha256 subject: %v", err)
	}
	res := &SignResult{}
	client := &http.Client{Timeout: s.opts.Timeout, Transport: s.opts.Transport}
	var keypair sign.Keypair
	bo := sign.BundleOptions{Context: ctx, TrustedRoot: s.trusted}
	var claims Claims
	if s.opts.Key != nil {
		keypair = s.opts.Key
		km, err := keyMaterial(s.opts.Key.GetPublicKey())
		if err != nil {
			return nil, err
		}
		if s.trusted != nil {
			bo.TrustedRoot = root.TrustedMaterialCollection{s.trusted, km}
		} else {
			bo.TrustedRoot = km
		}
	} else {
		// Reachability and accepted issuers first: a token is not spent on a dead Fulcio.
		issuers, err := FulcioIssuers(ctx, client, s.fulcioURL)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		tok, provider, err := FetchToken(ctx, s.opts.Token)
		if err != nil {
			return nil, err
		}
		res.Provider = provider
		claims, err = Preflight{Provider: provider, Audience: s.opts.Token.audience(), Issuers: issuers, Issuer: s.opts.OIDCIssuer}.Check(tok)
		if err != nil {
			return nil, err
		}
		res.Timings.Token = time.Since(t0)
		keypair, err = sign.NewEphemeralKeypair(nil)
		if err != nil {
			return nil, err
		}
		bo.CertificateProvider = &timedFulcio{
			f:   sign.NewFulcio(&sign.FulcioOptions{BaseURL: s.fulcioURL, Timeout: s.opts.Timeout, Retries: s.opts.Retries, Transport: s.opts.Transport}),
			url: s.fulcioURL, d: &res.Timings.Fulcio,
		}
		bo.CertificateProviderOptions = &sign.CertificateProviderOptions{IDToken: tok}
	}
	tsaRT := &timedTransport{next: s.opts.Transport}
	for _, u := range s.tsaURLs {
		bo.TimestampAuthorities = append(bo.TimestampAuthorities, sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{
			URL: u, Timeout: s.opts.Timeout, Retries: s.opts.Retries, Transport: tsaRT}))
	}
	if s.rekorURL != "" {
		bo.TransparencyLogs = []sign.Transparency{&timedRekor{
			r:   sign.NewRekor(&sign.RekorOptions{BaseURL: s.rekorURL, Timeout: s.opts.Timeout, Retries: s.opts.Retries, Version: s.rekorVersion}),
			url: s.rekorURL, d: &res.Timings.Rekor,
		}}
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: PayloadType}, keypair, bo)
	res.Timings.TSA = tsaRT.total()
	if err != nil {
		msg := err.Error()
		switch {
		case strings.HasPrefix(msg, "fulcio ") || strings.HasPrefix(msg, "rekor "):
			return nil, err
		case strings.HasPrefix(msg, "failed to verify") || strings.HasPrefix(msg, "threshold not met"):
			return nil, fmt.Errorf("self-verification of the new bundle failed (nothing written): %w", err)
		case len(s.tsaURLs) > 0 && (tsaRT.failed() != nil || strings.Contains(msg, "timestamp")):
			return nil, fmt.Errorf("timestamp authority %s: %w (is it up? check tsa_url or the signing config's tsaUrls; nothing was written)", strings.Join(s.tsaURLs, ","), err)
		}
		return nil, err
	}
	b, err := bundleJSON(pb)
	if err != nil {
		return nil, err
	}
	// Verify our own bundle the way a security team will: identity pinned, digest checked.
	t1 := time.Now()
	vopts := VerifyOptions{TrustedMaterial: s.trusted, PredicateType: "*"}
	if s.rekorURL == "" {
		vopts.TlogThreshold = -1
	}
	if s.opts.Key != nil {
		vopts.PublicKey = s.opts.Key.GetPublicKey()
		if len(s.tsaURLs) == 0 && s.rekorURL == "" {
			vopts.TimestampThreshold = -1
		}
		if s.rekorURL != "" && s.rekorVersion == 2 && len(s.tsaURLs) == 0 {
			vopts.TimestampThreshold = -1
		}
	} else {
		leaf := pb.GetVerificationMaterial().GetCertificate().GetRawBytes()
		cert, err := x509.ParseCertificate(leaf)
		if err != nil {
			return nil, fmt.Errorf("self-verification: certificate: %w", err)
		}
		sum, err := certificate.SummarizeCertificate(cert)
		if err != nil {
			return nil, fmt.Errorf("self-verification: certificate: %w", err)
		}
		if sum.Issuer != claims.Issuer {
			return nil, fmt.Errorf("self-verification: Fulcio certified issuer %q but the token came from %q", sum.Issuer, claims.Issuer)
		}
		f := false
		vopts.RequireSCT = &f
		if s.trusted != nil && len(s.trusted.CTLogs()) > 0 {
			t := true
			vopts.RequireSCT = &t
		}
		vopts.Identities = []Identity{{Issuer: sum.Issuer, SAN: sum.SubjectAlternativeName}}
	}
	v, err := NewVerifier(vopts)
	if err != nil {
		return nil, fmt.Errorf("self-verification: %w", err)
	}
	res.Verified, err = v.VerifyBundle(b, subjects[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("self-verification of the new bundle failed (nothing written): %w", err)
	}
	res.Timings.Verify = time.Since(t1)
	res.Timings.Total = time.Since(start)
	res.Bundle = b
	return res, nil
}

// SignToFile signs and writes the bundle atomically to path; on any error nothing is
// written.
func (s *Service) SignToFile(ctx context.Context, statement []byte, path string) (*SignResult, error) {
	res, err := s.Sign(ctx, statement)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, res.Bundle, 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func bundleJSON(pb *protobundle.Bundle) ([]byte, error) {
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return b.MarshalJSON()
}

// timedFulcio wraps the Fulcio client to time it and name it in errors.
type timedFulcio struct {
	f   *sign.Fulcio
	url string
	d   *time.Duration
}

func (t *timedFulcio) GetCertificate(ctx context.Context, kp sign.Keypair, o *sign.CertificateProviderOptions) ([]byte, error) {
	start := time.Now()
	b, err := t.f.GetCertificate(ctx, kp, o)
	*t.d += time.Since(start)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "400") || strings.Contains(msg, "401") || strings.Contains(msg, "403") {
			return nil, fmt.Errorf("fulcio %s refused the identity token: %w (check the issuer, audience and that the token is not expired; Fulcio's own log has the reason)", t.url, err)
		}
		return nil, fmt.Errorf("fulcio %s: %w", t.url, err)
	}
	return b, nil
}

// timedRekor wraps a Rekor client to time it and name it in errors.
type timedRekor struct {
	r   *sign.Rekor
	url string
	d   *time.Duration
}

func (t *timedRekor) GetTransparencyLogEntry(ctx context.Context, pem []byte, b *protobundle.Bundle) error {
	start := time.Now()
	err := t.r.GetTransparencyLogEntry(ctx, pem, b)
	*t.d += time.Since(start)
	if err != nil {
		return fmt.Errorf("rekor %s: %w (is it up? check rekor_url or the signing config's rekorTlogUrls; nothing was written)", t.url, err)
	}
	return nil
}

// timedTransport measures the time spent in TSA requests and remembers failures.
type timedTransport struct {
	next    http.RoundTripper
	mu      sync.Mutex
	elapsed time.Duration
	err     error
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	start := time.Now()
	resp, err := next.RoundTrip(r)
	t.mu.Lock()
	t.elapsed += time.Since(start)
	if err != nil {
		t.err = err
	} else if resp.StatusCode >= 400 {
		t.err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	t.mu.Unlock()
	return resp, err
}

func (t *timedTransport) total() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.elapsed
}

func (t *timedTransport) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}
