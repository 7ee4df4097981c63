# Build an OCI image and sign its hash keylessly with fixity-sign.
#
# Against the local Sigstore stack (what `make demo` does), as if in GitHub Actions:
#   go run ./cmd/fixity-devstack up --dir .sigstore --env-file .sigstore/env &
#   go run ./cmd/fixity-devstack wait --dir .sigstore
#   set -a; . .sigstore/env; set +a        # ACTIONS_ID_TOKEN_REQUEST_* and GITHUB_*
#   packer build -var sigstore_dir=.sigstore example/sign
# In a real pipeline leave sigstore_dir empty: public-good Sigstore and the CI's own
# identity token are used (see github-actions.yml and gitlab-ci.yml beside this file).

packer {
  required_plugins {
    fixity = {
      source  = "github.com/fixity-dev/fixity"
      version = ">= 0.1.0"
    }
  }
}

variable "sigstore_dir" {
  type        = string
  default     = ""
  description = "Directory holding trusted_root.json and signing_config.json of a private Sigstore; empty = public-good."
}

variable "version" {
  type    = string
  default = "1.0.0"
}

variable "output_dir" {
  type    = string
  default = "output/sign"
}

source "fixity-oci" "web" {
  base              = "scratch"
  output_dir        = "${var.output_dir}/layout"
  image_name        = "acme/web"
  version           = var.version
  source_date_epoch = "1700000000"
}

build {
  sources = ["source.fixity-oci.web"]

  provisioner "file" {
    source      = "${path.root}/../files/hello.txt"
    destination = "/srv/hello.txt"
  }

  post-processor "fixity-sign" {
    image_name      = "acme/web"
    version         = var.version
    template_files  = ["${path.root}/build.pkr.hcl"]
    slsa_provenance = true
    output          = "${var.output_dir}/web.sigstore.json"
    trusted_root    = var.sigstore_dir == "" ? "" : "${var.sigstore_dir}/trusted_root.json"
    signing_config  = var.sigstore_dir == "" ? "" : "${var.sigstore_dir}/signing_config.json"
  }
}
