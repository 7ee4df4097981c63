package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/signed"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

func init() {
	register(command{
		name:    "verify",
		summary: "verify Sigstore bundles of image hashes against a pinned identity (offline with --trusted-root)",
		run:     verifyCmd,
	})
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// verifyJob is one bundle and the digests it must sign.
type verifyJob struct {
	Bundle  string
	Digests []string
}

// verifyOutcome is one line of the report (and one element of -o json).
type verifyOutcome struct {
	Bundle        string            `json:"bundle"`
	Verified      bool              `json:"verified"`
	FailedCheck   string            `json:"failed_check,omitempty"`
	Error         string            `json:"error,omitempty"`
	Digest        string            `json:"digest,omitempty"`
	Subjects      []signing.Subject `json:"subjects,omitempty"`
	PredicateType string            `json:"predicate_type,omitempty"`
	Predicate     json.RawMessage   `json:"predicate,omitempty"`
	Signer        *signing.Signer   `json:"signer,omitempty"`
	BundleDigest  string            `json:"bundle_digest,omitempty"`
	SignedAt      []time.Time       `json:"signed_at,omitempty"`
}

const verifyUsage = `usage: fixity verify --bundle F [--bundle F…] (--digest sha256:HEX | --artifact PATH | --builder-id B --artifact-id ID)
                     IDENTITY [--trusted-root F] [--type T] [-o json]
       fixity verify --bundles DIR (--digest … | --artifact …) IDENTITY …
       fixity verify --batch FILE IDENTITY …     (FILE: lines "sha256:HEX  BUNDLE", like sha256sum)

IDENTITY (any one of --policy, or flags as in cosign):
  --certificate-oidc-issuer URL | --certificate-oidc-issuer-regexp RE
  --certificate-identity SAN    | --certificate-identity-regexp RE
  --certificate-<extension> VALUE   exact pin on a Fulcio extension, e.g.
      --certificate-github-workflow-repository acme/images
      --certificate-source-repository-uri https://github.com/acme/images
      --certificate-runner-environment github-hosted
  --policy FILE                      many identities and pins (JSON, see docs/cli/verify.md)
  --key PUB.pem                      bundles signed in key mode

exit codes: 0 every bundle verified, 1 some bundle not verified (the failed check is named),
            2 unusable input (unreadable bundle, trusted root, policy or flags)
`

func verifyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fixity verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bundles, digests multiFlag
	fs.Var(&bundles, "bundle", "a bundle `FILE` (*.sigstore.json); repeatable")
	bundleDir := fs.String("bundles", "", "verify every *.sigstore.json in `DIR`")
	batch := fs.String("batch", "", "`FILE` of lines \"sha256:HEX  BUNDLE\" (relative to FILE)")
	fs.Var(&digests, "digest", "the image digest `sha256:HEX` the bundle must sign; repeatable (any one)")
	artifact := fs.String("artifact", "", "compute the digest from `PATH`: a file, or an OCI image layout directory")
	builderID := fs.String("builder-id", "", "with --artifact-id: the Packer builder id of a cloud image (canonical descriptor digest)")
	artifactID := fs.String("artifact-id", "", "with --builder-id: the artifact id, e.g. us-east-1:ami-0123")
	issuer := fs.String("certificate-oidc-issuer", "", "the exact OIDC issuer `URL`")
	issuerRE := fs.String("certificate-oidc-issuer-regexp", "", "an OIDC issuer `REGEXP`")
	san := fs.String("certificate-identity", "", "the exact certificate identity (SAN)")
	sanRE := fs.String("certificate-identity-regexp", "", "a certificate identity `REGEXP`")
	ext := map[string]*string{}
	for _, n := range signing.ExtensionNames() {
		ext[n] = fs.String("certificate-"+strings.ReplaceAll(n, "_", "-"), "", "exact pin on the Fulcio extension "+n)
	}
	policyFile := fs.String("policy", "", "a verification policy `FILE` (JSON)")
	trustedRoot := fs.String("trusted-root", "", "trusted_root.json `FILE` for offline verification (default: public-good via TUF)")
	key := fs.String("key", "", "a PEM public key `FILE` for bundles signed in key mode")
	ptype := fs.String("type", "", "the predicate type (default https://fixity.dev/image-release/v1; slsaprovenance1 for SLSA v1; * for any)")
	noTlog := fs.Bool("insecure-ignore-tlog", false, "do not require a transparency log entry (key-mode bundles signed offline)")
	ledgerURL := fs.String("ledger", "", "verify the head of --channel in this ledger (`URL`: file://DIR or oci://HOST/REPO)")
	channel := fs.String("channel", "", "with --ledger: the `CHANNEL` whose current release is verified")
	out := fs.String("o", "text", "output `FORMAT`: text or json")
	fs.StringVar(out, "output", "text", "same as -o")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "bundles verified in parallel in batch mode")
	fs.Usage = func() {
		fmt.Fprint(stderr, verifyUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "fixity verify: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q: pass bundles with --bundle", fs.Arg(0))
	}
	if *out != "text" && *out != "json" {
		return usage("-o %q: want text or json", *out)
	}

	// The digest(s) every bundle must sign, unless --batch gives one per bundle.
	var want []string
	for _, d := range digests {
		if _, err := signing.ParseDigest(d); err != nil {
			return usage("--digest: %v", err)
		}
		want = append(want, d)
	}
	if *artifact != "" {
		ds, err := signing.ArtifactDigests(*artifact)
		if err != nil {
			return usage("--artifact: %v", err)
		}
		want = append(want, ds...)
	}
	if (*builderID == "") != (*artifactID == "") {
		return usage("--builder-id and --artifact-id go together")
	}
	if *builderID != "" {
		want = append(want, signing.DescriptorSubject(*builderID, *artifactID).Digest)
	}

	if (*ledgerURL == "") != (*channel == "") {
		return usage("--ledger and --channel go together")
	}
	var jobs []verifyJob
	for _, b := range bundles {
		jobs = append(jobs, verifyJob{Bundle: b, Digests: want})
	}
	if *bundleDir != "" {
		matches, err := filepath.Glob(filepath.Join(*bundleDir, "*"+signing.BundleSuffix))
		if err != nil || len(matches) == 0 {
			return usage("--bundles %s: no *%s files", *bundleDir, signing.BundleSuffix)
		}
		sort.Strings(matches)
		for _, m := range matches {
			jobs = append(jobs, verifyJob{Bundle: m, Digests: want})
		}
	}
	if *batch != "" {
		bj, err := readBatch(*batch)
		if err != nil {
			return usage("--batch: %v", err)
		}
		jobs = append(jobs, bj...)
	}
	if len(jobs) == 0 && *ledgerURL == "" {
		return usage("no bundle: give --bundle FILE, --bundles DIR, --batch FILE or --ledger URL --channel C")
	}
	for _, j := range jobs {
		if len(j.Digests) == 0 {
			return usage("%s: no image digest to check: give --digest sha256:HEX or --artifact PATH (a bundle alone proves nothing about an image)", j.Bundle)
		}
	}

	opts := signing.VerifyOptions{TrustedRootPath: *trustedRoot, PublicKeyPath: *key, PredicateType: predicateAlias(*ptype)}
	if *noTlog {
		opts.TlogThreshold = -1
		if *key != "" {
			opts.TimestampThreshold = -1
		}
	}
	if *policyFile != "" {
		p, err := signing.LoadVerifyPolicy(*policyFile)
		if err != nil {
			return usage("%v", err)
		}
		opts.Identities = append(opts.Identities, p.Identities...)
		if opts.TrustedRootPath == "" {
			opts.TrustedRootPath = p.TrustedRoot
		}
		if opts.PublicKeyPath == "" {
			opts.PublicKeyPath = p.PublicKey
		}
		if opts.PredicateType == "" {
			opts.PredicateType = p.PredicateType
		}
	}
	id := signing.Identity{Issuer: *issuer, IssuerRegexp: *issuerRE, SAN: *san, SANRegexp: *sanRE, Extensions: map[string]string{}}
	for n, v := range ext {
		if *v != "" {
			id.Extensions[n] = *v
		}
	}
	if !id.Empty() {
		if *policyFile != "" {
			return usage("give identity flags or --policy, not both")
		}
		opts.Identities = append(opts.Identities, id)
	}
	if len(opts.Identities) == 0 && opts.PublicKeyPath == "" {
		return usage("no identity pinned: give --certificate-oidc-issuer and --certificate-identity (or -regexp), --policy FILE, or --key")
	}
	v, err := signing.NewVerifier(opts)
	if err != nil {
		return usage("%v", err)
	}
	if *ledgerURL != "" {
		return verifyChannel(*ledgerURL, *channel, opts, *out, stdout, stderr)
	}

	results := runVerify(v, jobs, *workers, stderr)
	code := exitOK
	for _, r := range results {
		switch {
		case r.Verified:
		case r.FailedCheck == signing.CheckInput || r.FailedCheck == signing.CheckBundle:
			code = exitUsage
		case code == exitOK:
			code = exitNegative
		}
	}
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var doc any = results
		if len(results) == 1 {
			doc = results[0]
		}
		_ = enc.Encode(doc)
		return code
	}
	for _, r := range results {
		if r.Verified {
			who := ""
			if r.Signer != nil {
				if r.Signer.KeyHint != "" {
					who = "key " + r.Signer.KeyHint
				} else {
					who = r.Signer.SAN + " (issuer " + r.Signer.Issuer + ")"
				}
			}
			fmt.Fprintf(stdout, "Verified OK %s: %s signed %s by %s\n", r.Bundle, r.PredicateType, r.Digest, who)
		} else {
			fmt.Fprintf(stdout, "NOT VERIFIED %s: %s check failed: %s\n", r.Bundle, r.FailedCheck, r.Error)
		}
	}
	return code
}

