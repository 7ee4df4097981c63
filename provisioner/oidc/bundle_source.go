package oidc

import (
	"fmt"
	"os"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	dspolicy "github.com/fixity-dev/packer-plugin-fixity/datasource/policy"
	"github.com/fixity-dev/packer-plugin-fixity/policy"
)

// bundleDir returns the local bundle to install: `source` as is, or `policy_files`
// loaded, linted, tested and rendered into a temporary directory (removed by cleanup).
func (c *Config) bundleDir(ui packersdk.Ui) (string, func(), error) {
	if c.Source != "" {
		return c.Source, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "fixity-oidc-bundle-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	out, err := dspolicy.Build(dspolicy.BuildOptions{
		Files:           c.PolicyFiles,
		FailOn:          "error",
		SourceDateEpoch: c.epoch,
		OutputDir:       tmp + "/bundle",
		Say:             ui.Say,
	})
	if err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("fixity-oidc: %w", err)
	}
	return out.BundleDir, cleanup, nil
}

// bundleDigest verifies the local bundle against its manifest (so a damaged bundle
// never reaches an image) and returns its policy digest.
func bundleDigest(dir string) (string, error) {
	d, err := policy.BundleDigest(dir)
	if err != nil {
		return "", fmt.Errorf("fixity-oidc: source %s is not a valid policy bundle: %w; re-render it", dir, err)
	}
	return d, nil
}
