package oci

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/packer-plugin-sdk/multistep"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
)

// Manifest annotations the builder owns (image-spec annotations.md).
const (
	annVersion    = ocispec.AnnotationVersion
	annRevision   = ocispec.AnnotationRevision
	annCreated    = ocispec.AnnotationCreated
	annSource     = ocispec.AnnotationSource
	annTitle      = ocispec.AnnotationTitle
	annRefName    = ocispec.AnnotationRefName
	annBaseDigest = ocispec.AnnotationBaseImageDigest
	annBaseName   = ocispec.AnnotationBaseImageName
)

func halt(state multistep.StateBag, err error) multistep.StepAction {
	state.Put("error", err)
	state.Get("ui").(packersdk.Ui).Error(err.Error())
	return multistep.ActionHalt
}

func generatedData(state multistep.StateBag) map[string]interface{} {
	if gd, ok := state.GetOk("generated_data"); ok {
		return gd.(map[string]interface{})
	}
	gd := map[string]interface{}{}
	state.Put("generated_data", gd)
	return gd
}

// stepLoadBase resolves and verifies the parent image.
type stepLoadBase struct{}

func (s *stepLoadBase) Run(ctx context.Context, state multistep.StateBag) multistep.StepAction {
	cfg := state.Get("config").(*Config)
	ui := state.Get("ui").(packersdk.Ui)
	ui.Say(fmt.Sprintf("Loading base %q", cfg.Base))
	base, err := ociimage.LoadBase(ctx, cfg.Base)
	if err != nil {
		return halt(state, err)
	}
	state.Put("base", base)
	gd := generatedData(state)
	gd["BaseDigest"] = string(base.Digest)
	gd["ImageDigest"] = "ERR_IMAGE_DIGEST_NOT_KNOWN_UNTIL_THE_IMAGE_IS_WRITTEN"
	if base.Digest != "" {
		ui.Say(fmt.Sprintf("Base %s verified: %d layer(s)", base.Digest, len(base.Layers)))
	}
	return multistep.ActionContinue
}

func (s *stepLoadBase) Cleanup(multistep.StateBag) {}

// stepStage creates the staging root that provisioners write into and the
// communicator that maps image paths onto it.
type stepStage struct{ dir string }

func (s *stepStage) Run(_ context.Context, state multistep.StateBag) multistep.StepAction {
	cfg := state.Get("config").(*Config)
	dir, err := os.MkdirTemp("", "fixity-oci-stage-")
	if err != nil {
		return halt(state, fmt.Errorf("fixity-oci: staging root: %w", err))
	}
	s.dir = dir
	comm, err := NewCommunicator(dir, cfg.AllowCommands)
	if err != nil {
		return halt(state, fmt.Errorf("fixity-oci: staging root: %w", err))
	}
	if base, ok := state.GetOk("base"); ok {
		comm.SetBase(base.(*ociimage.Base))
	}
	state.Put("stage_dir", dir)
	state.Put("communicator", comm)
	return multistep.ActionContinue
}

