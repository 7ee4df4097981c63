# A GitHub Actions deploy policy that passes `fixity policy lint` and `fixity policy test`.
# The payments repository (id 123456789, owner acme id 4242) may deploy to staging from
# main, and to production only from the protected "production" environment, and only
# through the central, SHA-pinned deploy workflow.
policy_version = 1

issuer "github" {
  preset             = "github-actions"
  url                = "https://token.actions.githubusercontent.com"
  audience           = "https://authz.payments.acme.internal"
  algorithms         = ["RS256"]
  clock_skew         = "60s"
  max_token_lifetime = "10m"
  subject_format     = "immutable"
  tenant { repository_owner_id = "4242" }
  jwks {
    mode                 = "pinned+refresh"
    file                 = "keys/github-actions.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "payments_main" {
  issuer = issuer.github
  kind   = "pipeline"
  match {
    repository_id      = "123456789"
    ref                = "refs/heads/main"
    runner_environment = "github-hosted"
  }
  require {
    event_name       = ["push", "workflow_dispatch"]
    job_workflow_ref = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
}

identity "payments_production" {
  issuer = issuer.github
  kind   = "pipeline"
  match {
    repository_id      = "123456789"
    environment        = "production"
    runner_environment = "github-hosted"
  }
  require {
    event_name       = ["push", "workflow_dispatch"]
    job_workflow_ref = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
}

profile "payments_staging_deploy" {
  environment = "staging"
  permissions = ["artifact:read", "service:deploy"]
  resources   = ["svc/payments/*"]
  max_session = "15m"
}

profile "payments_prod_deploy" {
  environment = "production"
  permissions = ["service:deploy"]
  resources   = ["svc/payments/api"]
  max_session = "10m"
  single_use  = true
}

binding {
  name     = "main_to_staging"
  identity = identity.payments_main
  profiles = [profile.payments_staging_deploy]
}

binding {
  name     = "production_env_to_prod"
  identity = identity.payments_production
  profiles = [profile.payments_prod_deploy]
}

test "main_push_staging_allowed" {
  claims = {
    iss                 = "https://token.actions.githubusercontent.com"
    aud                 = "https://authz.payments.acme.internal"
    sub                 = "repo:acme@4242/payments@123456789:ref:refs/heads/main"
    repository          = "acme/payments"
    repository_id       = "123456789"
    repository_owner_id = "4242"
    event_name          = "push"
    runner_environment  = "github-hosted"
    ref                 = "refs/heads/main"
    job_workflow_ref    = "acme/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
    job_workflow_sha    = "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
  }
  request {
    permission = "service:deploy"
    resource   = "svc/payments/worker"
  }
  expect  = "allow"
  mutants = "auto"
}

test "main_push_cannot_reach_prod" {
  extends = test.main_push_staging_allowed
  request { profile = profile.payments_prod_deploy }
  expect = "deny"
}

test "prod_env_allowed" {
  extends = test.main_push_staging_allowed
  claims = {
    sub         = "repo:acme@4242/payments@123456789:environment:production"
    environment = "production"
  }
  request { profile = profile.payments_prod_deploy }
  expect  = "allow"
  mutants = "auto"
}

test "pr_target_prod_denied" {
  extends = test.prod_env_allowed
  claims = {
    event_name = "pull_request_target"
    sub        = "repo:acme@4242/payments@123456789:pull_request"
  }
  expect = "deny"
}

test "other_repo_staging_denied" {
  extends = test.main_push_staging_allowed
  claims  = { repository_id = "987654321", repository = "acme/other" }
  expect  = "deny"
}
