package policy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// rules is the lint rule table. Ids are stable: docs/policy/lint/<ID>.md explains each.
var rules = []Rule{
	{ID: "L01", Severity: SeverityError, Title: "issuer exactness", check: lintIssuerExact},
	{ID: "L02", Severity: SeverityError, Title: "tenant pin on multi-tenant issuers", check: lintTenantPin},
	{ID: "L03", Severity: SeverityError, Title: "identity pin by immutable id", check: lintIdentityPin},
	{ID: "L04", Severity: SeverityError, Title: "matches everyone", check: lintMatchesEveryone},
	{ID: "L05", Severity: SeverityError, Title: "anchored globs", check: lintAnchoredGlobs},
	{ID: "L06", Severity: SeverityError, Title: "audience unique to this relying party", check: lintAudience},
	{ID: "L07", Severity: SeverityWarning, Title: "immutable ids, not names", check: lintImmutableIDs},
	{ID: "L08", Severity: SeverityError, Title: "production needs a protected context", check: lintProductionContext},
	{ID: "L09", Severity: SeverityError, Title: "reusable workflow pinning", check: lintReusableWorkflow},
	{ID: "L10", Severity: SeverityError, Title: "no wide policy", check: lintWidePolicy},
	{ID: "L11", Severity: SeverityError, Title: "least privilege", check: lintLeastPrivilege},
	{ID: "L12", Severity: SeverityError, Title: "tests cover every binding", check: lintTests},
	{ID: "L13", Severity: SeverityWarning, Title: "overlapping bindings", check: lintOverlaps},
	{ID: "L14", Severity: SeverityError, Title: "key material", check: lintKeys},
	{ID: "L15", Severity: SeverityError, Title: "token time bounds", check: lintTime},
	{ID: "L16", Severity: SeverityError, Title: "claim schema", check: lintSchema},
	{ID: "L17", Severity: SeverityError, Title: "CEL hygiene", check: lintCEL},
}

// ---- helpers ----

func (c *lintCtx) preset(id *Identity) (*Issuer, *Preset) {
	is := c.p.Issuer(id.Issuer)
	if is == nil {
		return nil, nil
	}
	return is, LookupPreset(is.Preset)
}

// effectiveAlts returns, for each match alternative, its constraints plus the require
// constraints (what a token must satisfy through that alternative).
func effectiveAlts(id *Identity) [][]Constraint {
	if len(id.Match) == 0 {
		if len(id.Require) == 0 {
			return [][]Constraint{nil}
		}
		return [][]Constraint{append([]Constraint(nil), id.Require...)}
	}
	out := make([][]Constraint, 0, len(id.Match))
	for _, alt := range id.Match {
		cs := append([]Constraint(nil), alt.Constraints...)
		cs = append(cs, id.Require...)
		out = append(out, cs)
	}
	return out
}

func altPos(id *Identity, i int) Pos {
	if i < len(id.Match) {
		return id.Match[i].Pos
	}
	return id.Pos
}

func findConstraint(cs []Constraint, claim string) *Constraint {
	for i := range cs {
		if cs[i].Claim == claim {
			return &cs[i]
		}
	}
	return nil
}

// exactValues returns the constraint's values if none is a wildcard pattern.
func (cn *Constraint) exact() bool {
	if cn == nil {
		return false
	}
	for _, v := range cn.Values {
		if v == "" || (cn.Glob && isGlob(v)) {
			return false
		}
	}
	return true
}

func isProduction(pr *Profile) bool {
	return strings.EqualFold(pr.Environment, "production") || strings.EqualFold(pr.Environment, "prod")
}

// isWrite: a permission that is not obviously read-only.
func isWrite(perm string) bool {
	p := strings.ToLower(perm)
	for _, ro := range []string{"read", "list", "get", "describe", "view", "plan"} {
		if p == ro || strings.HasSuffix(p, ":"+ro) || strings.HasSuffix(p, "."+ro) {
			return false
		}
	}
	return true
}

func hasWrite(pr *Profile) bool {
	for _, p := range pr.Permissions {
		if isWrite(p) {
			return true
		}
	}
	return false
}

// allowProfiles returns the profiles an identity reaches through allow bindings.
func (c *lintCtx) allowProfiles(identity string) []*Profile {
	var out []*Profile
	for _, b := range c.p.Bindings {
		if b.Identity != identity || b.Effect != EffectAllow {
			continue
		}
		for _, pid := range b.Profiles {
			if pr := c.p.Profile(pid); pr != nil {
				out = append(out, pr)
			}
		}
	}
	return out
}

func (c *lintCtx) reachesProduction(identity string, writeOnly bool) bool {
	for _, pr := range c.allowProfiles(identity) {
		if isProduction(pr) && (!writeOnly || hasWrite(pr)) {
			return true
		}
	}
	return false
}

