packer {
  required_plugins {
    fixity = {
      source  = "github.com/fixity-dev/fixity"
      version = ">= 0.1.0"
    }
  }
}

variable "trusted_root" {
  type    = string
  default = "../trusted_root.json"
}

data "fixity-release" "web" {
  ledger                  = "file://${path.root}/../ledger"
  channel                 = "staging"
  trusted_root            = var.trusted_root
  certificate_identity    = "https://github.com/acme/images/.github/workflows/release.yml@refs/heads/main"
  certificate_oidc_issuer = "https://token.actions.githubusercontent.com"
}

source "file" "approved" {
  content = "${data.fixity-release.web.name}@${data.fixity-release.web.version} ${data.fixity-release.web.image_digest} signed by ${data.fixity-release.web.signer_identity}\n"
  target  = "approved.txt"
}

build {
  sources = ["source.file.approved"]
}
