package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
)

// Reason codes of a Decision. They are stable: logs, metrics and `expect_reason` in
// tests use them. authz adds its own codes for the token layer (signature, alg, size).
const (
	ReasonAllow              = "allow"               // an allow binding grants the request
	ReasonBadRequest         = "bad_request"         // no permission and no profile asked for
	ReasonUnknownIssuer      = "unknown_issuer"      // iss is not configured (exact match)
	ReasonIssuerMismatch     = "issuer_mismatch"     // the routed issuer's URL differs from iss
	ReasonAudienceMismatch   = "audience_mismatch"   // aud is missing or is not this RP's audience
	ReasonMultipleAudiences  = "multiple_audiences"  // aud lists more than one audience
	ReasonExpMissing         = "exp_missing"         // no exp claim
	ReasonIatMissing         = "iat_missing"         // no iat claim (needed for the lifetime bound)
	ReasonExpired            = "token_expired"       // exp + leeway <= now
	ReasonNotYetValid        = "token_not_yet_valid" // nbf - leeway > now
	ReasonIssuedInFuture     = "token_issued_in_future"
	ReasonLifetimeExceeded   = "token_lifetime_exceeded" // exp - iat > max_token_lifetime
	ReasonBadTimeClaim       = "bad_time_claim"          // exp/nbf/iat is not a number
	ReasonSchemaViolation    = "schema_violation"        // a required preset claim is missing or mistyped
	ReasonTenantMismatch     = "tenant_mismatch"         // the issuer's tenant pin does not hold
	ReasonNoIdentity         = "no_identity"             // no identity of the issuer matches the claims
	ReasonDeniedByBinding    = "denied_by_binding"       // a deny binding covers the request (deny wins)
	ReasonNotGranted         = "not_granted"             // identity matched, no allow binding covers the request
	ReasonUnknownProfile     = "unknown_profile"         // request names a profile the policy lacks
	ReasonResourceNotGranted = "resource_not_granted"    // permission granted, but not on this resource
)

// Request is one authorization question about an already verified token.
type Request struct {
	// Issuer is the issuer ID (block label) the token was verified for; empty means
	// "route by the iss claim" (exact match on the issuer URL).
	Issuer string
	// Claims are the token's decoded claims (JSON shapes: string, float64, bool, []any, map).
	Claims map[string]any
	// Permission (e.g. "service:deploy") and Resource (e.g. "svc/payments/api") ask
	// whether some granted profile includes them. An empty Resource matches only
	// profiles without a resources list.
	Permission string
	Resource   string
	// Profile optionally asks for one named profile (the session a caller wants).
	Profile string
	// Now is the evaluation time for the token-time checks; zero means time.Now().
	Now time.Time
}

