// Command packer-plugin-fixity is the Fixity Packer plugin: it registers every
// component under the plugin name "fixity" (builder fixity-oci, provisioner
// fixity-oidc, post-processors fixity-sign and fixity-release, data sources
// fixity-policy and fixity-release).
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/packer-plugin-sdk/plugin"

	"github.com/fixity-dev/packer-plugin-fixity/builder/oci"
	dspolicy "github.com/fixity-dev/packer-plugin-fixity/datasource/policy"
	dsrelease "github.com/fixity-dev/packer-plugin-fixity/datasource/release"
	fixityrelease "github.com/fixity-dev/packer-plugin-fixity/post-processor/release"
	fixitysign "github.com/fixity-dev/packer-plugin-fixity/post-processor/sign"
	provoidc "github.com/fixity-dev/packer-plugin-fixity/provisioner/oidc"
	"github.com/fixity-dev/packer-plugin-fixity/version"
)

func main() {
	pps := plugin.NewSet()
	pps.RegisterBuilder("oci", new(oci.Builder))
	pps.RegisterPostProcessor("sign", new(fixitysign.PostProcessor))
	pps.RegisterProvisioner("oidc", new(provoidc.Provisioner))
	pps.RegisterDatasource("policy", new(dspolicy.Datasource))
	pps.RegisterPostProcessor("release", new(fixityrelease.PostProcessor))
	pps.RegisterDatasource("release", new(dsrelease.Datasource))
	pps.SetVersion(version.PluginVersion)
	if err := pps.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
