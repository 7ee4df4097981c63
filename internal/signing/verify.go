package signing

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Checks name what a verification failure was about, so users (and `fixity verify`)
// can say WHICH check failed.
const (
	CheckInput         = "input"  // the bundle, trusted root or options are unusable
	CheckBundle        = "bundle" // the bundle file does not parse as a Sigstore bundle
	CheckTlog          = "transparency-log"
	CheckTimestamp     = "timestamp"
	CheckCertificate   = "certificate-chain"
	CheckSCT           = "certificate-transparency"
	CheckSignature     = "signature"
	CheckDigest        = "digest"
	CheckIdentity      = "identity"
	CheckPredicateType = "predicate-type"
	CheckKey           = "key"
)

// VerifyError is a failed verification: Check says which check failed.
type VerifyError struct {
	Check string
	Err   error
}

func (e *VerifyError) Error() string { return e.Check + ": " + e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

// FailedCheck returns the Check of a *VerifyError in err's chain, or "".
func FailedCheck(err error) string {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Check
	}
	return ""
}

// IsUnusable reports whether err means the input could not be used at all (exit 2 in
// the CLI) rather than "verified to be bad" (exit 1).
func IsUnusable(err error) bool {
	c := FailedCheck(err)
	return c == CheckInput || c == CheckBundle
}

// Identity pins who may have signed: the OIDC issuer and the certificate SAN (exactly or
// by regular expression, as in cosign's --certificate-identity[-regexp] and
// --certificate-oidc-issuer[-regexp]) and any Fulcio certificate extensions, which must
// match exactly. Extension names are snake_case (github_workflow_repository,
// source_repository_uri, build_signer_uri, runner_environment, …; see ExtensionNames)
// or the camelCase names sigstore uses.
type Identity struct {
	Issuer       string            `json:"issuer,omitempty"`
	IssuerRegexp string            `json:"issuer_regexp,omitempty"`
	SAN          string            `json:"san,omitempty"`
	SANRegexp    string            `json:"san_regexp,omitempty"`
	Extensions   map[string]string `json:"extensions,omitempty"`
}

// PinsIssuerAndSAN reports whether the identity names both the OIDC issuer and the
// certificate SAN (each exactly or by regexp): what a release must be held to, where a
// bare extension pin would let any workflow of a repository through.
func (id Identity) PinsIssuerAndSAN() bool {
	return (id.Issuer != "" || id.IssuerRegexp != "") && (id.SAN != "" || id.SANRegexp != "")
}

// Empty reports whether the identity pins nothing.
func (id Identity) Empty() bool {
	return id.Issuer == "" && id.IssuerRegexp == "" && id.SAN == "" && id.SANRegexp == "" && len(id.Extensions) == 0
}

// VerifyOptions is everything a verification needs besides the bundle and the digest.
// A zero value is not usable: give Identities (keyless) or PublicKey (key mode).
type VerifyOptions struct {
	// TrustedRootPath is a trusted_root.json for offline verification. When neither it
	// nor TrustedMaterial is set, the public-good root is fetched through TUF.
	TrustedRootPath string
	// TrustedMaterial overrides TrustedRootPath (tests, long-running services).
	TrustedMaterial root.TrustedMaterial
	// Identities: the signer must match at least one. Required for keyless bundles:
	// an unpinned identity would accept anyone who can get a certificate from Fulcio.
	Identities []Identity
	// PublicKeyPath / PublicKey verify bundles signed in key mode (PEM public key).
	PublicKeyPath string
	PublicKey     crypto.PublicKey
	// PredicateType the statement must have; "" means PredicateImageRelease, "*" any.
	PredicateType string
	// TlogThreshold is how many transparency log entries must verify (default 1;
	// negative means none are required, for key-mode bundles made offline).
	TlogThreshold int
	// TimestampThreshold is how many observer timestamps (TSA or Rekor v1 integrated
	// time) must verify (default 1; negative: none, key mode only).
	TimestampThreshold int
	// RequireSCT requires an embedded SCT from a CT log in the trusted root. The default
	// (nil) requires one exactly when the trusted root lists CT logs, as cosign does.
	RequireSCT *bool
}

