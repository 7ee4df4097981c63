# BAD on purpose: lint-clean rules but a test that fails — the staging identity does not
# pin runner_environment, so the self-hosted runner mutant is allowed, and the written
# expectation of the second test is wrong. `fixity policy test` exits 1.
policy_version = 1

issuer "github" {
  preset             = "github-actions"
  url                = "https://token.actions.githubusercontent.com"
  audience           = "https://authz.payments.acme.internal"
  max_token_lifetime = "10m"
  tenant { repository_owner_id = "4242" }
  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/github-actions.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "payments_main" {
  issuer = issuer.github
  match {
    repository_id = "123456789"
    ref           = "refs/heads/main"
  }
}

profile "staging" {
  environment = "staging"
  permissions = ["service:deploy"]
  resources   = ["svc/payments/*"]
  max_session = "15m"
}

binding {
  identity = identity.payments_main
  profiles = [profile.staging]
}

test "main_allowed" {
  claims = {
    iss                 = "https://token.actions.githubusercontent.com"
    aud                 = "https://authz.payments.acme.internal"
    sub                 = "repo:acme/payments:ref:refs/heads/main"
    repository_id       = "123456789"
    repository_owner_id = "4242"
    ref                 = "refs/heads/main"
    runner_environment  = "github-hosted"
  }
  request { profile = profile.staging }
  expect  = "allow"
  mutants = "auto"
}

test "feature_branch_denied" {
  extends = test.main_allowed
  claims  = { ref = "refs/heads/feature" }
  expect  = "allow"
}
