//go:build unix

package devstack

// fulcioIssuer is one entry of Fulcio's OIDCIssuers (JSON form of its config file).
type fulcioIssuer struct {
	IssuerURL   string `json:"IssuerURL"`
	ClientID    string `json:"ClientID"`
	Type        string `json:"Type"`
	CIProvider  string `json:"CIProvider,omitempty"`
	Description string `json:"Description,omitempty"`
}

// fulcioMetadata is one entry of Fulcio's CIIssuerMetadata.
type fulcioMetadata struct {
	DefaultTemplateValues          map[string]string `json:"DefaultTemplateValues"`
	ExtensionTemplates             map[string]string `json:"ExtensionTemplates"`
	SubjectAlternativeNameTemplate string            `json:"SubjectAlternativeNameTemplate"`
}

// fulcioConfig maps the local issuers to Fulcio's "ci-provider" type with the
// github-workflow and gitlab-pipeline claim templates of the public-good instance
// (fulcio v1.8.8 config/identity/config.yaml), so certificates carry the same SAN and
// extensions (OIDs 1.3.6.1.4.1.57264.1.2–.23) as production certificates; only the
// issuer URL differs. A config file replaces Fulcio's defaults, hence the metadata.
func fulcioConfig(githubURL, gitlabURL string) map[string]any {
	return map[string]any{
		"OIDCIssuers": map[string]fulcioIssuer{
			githubURL: {IssuerURL: githubURL, ClientID: "sigstore", Type: "ci-provider", CIProvider: "github-workflow",
				Description: "fixity devstack: GitHub Actions-shaped issuer"},
			gitlabURL: {IssuerURL: gitlabURL, ClientID: "sigstore", Type: "ci-provider", CIProvider: "gitlab-pipeline",
				Description: "fixity devstack: GitLab CI-shaped issuer"},
		},
		"CIIssuerMetadata": map[string]fulcioMetadata{
			"github-workflow": {
				DefaultTemplateValues: map[string]string{"url": "https://github.com", "environment": ""},
				ExtensionTemplates: map[string]string{
					"GithubWorkflowTrigger":               "event_name",
					"GithubWorkflowSHA":                   "sha",
					"GithubWorkflowName":                  "workflow",
					"GithubWorkflowRepository":            "repository",
					"GithubWorkflowRef":                   "ref",
					"BuildSignerURI":                      "{{ .url }}/{{ .job_workflow_ref }}",
					"BuildSignerDigest":                   "job_workflow_sha",
					"RunnerEnvironment":                   "runner_environment",
					"SourceRepositoryURI":                 "{{ .url }}/{{ .repository }}",
					"SourceRepositoryDigest":              "sha",
					"SourceRepositoryRef":                 "ref",
					"SourceRepositoryIdentifier":          "repository_id",
					"SourceRepositoryOwnerURI":            "{{ .url }}/{{ .repository_owner }}",
					"SourceRepositoryOwnerIdentifier":     "repository_owner_id",
					"BuildConfigURI":                      "{{ .url }}/{{ .workflow_ref }}",
					"BuildConfigDigest":                   "workflow_sha",
					"BuildTrigger":                        "event_name",
					"RunInvocationURI":                    "{{ .url }}/{{ .repository }}/actions/runs/{{ .run_id }}/attempts/{{ .run_attempt }}",
					"SourceRepositoryVisibilityAtSigning": "repository_visibility",
					"DeploymentEnvironment":               "environment",
				},
				SubjectAlternativeNameTemplate: "{{ .url }}/{{ .job_workflow_ref }}",
			},
			"gitlab-pipeline": {
				DefaultTemplateValues: map[string]string{"url": "https://gitlab.com", "environment": ""},
				ExtensionTemplates: map[string]string{
					"BuildSignerURI":                      "https://{{ .ci_config_ref_uri }}",
					"BuildSignerDigest":                   "ci_config_sha",
					"RunnerEnvironment":                   "runner_environment",
					"SourceRepositoryURI":                 "{{ .url }}/{{ .project_path }}",
					"SourceRepositoryDigest":              "sha",
					"SourceRepositoryRef":                 `refs/{{if eq .ref_type "branch"}}heads/{{ else }}tags/{{end}}{{ .ref }}`,
					"SourceRepositoryIdentifier":          "project_id",
					"SourceRepositoryOwnerURI":            "{{ .url }}/{{ .namespace_path }}",
					"SourceRepositoryOwnerIdentifier":     "namespace_id",
					"BuildConfigURI":                      "https://{{ .ci_config_ref_uri }}",
					"BuildConfigDigest":                   "ci_config_sha",
					"BuildTrigger":                        "pipeline_source",
					"RunInvocationURI":                    "{{ .url }}/{{ .project_path }}/-/jobs/{{ .job_id }}",
					"SourceRepositoryVisibilityAtSigning": "project_visibility",
					"DeploymentEnvironment":               "environment",
				},
				SubjectAlternativeNameTemplate: "https://{{ .ci_config_ref_uri }}",
			},
		},
	}
}
