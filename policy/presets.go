package policy

import (
	"net/url"
	"sort"
	"strings"
)

// Preset describes one issuer family: its claim schema, which claims pin the tenant and
// the workload by immutable id, and which claims are mutable names. Lint and the
// evaluator use it; it is chosen with `preset = "…"` on an issuer block.
type Preset struct {
	Name string
	// DefaultURL is the well-known multi-tenant issuer URL, if any.
	DefaultURL string
	// MultiTenantHosts are issuer hosts shared by every customer of the platform.
	MultiTenantHosts []string
	// TenantClaims: one of them must be pinned by `tenant { … }` on a multi-tenant issuer.
	TenantClaims []string
	// PinClaims are immutable workload ids; every identity must pin one by equality.
	PinClaims []string
	// NameClaims are mutable, re-registrable names: not enough to pin an identity.
	NameClaims []string
	// Claims is the known claim set; nil means an open schema (generic-oidc).
	Claims []string
	// ClaimPrefixes are open-ended claim families (GitHub repo_property_*).
	ClaimPrefixes []string
	// NumericClaims hold decimal ids sent as strings.
	NumericClaims []string
	// BoolStringClaims hold "true"/"false" strings.
	BoolStringClaims []string
	// Required claims must be present in every token (checked by Decide).
	Required []string
	// Hosted maps runner_environment's hosted value (for the self-hosted mutant).
	Hosted string
}