// Signer is who signed, read from the verified certificate (keyless) or the key hint.
type Signer struct {
	Issuer     string            `json:"issuer,omitempty"`
	SAN        string            `json:"san,omitempty"`
	Extensions map[string]string `json:"extensions,omitempty"`
	KeyHint    string            `json:"key_hint,omitempty"`
}

// Verified is the result of a successful verification.
type Verified struct {
	Signer        Signer          `json:"signer"`
	Subjects      []Subject       `json:"subjects"`
	PredicateType string          `json:"predicate_type"`
	Predicate     *ImageRelease   `json:"predicate,omitempty"` // set for PredicateImageRelease
	RawPredicate  json.RawMessage `json:"raw_predicate,omitempty"`
	BundleDigest  string          `json:"bundle_digest"` // sha256 of the bundle file bytes
	MatchedDigest string          `json:"matched_digest"`
	Timestamps    []time.Time     `json:"timestamps,omitempty"` // verified signing times
}

// Verifier checks many bundles against one policy; build once, call VerifyBundle many
// times (it is safe for concurrent use).
type Verifier struct {
	v             *verify.Verifier
	identities    []verify.CertificateIdentity
	keyMode       bool
	predicateType string
}

// NewVerifier compiles opts: loads the trusted root, validates identity pins.
func NewVerifier(opts VerifyOptions) (*Verifier, error) {
	tm := opts.TrustedMaterial
	var err error
	if tm == nil && opts.TrustedRootPath != "" {
		tm, err = root.NewTrustedRootFromPath(opts.TrustedRootPath)
		if err != nil {
			return nil, &VerifyError{CheckInput, fmt.Errorf("trusted root %s: %w (give a trusted_root.json, e.g. from `cosign trusted-root create`)", opts.TrustedRootPath, err)}
		}
	}
	pub := opts.PublicKey
	if pub == nil && opts.PublicKeyPath != "" {
		pub, err = LoadPublicKey(opts.PublicKeyPath)
		if err != nil {
			return nil, &VerifyError{CheckInput, err}
		}
	}
	if tm == nil && pub == nil {
		tr, err := root.FetchTrustedRoot()
		if err != nil {
			return nil, &VerifyError{CheckInput, fmt.Errorf("public-good trusted root via TUF: %w (offline? pass a trusted root file)", err)}
		}
		tm = tr
	}
	keyMode := pub != nil
	if keyMode {
		keyMat, err := keyMaterial(pub)
		if err != nil {
			return nil, &VerifyError{CheckInput, err}
		}
		if tm != nil {
			tm = root.TrustedMaterialCollection{tm, keyMat}
		} else {
			tm = keyMat
		}
	} else if len(opts.Identities) == 0 {
		return nil, &VerifyError{CheckInput, errors.New("no identity pinned: give the expected OIDC issuer and certificate identity (SAN), exactly or by regexp")}
	}

	var ids []verify.CertificateIdentity
	for i, id := range opts.Identities {
		ci, err := id.compile()
		if err != nil {
			return nil, &VerifyError{CheckInput, fmt.Errorf("identity %d: %w", i, err)}
		}
		ids = append(ids, ci)
	}

	tlog := opts.TlogThreshold
	if tlog == 0 {
		tlog = 1
	}
	ts := opts.TimestampThreshold
	if ts == 0 {
		ts = 1
	}
	// Results carry the statement's subjects and predicate type, not its predicate:
	// VerifyBundle reads those from the payload it checked, so sigstore-go need not
	// decode the whole statement a second time.
	vo := []verify.VerifierOption{verify.WithoutStatementPredicate()}
	if tlog > 0 {
		vo = append(vo, verify.WithTransparencyLog(tlog))
	}
	switch {
	case ts > 0:
		vo = append(vo, verify.WithObserverTimestamps(ts))
	case keyMode:
		vo = append(vo, verify.WithNoObserverTimestamps())
	default:
		return nil, &VerifyError{CheckInput, errors.New("keyless bundles need at least one verified timestamp (TSA or Rekor v1) to check the short-lived certificate")}
	}
	requireSCT := opts.RequireSCT
	if requireSCT == nil && !keyMode && tm != nil {
		has := len(tm.CTLogs()) > 0
		requireSCT = &has
	}
	if requireSCT != nil && *requireSCT {
		vo = append(vo, verify.WithSignedCertificateTimestamps(1))
	}
	v, err := verify.NewVerifier(withVerifiedTSAChains(tm), vo...)
	if err != nil {
		return nil, &VerifyError{CheckInput, fmt.Errorf("verifier: %w", err)}
	}
	pt := opts.PredicateType
	if pt == "" {
		pt = PredicateImageRelease
	}
	return &Verifier{v: v, identities: ids, keyMode: keyMode, predicateType: pt}, nil
}

