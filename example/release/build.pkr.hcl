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
  default = "trusted_root.json"
}
variable "signer_identity" {
  type    = string
  default = "https://github.com/acme/images/.github/workflows/release.yml@refs/heads/main"
}
variable "signer_issuer" {
  type    = string
  default = "https://token.actions.githubusercontent.com"
}

source "fixity-oci" "web" {
  base       = "scratch"
  output_dir = "layout"
  image_name = "acme/web"
  version    = "1.0.0"
}

build {
  sources = ["source.fixity-oci.web"]

  provisioner "file" {
    source      = "README.md"
    destination = "/srv/README.md"
  }

  post-processors {
    post-processor "fixity-sign" {
      image_name   = "acme/web"
      version      = "1.0.0"
      trusted_root = var.trusted_root
    }
    post-processor "fixity-release" {
      ledger                  = "file://${path.root}/ledger"
      channel                 = "staging"
      trusted_root            = var.trusted_root
      certificate_identity    = var.signer_identity
      certificate_oidc_issuer = var.signer_issuer
    }
  }
}