// allConstraints yields every constraint of every identity and issuer tenant block.
func (c *lintCtx) allConstraints(fn func(is *Issuer, ps *Preset, id *Identity, cn *Constraint)) {
	for i := range c.p.Issuers {
		is := &c.p.Issuers[i]
		ps := LookupPreset(is.Preset)
		for j := range is.Tenant {
			fn(is, ps, nil, &is.Tenant[j])
		}
	}
	for i := range c.p.Identities {
		id := &c.p.Identities[i]
		is, ps := c.preset(id)
		if is == nil {
			continue
		}
		for a := range id.Match {
			for k := range id.Match[a].Constraints {
				fn(is, ps, id, &id.Match[a].Constraints[k])
			}
		}
		for k := range id.Require {
			fn(is, ps, id, &id.Require[k])
		}
	}
}

// ---- L01 ----

func lintIssuerExact(c *lintCtx) {
	seen := map[string]string{}
	for _, is := range c.p.Issuers {
		is.Pos = at(is.AttrPos, "url", is.Pos)
		fix := "set url to the exact https issuer URL the tokens carry in iss"
		u, err := url.Parse(is.URL)
		switch {
		case err != nil || u.Host == "":
			c.add(SeverityError, is.Pos, fix, "issuer %q: url %q is not an absolute URL", is.ID, is.URL)
			continue
		case u.Scheme != "https":
			c.add(SeverityError, is.Pos, "use an https:// issuer URL (discovery and keys must be fetched over TLS)", "issuer %q: url %q is not https", is.ID, is.URL)
		case u.RawQuery != "" || u.Fragment != "" || strings.Contains(is.URL, "?") || strings.Contains(is.URL, "#"):
			c.add(SeverityError, is.Pos, "remove the query and fragment from url", "issuer %q: url %q has a query or fragment", is.ID, is.URL)
		case u.User != nil:
			c.add(SeverityError, is.Pos, "remove the user info from url", "issuer %q: url %q carries user info", is.ID, is.URL)
		}
		if strings.Contains(is.URL, "*") {
			c.add(SeverityError, is.Pos, "name one exact issuer per issuer block", "issuer %q: wildcard issuer url %q", is.ID, is.URL)
		}
		if ps := LookupPreset(is.Preset); ps != nil && ps.DefaultURL != "" && is.URL != ps.DefaultURL &&
			strings.TrimSuffix(is.URL, "/") == ps.DefaultURL {
			c.add(SeverityError, is.Pos, fmt.Sprintf("set url = %q (no trailing slash)", ps.DefaultURL),
				"issuer %q: url %q differs from the %s issuer %q by a trailing slash; iss is compared exactly", is.ID, is.URL, ps.Name, ps.DefaultURL)
		}
		if prev, dup := seen[is.URL]; dup {
			c.add(SeverityError, is.Pos, "merge the two issuer blocks", "issuer %q: url %q is already used by issuer %q", is.ID, is.URL, prev)
		}
		seen[is.URL] = is.ID
	}
}

// ---- L02 ----

func lintTenantPin(c *lintCtx) {
	for _, is := range c.p.Issuers {
		ps := LookupPreset(is.Preset)
		if ps == nil || !ps.multiTenant(is.URL) {
			continue
		}
		ok := false
		for _, t := range is.Tenant {
			if contains(ps.TenantClaims, t.Claim) && t.exact() && len(t.Values) == 1 {
				ok = true
			}
		}
		if !ok {
			c.add(SeverityError, is.Pos, fmt.Sprintf("add tenant { %s = \"<your id>\" } (one exact value)", ps.TenantClaims[0]),
				"issuer %q: %s is shared by every customer of the platform and has no tenant pin on %s", is.ID, is.URL, strings.Join(ps.TenantClaims, " or "))
		}
	}
}

// ---- L03 ----

func lintIdentityPin(c *lintCtx) {
	for i := range c.p.Identities {
		id := &c.p.Identities[i]
		_, ps := c.preset(id)
		if ps == nil {
			continue
		}
		for a, cs := range effectiveAlts(id) {
			pinned := false
			for _, pin := range ps.PinClaims {
				if cn := findConstraint(cs, pin); cn.exact() {
					pinned = true
				}
			}
			if !pinned {
				c.add(SeverityError, altPos(id, a), fmt.Sprintf("add %s = \"<immutable id>\" to this block (exact value)", ps.PinClaims[0]),
					"identity %q: a %s context is not pinned to an immutable workload id (%s); aud, iss, ref and environment are not identity pins",
					id.ID, ps.Name, strings.Join(ps.PinClaims, ", "))
			}
		}
	}
}

// ---- L04 ----

func lintMatchesEveryone(c *lintCtx) {
	c.allConstraints(func(is *Issuer, ps *Preset, id *Identity, cn *Constraint) {
		if !cn.Glob {
			return
		}
		for _, v := range cn.Values {
			if strings.HasPrefix(v, "*") {
				c.add(SeverityError, cn.Pos, "replace the leading wildcard with the exact value (or an anchored prefix such as \"refs/heads/release/*\")",
					"claim %q pattern %q matches every value (or every prefix)", cn.Claim, v)
			}
		}
	})
	for i := range c.p.Identities {
		id := &c.p.Identities[i]
		if len(id.Match) == 0 && len(id.Require) == 0 && id.Condition == "" {
			c.add(SeverityError, id.Pos, "add a match block with the workload's immutable id",
				"identity %q has no constraints: it matches every token of issuer %q", id.ID, id.Issuer)
		}
		if id.Condition == "" {
			continue
		}
		if all, err := conditionMatchesEveryone(id.Condition); err == nil && all {
			c.add(SeverityError, id.ConditionPos, "make every branch of the condition depend on a claim (no `|| true`-style escape)",
				"identity %q: condition is true whatever the claims are (partial evaluation with every claim unknown yields true)", id.ID)
		}
	}
}

