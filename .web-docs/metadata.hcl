# For full specification on the configuration of this file visit:
# https://github.com/hashicorp/integration-template#metadata-configuration
integration {
  name        = "Fixity"
  description = "Bake OIDC identity policy into images, sign image hashes keylessly, record releases by hash."
  identifier  = "packer/fixity-dev/fixity"
  component {
    type = "builder"
    name = "fixity-oci"
    slug = "oci"
  }
  component {
    type = "provisioner"
    name = "fixity-oidc"
    slug = "oidc"
  }
  component {
    type = "post-processor"
    name = "fixity-sign"
    slug = "sign"
  }
  component {
    type = "post-processor"
    name = "fixity-release"
    slug = "release"
  }
  component {
    type = "data-source"
    name = "fixity-policy"
    slug = "policy"
  }
  component {
    type = "data-source"
    name = "fixity-release"
    slug = "release"
  }
}
