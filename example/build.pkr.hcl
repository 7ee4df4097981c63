# The demo image: a reproducible OCI image built from scratch with the real packer.
# Run it with `make demo` (which builds and installs the plugin first).

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

source "fixity-oci" "demo" {
  base              = "scratch"
  output_dir        = var.output_dir
  image_name        = "fixity-demo"
  version           = var.version
  revision          = "0000000000000000000000000000000000000000"
  compression       = "zstd"
  platform          = "linux/amd64"
  source_date_epoch = "1700000000"
  entrypoint        = ["/bin/fixity", "authz", "serve", "--bundle", "/etc/fixity"]
  labels            = { "org.opencontainers.image.vendor" = "fixity-demo" }
}

build {
  sources = ["source.fixity-oci.demo"]

  provisioner "file" {
    source      = "files/hello.txt"
    destination = "/srv/hello.txt"
  }

  post-processor "manifest" {
    output     = "output/packer-manifest.json"
    strip_path = true
  }
}