// ---- L05 ----

var ownerClaims = map[string]bool{"repository": true, "project_path": true, "namespace_path": true, "job_workflow_ref": true,
	"workflow_ref": true, "terraform_full_workspace": true, "oidc.circleci.com/vcs-origin": true, "ci_config_ref_uri": true}

func isDelim(b byte) bool { return b == '/' || b == ':' || b == '@' }

func lintAnchoredGlobs(c *lintCtx) {
	c.allConstraints(func(is *Issuer, ps *Preset, id *Identity, cn *Constraint) {
		if !cn.Glob {
			return
		}
		for _, v := range cn.Values {
			if !isGlob(v) || strings.HasPrefix(v, "*") { // leading * is L04
				continue
			}
			for i := 0; i < len(v); i++ {
				if v[i] != '*' {
					continue
				}
				j := i
				for j < len(v) && v[j] == '*' {
					j++
				}
				if !isDelim(v[i-1]) || (j < len(v) && !isDelim(v[j])) {
					c.add(SeverityError, cn.Pos, "put the wildcard right after a delimiter (/, :, @) and let it span a whole segment, e.g. \"refs/heads/release/*\"",
						"claim %q pattern %q has a wildcard inside a segment (\"repo:org*\" also matches \"repo:org-evil\")", cn.Claim, v)
					break
				}
				i = j
			}
			if seg := ownerSegment(cn.Claim, v); strings.Contains(seg, "*") {
				c.add(SeverityError, cn.Pos, "write the owner/organisation exactly; wildcards may only follow it",
					"claim %q pattern %q has a wildcard in the owner segment, crossing the tenant boundary", cn.Claim, v)
			}
		}
	})
}

// ownerSegment returns the owner/org part of a subject-like value.
func ownerSegment(claim, v string) string {
	switch {
	case claim == "sub":
		rest := v
		if i := strings.Index(rest, ":"); i >= 0 {
			rest = rest[i+1:]
		} else {
			return ""
		}
		if i := strings.IndexAny(rest, "/:"); i >= 0 {
			return rest[:i]
		}
		return rest
	case ownerClaims[claim]:
		if i := strings.Index(v, "/"); i >= 0 {
			return v[:i]
		}
		return v
	}
	return ""
}

// ---- L06 ----

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func lintAudience(c *lintCtx) {
	for _, is := range c.p.Issuers {
		is.Pos = at(is.AttrPos, "audience", is.Pos)
		fix := "set audience to a value unique to this service, e.g. \"https://authz.<service>.<company>.internal\", and request tokens for it"
		a := is.Audience
		why := ""
		switch {
		case strings.TrimSpace(a) == "":
			why = "is empty"
		case strings.Contains(a, "*"):
			why = "is a wildcard"
		case strings.HasPrefix(a, "https://github.com/"):
			why = "is GitHub's default audience (the owner URL), shared by every relying party of the organisation"
		case strings.HasPrefix(a, "https://buildkite.com/"):
			why = "is Buildkite's default audience, shared by every relying party of the organisation"
		case uuidRE.MatchString(a) && is.Preset == "circleci":
			why = "is CircleCI's default audience (the organisation id)"
		case a == "sts.amazonaws.com" || a == "api://AzureADTokenExchange" || a == "https://iam.googleapis.com" || strings.HasPrefix(a, "//iam.googleapis.com/"):
			why = "is a cloud provider's token-exchange audience: the same tokens are accepted by the cloud"
		case strings.TrimSuffix(a, "/") == strings.TrimSuffix(is.URL, "/"):
			why = "equals the issuer URL (GitLab's default audience); every relying party of the instance accepts it"
		case strings.HasPrefix(a, "https://kubernetes.default.svc"):
			why = "is the Kubernetes API server audience"
		}
		if why != "" {
			c.add(SeverityError, is.Pos, fix, "issuer %q: audience %q %s", is.ID, a, why)
		}
	}
}

// ---- L07 ----

var (
	ghImmutableSub = regexp.MustCompile(`^repo:[^@/:*]+@[0-9]+/[^@/:*]+@[0-9]+:`)
	ghAnyImmutable = regexp.MustCompile(`^repo:[^/:]*@[0-9*]+/`)
)