// VerifyBundleFile reads and verifies one bundle file against subjectDigest
// ("sha256:HEX"). It is the one-call API for other packages (the ledger, the CLI).
func VerifyBundleFile(path string, subjectDigest string, opts VerifyOptions) (*Verified, error) {
	v, err := NewVerifier(opts)
	if err != nil {
		return nil, err
	}
	return v.VerifyFile(path, subjectDigest)
}

// VerifyFile reads and verifies one bundle file.
func (v *Verifier) VerifyFile(path string, subjectDigest string) (*Verified, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &VerifyError{CheckInput, fmt.Errorf("bundle %s: %w", path, err)}
	}
	res, err := v.VerifyBundle(b, subjectDigest)
	if err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			return nil, &VerifyError{ve.Check, fmt.Errorf("bundle %s: %w", path, ve.Err)}
		}
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return res, nil
}

// VerifyBundle verifies bundle bytes against one of subjectDigests (each "sha256:HEX";
// the first one the statement names is used, so an OCI layout with several manifests
// can pass them all). At least one digest is required: a bundle proves nothing
// about an image unless the image's hash is checked.
func (v *Verifier) VerifyBundle(b []byte, subjectDigests ...string) (*Verified, error) {
	if len(subjectDigests) == 0 {
		return nil, &VerifyError{CheckInput, errors.New("no subject digest given: pass the image digest (sha256:HEX) or the artifact")}
	}
	var want []string
	for _, d := range subjectDigests {
		h, err := ParseDigest(d)
		if err != nil {
			return nil, &VerifyError{CheckInput, err}
		}
		want = append(want, h)
	}
	bun, entries, err := parseBundle(b)
	if err != nil {
		return nil, &VerifyError{CheckBundle, fmt.Errorf("not a Sigstore bundle: %w", err)}
	}
	hint := ""
	if vm := bun.GetVerificationMaterial(); vm != nil && vm.GetPublicKey() != nil {
		hint = vm.GetPublicKey().GetHint()
	}
	out, err := v.verifyOnce(newOnceEntity(bun).withTlogEntries(entries), want)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	out.BundleDigest = "sha256:" + hex.EncodeToString(sum[:])
	out.Signer.KeyHint = hint
	return out, nil
}

// verifyEntity verifies any sigstore-go signed entity (a bundle, or a test entity)
// against the lower-case hex digests in want.
func (v *Verifier) verifyEntity(e verify.SignedEntity, want []string) (*Verified, error) {
	return v.verifyOnce(newOnceEntity(e), want)
}

