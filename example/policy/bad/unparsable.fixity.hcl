# BAD on purpose: not a loadable policy (exit 2): a typo'd attribute and a dangling reference.
issuer "github" {
  preset   = "github-actions"
  url      = "https://token.actions.githubusercontent.com"
  audiance = "https://authz.payments.acme.internal"
  jwks { mode = "remote" }
}

binding {
  identity = identity.nobody
  profiles = [profile.nothing]
}