func lintImmutableIDs(c *lintCtx) {
	for i := range c.p.Identities {
		id := &c.p.Identities[i]
		is, ps := c.preset(id)
		if ps == nil {
			continue
		}
		prod := c.reachesProduction(id.ID, false)
		for a, cs := range effectiveAlts(id) {
			pinned, names := false, []string{}
			for _, cn := range cs {
				cn := cn
				if contains(ps.PinClaims, cn.Claim) && (&cn).exact() {
					pinned = true
				}
				if contains(ps.NameClaims, cn.Claim) {
					names = append(names, cn.Claim)
				}
			}
			if !pinned && len(names) > 0 {
				sev := SeverityWarning
				if prod {
					sev = SeverityError
				}
				c.add(sev, altPos(id, a), fmt.Sprintf("pin %s instead of (or with) %s", ps.PinClaims[0], strings.Join(names, ", ")),
					"identity %q relies on mutable names (%s): a deleted and re-registered name gets the same tokens", id.ID, strings.Join(names, ", "))
			}
		}
		if is.Preset != "github-actions" {
			continue
		}
		for _, cs := range effectiveAlts(id) {
			sub := findConstraint(cs, "sub")
			if sub == nil {
				continue
			}
			for _, v := range sub.Values {
				switch is.SubjectFormat {
				case "immutable":
					if !ghImmutableSub.MatchString(v) {
						c.add(SeverityError, sub.Pos, "write sub as repo:OWNER@OWNER_ID/REPO@REPO_ID:… (and escape ':' in values as %3A)",
							"identity %q: sub %q does not follow the issuer's subject_format \"immutable\"", id.ID, v)
					}
				case "default":
					if ghAnyImmutable.MatchString(v) {
						c.add(SeverityError, sub.Pos, "set subject_format = \"immutable\" on the issuer, or write sub as repo:OWNER/REPO:…",
							"identity %q: sub %q uses the immutable format but issuer %q declares subject_format \"default\"", id.ID, v, is.ID)
					}
				}
			}
		}
	}
}

// ---- L08 ----

var prEvents = []string{"pull_request", "pull_request_target", "workflow_run"}

func lintProductionContext(c *lintCtx) {
	for i := range c.p.Identities {
		id := &c.p.Identities[i]
		is, ps := c.preset(id)
		if ps == nil || !c.reachesProduction(id.ID, false) {
			continue
		}
		write := c.reachesProduction(id.ID, true)
		for a, cs := range effectiveAlts(id) {
			pos := altPos(id, a)
			switch ps.Name {
			case "github-actions":
				env := findConstraint(cs, "environment")
				ref := findConstraint(cs, "ref")
				refOK := ref.exact()
				if refOK {
					for _, v := range ref.Values {
						if !strings.HasPrefix(v, "refs/heads/") && !strings.HasPrefix(v, "refs/tags/") {
							refOK = false
						}
					}
				}
				if !env.exact() && !refOK {
					c.add(SeverityError, pos, "add environment = \"production\" (a protected GitHub environment) or an exact protected ref",
						"identity %q reaches production without a protected context (environment or exact ref)", id.ID)
				}
				ev := findConstraint(cs, "event_name")
				switch {
				case ev == nil:
					c.add(SeverityError, pos, "add event_name = [\"push\", \"workflow_dispatch\"] (never pull_request, pull_request_target or workflow_run)",
						"identity %q reaches production from any event, including pull_request_target and workflow_run", id.ID)
				default:
					for _, v := range ev.Values {
						if contains(prEvents, v) || (ev.Glob && isGlob(v)) {
							c.add(SeverityError, ev.Pos, "remove "+v+" from event_name", "identity %q lets %q events reach production", id.ID, v)
						}
					}
				}
				if sub := findConstraint(cs, "sub"); sub != nil {
					for _, v := range sub.Values {
						if strings.Contains(v, ":pull_request") || (sub.Glob && strings.HasSuffix(v, ":*")) {
							c.add(SeverityError, sub.Pos, "pin sub to the environment or ref context", "identity %q: sub %q admits pull request contexts into production", id.ID, v)
						}
					}
				}
			case "gitlab-ci":
				rp, ep := findConstraint(cs, "ref_protected"), findConstraint(cs, "environment_protected")
				isTrue := func(cn *Constraint) bool { return cn != nil && len(cn.Values) == 1 && cn.Values[0] == "true" }
				if !isTrue(rp) && !isTrue(ep) {
					c.add(SeverityError, pos, "add ref_protected = \"true\" or environment_protected = \"true\"",
						"identity %q reaches production from unprotected refs", id.ID)
				}
				src := findConstraint(cs, "pipeline_source")
				if src == nil {
					c.add(SeverityError, pos, "add pipeline_source = [\"push\", \"web\"] (never merge_request_event)",
						"identity %q reaches production from any pipeline source, including merge request pipelines", id.ID)
				} else if contains(src.Values, "merge_request_event") || src.Glob {
					c.add(SeverityError, src.Pos, "remove merge_request_event from pipeline_source", "identity %q lets merge request pipelines reach production", id.ID)
				}
			case "circleci":
				if !findConstraint(cs, "oidc.circleci.com/vcs-origin").exact() {
					c.add(SeverityError, pos, "add claims = { \"oidc.circleci.com/vcs-origin\" = \"github.com/ORG/REPO\" }",
						"identity %q reaches production without pinning vcs-origin (fork builds can get tokens)", id.ID)
				}
			case "hcp-terraform":
				phase := findConstraint(cs, "terraform_run_phase")
				if write && (phase == nil || !phase.exact() || len(phase.Values) != 1 || phase.Values[0] != "apply") {
					c.add(SeverityError, pos, "add terraform_run_phase = \"apply\"; bind plan runs to a read-only profile",
						"identity %q reaches production write permissions outside the apply phase", id.ID)
				}
			}
		}
		_ = is
	}
}