func (v *Verifier) verifyOnce(entity *onceEntity, want []string) (*Verified, error) {
	sc, err := entity.SignatureContent()
	if err != nil {
		return nil, &VerifyError{CheckBundle, fmt.Errorf("bundle content: %w", err)}
	}
	ec := sc.EnvelopeContent()
	if ec == nil || ec.RawEnvelope() == nil {
		return nil, &VerifyError{CheckBundle, errors.New("bundle holds no DSSE envelope (a plain blob signature, not an attestation)")}
	}
	env := ec.RawEnvelope()
	if env.PayloadType != PayloadType {
		return nil, &VerifyError{CheckBundle, fmt.Errorf("DSSE payload type %q is not %q", env.PayloadType, PayloadType)}
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, &VerifyError{CheckBundle, fmt.Errorf("DSSE payload: %w", err)}
	}
	subjects, predType, rawPred, err := ParseStatement(payload)
	if err != nil {
		return nil, &VerifyError{CheckBundle, err}
	}
	// Choose the digest the (not yet authenticated) statement names; sigstore-go then
	// checks it against the authenticated payload.
	matched := ""
	for _, h := range want {
		for _, s := range subjects {
			if s.Hex() == h {
				matched = h
				break
			}
		}
		if matched != "" {
			break
		}
	}
	if matched == "" {
		names := make([]string, 0, len(subjects))
		for _, s := range subjects {
			names = append(names, s.Digest)
		}
		return nil, &VerifyError{CheckDigest, fmt.Errorf("the statement signs %s, not sha256:%s: this bundle is for another image", strings.Join(names, ", "), strings.Join(want, " or sha256:"))}
	}
	raw, _ := hex.DecodeString(matched)
	var popts []verify.PolicyOption
	if v.keyMode {
		popts = append(popts, verify.WithKey())
	} else {
		for _, id := range v.identities {
			popts = append(popts, verify.WithCertificateIdentity(id))
		}
	}
	res, err := v.v.Verify(entity, verify.NewPolicy(verify.WithArtifactDigest("sha256", raw), popts...))
	if err != nil {
		return nil, classify(err)
	}
	if v.predicateType != "*" && predType != v.predicateType {
		return nil, &VerifyError{CheckPredicateType, fmt.Errorf("predicate type is %q, want %q", predType, v.predicateType)}
	}
	out := &Verified{
		Subjects:      subjects,
		PredicateType: predType,
		RawPredicate:  rawPred,
		MatchedDigest: "sha256:" + matched,
	}
	if predType == PredicateImageRelease {
		var ir ImageRelease
		if err := json.Unmarshal(rawPred, &ir); err != nil {
			return nil, &VerifyError{CheckPredicateType, fmt.Errorf("predicate is not an ImageRelease: %w", err)}
		}
		out.Predicate = &ir
	}
	if res.Signature != nil && res.Signature.Certificate != nil {
		c := res.Signature.Certificate
		out.Signer = Signer{Issuer: c.Issuer, SAN: c.SubjectAlternativeName, Extensions: extensionMap(c.Extensions)}
	}
	for _, t := range res.VerifiedTimestamps {
		out.Timestamps = append(out.Timestamps, t.Timestamp.UTC())
	}
	return out, nil
}

// classify maps a sigstore-go verification error to the check that failed.
func classify(err error) error {
	var nomatch *verify.ErrNoMatchingCertificateIdentity
	msg := err.Error()
	check := CheckSignature
	switch {
	case errors.As(err, &nomatch) || strings.Contains(msg, "certificate identit"):
		check = CheckIdentity
	case strings.Contains(msg, "artifact digest"):
		check = CheckDigest
	case strings.HasPrefix(msg, "failed to verify log inclusion"):
		check = CheckTlog
	case strings.HasPrefix(msg, "failed to verify timestamps"):
		check = CheckTimestamp
	case strings.HasPrefix(msg, "failed to verify leaf certificate"):
		check = CheckCertificate
	case strings.HasPrefix(msg, "failed to verify signed certificate timestamp"):
		check = CheckSCT
	case strings.Contains(msg, "expected key signature") || strings.Contains(msg, "public key"):
		check = CheckKey
	}
	return &VerifyError{check, err}
}

