// Package policy is Fixity's identity policy model: it decodes *.fixity.hcl files into a
// small compiled IR, lints it against the OIDC trust patterns that have burned real
// teams, runs its tests with the very evaluator that runs inside the image, and writes
// the canonical bundle (policy.json, pinned JWKS, manifest.json) whose digest is the
// policy digest.
//
// The evaluator is plain Go over the IR (plus an optional CEL condition per identity):
// it is built once with NewEvaluator and called many times with Decide, both by the
// build-time test runner and by the runtime authz package, so what was tested is what
// runs.
package policy

import (
	"encoding/json"
	"fmt"
	"time"
)

// Policy is the compiled IR of one or more policy files. It is plain data and
// JSON-serialisable: its canonical encoding is the bundle's policy.json.
type Policy struct {
	// Version is the policy author's `policy_version` (an integer they bump).
	Version    int        `json:"policy_version"`
	Issuers    []Issuer   `json:"issuers"`
	Identities []Identity `json:"identities"`
	Profiles   []Profile  `json:"profiles"`
	Bindings   []Binding  `json:"bindings"`
	Tests      []Test     `json:"tests,omitempty"`
}

// Pos is where an element was declared, so lint findings and test failures can point
// at a file and line. Render keeps only the file's base name so a bundle does not depend
// on the folder it was built in.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col,omitempty"`
}

