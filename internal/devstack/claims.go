//go:build unix

package devstack

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
)

// TokenOptions are the parts of an ID token that are not CI context: audience, lifetime,
// and the deliberate defects fault tests need. The zero value mints a valid token for
// audience "sigstore" that lives five minutes from now.
type TokenOptions struct {
	// Audience is the aud claim; nil means ["sigstore"]. One value is written as a JSON
	// string (as GitHub and GitLab do), several as an array.
	Audience []string
	// IssuedAt is the iat and nbf claim; zero means now.
	IssuedAt time.Time
	// Lifetime is exp - iat; zero means five minutes (GitHub's and GitLab's default
	// job token lifetime). Use a negative IssuedAt offset to mint an expired token.
	Lifetime time.Duration
	// Issuer overrides the iss claim, e.g. to mint "a token for another issuer" that
	// Fulcio must refuse. The token is still signed with this issuer's key.
	Issuer string
	// Algorithm is "RS256" (default, what GitHub and GitLab use) or "ES256".
	Algorithm string
	// UntrustedKey signs with a key that the JWKS does not publish: the signature
	// cannot be verified although every claim is right.
	UntrustedKey bool
	// Extra adds or replaces claims after the CI claims are built; a nil value deletes
	// the claim (e.g. {"ci_config_ref_uri": nil} for a GitLab child pipeline).
	Extra map[string]any
}

// Expired returns options whose token expired ten minutes ago.
func Expired() TokenOptions {
	return TokenOptions{IssuedAt: time.Now().Add(-15 * time.Minute), Lifetime: 5 * time.Minute}
}

// GitHubToken describes the GitHub Actions job whose ID token is minted. The zero value is
// a push to refs/heads/main of acme/images, workflow .github/workflows/release.yml, on a
// GitHub-hosted runner. Every field mirrors the claim of the same name in real tokens
// (https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect).
type GitHubToken struct {
	TokenOptions
	// Repository is "OWNER/NAME"; default "acme/images".
	Repository string
	// RepositoryID and RepositoryOwnerID default to stable numbers derived from the names.
	RepositoryID, RepositoryOwnerID string
	// Visibility is repository_visibility: "private" (default), "internal" or "public".
	Visibility string
	// Ref is the git ref; default "refs/heads/main", or "refs/pull/1/merge" for
	// pull_request events.
	Ref string
	// SHA is the commit; default a stable fake 40-hex id derived from Repository and Ref.
	SHA string
	// EventName is what triggered the run: "push" (default), "pull_request",
	// "pull_request_target", "workflow_dispatch", "schedule", "release"…
	EventName string
	// Workflow is the workflow's display name; default "release".
	Workflow string
	// WorkflowPath is the workflow file inside the repository; default
	// ".github/workflows/release.yml".
	WorkflowPath string
	// JobWorkflowRef is the reusable (called) workflow, "OWNER/REPO/PATH@REF"; default the
	// calling workflow itself. It becomes the certificate SAN.
	JobWorkflowRef string
	// JobWorkflowSHA defaults to SHA.
	JobWorkflowSHA string
	// Environment is the deployment environment; when set the sub claim becomes
	// "repo:OWNER/REPO:environment:NAME", as on GitHub.
	Environment string
	// RunnerEnvironment is "github-hosted" (default) or "self-hosted".
	RunnerEnvironment string
	// Actor is the user who started the run; default "octocat".
	Actor string
	// RunID, RunNumber and RunAttempt default to "4242", "7" and "1".
	RunID, RunNumber, RunAttempt string
	// HeadRef and BaseRef are set for pull requests (defaults "feature" and "main").
	HeadRef, BaseRef string
	// ImmutableSubject writes sub as "repo:OWNER@OWNER_ID/NAME@REPO_ID:…", the format of
	// repositories created after 2026-07-15.
	ImmutableSubject bool
	// Subject replaces the sub claim entirely (custom sub templates).
	Subject string
}

