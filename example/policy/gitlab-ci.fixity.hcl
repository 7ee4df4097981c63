# A GitLab CI policy that passes `fixity policy lint` and `fixity policy test`.
# Project acme/web (project id 1001 in group id 77 on gitlab.com) deploys to staging
# from the protected main branch and to production from the protected "production"
# environment; merge request pipelines never reach either.
policy_version = 1

issuer "gitlab" {
  preset             = "gitlab-ci"
  url                = "https://gitlab.com"
  audience           = "https://authz.web.acme.internal"   # id_tokens: FIXITY_TOKEN: aud: …
  algorithms         = ["RS256"]
  clock_skew         = "60s"
  max_token_lifetime = "15m"                                # GitLab tokens live as long as the job timeout
  tenant { namespace_id = "77" }
  jwks {
    mode                 = "pinned+refresh"
    file                 = "keys/gitlab.jwks.json"
    min_refresh_interval = "5m"
  }
}

identity "web_main" {
  issuer = issuer.gitlab
  match {
    project_id    = "1001"
    ref           = "main"        # GitLab's ref has no refs/heads/ prefix
    ref_type      = "branch"
    ref_protected = "true"
  }
  require { pipeline_source = ["push", "web"] }
}

identity "web_production" {
  issuer = issuer.gitlab
  match {
    project_id            = "1001"
    environment           = "production"
    environment_protected = "true"
    ref_protected         = "true"
  }
  require { pipeline_source = ["push", "web"] }
}

profile "web_staging" {
  environment = "staging"
  permissions = ["service:deploy", "artifact:read"]
  resources   = ["svc/web-staging/*"]
  max_session = "15m"
}

profile "web_prod" {
  environment = "production"
  permissions = ["service:deploy"]
  resources   = ["svc/web/frontend"]
  max_session = "10m"
  single_use  = true
}

binding {
  name     = "web_main_to_staging"
  identity = identity.web_main
  profiles = [profile.web_staging]
}

binding {
  name     = "web_production_to_prod"
  identity = identity.web_production
  profiles = [profile.web_prod]
}

test "main_push_staging" {
  claims = {
    iss             = "https://gitlab.com"
    aud             = "https://authz.web.acme.internal"
    sub             = "project_path:acme/web:ref_type:branch:ref:main"
    namespace_id    = "77"
    namespace_path  = "acme"
    project_id      = "1001"
    project_path    = "acme/web"
    pipeline_source = "push"
    ref             = "main"
    ref_type        = "branch"
    ref_protected   = "true"
  }
  request { profile = profile.web_staging }
  expect  = "allow"
  mutants = "auto"
}

test "merge_request_staging_denied" {
  extends = test.main_push_staging
  claims  = { pipeline_source = "merge_request_event", ref = "feature/x", ref_protected = "false" }
  expect  = "deny"
}

test "production_deploy" {
  extends = test.main_push_staging
  claims = {
    environment           = "production"
    environment_protected = "true"
  }
  request {
    permission = "service:deploy"
    resource   = "svc/web/frontend"
  }
  expect  = "allow"
  mutants = "auto"
}

test "unprotected_environment_denied" {
  extends = test.production_deploy
  claims  = { environment_protected = "false" }
  request { profile = profile.web_prod }
  expect  = "deny"
}
