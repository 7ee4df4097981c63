# The demo pipeline, end to end (`make demo` runs it on loopback):
#   fixity-policy (lint + test + render)  ->  fixity-oci (reproducible image)
#   -> file + fixity-oidc provisioners (bake the bundle and the verifier)
#   -> fixity-sign (keyless, Sigstore) -> fixity-release (verify, record, promote)
#
# In a real pipeline leave sigstore_dir empty (public-good Sigstore, the CI's own
# identity token) and point ledger at a shared ledger (file:// or oci://).

packer {
  required_plugins {
    fixity = {
      source  = "github.com/fixity-dev/fixity"
      version = ">= 0.1.0"
    }
  }
}

variable "output_dir" {
  type    = string
  default = "output/demo"
}

variable "version" {
  type    = string
  default = "1.0.0"
}

variable "sigstore_dir" {
  type        = string
  default     = ""
  description = "Directory with trusted_root.json and signing_config.json of a private Sigstore; empty = public-good."
}

variable "ledger" {
  type        = string
  description = "Release ledger URL: file://DIR or oci://HOST:PORT/REPO."
}

variable "signer_issuer" {
  type        = string
  description = "OIDC issuer the release's signing certificate must name."
}

variable "signer_identity_regexp" {
  type        = string
  description = "Regexp the signing certificate's identity (SAN) must match."
}

variable "fixity_binary" {
  type        = string
  default     = ""
  description = "A static linux fixity binary to install as /bin/fixity (the in-image verifier); empty = bundle only."
}

data "fixity-policy" "demo" {
  files             = ["${path.root}/policy/github-actions.fixity.hcl"]
  source_date_epoch = "1700000000"
}

source "fixity-oci" "demo" {
  base              = "scratch"
  output_dir        = var.output_dir
  image_name        = "fixity-demo"
  version           = var.version
  revision          = "0000000000000000000000000000000000000000"
  compression       = "zstd"
  platform          = "linux/amd64"
  source_date_epoch = "1700000000"
  entrypoint        = ["/bin/fixity", "authz", "serve", "--bundle", "/etc/fixity", "--listen", ":8080"]
  labels            = { "dev.fixity.policy-digest" = data.fixity-policy.demo.digest }
}

build {
  sources = ["source.fixity-oci.demo"]

  provisioner "file" {
    source      = "${path.root}/files/hello.txt"
    destination = "/srv/hello.txt"
  }

  provisioner "fixity-oidc" {
    source           = data.fixity-policy.demo.bundle_dir
    digest           = data.fixity-policy.demo.digest
    install_verifier = var.fixity_binary != ""
    verifier_binary  = var.fixity_binary
    verifier_path    = "/bin/fixity"
  }

  post-processors {
    post-processor "fixity-sign" {
      image_name     = "fixity-demo"
      version        = var.version
      policy_digest  = data.fixity-policy.demo.digest
      template_files = ["${path.root}/build.pkr.hcl"]
      output         = "${var.output_dir}.sigstore.json"
      trusted_root   = var.sigstore_dir == "" ? "" : "${var.sigstore_dir}/trusted_root.json"
      signing_config = var.sigstore_dir == "" ? "" : "${var.sigstore_dir}/signing_config.json"
    }
    post-processor "fixity-release" {
      ledger                      = var.ledger
      channel                     = "staging"
      trusted_root                = var.sigstore_dir == "" ? "" : "${var.sigstore_dir}/trusted_root.json"
      certificate_oidc_issuer     = var.signer_issuer
      certificate_identity_regexp = var.signer_identity_regexp
    }
  }

  post-processor "manifest" {
    output     = "output/packer-manifest.json"
    strip_path = true
  }
}