// GitLabToken describes the GitLab CI job whose `id_tokens:` token is minted. The zero
// value is a push pipeline on the protected branch main of acme/images on gitlab.com,
// GitLab-hosted runner, CI config in the project.
type GitLabToken struct {
	TokenOptions
	// Host is the GitLab instance host used inside ci_config_ref_uri; default "gitlab.com".
	Host string
	// ProjectPath is "GROUP[/SUBGROUP]/PROJECT"; default "acme/images".
	// NamespacePath defaults to everything before the last "/".
	ProjectPath, NamespacePath string
	// ProjectID and NamespaceID default to stable numbers derived from the paths.
	ProjectID, NamespaceID string
	// ProjectVisibility is "private" (default), "internal" or "public".
	ProjectVisibility string
	// Ref is the branch or tag name without refs/ prefix; default "main".
	Ref string
	// RefType is "branch" (default) or "tag".
	RefType string
	// RefProtected is "true" (default) or "false" — a string, as in GitLab's tokens.
	RefProtected string
	// SHA is the commit; default a stable fake id.
	SHA string
	// PipelineSource is "push" (default), "merge_request_event", "schedule", "web", "api"…
	PipelineSource string
	// PipelineID, JobID and RunnerID default to fixed numbers.
	PipelineID, JobID, RunnerID string
	// RunnerEnvironment is "gitlab-hosted" (default) or "self-hosted".
	RunnerEnvironment string
	// UserLogin, UserID, UserEmail and UserAccessLevel describe who ran the pipeline.
	UserLogin, UserID, UserEmail, UserAccessLevel string
	// Environment, EnvironmentProtected and DeploymentTier are set only when Environment is.
	Environment, EnvironmentProtected, DeploymentTier string
	// CIConfigPath is the CI file inside the project; default ".gitlab-ci.yml".
	CIConfigPath string
	// NoCIConfigRefURI leaves out ci_config_ref_uri and ci_config_sha, as GitLab does when
	// the CI config lives outside the project (child pipelines); Fulcio refuses such tokens.
	NoCIConfigRefURI bool
	// Subject replaces the sub claim entirely.
	Subject string
}

// stableNumber turns a name into a fixed decimal id so tests can pin ids without
// choosing them.
func stableNumber(s string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return strconv.FormatUint(uint64(h.Sum32()%900000000+100000000), 10)
}

// stableSHA gives a fixed fake commit id for a name.
func stableSHA(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:20])
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Claims returns the claim set of the token without iss, aud and the time claims.
// It fails on values GitHub could never produce, so a test typo does not turn into
// a confusing Fulcio error.
func (g GitHubToken) Claims() (map[string]any, error) {
	repo := or(g.Repository, "acme/images")
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("github token: repository %q: want OWNER/NAME, e.g. acme/images", repo)
	}
	event := or(g.EventName, "push")
	pr := event == "pull_request" || event == "pull_request_target"
	ref := g.Ref
	if ref == "" {
		ref = "refs/heads/main"
		if event == "pull_request" {
			ref = "refs/pull/1/merge"
		}
	}
	if !strings.HasPrefix(ref, "refs/") {
		return nil, fmt.Errorf("github token: ref %q: GitHub refs start with refs/ (refs/heads/BRANCH or refs/tags/TAG)", ref)
	}
	refType := "branch"
	if strings.HasPrefix(ref, "refs/tags/") {
		refType = "tag"
	}
	runner := or(g.RunnerEnvironment, "github-hosted")
	if runner != "github-hosted" && runner != "self-hosted" {
		return nil, fmt.Errorf("github token: runner_environment %q: want github-hosted or self-hosted", runner)
	}
	repoID := or(g.RepositoryID, stableNumber("repo:"+repo))
	ownerID := or(g.RepositoryOwnerID, stableNumber("owner:"+owner))
	sha := or(g.SHA, stableSHA(repo+"@"+ref))
	path := or(g.WorkflowPath, ".github/workflows/release.yml")
	workflowRef := repo + "/" + path + "@" + ref
	jobRef := or(g.JobWorkflowRef, workflowRef)
	if !strings.Contains(jobRef, "@") {
		return nil, fmt.Errorf("github token: job_workflow_ref %q: want OWNER/REPO/PATH@REF", jobRef)
	}

	sub := g.Subject
	if sub == "" {
		repoPart := repo
		if g.ImmutableSubject {
			repoPart = owner + "@" + ownerID + "/" + name + "@" + repoID
		}
		switch {
		case g.Environment != "":
			sub = "repo:" + repoPart + ":environment:" + strings.ReplaceAll(g.Environment, ":", "%3A")
		case pr:
			sub = "repo:" + repoPart + ":pull_request"
		default:
			sub = "repo:" + repoPart + ":ref:" + ref
		}
	}
	c := map[string]any{
		"jti":                   randomID(),
		"sub":                   sub,
		"ref":                   ref,
		"sha":                   sha,
		"repository":            repo,
		"repository_owner":      owner,
		"repository_owner_id":   ownerID,
		"run_id":                or(g.RunID, "4242"),
		"run_number":            or(g.RunNumber, "7"),
		"run_attempt":           or(g.RunAttempt, "1"),
		"repository_visibility": or(g.Visibility, "private"),
		"repository_id":         repoID,
		"actor_id":              stableNumber("actor:" + or(g.Actor, "octocat")),
		"actor":                 or(g.Actor, "octocat"),
		"workflow":              or(g.Workflow, "release"),
		"head_ref":              "",
		"base_ref":              "",
		"event_name":            event,
		"ref_type":              refType,
		"workflow_ref":          workflowRef,
		"workflow_sha":          sha,
		"job_workflow_ref":      jobRef,
		"job_workflow_sha":      or(g.JobWorkflowSHA, sha),
		"runner_environment":    runner,
		"check_run_id":          stableNumber("check:" + repo + ref),
	}
	if pr {
		c["head_ref"] = or(g.HeadRef, "feature")
		c["base_ref"] = or(g.BaseRef, "main")
	}
	if g.Environment != "" {
		c["environment"] = g.Environment
		c["environment_node_id"] = "EN_" + stableNumber("env:"+g.Environment)
	}
	return c, nil
}