// runVerify verifies jobs with a worker pool and reports progress on stderr when there
// are many.
func runVerify(v *signing.Verifier, jobs []verifyJob, workers int, stderr io.Writer) []verifyOutcome {
	if workers < 1 {
		workers = 1
	}
	results := make([]verifyOutcome, len(jobs))
	var next, done, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if len(jobs) > 1 {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					fmt.Fprintf(stderr, "fixity verify: %d/%d bundles checked, %d not verified\n", done.Load(), len(jobs), failed.Load())
				}
			}
		}()
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				results[i] = verifyOne(v, jobs[i])
				if !results[i].Verified {
					failed.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if len(jobs) > 1 {
		fmt.Fprintf(stderr, "fixity verify: %d/%d bundles checked, %d not verified\n", done.Load(), len(jobs), failed.Load())
	}
	return results
}

func verifyOne(v *signing.Verifier, j verifyJob) verifyOutcome {
	o := verifyOutcome{Bundle: j.Bundle}
	b, err := os.ReadFile(j.Bundle)
	if err != nil {
		o.FailedCheck, o.Error = signing.CheckInput, err.Error()
		return o
	}
	res, err := v.VerifyBundle(b, j.Digests...)
	if err != nil {
		o.FailedCheck = signing.FailedCheck(err)
		if o.FailedCheck == "" {
			o.FailedCheck = signing.CheckSignature
		}
		var ve *signing.VerifyError
		if errors.As(err, &ve) {
			o.Error = ve.Err.Error()
		} else {
			o.Error = err.Error()
		}
		return o
	}
	o.Verified = true
	o.Digest = res.MatchedDigest
	o.Subjects = res.Subjects
	o.PredicateType = res.PredicateType
	o.Predicate = res.RawPredicate
	o.Signer = &res.Signer
	o.BundleDigest = res.BundleDigest
	o.SignedAt = res.Timestamps
	return o
}