// Decision is the answer, with a stable reason code and what matched.
type Decision struct {
	Allow    bool   `json:"allow"`
	Reason   string `json:"reason"`
	Issuer   string `json:"issuer,omitempty"`
	Identity string `json:"identity,omitempty"`
	Binding  string `json:"binding,omitempty"`
	Profile  string `json:"profile,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// SingleUse and MaxSession come from the granting profile: authz enforces jti replay
	// protection and session length with them.
	SingleUse  bool     `json:"single_use,omitempty"`
	MaxSession Duration `json:"max_session,omitempty"`
}

// CheckError is a failed claims check with its reason code.
type CheckError struct {
	Reason string
	Detail string
}

func (e *CheckError) Error() string { return e.Reason + ": " + e.Detail }

// Evaluator decides requests against one compiled policy. Build it once; Decide is safe
// for concurrent use.
type Evaluator struct {
	p          *Policy
	issuers    map[string]*compiledIssuer
	byURL      map[string]*compiledIssuer
	profiles   map[string]*Profile
	identities map[string]*compiledIdentity
}

type compiledIssuer struct {
	is         *Issuer
	preset     *Preset
	identities []*compiledIdentity
	// Identities are indexed by the value of the preset's first pin claim when every
	// alternative pins it exactly (positions into identities, ascending); the rest are
	// always scanned. This keeps large policies O(1) per token without changing results.
	pinClaim  string
	byPin     map[string][]int
	unindexed []int
}

type compiledIdentity struct {
	id       *Identity
	prg      cel.Program
	allow    []*Binding
	deny     []*Binding
	hasMatch bool
}

// NewEvaluator compiles p (indexes, CEL programs). It fails on a policy that could not
// have come from LoadFiles/LoadBundle (dangling references, bad CEL).
func NewEvaluator(p *Policy) (*Evaluator, error) {
	if p == nil {
		return nil, errors.New("policy: nil policy")
	}
	e := &Evaluator{p: p, issuers: map[string]*compiledIssuer{}, byURL: map[string]*compiledIssuer{},
		profiles: map[string]*Profile{}, identities: map[string]*compiledIdentity{}}
	for i := range p.Issuers {
		is := &p.Issuers[i]
		ps := LookupPreset(is.Preset)
		if ps == nil {
			return nil, fmt.Errorf("policy: issuer %q: unknown preset %q", is.ID, is.Preset)
		}
		if _, dup := e.issuers[is.ID]; dup {
			return nil, fmt.Errorf("policy: duplicate issuer %q", is.ID)
		}
		ci := &compiledIssuer{is: is, preset: ps}
		e.issuers[is.ID] = ci
		if _, dup := e.byURL[is.URL]; dup {
			return nil, fmt.Errorf("policy: issuer %q: url %q is configured twice; one issuer block per issuer URL", is.ID, is.URL)
		}
		e.byURL[is.URL] = ci
	}
	for i := range p.Profiles {
		e.profiles[p.Profiles[i].ID] = &p.Profiles[i]
	}
	for i := range p.Identities {
		id := &p.Identities[i]
		ci := e.issuers[id.Issuer]
		if ci == nil {
			return nil, fmt.Errorf("policy: identity %q: unknown issuer %q", id.ID, id.Issuer)
		}
		cid := &compiledIdentity{id: id, hasMatch: len(id.Match) > 0 || len(id.Require) > 0}
		if id.Condition != "" {
			prg, err := conditionProgram(id.Condition)
			if err != nil && !isTypeOnly(err) {
				return nil, fmt.Errorf("policy %s: identity %q: condition: %w", id.ConditionPos, id.ID, err)
			}
			cid.prg = prg // nil for a non-bool condition: never matches
			if prg == nil {
				cid.hasMatch = false
			}
		}
		e.identities[id.ID] = cid
		ci.identities = append(ci.identities, cid)
	}
	for _, ci := range e.issuers {
		ci.index()
	}
	for i := range p.Bindings {
		b := &p.Bindings[i]
		cid := e.identities[b.Identity]
		if cid == nil {
			return nil, fmt.Errorf("policy: binding %q: unknown identity %q", b.ID, b.Identity)
		}
		for _, pr := range b.Profiles {
			if e.profiles[pr] == nil {
				return nil, fmt.Errorf("policy: binding %q: unknown profile %q", b.ID, pr)
			}
		}
		switch b.Effect {
		case EffectAllow:
			cid.allow = append(cid.allow, b)
		case EffectDeny:
			cid.deny = append(cid.deny, b)
		default:
			return nil, fmt.Errorf("policy: binding %q: effect %q is not allow or deny", b.ID, b.Effect)
		}
	}
	return e, nil
}

func (ci *compiledIssuer) index() {
	if len(ci.preset.PinClaims) == 0 {
		return
	}
	ci.pinClaim = ci.preset.PinClaims[0]
	ci.byPin = map[string][]int{}
	for n, cid := range ci.identities {
		vals, ok := pinValues(cid.id, ci.pinClaim)
		if !ok {
			ci.unindexed = append(ci.unindexed, n)
			continue
		}
		for _, v := range vals {
			if l := ci.byPin[v]; len(l) == 0 || l[len(l)-1] != n {
				ci.byPin[v] = append(l, n)
			}
		}
	}
}

// pinValues returns every value an identity accepts for claim, if each of its
// alternatives requires claim to equal one of a fixed set of values.
func pinValues(id *Identity, claim string) ([]string, bool) {
	exactIn := func(cs []Constraint) []string {
		for i := range cs {
			if c := &cs[i]; c.Claim == claim {
				for _, v := range c.Values {
					if c.Glob && isGlob(v) {
						return nil
					}
				}
				return c.Values
			}
		}
		return nil
	}
	if req := exactIn(id.Require); req != nil {
		return req, true
	}
	if len(id.Match) == 0 {
		return nil, false
	}
	var out []string
	for i := range id.Match {
		vals := exactIn(id.Match[i].Constraints)
		if vals == nil {
			return nil, false
		}
		out = append(out, vals...)
	}
	return out, true
}

// candidates calls fn, in declaration order, with every identity that can match the
// claims (all of them when the pin claim is not a single string). fn returns false to stop.
func (ci *compiledIssuer) candidates(claims map[string]any, all bool, fn func(*compiledIdentity) bool) {
	var v string
	ok := false
	if !all && ci.byPin != nil {
		if raw, found := LookupClaim(claims, ci.pinClaim); found {
			v, ok = raw.(string)
		} else {
			ok = true // pin claim absent: only unindexed identities can match
		}
	}
	if !ok {
		for _, cid := range ci.identities {
			if !fn(cid) {
				return
			}
		}
		return
	}
	a, b := ci.byPin[v], ci.unindexed
	for len(a) > 0 || len(b) > 0 {
		var n int
		if len(b) == 0 || (len(a) > 0 && a[0] < b[0]) {
			n, a = a[0], a[1:]
		} else {
			n, b = b[0], b[1:]
		}
		if !fn(ci.identities[n]) {
			return
		}
	}
}

// Policy returns the policy the evaluator was built from.
func (e *Evaluator) Policy() *Policy { return e.p }

func deny(reason, format string, args ...any) Decision {
	return Decision{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Decide answers one request. It repeats every claims-level check of the runtime order
// (issuer, audience, token times, preset schema, tenant pin) before the identity rules
// and bindings, so build-time tests exercise exactly what the image enforces, and a
// caller that forgot a check still fails closed. Deny bindings win; default deny.
func (e *Evaluator) Decide(req Request) Decision {
	d, _ := e.decide(req, nil)
	return d
}

// Trace is one line of an explanation: what was checked and how it went.
type Trace struct {
	Step   string `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Explain decides like Decide and also returns the steps, including why each identity
// of the issuer did or did not match.
func (e *Evaluator) Explain(req Request) (Decision, []Trace) {
	var tr []Trace
	d, _ := e.decide(req, &tr)
	return d, tr
}

func (e *Evaluator) decide(req Request, tr *[]Trace) (Decision, error) {
	note := func(step string, ok bool, format string, args ...any) {
		if tr != nil {
			*tr = append(*tr, Trace{Step: step, OK: ok, Detail: fmt.Sprintf(format, args...)})
		}
	}
	if req.Permission == "" && req.Profile == "" {
		return deny(ReasonBadRequest, "the request names no permission and no profile"), nil
	}
	claims := req.Claims
	iss, _ := claims["iss"].(string)
	var ci *compiledIssuer
	if req.Issuer != "" {
		ci = e.issuers[req.Issuer]
	} else {
		ci = e.byURL[iss]
	}
	if ci == nil {
		if tr != nil {
			note("issuer", false, "no issuer configured for iss %q", iss)
		}
		return deny(ReasonUnknownIssuer, "iss %q is not a configured issuer", iss), nil
	}
	is := ci.is
	if iss != is.URL {
		if tr != nil {
			note("issuer", false, "iss %q differs from issuer %q url %q", iss, is.ID, is.URL)
		}
		d := deny(ReasonIssuerMismatch, "iss %q is not %q", iss, is.URL)
		d.Issuer = is.ID
		return d, nil
	}
	if tr != nil {
		note("issuer", true, "issuer %q (%s)", is.ID, is.URL)
	}
	fail := func(step string, ce *CheckError) Decision {
		if tr != nil {
			note(step, false, "%s", ce.Detail)
		}
		return Decision{Reason: ce.Reason, Detail: ce.Detail, Issuer: is.ID}
	}
	if ce := CheckAudience(is, claims); ce != nil {
		return fail("audience", ce), nil
	}
	if tr != nil {
		note("audience", true, "aud is %q", is.Audience)
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := CheckTokenTimes(is, claims, now); err != nil {
		var ce *CheckError
		errors.As(err, &ce)
		return fail("time", ce), nil
	}
	if tr != nil {
		note("time", true, "exp/nbf/iat within %s leeway, lifetime within %s", is.ClockSkew, is.MaxTokenLifetime)
	}
	if ce := checkSchema(ci.preset, claims); ce != nil {
		return fail("schema", ce), nil
	}
	for _, c := range is.Tenant {
		if !c.holds(claims) {
			return fail("tenant", &CheckError{Reason: ReasonTenantMismatch, Detail: fmt.Sprintf("tenant pin %s", c.describeMiss(claims))}), nil
		}
	}
	if len(is.Tenant) > 0 {
		if tr != nil {
			note("tenant", true, "tenant pin holds")
		}
	}
	var reqProfile *Profile
	if req.Profile != "" {
		if reqProfile = e.profiles[req.Profile]; reqProfile == nil {
			d := deny(ReasonUnknownProfile, "profile %q is not in the policy", req.Profile)
			d.Issuer = is.ID
			return d, nil
		}
	}
	var matchedBuf [4]*compiledIdentity
	matched := matchedBuf[:0]
	ci.candidates(claims, tr != nil, func(cid *compiledIdentity) bool {
		if ok, why := cid.matches(claims, tr != nil); ok {
			matched = append(matched, cid)
			if tr != nil {
				note("identity "+cid.id.ID, true, "%s", why)
			}
		} else if tr != nil {
			note("identity "+cid.id.ID, false, "%s", why)
		}
		return true
	})
	if len(matched) == 0 {
		d := deny(ReasonNoIdentity, "no identity of issuer %q matches the token", is.ID)
		d.Issuer = is.ID
		return d, nil
	}
	// Deny wins: any deny binding of any matched identity that covers the request.
	for _, cid := range matched {
		for _, b := range cid.deny {
			for _, pid := range b.Profiles {
				if pr := e.profiles[pid]; covers(pr, reqProfile, req) == "" {
					if tr != nil {
						note("binding "+b.ID, false, "deny binding covers profile %q", pr.ID)
					}
					return Decision{Reason: ReasonDeniedByBinding, Issuer: is.ID, Identity: cid.id.ID, Binding: b.ID, Profile: pr.ID,
						Detail: fmt.Sprintf("deny binding %q of identity %q covers profile %q", b.ID, cid.id.ID, pr.ID)}, nil
				}
			}
		}
	}
	miss := ReasonNotGranted
	var missDetail string
	for _, cid := range matched {
		for _, b := range cid.allow {
			for _, pid := range b.Profiles {
				pr := e.profiles[pid]
				r := covers(pr, reqProfile, req)
				if r == "" {
					if tr != nil {
						note("binding "+b.ID, true, "allow binding grants profile %q", pr.ID)
					}
					return Decision{Allow: true, Reason: ReasonAllow, Issuer: is.ID, Identity: cid.id.ID, Binding: b.ID, Profile: pr.ID,
						SingleUse: pr.SingleUse, MaxSession: pr.MaxSession}, nil
				}
				if r == ReasonResourceNotGranted {
					miss = r
					missDetail = fmt.Sprintf("profile %q grants %q but not on resource %q", pr.ID, req.Permission, req.Resource)
				}
			}
		}
	}
	ids := make([]string, len(matched))
	for i, m := range matched {
		ids[i] = m.id.ID
	}
	if missDetail == "" {
		missDetail = fmt.Sprintf("identity %s matched, but no allow binding grants %s", strings.Join(ids, ", "), describeRequest(req))
	}
	if tr != nil {
		note("bindings", false, "%s", missDetail)
	}
	return Decision{Reason: miss, Issuer: is.ID, Identity: matched[0].id.ID, Detail: missDetail}, nil
}

func describeRequest(req Request) string {
	var parts []string
	if req.Profile != "" {
		parts = append(parts, "profile "+strconv.Quote(req.Profile))
	}
	if req.Permission != "" {
		parts = append(parts, "permission "+strconv.Quote(req.Permission))
	}
	if req.Resource != "" {
		parts = append(parts, "resource "+strconv.Quote(req.Resource))
	}
	return strings.Join(parts, ", ")
}

// covers returns "" when profile pr satisfies the request, else a reason code.
func covers(pr, want *Profile, req Request) string {
	if want != nil && pr != want {
		return ReasonNotGranted
	}
	if req.Permission != "" {
		if !grants(pr.Permissions, req.Permission) {
			return ReasonNotGranted
		}
		if !resourceOK(pr.Resources, req.Resource) {
			return ReasonResourceNotGranted
		}
	} else if req.Resource != "" && !resourceOK(pr.Resources, req.Resource) {
		return ReasonResourceNotGranted
	}
	return ""
}

// grants: exact permission, "*" (everything, lint L11 refuses it in production) or a
// "service:*" style suffix wildcard.
func grants(perms []string, want string) bool {
	for _, p := range perms {
		if p == want || p == "*" {
			return true
		}
		if strings.HasSuffix(p, ":*") && strings.HasPrefix(want, p[:len(p)-1]) {
			return true
		}
	}
	return false
}

func resourceOK(resources []string, want string) bool {
	if len(resources) == 0 {
		return true
	}
	if want == "" {
		return false
	}
	for _, r := range resources {
		if r == "*" || r == "**" || matchGlob(r, want) {
			return true
		}
	}
	return false
}

// matches reports whether the claims satisfy the identity; with explain it also says
// why (building that text is skipped on the hot path).
func (c *compiledIdentity) matches(claims map[string]any, explain bool) (bool, string) {
	if !c.hasMatch && c.prg == nil {
		return false, "identity has no constraints (it never matches)"
	}
	for i := range c.id.Require {
		if r := &c.id.Require[i]; !r.holds(claims) {
			if !explain {
				return false, ""
			}
			return false, "require: " + r.describeMiss(claims)
		}
	}
	ok := len(c.id.Match) == 0
	var whyNot []string
	for i := range c.id.Match {
		alt := &c.id.Match[i]
		altOK := true
		for j := range alt.Constraints {
			if cn := &alt.Constraints[j]; !cn.holds(claims) {
				altOK = false
				if explain {
					whyNot = append(whyNot, fmt.Sprintf("match #%d: %s", i+1, cn.describeMiss(claims)))
				}
				break
			}
		}
		if altOK {
			ok = true
			break
		}
	}
	if !ok {
		return false, strings.Join(whyNot, "; ")
	}
	if c.prg != nil {
		if !evalCondition(c.prg, claims) {
			return false, "condition is false"
		}
	} else if c.id.Condition != "" {
		return false, "condition does not evaluate to a bool"
	}
	return true, "every constraint holds"
}

// holds reports whether the constraint is satisfied by the claims.
func (c *Constraint) holds(claims map[string]any) bool {
	v, ok := LookupClaim(claims, c.Claim)
	if !ok {
		return false
	}
	if arr, isArr := v.([]any); isArr {
		for _, e := range arr {
			if s, ok := claimString(e); ok && c.matchValue(s) {
				return true
			}
		}
		return false
	}
	s, ok := claimString(v)
	return ok && c.matchValue(s)
}

func (c *Constraint) matchValue(s string) bool {
	for _, want := range c.Values {
		if c.Glob {
			if matchGlob(want, s) {
				return true
			}
		} else if want == s {
			return true
		}
	}
	return false
}

func (c *Constraint) describeMiss(claims map[string]any) string {
	v, ok := LookupClaim(claims, c.Claim)
	if !ok {
		return fmt.Sprintf("claim %q is missing (want %s)", c.Claim, c.describeWant())
	}
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		b = append(b[:117], "..."...)
	}
	return fmt.Sprintf("claim %q is %s (want %s)", c.Claim, b, c.describeWant())
}

func (c *Constraint) describeWant() string {
	q := make([]string, len(c.Values))
	for i, v := range c.Values {
		q[i] = strconv.Quote(v)
	}
	op := "one of"
	if c.Glob {
		op = "a match for one of"
	}
	if len(q) == 1 {
		if c.Glob {
			return "a match for " + q[0]
		}
		return q[0]
	}
	return op + " [" + strings.Join(q, ", ") + "]"
}

// claimString renders a scalar claim value as the string a constraint compares with:
// strings as is, booleans as "true"/"false", integral numbers without exponent.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case json.Number:
		return x.String(), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// LookupClaim finds a claim by name; a dotted name walks nested objects
// ("kubernetes.io.serviceaccount.uid" finds claims["kubernetes.io"]["serviceaccount"]["uid"]).
// A key that itself contains dots is tried whole first.
func LookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	for i := 0; i < len(name); i++ {
		if name[i] != '.' {
			continue
		}
		if sub, ok := claims[name[:i]].(map[string]any); ok {
			if v, ok := LookupClaim(sub, name[i+1:]); ok {
				return v, true
			}
		}
	}
	return nil, false
}