// ---- L09 ----

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

func lintReusableWorkflow(c *lintCtx) {
	for i := range c.p.Identities {
		id := &c.p.Identities[i]
		for _, cs := range effectiveAlts(id) {
			ref := findConstraint(cs, "job_workflow_ref")
			if ref == nil {
				continue
			}
			shaPinned := findConstraint(cs, "job_workflow_sha").exact()
			for _, v := range ref.Values {
				at := strings.LastIndex(v, "@")
				switch {
				case ref.Glob && isGlob(v):
					c.add(SeverityError, ref.Pos, "pin job_workflow_ref exactly and add job_workflow_sha", "identity %q: job_workflow_ref %q is a pattern", id.ID, v)
				case at < 0:
					c.add(SeverityError, ref.Pos, "append @refs/heads/<protected branch> or @<commit sha>", "identity %q: job_workflow_ref %q names no ref", id.ID, v)
				case shaRE.MatchString(v[at+1:]):
				case strings.HasPrefix(v[at+1:], "refs/tags/") && !shaPinned:
					c.add(SeverityWarning, ref.Pos, "add job_workflow_sha = \"<commit sha>\" (tags can be moved)", "identity %q: job_workflow_ref %q pins a mutable tag", id.ID, v)
				case strings.HasPrefix(v[at+1:], "refs/heads/") && !shaPinned:
					c.add(SeverityError, ref.Pos, "add job_workflow_sha = \"<commit sha>\" to the same block or require", "identity %q: job_workflow_ref %q pins a branch without job_workflow_sha", id.ID, v)
				}
			}
		}
	}
}

// ---- L10 ----

func lintWidePolicy(c *lintCtx) {
	for _, b := range c.p.Bindings {
		if b.Effect != EffectAllow {
			continue
		}
		id := c.p.Identity(b.Identity)
		if id == nil {
			continue
		}
		_, ps := c.preset(id)
		alts := effectiveAlts(id)
		if len(alts) == 1 && len(alts[0]) == 0 && id.Condition == "" {
			c.add(SeverityError, b.Pos, "bind a narrow identity instead", "binding %q gives every token of issuer %q the profiles %s", b.ID, id.Issuer, strings.Join(b.Profiles, ", "))
			continue
		}
		if ps == nil {
			continue
		}
		prodWrite := false
		for _, pid := range b.Profiles {
			if pr := c.p.Profile(pid); pr != nil && isProduction(pr) && hasWrite(pr) {
				prodWrite = true
			}
		}
		if !prodWrite {
			continue
		}
		workloads := map[string]bool{}
		wide := false
		for _, cs := range alts {
			for _, pin := range ps.PinClaims {
				cn := findConstraint(cs, pin)
				if cn == nil {
					continue
				}
				if !cn.exact() {
					wide = true
				}
				for _, v := range cn.Values {
					workloads[pin+"="+v] = true
				}
			}
		}
		if wide || len(workloads) > 1 {
			c.add(SeverityError, b.Pos, "split the identity: one identity (and binding) per workload id",
				"binding %q gives production write access to identity %q, which spans %d workloads", b.ID, id.ID, max(len(workloads), 2))
		}
	}
}

// ---- L11 ----

func lintLeastPrivilege(c *lintCtx) {
	for i := range c.p.Profiles {
		pr := &c.p.Profiles[i]
		prod := isProduction(pr)
		for _, p := range pr.Permissions {
			if p == "*" || strings.HasSuffix(p, ":*") {
				sev := SeverityWarning
				if prod {
					sev = SeverityError
				}
				c.add(sev, at(pr.AttrPos, "permissions", pr.Pos), "list the exact permissions the workload needs", "profile %q grants the wildcard permission %q", pr.ID, p)
			}
		}
		for _, r := range pr.Resources {
			if r == "*" || r == "**" || strings.HasPrefix(r, "*") {
				sev := SeverityWarning
				if prod {
					sev = SeverityError
				}
				c.add(sev, at(pr.AttrPos, "resources", pr.Pos), "list the exact resources (or an anchored prefix such as \"svc/payments/*\")", "profile %q grants every resource (%q)", pr.ID, r)
			}
		}
		if prod && len(pr.Resources) == 0 {
			c.add(SeverityWarning, pr.Pos, "add resources = [\"…\"] to scope the production permissions", "profile %q grants production permissions on every resource", pr.ID)
		}
		switch {
		case pr.MaxSession.D() > time.Hour:
			c.add(SeverityError, at(pr.AttrPos, "max_session", pr.Pos), "set max_session to 1h or less", "profile %q: max_session %s is over 1h", pr.ID, pr.MaxSession)
		case prod && pr.MaxSession.D() > 15*time.Minute:
			c.add(SeverityError, at(pr.AttrPos, "max_session", pr.Pos), "set max_session to 15m or less for production", "profile %q: production max_session %s is over 15m", pr.ID, pr.MaxSession)
		case prod && pr.MaxSession == 0:
			c.add(SeverityWarning, pr.Pos, "set max_session = \"15m\" (or less)", "profile %q: production profile without max_session", pr.ID)
		}
		if strings.EqualFold(pr.Environment, "ephemeral") && (pr.MaxSession == 0 || !pr.SingleUse) {
			c.add(SeverityError, pr.Pos, "set max_session and single_use = true", "profile %q: ephemeral profiles must be short and single use", pr.ID)
		}
	}
}