// Claims returns the claim set of the token without iss, aud and the time claims.
func (g GitLabToken) Claims() (map[string]any, error) {
	project := or(g.ProjectPath, "acme/images")
	i := strings.LastIndex(project, "/")
	if i <= 0 || i == len(project)-1 {
		return nil, fmt.Errorf("gitlab token: project_path %q: want GROUP/PROJECT, e.g. acme/images", project)
	}
	ns := or(g.NamespacePath, project[:i])
	ref := or(g.Ref, "main")
	if strings.HasPrefix(ref, "refs/") {
		return nil, fmt.Errorf("gitlab token: ref %q: GitLab refs carry no refs/ prefix (use main, or v1.0 with ref_type tag)", ref)
	}
	refType := or(g.RefType, "branch")
	if refType != "branch" && refType != "tag" {
		return nil, fmt.Errorf("gitlab token: ref_type %q: want branch or tag", refType)
	}
	runner := or(g.RunnerEnvironment, "gitlab-hosted")
	if runner != "gitlab-hosted" && runner != "self-hosted" {
		return nil, fmt.Errorf("gitlab token: runner_environment %q: want gitlab-hosted or self-hosted", runner)
	}
	refPath := "refs/heads/" + ref
	if refType == "tag" {
		refPath = "refs/tags/" + ref
	}
	sha := or(g.SHA, stableSHA(project+"@"+refPath))
	user := or(g.UserLogin, "octo")
	sub := g.Subject
	if sub == "" {
		sub = "project_path:" + project + ":ref_type:" + refType + ":ref:" + ref
	}
	c := map[string]any{
		"jti":                randomID(),
		"sub":                sub,
		"namespace_id":       or(g.NamespaceID, stableNumber("ns:"+ns)),
		"namespace_path":     ns,
		"project_id":         or(g.ProjectID, stableNumber("project:"+project)),
		"project_path":       project,
		"project_visibility": or(g.ProjectVisibility, "private"),
		"user_id":            or(g.UserID, stableNumber("user:"+user)),
		"user_login":         user,
		"user_email":         or(g.UserEmail, user+"@example.com"),
		"user_access_level":  or(g.UserAccessLevel, "maintainer"),
		"pipeline_id":        or(g.PipelineID, "1001"),
		"pipeline_source":    or(g.PipelineSource, "push"),
		"job_id":             or(g.JobID, "5005"),
		"ref":                ref,
		"ref_type":           refType,
		"ref_path":           refPath,
		"ref_protected":      or(g.RefProtected, "true"),
		"runner_id":          or(g.RunnerID, "12270"),
		"runner_environment": runner,
		"sha":                sha,
	}
	if !g.NoCIConfigRefURI {
		c["ci_config_ref_uri"] = or(g.Host, "gitlab.com") + "/" + project + "//" + or(g.CIConfigPath, ".gitlab-ci.yml") + "@" + refPath
		c["ci_config_sha"] = sha
	}
	if g.Environment != "" {
		c["environment"] = g.Environment
		c["environment_protected"] = or(g.EnvironmentProtected, "true")
		c["deployment_tier"] = or(g.DeploymentTier, "production")
		c["environment_action"] = "start"
	}
	return c, nil
}