// CheckAudience enforces the single-audience rule: aud must be exactly the issuer's
// audience, as a string or a one-element array (a multi-audience token could be
// replayed against another relying party).
func CheckAudience(is *Issuer, claims map[string]any) *CheckError {
	switch a := claims["aud"].(type) {
	case string:
		if a == is.Audience {
			return nil
		}
		return &CheckError{ReasonAudienceMismatch, fmt.Sprintf("aud %q is not %q", a, is.Audience)}
	case []any:
		if len(a) == 1 {
			if s, ok := a[0].(string); ok && s == is.Audience {
				return nil
			}
			return &CheckError{ReasonAudienceMismatch, fmt.Sprintf("aud %v is not %q", a, is.Audience)}
		}
		if len(a) > 1 {
			return &CheckError{ReasonMultipleAudiences, fmt.Sprintf("aud lists %d audiences; want only %q", len(a), is.Audience)}
		}
	case []string:
		if len(a) == 1 && a[0] == is.Audience {
			return nil
		}
		if len(a) > 1 {
			return &CheckError{ReasonMultipleAudiences, fmt.Sprintf("aud lists %d audiences; want only %q", len(a), is.Audience)}
		}
	}
	return &CheckError{ReasonAudienceMismatch, fmt.Sprintf("aud is missing or not %q", is.Audience)}
}