// ---- L12 ----

func lintTests(c *lintCtx) {
	if c.e == nil {
		return
	}
	rep := RunTests(c.p, c.e)
	for _, r := range rep.Results {
		if !r.Pass {
			c.add(SeverityError, r.Pos, "fix the policy or the test's expectation; run `fixity policy test` for details", "test %s fails: %s", r.Name, r.Why)
		}
	}
	type cov struct{ allow, deny int }
	byBinding := map[string]*cov{}
	identities, profiles := map[string]bool{}, map[string]bool{}
	for _, r := range rep.Results {
		if r.Mutant != "" {
			continue
		}
		d := r.Decision
		identities[d.Identity] = true
		profiles[d.Profile] = true
		var t *Test
		for i := range c.p.Tests {
			if c.p.Tests[i].ID == r.Test {
				t = &c.p.Tests[i]
			}
		}
		if t == nil {
			continue
		}
		profiles[t.Request.Profile] = true
		if !r.Pass {
			continue
		}
		if d.Binding != "" {
			cv := byBinding[d.Binding]
			if cv == nil {
				cv = &cov{}
				byBinding[d.Binding] = cv
			}
			if d.Allow {
				cv.allow++
			} else {
				cv.deny++
			}
		}
		if t.Expect != EffectDeny {
			continue
		}
		// A deny test counts for every allow binding whose profiles the request targets
		// on the same issuer: it shows that binding does not reach this token.
		iss, _ := t.Claims["iss"].(string)
		for _, b := range c.p.Bindings {
			if b.Effect != EffectAllow || b.ID == d.Binding {
				continue
			}
			id := c.p.Identity(b.Identity)
			if id == nil {
				continue
			}
			is := c.p.Issuer(id.Issuer)
			if is == nil || is.URL != iss {
				continue
			}
			for _, pid := range b.Profiles {
				pr := c.p.Profile(pid)
				if pr == nil {
					continue
				}
				var want *Profile
				if t.Request.Profile != "" {
					want = c.p.Profile(t.Request.Profile)
				}
				if covers(pr, want, Request{Permission: t.Request.Permission, Resource: t.Request.Resource}) == "" {
					cv := byBinding[b.ID]
					if cv == nil {
						cv = &cov{}
						byBinding[b.ID] = cv
					}
					cv.deny++
					break
				}
			}
		}
	}
	for _, b := range c.p.Bindings {
		cv := byBinding[b.ID]
		if cv == nil {
			cv = &cov{}
		}
		if b.Effect == EffectAllow {
			if cv.allow == 0 {
				c.add(SeverityError, b.Pos, "add a test with claims this binding allows and expect = \"allow\"", "binding %q has no passing allow test", b.ID)
			}
			if cv.deny == 0 {
				c.add(SeverityError, b.Pos, "add a test (e.g. extends = test.<allowed>) with one claim changed and expect = \"deny\"", "binding %q has no passing deny test", b.ID)
			}
		} else if cv.deny == 0 {
			c.add(SeverityError, b.Pos, "add a test whose claims match the identity and request a denied profile, expect = \"deny\"", "deny binding %q has no test showing its deny", b.ID)
		}
	}
	for _, id := range c.p.Identities {
		if !identities[id.ID] {
			c.add(SeverityError, id.Pos, "add a test whose claims match this identity", "identity %q is not exercised by any test", id.ID)
		}
	}
	for _, pr := range c.p.Profiles {
		if !profiles[pr.ID] {
			c.add(SeverityError, pr.Pos, "add a test that requests this profile (or one of its permissions)", "profile %q is not exercised by any test", pr.ID)
		}
	}
}

// ---- L13 ----