// readBatch reads "sha256:HEX  PATH" lines; paths are relative to the file.
func readBatch(path string) ([]verifyJob, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var jobs []verifyJob
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"sha256:HEX  BUNDLE\"", path, i+1)
		}
		if _, err := signing.ParseDigest(fields[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		p := fields[1]
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		d := fields[0]
		if !strings.HasPrefix(d, "sha256:") {
			d = "sha256:" + d
		}
		jobs = append(jobs, verifyJob{Bundle: p, Digests: []string{d}})
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("%s: no lines", path)
	}
	return jobs, nil
}

// predicateAlias accepts the short names cosign users know.
func predicateAlias(t string) string {
	switch t {
	case "slsaprovenance1":
		return signing.PredicateSLSAProvenance
	case "image-release", "fixity":
		return signing.PredicateImageRelease
	}
	return t
}

// verifyChannel verifies the current release of a ledger channel: its stored bundle,
// against the record's image digest and the pinned identity (internal/ledger/signed).
func verifyChannel(url, channel string, opts signing.VerifyOptions, format string, stdout, stderr io.Writer) int {
	l, err := ledger.Open(url)
	if err != nil {
		fmt.Fprintf(stderr, "fixity verify: %v\n", err)
		return exitUsage
	}
	defer l.Close()
	o := verifyOutcome{Bundle: url + "#" + channel}
	rel, v, err := signed.Current(context.Background(), l, channel, opts)
	if err != nil {
		o.FailedCheck = signing.FailedCheck(err)
		if o.FailedCheck == "" {
			o.FailedCheck = "ledger"
		}
		o.Error = err.Error()
	} else {
		o.Verified = true
		o.Bundle = fmt.Sprintf("%s#%s (%s@%s)", url, channel, rel.Record.Name, rel.Record.Version)
		o.Digest, o.Subjects, o.PredicateType, o.Predicate = v.MatchedDigest, v.Subjects, v.PredicateType, v.RawPredicate
		o.Signer, o.BundleDigest, o.SignedAt = &v.Signer, v.BundleDigest, v.Timestamps
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(o)
	} else if o.Verified {
		fmt.Fprintf(stdout, "Verified OK %s: %s signed %s by %s (issuer %s)\n", o.Bundle, o.PredicateType, o.Digest, o.Signer.SAN, o.Signer.Issuer)
	} else {
		fmt.Fprintf(stdout, "NOT VERIFIED %s: %s check failed: %s\n", o.Bundle, o.FailedCheck, o.Error)
	}
	if o.Verified {
		return exitOK
	}
	if signing.IsUnusable(err) {
		return exitUsage
	}
	return exitNegative
}