// CheckTokenTimes applies the issuer's token-time rules with one leeway (clock_skew):
// exp present and exp + leeway > now; nbf - leeway <= now; iat present and
// iat - leeway <= now; exp - iat <= max_token_lifetime. It returns a *CheckError with a
// reason code. authz calls it after signature verification (go-oidc has no exp leeway);
// Decide and the test runner call the same function.
func CheckTokenTimes(is *Issuer, claims map[string]any, now time.Time) error {
	leeway := is.ClockSkew.D()
	exp, ok, err := numericDate(claims, "exp")
	if err != nil {
		return &CheckError{ReasonBadTimeClaim, err.Error()}
	}
	if !ok {
		return &CheckError{ReasonExpMissing, "token has no exp claim"}
	}
	if !exp.Add(leeway).After(now) {
		return &CheckError{ReasonExpired, fmt.Sprintf("token expired at %s (now %s, leeway %s)", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)}
	}
	nbf, ok, err := numericDate(claims, "nbf")
	if err != nil {
		return &CheckError{ReasonBadTimeClaim, err.Error()}
	}
	if ok && nbf.Add(-leeway).After(now) {
		return &CheckError{ReasonNotYetValid, fmt.Sprintf("token not valid before %s (now %s, leeway %s)", nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)}
	}
	iat, ok, err := numericDate(claims, "iat")
	if err != nil {
		return &CheckError{ReasonBadTimeClaim, err.Error()}
	}
	if !ok {
		return &CheckError{ReasonIatMissing, "token has no iat claim, so its lifetime cannot be bounded"}
	}
	if iat.Add(-leeway).After(now) {
		return &CheckError{ReasonIssuedInFuture, fmt.Sprintf("token issued at %s, in the future (now %s)", iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if max := is.MaxTokenLifetime.D(); max > 0 && exp.Sub(iat) > max {
		return &CheckError{ReasonLifetimeExceeded, fmt.Sprintf("token lifetime %s exceeds max_token_lifetime %s", exp.Sub(iat), max)}
	}
	return nil
}

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return time.Time{}, false, nil
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int64:
		f = float64(x)
	case int:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return time.Time{}, false, fmt.Errorf("claim %s is not a number", name)
		}
	default:
		return time.Time{}, false, fmt.Errorf("claim %s is not a number", name)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e12 {
		return time.Time{}, false, fmt.Errorf("claim %s is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// checkSchema checks the preset's required claims and the shapes it knows (numeric ids
// as decimal strings, booleans-as-strings).
func checkSchema(ps *Preset, claims map[string]any) *CheckError {
	for _, name := range ps.Required {
		v, ok := LookupClaim(claims, name)
		if !ok || v == nil {
			return &CheckError{ReasonSchemaViolation, fmt.Sprintf("required %s claim %q is missing", ps.Name, name)}
		}
		if _, ok := claimString(v); !ok {
			if _, isArr := v.([]any); !isArr || name != "groups" {
				return &CheckError{ReasonSchemaViolation, fmt.Sprintf("%s claim %q must be a scalar", ps.Name, name)}
			}
		}
	}
	for _, name := range ps.NumericClaims {
		if v, ok := claims[name]; ok {
			s, ok := claimString(v)
			if !ok || !isDecimal(s) {
				return &CheckError{ReasonSchemaViolation, fmt.Sprintf("%s claim %q must be a decimal id", ps.Name, name)}
			}
		}
	}
	return nil
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
