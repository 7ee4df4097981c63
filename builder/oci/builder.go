package oci

import (
	"context"
	"errors"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/multistep"
	"github.com/hashicorp/packer-plugin-sdk/multistep/commonsteps"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// Builder is the fixity-oci builder: a reproducible, daemonless OCI image built from
// a base and the files provisioners stage.
type Builder struct {
	config Config
	runner multistep.Runner
}

var _ packersdk.Builder = (*Builder)(nil)

// ConfigSpec returns the HCL spec of Config.
func (b *Builder) ConfigSpec() hcldec.ObjectSpec { return b.config.FlatMapstructure().HCL2Spec() }

// Prepare validates the configuration; it returns the generated variable names.
func (b *Builder) Prepare(raws ...interface{}) ([]string, []string, error) {
	vars, err := b.config.Prepare(raws...)
	if err != nil {
		return nil, nil, err
	}
	return vars, nil, nil
}

// Run loads the base, stages a root for provisioners, and writes the image.
func (b *Builder) Run(ctx context.Context, ui packersdk.Ui, hook packersdk.Hook) (packersdk.Artifact, error) {
	steps := []multistep.Step{
		&stepLoadBase{},
		&stepStage{},
		&commonsteps.StepProvision{},
		&stepWriteImage{},
	}
	if b.config.Push != "" {
		steps = append(steps, &stepPush{})
	}
	state := new(multistep.BasicStateBag)
	state.Put("config", &b.config)
	state.Put("hook", hook)
	state.Put("ui", ui)

	b.runner = commonsteps.NewRunner(steps, b.config.PackerConfig, ui)
	b.runner.Run(ctx, state)

	if err, ok := state.GetOk("error"); ok {
		return nil, err.(error)
	}
	if _, ok := state.GetOk(multistep.StateCancelled); ok {
		return nil, errors.New("fixity-oci: build was cancelled")
	}
	if _, ok := state.GetOk(multistep.StateHalted); ok {
		return nil, errors.New("fixity-oci: build was halted")
	}
	art, ok := state.GetOk("artifact")
	if !ok {
		return nil, errors.New("fixity-oci: no image was written")
	}
	return art.(*Artifact), nil
}
