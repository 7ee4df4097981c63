# Run shell commands on top of a base image; the new layer holds exactly what they
# changed (deleted files become OCI whiteouts).
#
#   sudo packer build -var base=rootfs.tar example/commands      (after `make dev`)
#
# Commands need root (chroot, overlayfs) and a /bin/sh in the base. A minimal base with
# one, from Debian's busybox-static:
#
#   mkdir -p rootfs/bin rootfs/etc && cp /bin/busybox rootfs/bin/ && ln -s busybox rootfs/bin/sh
#   echo old > rootfs/etc/old && tar -C rootfs -cf rootfs.tar .
#
# `base` may also be an OCI layout (`DIR:TAG` or `DIR@sha256:…`) built earlier.

packer {
  required_plugins {
    fixity = {
      source  = "github.com/fixity-dev/fixity"
      version = ">= 0.1.0"
    }
  }
}

variable "base" {
  type = string
}

variable "output_dir" {
  type    = string
  default = "output/commands"
}

source "fixity-oci" "app" {
  base              = var.base
  output_dir        = var.output_dir
  image_name        = "commands-example"
  version           = "1.0.0"
  source_date_epoch = "1700000000"
  allow_commands    = true
}

build {
  sources = ["source.fixity-oci.app"]

  provisioner "shell" {
    inline = [
      "mkdir -p /srv/app",
      "echo 'hello from a command' > /srv/app/motd",
      "rm -f /etc/old",
    ]
  }
}
