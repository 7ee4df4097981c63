# Bake a tested identity policy into a reproducible OCI image.
#
#   packer build example/oidc            (after `make dev`; no network needed)
#
# The fixity-policy data source lints the policy, runs its tests and renders the bundle
# while Packer evaluates this file; a lint error or failing test stops the build here.
# The fixity-oidc provisioner then installs exactly that bundle at /etc/fixity (0444
# files, 0555 directories) and reads it back. The digest is stamped on the image as a
# label, so `skopeo inspect` shows which policy an image enforces.

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
  default = "output/oidc"
}

# A static linux fixity binary (CGO_ENABLED=0 go build ./cmd/fixity) to install as the
# in-image verifier; empty = bundle only.
variable "verifier_binary" {
  type    = string
  default = ""
}

data "fixity-policy" "payments" {
  files             = ["${path.root}/../policy/github-actions.fixity.hcl"]
  fail_on           = "warning"
  source_date_epoch = "1767225600"
}

source "fixity-oci" "payments" {
  base              = "scratch"
  output_dir        = var.output_dir
  image_name        = "payments-authz"
  version           = "1.0.0"
  source_date_epoch = "1767225600"
  labels            = { "dev.fixity.policy-digest" = data.fixity-policy.payments.digest }
}

build {
  sources = ["source.fixity-oci.payments"]

  provisioner "fixity-oidc" {
    source           = data.fixity-policy.payments.bundle_dir
    digest           = data.fixity-policy.payments.digest
    install_verifier = var.verifier_binary != ""
    verifier_binary  = var.verifier_binary
  }

  # Over SSH to a VM as a user that needs sudo, the same provisioner would be:
  #
  # provisioner "fixity-oidc" {
  #   source          = data.fixity-policy.payments.bundle_dir
  #   digest          = data.fixity-policy.payments.digest
  #   execute_command = "sudo -n sh -c '{{ .Command }}'"
  # }
}