// compile turns an Identity into a sigstore-go CertificateIdentity.
func (id Identity) compile() (verify.CertificateIdentity, error) {
	if id.Issuer == "" && id.IssuerRegexp == "" {
		return verify.CertificateIdentity{}, errors.New("no OIDC issuer pinned: set issuer (e.g. https://token.actions.githubusercontent.com) or issuer_regexp")
	}
	if id.SAN == "" && id.SANRegexp == "" && len(id.Extensions) == 0 {
		return verify.CertificateIdentity{}, errors.New("no signer pinned: set the certificate identity (SAN, exact or regexp) or certificate extensions such as source_repository_uri")
	}
	for _, re := range []string{id.IssuerRegexp, id.SANRegexp} {
		if re == "" {
			continue
		}
		if _, err := regexp.Compile(re); err != nil {
			return verify.CertificateIdentity{}, fmt.Errorf("regexp %q: %w", re, err)
		}
	}
	san, err := verify.NewSANMatcher(id.SAN, id.SANRegexp)
	if err != nil {
		return verify.CertificateIdentity{}, err
	}
	if id.SAN == "" && id.SANRegexp == "" {
		san, _ = verify.NewSANMatcher("", ".*")
	}
	iss, err := verify.NewIssuerMatcher(id.Issuer, id.IssuerRegexp)
	if err != nil {
		return verify.CertificateIdentity{}, err
	}
	var ext certificate.Extensions
	if err := setExtensions(&ext, id.Extensions); err != nil {
		return verify.CertificateIdentity{}, err
	}
	return verify.NewCertificateIdentity(san, iss, ext)
}

// extField maps snake_case and camelCase extension names to certificate.Extensions
// field indexes.
var extField, extNames = func() (map[string]int, []string) {
	m := map[string]int{}
	var names []string
	t := reflect.TypeOf(certificate.Extensions{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() != reflect.String {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" || tag == "issuer" {
			continue // the issuer is pinned by the issuer matcher
		}
		s := snake(tag)
		m[s], m[tag], m[strings.ToLower(tag)] = i, i, i
		names = append(names, s)
	}
	sort.Strings(names)
	return m, names
}()

// ExtensionNames lists the snake_case Fulcio extension names an Identity can pin.
func ExtensionNames() []string { return append([]string(nil), extNames...) }

func snake(camel string) string {
	var b strings.Builder
	rs := []rune(camel)
	for i, r := range rs {
		if unicode.IsUpper(r) && i > 0 && unicode.IsLower(rs[i-1]) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func setExtensions(ext *certificate.Extensions, pins map[string]string) error {
	rv := reflect.ValueOf(ext).Elem()
	seen := map[int]string{}
	for k, val := range pins {
		i, ok := extField[k]
		if !ok {
			i, ok = extField[strings.ReplaceAll(strings.ToLower(k), "-", "_")]
		}
		if !ok {
			return fmt.Errorf("unknown certificate extension %q: want one of %s", k, strings.Join(extNames, ", "))
		}
		if prev, dup := seen[i]; dup {
			return fmt.Errorf("certificate extension pinned twice (%q and %q): keep one", prev, k)
		}
		seen[i] = k
		rv.Field(i).SetString(val)
	}
	return nil
}

func extensionMap(ext certificate.Extensions) map[string]string {
	out := map[string]string{}
	rv := reflect.ValueOf(ext)
	for _, n := range extNames {
		if s := rv.Field(extField[n]).String(); s != "" {
			out[n] = s
		}
	}
	return out
}

// BundleStatement returns the (unauthenticated) statement of a bundle, for listing and
// error messages. Never base a decision on it without VerifyBundle.
func BundleStatement(b []byte) (subjects []Subject, predicateType string, err error) {
	var bun bundle.Bundle
	if err := bun.UnmarshalJSON(b); err != nil {
		return nil, "", &VerifyError{CheckBundle, fmt.Errorf("not a Sigstore bundle: %w", err)}
	}
	env := bun.GetDsseEnvelope()
	if env == nil {
		return nil, "", &VerifyError{CheckBundle, errors.New("bundle holds no DSSE envelope")}
	}
	s, pt, _, err := ParseStatement(env.Payload)
	if err != nil {
		return nil, "", &VerifyError{CheckBundle, err}
	}
	return s, pt, nil
}

// b64 is used by tests and the key-hint helpers.
var b64 = base64.StdEncoding

// keyMaterial trusts one public key (key mode) for all time.
func keyMaterial(pub crypto.PublicKey) (root.TrustedMaterial, error) {
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	}), nil
}