var presets = map[string]*Preset{
	"github-actions": {
		Name:             "github-actions",
		DefaultURL:       "https://token.actions.githubusercontent.com",
		MultiTenantHosts: []string{"token.actions.githubusercontent.com"},
		TenantClaims:     []string{"repository_owner_id", "enterprise_id"},
		PinClaims:        []string{"repository_id"},
		NameClaims:       []string{"repository", "repository_owner", "actor", "workflow", "enterprise"},
		Claims: []string{"iss", "aud", "sub", "jti", "iat", "nbf", "exp", "actor", "actor_id", "base_ref", "head_ref",
			"check_run_id", "enterprise", "enterprise_id", "environment", "event_name", "job_workflow_ref",
			"job_workflow_sha", "ref", "ref_type", "ref_protected", "repository", "repository_id", "repository_owner",
			"repository_owner_id", "repository_visibility", "run_id", "run_number", "run_attempt",
			"runner_environment", "workflow", "workflow_ref", "workflow_sha", "sha", "environment_node_id"},
		ClaimPrefixes:    []string{"repo_property_"},
		NumericClaims:    []string{"repository_id", "repository_owner_id", "actor_id", "enterprise_id", "run_id", "run_number", "run_attempt", "check_run_id"},
		BoolStringClaims: []string{"ref_protected"},
		Required:         []string{"sub", "repository_id", "repository_owner_id"},
		Hosted:           "github-hosted",
	},
	"gitlab-ci": {
		Name:             "gitlab-ci",
		DefaultURL:       "https://gitlab.com",
		MultiTenantHosts: []string{"gitlab.com"},
		TenantClaims:     []string{"namespace_id"},
		PinClaims:        []string{"project_id"},
		NameClaims:       []string{"project_path", "namespace_path", "user_login", "user_email"},
		Claims: []string{"iss", "aud", "sub", "jti", "iat", "nbf", "exp", "namespace_id", "namespace_path", "project_id",
			"project_path", "user_id", "user_login", "user_email", "user_access_level", "user_identities",
			"pipeline_id", "pipeline_source", "job_id", "ref", "ref_type", "ref_path", "ref_protected",
			"groups_direct", "environment", "environment_protected", "deployment_tier", "environment_action",
			"runner_id", "runner_environment", "sha", "ci_config_ref_uri", "ci_config_sha", "project_visibility"},
		NumericClaims:    []string{"namespace_id", "project_id", "user_id", "pipeline_id", "job_id", "runner_id"},
		BoolStringClaims: []string{"ref_protected", "environment_protected"},
		Required:         []string{"sub", "project_id", "namespace_id"},
		Hosted:           "gitlab-hosted",
	},
	"buildkite": {
		Name:             "buildkite",
		DefaultURL:       "https://agent.buildkite.com",
		MultiTenantHosts: []string{"agent.buildkite.com"},
		TenantClaims:     []string{"organization_id", "organization_slug"},
		PinClaims:        []string{"pipeline_id"},
		NameClaims:       []string{"organization_slug", "pipeline_slug"},
		Claims: []string{"iss", "aud", "sub", "jti", "iat", "nbf", "exp", "organization_slug", "pipeline_slug",
			"build_number", "build_branch", "build_tag", "build_commit", "step_key", "job_id", "agent_id",
			"runner_environment", "build_source", "organization_id", "pipeline_id", "build_id", "cluster_id",
			"cluster_name", "queue_id", "queue_key"},
		ClaimPrefixes: []string{"agent_tag:"},
		Required:      []string{"sub", "organization_slug", "pipeline_slug"},
		Hosted:        "buildkite-hosted",
	},
	"circleci": {
		Name:         "circleci",
		TenantClaims: nil, // per-organisation issuer URL
		PinClaims:    []string{"oidc.circleci.com/project-id"},
		NameClaims:   nil,
		Claims: []string{"iss", "aud", "sub", "jti", "iat", "nbf", "exp", "oidc.circleci.com/project-id",
			"oidc.circleci.com/vcs-origin", "oidc.circleci.com/vcs-ref", "oidc.circleci.com/context-ids",
			"oidc.circleci.com/ssh-rerun"},
		Required: []string{"sub", "oidc.circleci.com/project-id"},
	},
	"hcp-terraform": {
		Name:             "hcp-terraform",
		DefaultURL:       "https://app.terraform.io",
		MultiTenantHosts: []string{"app.terraform.io"},
		TenantClaims:     []string{"terraform_organization_id"},
		PinClaims:        []string{"terraform_workspace_id"},
		NameClaims:       []string{"terraform_organization_name", "terraform_project_name", "terraform_workspace_name", "terraform_full_workspace"},
		Claims: []string{"iss", "aud", "sub", "jti", "iat", "nbf", "exp", "terraform_organization_id",
			"terraform_organization_name", "terraform_project_id", "terraform_project_name", "terraform_workspace_id",
			"terraform_workspace_name", "terraform_full_workspace", "terraform_run_id", "terraform_run_phase"},
		Required: []string{"sub", "terraform_organization_id", "terraform_workspace_id"},
	},
	"kubernetes": {
		Name:       "kubernetes",
		PinClaims:  []string{"kubernetes.io.serviceaccount.uid"},
		NameClaims: []string{"kubernetes.io.serviceaccount.name", "kubernetes.io.pod.name"},
		Claims: []string{"iss", "aud", "sub", "jti", "iat", "nbf", "exp", "kubernetes.io.namespace",
			"kubernetes.io.serviceaccount.name", "kubernetes.io.serviceaccount.uid", "kubernetes.io.pod.name",
			"kubernetes.io.pod.uid", "kubernetes.io.node.name", "kubernetes.io.node.uid", "kubernetes.io.warnafter"},
		Required: []string{"sub", "kubernetes.io.serviceaccount.uid"},
	},
	"generic-oidc": {
		Name: "generic-oidc",
		// Google's issuer is multi-tenant; its tenant-free pin is the numeric sub.
		MultiTenantHosts: []string{"accounts.google.com"},
		TenantClaims:     []string{"sub", "hd"},
		PinClaims:        []string{"sub", "groups", "oid", "uid"},
		NameClaims:       []string{"email", "preferred_username", "name", "upn"},
		Required:         []string{"sub"},
	},
}

// PresetNames lists the preset names in sorted order.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupPreset returns the preset with that exact name, or nil.
func LookupPreset(name string) *Preset { return presets[name] }

// knownClaim reports whether the preset's schema knows claim (open schemas know all).
func (ps *Preset) knownClaim(claim string) bool {
	if ps.Claims == nil {
		return true
	}
	for _, c := range ps.Claims {
		if c == claim {
			return true
		}
	}
	for _, pre := range ps.ClaimPrefixes {
		if strings.HasPrefix(claim, pre) {
			return true
		}
	}
	return false
}

// multiTenant reports whether issuerURL is one of the preset's shared issuers. GitHub's
// enterprise issuer (a path after the host) is per-enterprise and therefore not shared.
func (ps *Preset) multiTenant(issuerURL string) bool {
	u, err := url.Parse(issuerURL)
	if err != nil {
		return true
	}
	for _, h := range ps.MultiTenantHosts {
		if strings.EqualFold(u.Hostname(), h) {
			if ps.Name == "github-actions" && strings.Trim(u.Path, "/") != "" {
				return false
			}
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