func (s *stepStage) Cleanup(state multistep.StateBag) {
	if c, ok := state.GetOk("communicator"); ok {
		_ = c.(*Communicator).Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// stepWriteImage turns the staging root into one layer on top of the base and
// writes the image into output_dir atomically.
type stepWriteImage struct{}

func (s *stepWriteImage) Run(ctx context.Context, state multistep.StateBag) multistep.StepAction {
	cfg := state.Get("config").(*Config)
	ui := state.Get("ui").(packersdk.Ui)
	base := state.Get("base").(*ociimage.Base)
	created := time.Unix(cfg.epoch, 0).UTC()

	spec := ociimage.ImageSpec{
		Base:        base,
		RootDir:     state.Get("stage_dir").(string),
		Compression: cfg.compress,
		Created:     created,
		Platform:    imagePlatform(cfg, base),
		Config:      imageConfig(cfg, base),
		Annotations: manifestAnnotations(cfg, base, created),
		Tags:        cfg.resolvedT,
	}
	if c, ok := state.GetOk("communicator"); ok {
		spec.RootIsOverlayUpper = c.(*Communicator).UsedOverlay()
	}
	ui.Say(fmt.Sprintf("Writing image to %s (%s layer)", cfg.OutputDir, cfg.compress))
	res, err := ociimage.WriteImage(ctx, cfg.OutputDir, spec)
	if err != nil {
		return halt(state, err)
	}
	digest := string(res.Manifest.Digest)
	gd := generatedData(state)
	gd["ImageDigest"] = digest
	gd["BaseDigest"] = string(base.Digest)
	art := &Artifact{
		LayoutDir:      cfg.OutputDir,
		ManifestDigest: digest,
		MediaType:      res.Manifest.MediaType,
		ManifestSize:   res.Manifest.Size,
		Tags:           cfg.resolvedT,
		ImageName:      cfg.ImageName,
		Version:        cfg.Version,
		BaseDigest:     string(base.Digest),
		BaseRef:        base.Ref,
		Compression:    string(cfg.compress),
		CreatedLayout:  res.Created,
		FileList:       res.Files,
		StateData:      map[string]interface{}{artifactstate.GeneratedData: gd},
	}
	state.Put("artifact", art)
	ui.Say(fmt.Sprintf("Image digest: %s", digest))
	return multistep.ActionContinue
}

func (s *stepWriteImage) Cleanup(multistep.StateBag) {}

// stepPush uploads the image and checks the registry's digest.
type stepPush struct{}

func (s *stepPush) Run(ctx context.Context, state multistep.StateBag) multistep.StepAction {
	cfg := state.Get("config").(*Config)
	ui := state.Get("ui").(packersdk.Ui)
	art := state.Get("artifact").(*Artifact)
	ui.Say(fmt.Sprintf("Pushing %s to %s", art.ManifestDigest, cfg.Push))
	desc, err := ociimage.Resolve(cfg.OutputDir, art.ManifestDigest)
	if err != nil {
		return halt(state, err)
	}
	ref, err := ociimage.Push(ctx, cfg.OutputDir, desc, cfg.Push, cfg.InsecureRegistry)
	if err != nil {
		return halt(state, fmt.Errorf("push: %w", err))
	}
	art.PushedRef = ref
	generatedData(state)["PushedReference"] = ref
	ui.Say(fmt.Sprintf("Pushed %s", ref))
	return multistep.ActionContinue
}

func (s *stepPush) Cleanup(multistep.StateBag) {}

func imagePlatform(cfg *Config, base *ociimage.Base) ocispec.Platform {
	if cfg.platform.OS != "" {
		return cfg.platform
	}
	if base.Config.OS != "" && base.Config.Architecture != "" {
		return ocispec.Platform{OS: base.Config.OS, Architecture: base.Config.Architecture, Variant: base.Config.Variant}
	}
	return ocispec.Platform{OS: "linux", Architecture: "amd64"}
}

// imageConfig merges the template's settings over the base image's config: env
// and labels key by key, everything else replaced when set.
func imageConfig(cfg *Config, base *ociimage.Base) ocispec.ImageConfig {
	ic := base.Config.Config
	if len(cfg.Entrypoint) > 0 {
		ic.Entrypoint = cfg.Entrypoint
		if len(cfg.Cmd) == 0 {
			ic.Cmd = nil // a new entrypoint makes the base's arguments meaningless (docker semantics)
		}
	}
	if len(cfg.Cmd) > 0 {
		ic.Cmd = cfg.Cmd
	}
	if cfg.User != "" {
		ic.User = cfg.User
	}
	if cfg.WorkingDir != "" {
		ic.WorkingDir = cfg.WorkingDir
	}
	if len(cfg.Env) > 0 {
		env := map[string]string{}
		var order []string
		for _, kv := range ic.Env {
			k, v, _ := strings.Cut(kv, "=")
			if _, seen := env[k]; !seen {
				order = append(order, k)
			}
			env[k] = v
		}
		var added []string
		for k, v := range cfg.Env {
			if _, seen := env[k]; !seen {
				added = append(added, k)
			}
			env[k] = v
		}
		sort.Strings(added) // map order must not reach the image
		order = append(order, added...)
		ic.Env = nil
		for _, k := range order {
			ic.Env = append(ic.Env, k+"="+env[k])
		}
	}
	if len(cfg.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range ic.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		ic.Labels = labels
	}
	return ic
}

func manifestAnnotations(cfg *Config, base *ociimage.Base, created time.Time) map[string]string {
	a := map[string]string{}
	for k, v := range cfg.Annotations {
		a[k] = v
	}
	a[annCreated] = created.Format(time.RFC3339)
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	set(annTitle, cfg.ImageName)
	set(annVersion, cfg.Version)
	set(annRevision, cfg.Revision)
	set(annSource, cfg.SourceURL)
	if base.Kind == "layout" {
		set(annBaseDigest, string(base.Digest))
	}
	return a
}
