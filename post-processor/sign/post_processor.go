package sign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ociimage"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// PostProcessor is fixity-sign.
type PostProcessor struct {
	config Config
}

// ConfigSpec implements packersdk.PostProcessor.
func (p *PostProcessor) ConfigSpec() hcldec.ObjectSpec { return p.config.FlatMapstructure().HCL2Spec() }

// Configure implements packersdk.PostProcessor.
func (p *PostProcessor) Configure(raws ...interface{}) error { return p.config.Prepare(raws...) }

// target is what one artifact offers to sign.
type target struct {
	subjects []signing.Subject
	oci      *ociTarget
}

type ociTarget struct {
	layoutDir string
	desc      ocispec.Descriptor
	pushedRef string
}

// subjectsOf maps an artifact onto signed subjects: the manifest digest of a fixity-oci
// image; else sha256 of each regular file; else the canonical descriptor of its id.
func subjectsOf(a packersdk.Artifact, imageName string) (target, error) {
	if desc, ok := artifactstate.OCIManifest(a); ok {
		d := string(desc.Digest)
		if _, err := signing.ParseDigest(d); err != nil {
			return target{}, fmt.Errorf("artifact state %s: %w", artifactstate.OCIManifestDigest, err)
		}
		name := imageName
		pushed, _ := artifactstate.String(a.State(artifactstate.OCIPushedReference))
		if pushed != "" {
			name = pushed
		}
		t := target{subjects: []signing.Subject{{Name: name, Digest: d}}}
		if dir, ok := artifactstate.String(a.State(artifactstate.OCILayoutDir)); ok {
			if desc.MediaType == "" {
				desc.MediaType = ocispec.MediaTypeImageManifest
			}
			t.oci = &ociTarget{layoutDir: dir, pushedRef: pushed, desc: desc}
		}
		return t, nil
	}
	var t target
	for _, f := range a.Files() {
		st, err := os.Stat(f)
		if err != nil {
			return target{}, fmt.Errorf("artifact file %s: %w", f, err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		s, err := signing.FileSubject(f)
		if err != nil {
			return target{}, err
		}
		t.subjects = append(t.subjects, s)
	}
	if len(t.subjects) > 0 {
		return t, nil
	}
	if a.Id() == "" {
		return target{}, errNoSubjects
	}
	t.subjects = []signing.Subject{signing.DescriptorSubject(a.BuilderId(), a.Id())}
	return t, nil
}

// PostProcess signs the artifact's image hash(es) and returns the input artifact
// wrapped with the bundle path and subjects in its state (keep, force).
func (p *PostProcessor) PostProcess(ctx context.Context, ui packersdk.Ui, a packersdk.Artifact) (packersdk.Artifact, bool, bool, error) {
	c := &p.config
	fail := func(err error) (packersdk.Artifact, bool, bool, error) {
		return nil, false, false, fmt.Errorf("fixity-sign: %w", err)
	}
	t, err := subjectsOf(a, c.ImageName)
	if err != nil {
		return fail(err)
	}
	rel, err := c.release(a)
	if err != nil {
		return fail(err)
	}
	svc, err := c.service()
	if err != nil {
		return fail(err)
	}
	ui.Say(fmt.Sprintf("fixity-sign: signing %d subject(s) of %s (%s)", len(t.subjects), a.BuilderId(), svc.Services()))
	for _, s := range t.subjects {
		ui.Say(fmt.Sprintf("subject %s  %s", s.Digest, s.Name))
	}

	out := c.Output
	if out == "" {
		out = defaultOutput(c.ImageName, c.Version)
	}
	statement, err := signing.NewStatement(t.subjects, signing.PredicateImageRelease, rel)
	if err != nil {
		return fail(err)
	}
	res, err := svc.SignToFile(ctx, statement, out)
	if err != nil {
		return fail(err)
	}
	ui.Say(fmt.Sprintf("fixity-sign: wrote %s (verified: %s)", out, signerString(res.Verified.Signer)))
	ui.Say(fmt.Sprintf("timings: token %s, fulcio %s, tsa %s, rekor %s, self-verify %s", res.Timings.Token, res.Timings.Fulcio, res.Timings.TSA, res.Timings.Rekor, res.Timings.Verify))
	bundles := []string{out}
	bundleBytes := [][]byte{res.Bundle}
	predTypes := []string{signing.PredicateImageRelease}

	if c.SLSAProvenance {
		slsaOut := strings.TrimSuffix(out, signing.BundleSuffix) + ".slsa" + signing.BundleSuffix
		st, err := signing.NewStatement(t.subjects, signing.PredicateSLSAProvenance, signing.SLSAProvenance(*rel, ""))
		if err != nil {
			return fail(err)
		}
		sres, err := svc.SignToFile(ctx, st, slsaOut)
		if err != nil {
			os.Remove(out) // all or nothing: the release bundle alone would look complete
			return fail(fmt.Errorf("slsa provenance: %w", err))
		}
		ui.Say("fixity-sign: wrote " + slsaOut)
		bundles = append(bundles, slsaOut)
		bundleBytes = append(bundleBytes, sres.Bundle)
		predTypes = append(predTypes, signing.PredicateSLSAProvenance)
	}

	if t.oci != nil && (c.AttachReferrer == nil || *c.AttachReferrer) {
		for i, b := range bundleBytes {
			ann := map[string]string{
				"dev.sigstore.bundle.content":       "dsse-envelope",
				"dev.sigstore.bundle.predicateType": predTypes[i],
			}
			ref, err := ociimage.AttachReferrer(t.oci.layoutDir, t.oci.desc, signing.BundleMediaType, signing.BundleMediaType, b, ann)
			if err != nil {
				return fail(fmt.Errorf("attaching the bundle to %s as an OCI referrer: %w", t.oci.layoutDir, err))
			}
			ui.Say(fmt.Sprintf("attached %s as referrer %s in %s", predTypes[i], ref.Digest, t.oci.layoutDir))
			if t.oci.pushedRef != "" {
				repo := repoOf(t.oci.pushedRef)
				if err := ociimage.PushReferrer(ctx, t.oci.layoutDir, ref, repo, c.InsecureRegistry); err != nil {
					return fail(fmt.Errorf("pushing the referrer to %s: %w", repo, err))
				}
				ui.Say(fmt.Sprintf("pushed referrer %s to %s", ref.Digest, repo))
			}
		}
	}

	subjects := make([]string, 0, len(t.subjects))
	for _, s := range t.subjects {
		subjects = append(subjects, s.Digest)
	}
	return newArtifact(a, out, bundles, subjects, res.Verified.Signer), true, true, nil
}

// release fills the predicate from config, the artifact and the CI environment.
func (c *Config) release(a packersdk.Artifact) (*signing.ImageRelease, error) {
	rel := &signing.ImageRelease{
		Image: c.ImageName, Version: c.Version, PolicyDigest: c.PolicyDigest, BaseDigest: c.BaseDigest,
		TemplateDigest: c.TemplateDigest, SourceRevision: c.SourceRevision, CIRunURL: c.CIRunURL,
		BuildName: c.PackerBuildName, BuilderType: c.PackerBuilderType,
	}
	if rel.Image == "" {
		rel.Image = a.BuilderId()
	}
	if rel.PolicyDigest == "" {
		rel.PolicyDigest, _ = artifactstate.String(a.State(artifactstate.PolicyDigest))
	}
	if rel.BaseDigest == "" {
		rel.BaseDigest, _ = artifactstate.String(a.State(artifactstate.BaseDigest))
	}
	if rel.TemplateDigest == "" && len(c.TemplateFiles) > 0 {
		h := sha256.New()
		for _, f := range c.TemplateFiles {
			fh, err := os.Open(f)
			if err != nil {
				return nil, fmt.Errorf("template_files: %w", err)
			}
			fs := sha256.New()
			_, err = io.Copy(fs, fh)
			fh.Close()
			if err != nil {
				return nil, fmt.Errorf("template_files: %w", err)
			}
			fmt.Fprintf(h, "%x  %s\n", fs.Sum(nil), f)
		}
		rel.TemplateDigest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	rev, run := signing.CIRun(nil)
	if rel.SourceRevision == "" {
		rel.SourceRevision = rev
	}
	if rel.CIRunURL == "" {
		rel.CIRunURL = run
	}
	ref := signing.ArtifactRef{BuilderID: a.BuilderId(), ID: a.Id()}
	rel.ArtifactIDs = append(rel.ArtifactIDs, ref)
	if pushed, ok := artifactstate.String(a.State(artifactstate.OCIPushedReference)); ok {
		rel.ArtifactIDs = append(rel.ArtifactIDs, signing.ArtifactRef{BuilderID: a.BuilderId(), ID: pushed})
	}
	return rel, nil
}

// service builds the signing service from the config.
func (c *Config) service() (*signing.Service, error) {
	opts := signing.SignOptions{
		TrustedRootPath: c.TrustedRoot, SigningConfigPath: c.SigningConfig,
		FulcioURL: c.FulcioURL, RekorURL: c.RekorURL, TSAURL: c.TSAURL, RekorVersion: uint32(c.RekorVersion),
		NoTlog: c.SkipTransparencyLog, OIDCIssuer: c.OIDCIssuer,
		Token: signing.TokenOptions{
			Provider: c.IdentityProvider, Token: c.IdentityToken, TokenFile: c.IdentityTokenFile, Audience: c.IdentityAudience,
		},
		Retries: uint(c.Retries), Deadline: c.timeout,
	}
	if c.Key != "" {
		pw := c.KeyPassword
		if pw == "" {
			pw = os.Getenv("COSIGN_PASSWORD")
		}
		kp, err := signing.LoadPrivateKey(c.Key, []byte(pw))
		if err != nil {
			return nil, err
		}
		opts.Key = kp
	}
	return signing.NewService(opts)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func defaultOutput(image, version string) string {
	name := unsafeName.ReplaceAllString(image, "_")
	if name == "" {
		name = "image"
	}
	if version != "" {
		name += "-" + unsafeName.ReplaceAllString(version, "_")
	}
	return name + signing.BundleSuffix
}

// repoOf strips the tag or digest from REGISTRY/REPO[:TAG][@DIGEST].
func repoOf(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

func signerString(s signing.Signer) string {
	if s.KeyHint != "" {
		return "key " + s.KeyHint
	}
	return s.SAN + " from " + s.Issuer
}
