# BAD on purpose: the broken token patterns `fixity policy lint` refuses.
# - the GitHub issuer has no tenant pin (L02) and uses GitHub's default audience (L06)
# - the identity pins no repository_id (L03) and its sub pattern crosses the owner boundary (L05)
# - production is reachable from any event, including pull_request_target (L08)
# - the production profile grants "*" (L11) and nothing is tested (L12)
policy_version = 1

issuer "github" {
  preset             = "github-actions"
  url                = "https://token.actions.githubusercontent.com"
  audience           = "https://github.com/acme"
  max_token_lifetime = "10m"
  jwks {
    mode                 = "pinned+refresh"
    file                 = "../keys/github-actions.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "anyone_in_acme" {
  issuer = issuer.github
  match_glob { sub = "repo:acme*/*:ref:refs/heads/main" }
}

profile "prod_admin" {
  environment = "production"
  permissions = ["*"]
  resources   = ["svc/*"]
  max_session = "10m"
}

binding {
  identity = identity.anyone_in_acme
  profiles = [profile.prod_admin]
}