func lintOverlaps(c *lintCtx) {
	for _, id := range c.p.Identities {
		type grant struct{ binding, profile string }
		byEnv := map[string][]grant{}
		for _, b := range c.p.Bindings {
			if b.Identity != id.ID || b.Effect != EffectAllow {
				continue
			}
			for _, pid := range b.Profiles {
				if pr := c.p.Profile(pid); pr != nil {
					byEnv[pr.Environment] = append(byEnv[pr.Environment], grant{b.ID, pid})
				}
			}
		}
		for _, b := range c.p.Bindings {
			if b.Identity != id.ID || b.Effect != EffectAllow {
				continue
			}
			for _, pid := range b.Profiles {
				pr := c.p.Profile(pid)
				if pr == nil {
					continue
				}
				for _, g := range byEnv[pr.Environment] {
					if g.binding != b.ID && g.profile != pid && g.binding > b.ID {
						c.add(SeverityWarning, b.Pos, "merge the bindings or give the identity one profile per environment",
							"bindings %q and %q give identity %q two different %s profiles (%s, %s)", b.ID, g.binding, id.ID, pr.Environment, pid, g.profile)
					}
				}
			}
		}
		for _, d := range c.p.Bindings {
			if d.Identity != id.ID || d.Effect != EffectDeny {
				continue
			}
			for _, a := range c.p.Bindings {
				if a.Identity != id.ID || a.Effect != EffectAllow {
					continue
				}
				for _, pid := range a.Profiles {
					if contains(d.Profiles, pid) {
						c.add(SeverityWarning, a.Pos, "remove the profile from the allow binding (deny wins)",
							"allow binding %q grants profile %q, which deny binding %q takes away for the same identity", a.ID, pid, d.ID)
					}
				}
			}
		}
	}
}

// ---- L14 ----

// defaultMaxSnapshotAge is how old a pinned key set may be at build time unless the
// policy says otherwise: long enough for a release cadence, shorter than the
// rotation periods of the big CI issuers.
const defaultMaxSnapshotAge = 90 * 24 * time.Hour

func lintSnapshotAge(c *lintCtx, is Issuer, pos Pos) {
	j := is.JWKS
	taken, err := parseSnapshotDate(j.SnapshotDate)
	if err != nil {
		return // the loader already reported it
	}
	limit := j.MaxSnapshotAge.D()
	if limit == 0 {
		limit = defaultMaxSnapshotAge
	}
	now := c.opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if age := now.Sub(taken); age > limit {
		sev := SeverityError
		if j.Mode == JWKSPinnedRefresh {
			sev = SeverityWarning // the runtime refreshes; a stale snapshot only costs a fetch
		}
		c.add(sev, pos, "fetch the issuer's keys again, update the key file and snapshot_date",
			"issuer %q: pinned key snapshot from %s is %d days old (limit %d days)", is.ID, j.SnapshotDate, int(age.Hours()/24), int(limit.Hours()/24))
	} else if age < -24*time.Hour {
		c.add(SeverityError, pos, "set snapshot_date to the day the keys were fetched",
			"issuer %q: snapshot_date %s is in the future", is.ID, j.SnapshotDate)
	}
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	Crv string `json:"crv"`
	D   string `json:"d"`
	K   string `json:"k"`
}

func lintKeys(c *lintCtx) {
	for _, is := range c.p.Issuers {
		j := is.JWKS
		pos := j.Pos
		if pos.File == "" {
			pos = is.Pos
		}
		switch j.Mode {
		case JWKSPinned:
			c.add(SeverityWarning, pos, "use mode = \"pinned+refresh\" with min_refresh_interval, or plan a re-bake for every key rotation",
				"issuer %q: pinned keys have no rotation path; a key rotation is an outage until the image is rebuilt", is.ID)
		case JWKSRemote, JWKSPinnedRefresh:
			if j.MinRefreshInterval.D() < 10*time.Second {
				c.add(SeverityError, pos, "set min_refresh_interval = \"5m\" (at least 10s)",
					"issuer %q: jwks mode %q fetches keys at run time without a rate limit (unknown-kid fetch storms)", is.ID, j.Mode)
			}
		}
		if j.SnapshotDate != "" && j.Mode != JWKSRemote {
			lintSnapshotAge(c, is, pos)
		}
		if len(j.Keys) == 0 {
			continue
		}
		var set struct {
			Keys []jwk `json:"keys"`
		}
		if err := json.Unmarshal(j.Keys, &set); err != nil {
			c.add(SeverityError, pos, "replace the file with a JWK Set", "issuer %q: pinned key set is not a JWK Set: %v", is.ID, err)
			continue
		}
		kids := map[string]bool{}
		for n, k := range set.Keys {
			where := fmt.Sprintf("issuer %q key #%d (kid %q)", is.ID, n+1, k.Kid)
			switch k.Kty {
			case "RSA", "EC", "OKP":
			default:
				c.add(SeverityError, pos, "remove the key; only RSA, EC and OKP public keys belong here", "%s has kty %q, not an asymmetric key", where, k.Kty)
			}
			if k.D != "" || k.K != "" {
				c.add(SeverityError, pos, "remove private key material from the pinned set and rotate that key", "%s contains private or secret key material", where)
			}
			if k.Kid == "" {
				c.add(SeverityError, pos, "give every key a kid", "%s has no kid", where)
			} else if kids[k.Kid] {
				c.add(SeverityError, pos, "make every kid unique", "%s: duplicate kid", where)
			}
			kids[k.Kid] = true
			if k.Alg == "" {
				c.add(SeverityError, pos, "set alg on every key (e.g. \"RS256\")", "%s has no alg", where)
			} else if !contains(is.Algorithms, k.Alg) {
				c.add(SeverityError, pos, fmt.Sprintf("add %q to algorithms or drop the key", k.Alg), "%s has alg %q, not in the issuer's algorithms %v", where, k.Alg, is.Algorithms)
			}
			if k.Use != "" && k.Use != "sig" {
				c.add(SeverityError, pos, "keep only signing keys (use = \"sig\")", "%s has use %q", where, k.Use)
			}
			if k.Kty == "RSA" {
				n, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.N, "="))
				if err != nil || len(n)*8 < 2048 {
					c.add(SeverityError, pos, "use RSA keys of at least 2048 bits", "%s is an RSA key under 2048 bits", where)
				}
			}
		}
	}
}

