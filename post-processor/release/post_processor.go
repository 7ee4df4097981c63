package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/fixity-dev/packer-plugin-fixity/internal/artifactstate"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/signed"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

// PostProcessor is the fixity-release post-processor.
type PostProcessor struct {
	config Config
}

var _ packersdk.PostProcessor = (*PostProcessor)(nil)

// ConfigSpec implements packersdk.HCL2Speccer.
func (p *PostProcessor) ConfigSpec() hcldec.ObjectSpec { return p.config.FlatMapstructure().HCL2Spec() }

// Configure implements packersdk.PostProcessor.
func (p *PostProcessor) Configure(raws ...interface{}) error { return p.config.Prepare(raws...) }

// amiIDs matches amazon-ebs style artifact ids: "us-east-1:ami-123,eu-west-1:ami-456".
var amiIDs = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-\d+:ami-[0-9a-f]+(,[a-z]{2}(-gov)?-[a-z]+-\d+:ami-[0-9a-f]+)*$`)

// Subject is what the release is about: the image hash and the record fields the
// artifact itself tells.
type Subject struct {
	Digest    string
	MediaType string
	Size      int64
	Artifacts []ledger.Artifact
	Bundle    string
	Base      string
	Policy    string
}

// SubjectOf reads an artifact the way fixity-sign signs it: the OCI manifest digest
// of a fixity-oci image; else the sha256 of its first regular file; else the
// canonical descriptor of its id (AMIs). Provider copies come from the id and state.
func SubjectOf(a packersdk.Artifact) (*Subject, error) {
	s := &Subject{}
	s.Bundle, _ = artifactstate.String(a.State(artifactstate.SignBundlePath))
	s.Base, _ = artifactstate.String(a.State(artifactstate.BaseDigest))
	s.Policy, _ = artifactstate.String(a.State(artifactstate.PolicyDigest))
	signedSubjects := artifactstate.Strings(a.State(artifactstate.SignSubjects))
	id := a.Id()
	if amiIDs.MatchString(id) {
		for _, p := range strings.Split(id, ",") {
			region, ami, _ := strings.Cut(p, ":")
			s.Artifacts = append(s.Artifacts, ledger.Artifact{Provider: "aws", Region: region, ID: ami})
		}
	}
	switch desc, ok := artifactstate.OCIManifest(a); {
	case ok:
		d := string(desc.Digest)
		s.Digest, s.MediaType, s.Size = d, desc.MediaType, desc.Size
		if ref, ok := artifactstate.String(a.State(artifactstate.OCIPushedReference)); ok {
			s.Artifacts = append(s.Artifacts, ledger.Artifact{Provider: "oci", ID: ref})
		}
		if dir, ok := artifactstate.String(a.State(artifactstate.OCILayoutDir)); ok {
			s.Artifacts = append(s.Artifacts, ledger.Artifact{Provider: "oci-layout", ID: dir + "@" + d})
		}
	default:
		for _, f := range a.Files() {
			st, err := os.Stat(f)
			if err != nil {
				return nil, fmt.Errorf("artifact file %s: %w", f, err)
			}
			if !st.Mode().IsRegular() {
				continue
			}
			fs, err := signing.FileSubject(f)
			if err != nil {
				return nil, err
			}
			if s.Digest == "" {
				s.Digest = fs.Digest
			}
			s.Artifacts = append(s.Artifacts, ledger.Artifact{Provider: "file", ID: filepath.Base(f) + "@" + fs.Digest})
		}
		if s.Digest == "" && len(signedSubjects) > 0 {
			// The hash fixity-sign signed. (Also the fallback when the image's own
			// state did not survive plugin RPC behind a wrapping post-processor.)
			s.Digest = signedSubjects[0]
		}
		if s.Digest == "" {
			if id == "" {
				return nil, fmt.Errorf("the artifact of %s has no OCI digest, no files and no id: nothing to record", a.BuilderId())
			}
			s.Digest = signing.DescriptorSubject(a.BuilderId(), id).Digest
		}
	}
	if len(signedSubjects) > 0 {
		found := false
		for _, d := range signedSubjects {
			found = found || d == s.Digest
		}
		if !found {
			return nil, fmt.Errorf("fixity-sign signed %s, not this artifact's hash %s: put fixity-sign and fixity-release in the same post-processors chain", strings.Join(signedSubjects, ", "), s.Digest)
		}
	}
	return s, nil
}

// PostProcess verifies, records and optionally promotes; it returns the input
// artifact (keep, force): recording changes nothing about the image.
func (p *PostProcessor) PostProcess(ctx context.Context, ui packersdk.Ui, a packersdk.Artifact) (packersdk.Artifact, bool, bool, error) {
	c := &p.config
	fail := func(err error) (packersdk.Artifact, bool, bool, error) {
		return nil, false, false, fmt.Errorf("fixity-release: %w", err)
	}
	s, err := SubjectOf(a)
	if err != nil {
		return fail(err)
	}
	rec := &ledger.Record{
		Schema: ledger.RecordSchema, Name: c.ImageName, Version: c.Version,
		Image:        ledger.Image{Digest: s.Digest, MediaType: s.MediaType, Size: s.Size},
		Artifacts:    s.Artifacts,
		PolicyDigest: firstNonEmpty(c.PolicyDigest, s.Policy), BaseDigest: firstNonEmpty(c.BaseDigest, s.Base),
		SourceRevision: c.SourceRevision, CIRunURL: c.CIRunURL,
		Created: time.Now().UTC().Truncate(time.Second),
	}
	var bundle []byte
	actor := ledger.DefaultActor()
	switch {
	case s.Bundle != "":
		opts, err := c.verifyOptions()
		if err != nil {
			return fail(fmt.Errorf("the artifact is signed (%s) but %v", s.Bundle, err))
		}
		v, err := signing.VerifyBundleFile(s.Bundle, s.Digest, opts)
		if err != nil {
			return fail(fmt.Errorf("not recorded: %w", err))
		}
		if err := signed.Apply(rec, v); err != nil {
			return fail(fmt.Errorf("not recorded: %w", err))
		}
		if rec.Name == "" && v.Predicate != nil {
			rec.Name = strings.ToLower(v.Predicate.Image)
		}
		if bundle, err = os.ReadFile(s.Bundle); err != nil {
			return fail(err)
		}
		actor = ledger.Actor{Issuer: v.Signer.Issuer, Subject: v.Signer.SAN}
		ui.Say(fmt.Sprintf("fixity-release: bundle %s verified: %s signed %s", s.Bundle, v.Signer.SAN, s.Digest))
	case c.AllowUnsigned:
		ui.Say("fixity-release: WARNING: recording " + s.Digest + " unsigned (allow_unsigned = true): rollout plans will say replace now")
	default:
		return fail(fmt.Errorf("the artifact of %s carries no fixity-sign bundle: put post-processor \"fixity-sign\" before fixity-release in the same chain, or set allow_unsigned = true", a.BuilderId()))
	}
	if rec.Name == "" {
		rec.Name = strings.ToLower(c.PackerBuildName)
	}
	if c.Actor != "" {
		actor = ledger.Actor{Issuer: "local", Subject: c.Actor}
	}
	if err := rec.Validate(); err != nil {
		return fail(fmt.Errorf("%w (set image_name / version in the fixity-release block)", err))
	}
	l, err := ledger.Open(c.Ledger)
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	if bundle != nil {
		d, err := l.PutBundle(ctx, bundle)
		if err != nil {
			return fail(err)
		}
		if d != rec.BundleDigest {
			return fail(fmt.Errorf("bundle %s changed after verification", s.Bundle))
		}
	}
	ev, err := ledger.RecordRelease(ctx, l, rec, actor)
	if err != nil {
		return fail(err)
	}
	ui.Say(fmt.Sprintf("fixity-release: recorded %s@%s %s in %s (event %d, record %s)", rec.Name, rec.Version, rec.Image.Digest, c.Ledger, ev.Seq, rec.Digest()))
	for _, art := range rec.Artifacts {
		ui.Say(fmt.Sprintf("  artifact %s %s %s", art.Provider, art.Region, art.ID))
	}
	if c.Channel != "" {
		pe, err := ledger.Promote(ctx, l, rec.Image.Digest, c.Channel, c.Requires, "promoted by packer build "+c.PackerBuildName, actor)
		if err != nil {
			return fail(fmt.Errorf("recorded as event %d but not promoted to %s: %w", ev.Seq, c.Channel, err))
		}
		ui.Say(fmt.Sprintf("fixity-release: promoted to %s (event %d)", c.Channel, pe.Seq))
	}
	return a, true, true, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
