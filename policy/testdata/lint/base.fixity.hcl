# Lint-clean base policy; lint_test.go derives one failing and one passing variant per rule.
policy_version = 3

issuer "github" {
  preset             = "github-actions"
  url                = "https://token.actions.githubusercontent.com"
  audience           = "https://authz.test.internal"
  algorithms         = ["RS256"]
  clock_skew         = "60s"
  max_token_lifetime = "10m"
  subject_format     = "immutable"
  tenant { repository_owner_id = "4242" }
  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/rsa.jwks.json"
    min_refresh_interval = "5m"
  }
}

issuer "gitlab" {
  preset             = "gitlab-ci"
  url                = "https://gitlab.com"
  audience           = "https://authz.test.internal"
  algorithms         = ["RS256"]
  clock_skew         = "60s"
  max_token_lifetime = "10m"
  tenant { namespace_id = "77" }
  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/rsa.jwks.json"
    min_refresh_interval = "5m"
  }
}

issuer "corp" {
  preset             = "generic-oidc"
  url                = "https://login.acme.example/oauth2/default"
  audience           = "api://image-authz"
  algorithms         = ["RS256"]
  clock_skew         = "30s"
  max_token_lifetime = "1h"
  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/rsa.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "gh_prod" {
  issuer = issuer.github
  match {
    repository_id      = "123456789"
    environment        = "production"
    runner_environment = "github-hosted"
  }
  require {
    event_name       = ["push", "workflow_dispatch"]
    job_workflow_ref = "acme/deploy/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
}

identity "gl_stage" {
  issuer = issuer.gitlab
  match {
    project_id    = "1001"
    ref           = "main"
    ref_protected = "true"
  }
}

identity "sre" {
  issuer    = issuer.corp
  kind      = "human"
  match { groups = ["sre-oncall"] }
  condition = "claims.email_verified == true"
}

profile "prod_deploy" {
  environment = "production"
  permissions = ["service:deploy"]
  resources   = ["svc/api"]
  max_session = "10m"
  single_use  = true
}

profile "stage_deploy" {
  environment = "staging"
  permissions = ["service:deploy"]
  resources   = ["svc/*"]
  max_session = "15m"
}

profile "ops_read" {
  environment = "staging"
  permissions = ["artifact:read"]
  max_session = "30m"
}

binding {
  name     = "gh_prod_deploy"
  identity = identity.gh_prod
  profiles = [profile.prod_deploy]
}

binding {
  name     = "gl_stage_deploy"
  identity = identity.gl_stage
  profiles = [profile.stage_deploy]
}

binding {
  name     = "sre_read"
  identity = identity.sre
  profiles = [profile.ops_read]
}

test "gh_prod_allowed" {
  claims = {
    iss                 = "https://token.actions.githubusercontent.com"
    aud                 = "https://authz.test.internal"
    sub                 = "repo:acme@4242/payments@123456789:environment:production"
    repository_id       = "123456789"
    repository_owner_id = "4242"
    environment         = "production"
    event_name          = "push"
    runner_environment  = "github-hosted"
    ref                 = "refs/heads/main"
    job_workflow_ref    = "acme/deploy/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha    = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
  request {
    permission = "service:deploy"
    resource   = "svc/api"
  }
  expect  = "allow"
  mutants = "auto"
}

test "gh_pr_target_denied" {
  extends = test.gh_prod_allowed
  claims  = { event_name = "pull_request_target" }
  expect  = "deny"
}

test "gl_main_allowed" {
  claims = {
    iss           = "https://gitlab.com"
    aud           = "https://authz.test.internal"
    sub           = "project_path:acme/web:ref_type:branch:ref:main"
    project_id    = "1001"
    namespace_id  = "77"
    ref           = "main"
    ref_protected = "true"
  }
  request { profile = profile.stage_deploy }
  expect  = "allow"
  mutants = "auto"
}

test "gl_feature_denied" {
  extends = test.gl_main_allowed
  claims  = { ref = "feature", ref_protected = "false" }
  expect  = "deny"
}

test "sre_allowed" {
  claims = {
    iss            = "https://login.acme.example/oauth2/default"
    aud            = "api://image-authz"
    sub            = "00u1"
    groups         = ["sre-oncall", "staff"]
    email_verified = true
  }
  request { permission = "artifact:read" }
  expect  = "allow"
  mutants = ["other_issuer", "other_audience", "expired", "over_long"]
}

test "sre_unverified_denied" {
  extends = test.sre_allowed
  claims  = { email_verified = false }
  expect  = "deny"
}
