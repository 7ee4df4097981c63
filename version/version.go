// Package version holds the plugin's version. Release builds set Version with
// -ldflags "-X github.com/fixity-dev/packer-plugin-fixity/version.Version=…"; Packer
// refuses a plugin whose reported version differs from its file name.
package version

import "github.com/hashicorp/packer-plugin-sdk/version"

var (
	// Version is the main version number that is being run at the moment.
	Version = "0.1.0"
	// VersionPrerelease is "dev" for local builds (make dev); empty for releases.
	VersionPrerelease = "dev"
	// VersionMetadata is build metadata, stripped by Packer from installed names.
	VersionMetadata = ""
	// PluginVersion is what `packer-plugin-fixity describe` reports.
	PluginVersion = version.NewPluginVersion(Version, VersionPrerelease, VersionMetadata)
)

// String is the human-readable version, e.g. "0.1.0-dev".
func String() string { return PluginVersion.String() }