func (p Pos) String() string {
	if p.Col > 0 {
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// JWKS modes.
const (
	JWKSPinned        = "pinned"         // only the keys baked into the bundle; no network
	JWKSRemote        = "remote"         // fetched from the issuer at run time (rate limited)
	JWKSPinnedRefresh = "pinned+refresh" // baked keys first, refetched (rate limited) on an unknown kid
)

// Issuer is one OIDC relying-party configuration: everything the runtime needs to
// verify a token of this issuer before Decide sees its claims.
type Issuer struct {
	// ID is the block label, e.g. "github"; bundle keys live in jwks/<ID>.json.
	ID     string `json:"id"`
	Preset string `json:"preset"`
	// URL is the exact `iss` value (compared byte for byte, trailing slash included).
	URL string `json:"url"`
	// Audience is the one `aud` value this relying party accepts.
	Audience string `json:"audience"`
	// Algorithms is the JWS alg allowlist (never none or HS*).
	Algorithms []string `json:"algorithms"`
	// ClockSkew is the single leeway applied to exp, nbf and iat.
	ClockSkew Duration `json:"clock_skew"`
	// MaxTokenLifetime bounds exp - iat (0 = not set; lint L15 refuses that).
	MaxTokenLifetime Duration `json:"max_token_lifetime"`
	// SubjectFormat is "default", "immutable" or "custom" (how the issuer builds sub).
	SubjectFormat string `json:"subject_format,omitempty"`
	// Tenant constraints are checked for every token of this issuer (multi-tenant pin).
	Tenant []Constraint `json:"tenant,omitempty"`
	JWKS   JWKS         `json:"jwks"`
	Pos    Pos          `json:"pos"`
	// AttrPos records where each attribute was written (for lint findings); not serialised.
	AttrPos map[string]Pos `json:"-"`
}

// JWKS says where the issuer's verification keys come from.
type JWKS struct {
	Mode string `json:"mode"`
	// File is the pinned key set's path: as written in the policy (resolved against the
	// policy file's folder) after LoadFiles, "jwks/<issuer>.json" inside a bundle.
	File string `json:"file,omitempty"`
	// URL is an explicit jwks_uri; empty means OIDC discovery from the issuer URL.
	URL string `json:"url,omitempty"`
	// MinRefreshInterval rate-limits remote fetches (remote and pinned+refresh modes).
	MinRefreshInterval Duration `json:"min_refresh_interval,omitempty"`
	// SnapshotDate is when the pinned key set was fetched (RFC 3339 date or time), so
	// lint can refuse keys older than MaxSnapshotAge: issuers rotate, and a stale
	// snapshot baked into an image fails every token signed with a newer key.
	SnapshotDate string `json:"snapshot_date,omitempty"`
	// MaxSnapshotAge bounds the snapshot's age at build time (default 90 days).
	MaxSnapshotAge Duration `json:"max_snapshot_age,omitempty"`
	// SHA256 is the hex digest of the pinned key set file (set by Render / LoadBundle).
	SHA256 string `json:"sha256,omitempty"`
	// Keys is the pinned JWK Set document (RFC 7517 JSON). Filled by LoadFiles (from
	// File), Render (from discovery when no file was given) and LoadBundle; it is stored
	// in its own bundle file, not inside policy.json.
	Keys json.RawMessage `json:"-"`
	Pos  Pos             `json:"pos"`
}

// Constraint restricts one claim: the claim's value (or, for an array claim, any of its
// elements) must equal one of Values, or match one of them as an anchored glob when
// Glob is set. Claim names may be dotted paths into nested claims
// (kubernetes.io.serviceaccount.uid).
type Constraint struct {
	Claim  string   `json:"claim"`
	Values []string `json:"values"`
	Glob   bool     `json:"glob,omitempty"`
	Pos    Pos      `json:"pos"`
}

// Alternative is one `match` or `match_glob` block: every constraint must hold.
type Alternative struct {
	Constraints []Constraint `json:"constraints"`
	Glob        bool         `json:"glob,omitempty"`
	Pos         Pos          `json:"pos"`
}

// Identity is a named trust rule on one issuer: a token is this identity when any
// alternative and every `require` constraint hold and the CEL condition (if any) is true.
type Identity struct {
	ID        string        `json:"id"`
	Issuer    string        `json:"issuer"`
	Kind      string        `json:"kind,omitempty"`
	Match     []Alternative `json:"match"`
	Require   []Constraint  `json:"require,omitempty"`
	Condition string        `json:"condition,omitempty"`
	// ConditionPos points at the condition attribute.
	ConditionPos Pos `json:"condition_pos,omitzero"`
	Pos          Pos `json:"pos"`
}

// Profile is a narrow resource profile: what a session may do, where, for how long.
type Profile struct {
	ID          string   `json:"id"`
	Environment string   `json:"environment"`
	Permissions []string `json:"permissions"`
	// Resources are anchored globs; empty means the permissions are not resource scoped.
	Resources  []string `json:"resources,omitempty"`
	MaxSession Duration `json:"max_session,omitempty"`
	SingleUse  bool     `json:"single_use,omitempty"`
	Pos        Pos      `json:"pos"`
	// AttrPos records where each attribute was written (for lint findings); not serialised.
	AttrPos map[string]Pos `json:"-"`
}

// Binding effects.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Binding gives an identity profiles (allow) or takes them away (deny). Deny wins;
// nothing is allowed without an allow binding.
type Binding struct {
	// ID is the optional `name` attribute, else "binding[N]" (N = 1-based order of declaration).
	ID       string   `json:"id"`
	Identity string   `json:"identity"`
	Profiles []string `json:"profiles"`
	Effect   string   `json:"effect"`
	Pos      Pos      `json:"pos"`
}

// Test is a claims fixture plus a request with the expected decision.
type Test struct {
	ID      string         `json:"id"`
	Claims  map[string]any `json:"claims"`
	Request TestRequest    `json:"request"`
	Expect  string         `json:"expect"`
	// ExpectReason optionally pins the reason code of the decision.
	ExpectReason string `json:"expect_reason,omitempty"`
	// Mutants is "auto", "none" or a list of mutant kinds (see MutantKinds).
	Mutants []string `json:"mutants,omitempty"`
	Extends string   `json:"extends,omitempty"`
	// Now is the evaluation time; zero means "derived from the claims" (see RunTests).
	Now time.Time `json:"now,omitzero"`
	Pos Pos       `json:"pos"`
}

// TestRequest is what the test asks for: a profile, or a permission (and resource).
type TestRequest struct {
	Profile    string `json:"profile,omitempty"`
	Permission string `json:"permission,omitempty"`
	Resource   string `json:"resource,omitempty"`
}

// Duration is a time.Duration that encodes as a Go duration string ("10m0s") in JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes the duration as a string such as "1m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"60s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Issuer returns the issuer with the given ID, or nil.
func (p *Policy) Issuer(id string) *Issuer {
	for i := range p.Issuers {
		if p.Issuers[i].ID == id {
			return &p.Issuers[i]
		}
	}
	return nil
}

// IssuerByURL returns the issuer whose URL equals iss exactly, or nil.
func (p *Policy) IssuerByURL(iss string) *Issuer {
	for i := range p.Issuers {
		if p.Issuers[i].URL == iss {
			return &p.Issuers[i]
		}
	}
	return nil
}

// Identity returns the identity with the given ID, or nil.
func (p *Policy) Identity(id string) *Identity {
	for i := range p.Identities {
		if p.Identities[i].ID == id {
			return &p.Identities[i]
		}
	}
	return nil
}

// Profile returns the profile with the given ID, or nil.
func (p *Policy) Profile(id string) *Profile {
	for i := range p.Profiles {
		if p.Profiles[i].ID == id {
			return &p.Profiles[i]
		}
	}
	return nil
}

// at returns the position of attribute name if recorded, else def.
func at(m map[string]Pos, name string, def Pos) Pos {
	if p, ok := m[name]; ok {
		return p
	}
	return def
}