// ---- L15 ----

func lintTime(c *lintCtx) {
	for _, is := range c.p.Issuers {
		if is.ClockSkew.D() > 120*time.Second {
			c.add(SeverityError, at(is.AttrPos, "clock_skew", is.Pos), "set clock_skew to 120s or less (60s is typical); fix the clocks instead", "issuer %q: clock_skew %s is over 120s", is.ID, is.ClockSkew)
		}
		switch {
		case is.MaxTokenLifetime == 0:
			c.add(SeverityError, is.Pos, "set max_token_lifetime (e.g. \"10m\"; GitLab tokens live as long as the job timeout)", "issuer %q has no max_token_lifetime", is.ID)
		case is.MaxTokenLifetime.D() > time.Hour:
			c.add(SeverityWarning, at(is.AttrPos, "max_token_lifetime", is.Pos), "lower max_token_lifetime to the CI's token lifetime (1h or less)", "issuer %q: max_token_lifetime %s makes leaked tokens useful for long", is.ID, is.MaxTokenLifetime)
		}
	}
}

// ---- L16 ----

func lintSchema(c *lintCtx) {
	c.allConstraints(func(is *Issuer, ps *Preset, id *Identity, cn *Constraint) {
		if ps == nil {
			return
		}
		owner := "issuer " + is.ID + " tenant"
		if id != nil {
			owner = "identity " + id.ID
		}
		if !ps.knownClaim(cn.Claim) {
			c.add(SeverityError, cn.Pos, "check the claim name against the "+ps.Name+" claim list (docs/policy/format.md)",
				"%s: %q is not a %s claim", owner, cn.Claim, ps.Name)
			return
		}
		for _, v := range cn.Values {
			switch {
			case contains(ps.NumericClaims, cn.Claim) && !isDecimal(v) && !(cn.Glob && isGlob(v)):
				c.add(SeverityError, cn.Pos, "write the numeric id as a decimal string, e.g. \"123456789\"", "%s: %s = %q is not a decimal id", owner, cn.Claim, v)
			case contains(ps.BoolStringClaims, cn.Claim) && v != "true" && v != "false":
				c.add(SeverityError, cn.Pos, "use \"true\" or \"false\"", "%s: %s = %q must be \"true\" or \"false\"", owner, cn.Claim, v)
			case ps.Name == "github-actions" && cn.Claim == "ref" && !strings.HasPrefix(v, "refs/"):
				c.add(SeverityError, cn.Pos, fmt.Sprintf("write the full ref, e.g. \"refs/heads/%s\"", v), "%s: GitHub ref %q must start with refs/", owner, v)
			case ps.Name == "gitlab-ci" && cn.Claim == "ref" && strings.HasPrefix(v, "refs/"):
				c.add(SeverityError, cn.Pos, fmt.Sprintf("write the bare branch or tag name %q (or constrain ref_path)", strings.TrimPrefix(strings.TrimPrefix(v, "refs/heads/"), "refs/tags/")),
					"%s: GitLab ref %q has no refs/ prefix in tokens", owner, v)
			}
		}
	})
	for _, t := range c.p.Tests {
		iss, _ := t.Claims["iss"].(string)
		is := c.p.IssuerByURL(iss)
		if is == nil {
			continue
		}
		ps := LookupPreset(is.Preset)
		for _, name := range ps.NumericClaims {
			if v, ok := t.Claims[name]; ok {
				if _, isStr := v.(string); !isStr {
					c.add(SeverityError, t.Pos, fmt.Sprintf("quote it: %s = \"…\"", name), "test %q: %s claims are strings in %s tokens, got %T", t.ID, name, ps.Name, v)
				}
			}
		}
	}
}

// ---- L17 ----

func lintCEL(c *lintCtx) {
	for _, id := range c.p.Identities {
		if id.Condition == "" {
			continue
		}
		pos := id.ConditionPos
		if _, err := compileCondition(id.Condition); err != nil {
			c.add(SeverityError, pos, "make the condition a boolean expression, e.g. claims.email_verified == true", "identity %q: %v", id.ID, err)
			continue
		}
		if cost, err := conditionCost(id.Condition); err == nil && cost > celCostLimit {
			c.add(SeverityError, pos, "simplify the condition (fewer comprehensions and string operations)", "identity %q: condition cost estimate %d exceeds the limit %d", id.ID, cost, celCostLimit)
		}
		if conditionNegativeOnly(id.Condition) {
			c.add(SeverityError, pos, "state what the identity is (claims.x == \"…\"), not only what it is not",
				"identity %q: condition only excludes (every conjunct is a negation), so it cannot narrow the identity", id.ID)
		}
	}
}
