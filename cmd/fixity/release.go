package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/signed"
	"github.com/fixity-dev/packer-plugin-fixity/internal/signing"
)

func init() {
	register(command{
		name:    "release",
		summary: "record, list, show, promote and revoke releases; verify a ledger's hash chain",
		run: func(args []string, stdout, stderr io.Writer) int {
			return subcommands("release", map[string]func([]string, io.Writer, io.Writer) int{
				"record":       releaseRecord,
				"list":         releaseList,
				"show":         releaseShow,
				"promote":      releasePromote,
				"revoke":       releaseRevoke,
				"verify-chain": releaseVerifyChain,
			}, args, stdout, stderr)
		},
	})
}

// releaseStrings is a repeatable string flag.
type releaseStrings []string

func (s *releaseStrings) String() string     { return strings.Join(*s, ",") }
func (s *releaseStrings) Set(v string) error { *s = append(*s, v); return nil }

// releaseCmd holds the flags every release/rollout verb shares.
type releaseCmd struct {
	fs     *flag.FlagSet
	ledger string
	output string
	actor  string
	stderr io.Writer
	verb   string
}

func newReleaseCmd(verb, usage string, stderr io.Writer) *releaseCmd {
	c := &releaseCmd{fs: flag.NewFlagSet("fixity "+verb, flag.ContinueOnError), stderr: stderr, verb: verb}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.ledger, "ledger", "", "ledger URL: file://DIR or oci://HOST:PORT/REPO (required)")
	c.fs.StringVar(&c.output, "o", "text", "output format: text or json")
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fixity %s %s\n", verb, usage)
		c.fs.PrintDefaults()
	}
	return c
}

func (c *releaseCmd) withActor() {
	c.fs.StringVar(&c.actor, "actor", "", "who appends the event (default $USER@host, issuer \"local\")")
}

// parse accepts flags before and after positionals and returns the positionals.
func (c *releaseCmd) parse(args []string) ([]string, bool) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, false
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.ledger == "" {
		fmt.Fprintf(c.stderr, "fixity %s: --ledger is required: pass file://DIR or oci://HOST:PORT/REPO\n", c.verb)
		return nil, false
	}
	if c.output != "text" && c.output != "json" && !(c.verb == "rollout plan" && c.output == "table") {
		fmt.Fprintf(c.stderr, "fixity %s: -o %q: use text or json\n", c.verb, c.output)
		return nil, false
	}
	return pos, true
}

func (c *releaseCmd) actorValue() ledger.Actor {
	if c.actor != "" {
		return ledger.Actor{Issuer: "local", Subject: c.actor}
	}
	return ledger.DefaultActor()
}

func (c *releaseCmd) open() (ledger.Ledger, bool) {
	l, err := ledger.Open(c.ledger)
	if err != nil {
		fmt.Fprintf(c.stderr, "fixity %s: %v\n", c.verb, err)
		return nil, false
	}
	return l, true
}

// fail prints a ledger error; a broken chain and a refused event are negative answers.
func (c *releaseCmd) fail(err error) int {
	fmt.Fprintf(c.stderr, "fixity %s: %v\n", c.verb, err)
	return exitNegative
}

func releaseJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func releaseCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Minute)
}

// releaseIdentity holds the verification flags (cosign's names).
type releaseIdentity struct {
	root, issuer, issuerRE, san, sanRE string
	ext                                releaseStrings
}

func (r *releaseIdentity) register(fs *flag.FlagSet) {
	fs.StringVar(&r.root, "trusted-root", "", "trusted_root.json for offline verification (default: the public-good root via TUF)")
	fs.StringVar(&r.issuer, "certificate-oidc-issuer", "", "expected OIDC issuer of the signer (exact)")
	fs.StringVar(&r.issuerRE, "certificate-oidc-issuer-regexp", "", "expected OIDC issuer of the signer (regexp)")
	fs.StringVar(&r.san, "certificate-identity", "", "expected signer identity (certificate SAN, exact)")
	fs.StringVar(&r.sanRE, "certificate-identity-regexp", "", "expected signer identity (certificate SAN, regexp)")
	fs.Var(&r.ext, "certificate-extension", "pin a certificate extension NAME=VALUE (repeatable), e.g. source_repository_ref=refs/heads/main")
}

func (r *releaseIdentity) options() (signing.VerifyOptions, error) {
	id := signing.Identity{Issuer: r.issuer, IssuerRegexp: r.issuerRE, SAN: r.san, SANRegexp: r.sanRE}
	for _, e := range r.ext {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return signing.VerifyOptions{}, fmt.Errorf("--certificate-extension %q: want NAME=VALUE", e)
		}
		if id.Extensions == nil {
			id.Extensions = map[string]string{}
		}
		id.Extensions[k] = v
	}
	if !id.PinsIssuerAndSAN() {
		return signing.VerifyOptions{}, fmt.Errorf("pin the signer: pass --certificate-oidc-issuer[-regexp] and --certificate-identity[-regexp]")
	}
	return signing.VerifyOptions{TrustedRootPath: r.root, Identities: []signing.Identity{id}}, nil
}

func releaseRecord(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("release record", "--ledger URL --name N --version V --image sha256:… (--bundle FILE identity flags | --allow-unsigned) [flags]", stderr)
	c.withActor()
	var (
		rec           ledger.Record
		artifacts     releaseStrings
		bundle        string
		allowUnsigned bool
		channel       string
		id            releaseIdentity
	)
	fs := c.fs
	fs.StringVar(&rec.Name, "name", "", "image name (required)")
	fs.StringVar(&rec.Version, "version", "", "release version (required; name@version is unique)")
	fs.StringVar(&rec.Image.Digest, "image", "", "image hash sha256:… (the OCI manifest digest; required)")
	fs.StringVar(&rec.Image.MediaType, "media-type", "", "image manifest media type (makes ledger events OCI referrers of the image)")
	fs.Int64Var(&rec.Image.Size, "size", 0, "image manifest size in bytes")
	fs.Var(&artifacts, "artifact", "provider copy PROVIDER:REGION:ID or PROVIDER:ID (repeatable), e.g. aws:us-east-1:ami-0123")
	fs.StringVar(&rec.PolicyDigest, "policy-digest", "", "policy bundle digest baked into the image (default: from the signed predicate)")
	fs.StringVar(&rec.BaseDigest, "base-digest", "", "parent image digest (default: from the signed predicate)")
	fs.StringVar(&rec.SourceRevision, "source-revision", "", "source revision (default: from the signed predicate)")
	fs.StringVar(&rec.CIRunURL, "ci-run-url", "", "CI run URL (default: from the signed predicate)")
	fs.StringVar(&bundle, "bundle", "", "fixity-sign bundle (*.sigstore.json) over --image")
	fs.BoolVar(&allowUnsigned, "allow-unsigned", false, "record without a bundle (rollout plans will say replace now)")
	fs.StringVar(&channel, "channel", "", "also promote to this channel")
	id.register(fs)
	if _, ok := c.parse(args); !ok {
		return exitUsage
	}
	for _, a := range artifacts {
		parts := strings.Split(a, ":")
		switch {
		case len(parts) == 3 && parts[0] != "" && parts[2] != "":
			rec.Artifacts = append(rec.Artifacts, ledger.Artifact{Provider: parts[0], Region: parts[1], ID: parts[2]})
		case len(parts) == 2 && parts[0] != "" && parts[1] != "":
			rec.Artifacts = append(rec.Artifacts, ledger.Artifact{Provider: parts[0], ID: parts[1]})
		default:
			fmt.Fprintf(stderr, "fixity release record: --artifact %q: want PROVIDER:REGION:ID or PROVIDER:ID\n", a)
			return exitUsage
		}
	}
	switch {
	case bundle == "" && !allowUnsigned:
		fmt.Fprintln(stderr, "fixity release record: no --bundle: pass the fixity-sign bundle and the signer pins, or --allow-unsigned to record an unsigned release")
		return exitUsage
	case bundle != "":
		opts, err := id.options()
		if err != nil {
			fmt.Fprintf(stderr, "fixity release record: %v\n", err)
			return exitUsage
		}
		v, err := signing.VerifyBundleFile(bundle, rec.Image.Digest, opts)
		if err != nil {
			fmt.Fprintf(stderr, "fixity release record: not recorded: %v\n", err)
			return exitNegative
		}
		if err := signed.Apply(&rec, v); err != nil {
			fmt.Fprintf(stderr, "fixity release record: not recorded: %v\n", err)
			return exitNegative
		}
	}
	rec.Schema = ledger.RecordSchema
	rec.Created = time.Now().UTC().Truncate(time.Second)
	if err := rec.Validate(); err != nil {
		fmt.Fprintf(stderr, "fixity release record: %v\n", err)
		return exitUsage
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	if bundle != "" {
		b, err := os.ReadFile(bundle)
		if err != nil {
			fmt.Fprintf(stderr, "fixity release record: %v\n", err)
			return exitUsage
		}
		d, err := l.PutBundle(ctx, b)
		if err != nil {
			return c.fail(err)
		}
		if d != rec.BundleDigest {
			return c.fail(fmt.Errorf("bundle %s changed while recording (digest %s, verified %s)", bundle, d, rec.BundleDigest))
		}
	}
	ev, err := ledger.RecordRelease(ctx, l, &rec, c.actorValue())
	if err != nil {
		return c.fail(err)
	}
	events := []*ledger.Event{ev}
	if channel != "" {
		pe, err := ledger.Promote(ctx, l, rec.Image.Digest, channel, nil, "", c.actorValue())
		if err != nil {
			return c.fail(fmt.Errorf("recorded as event %d, but not promoted: %w", ev.Seq, err))
		}
		events = append(events, pe)
	}
	return releasePrintEvents(c, stdout, events)
}

func releasePrintEvents(c *releaseCmd, stdout io.Writer, events []*ledger.Event) int {
	if c.output == "json" {
		releaseJSON(stdout, events)
		return exitOK
	}
	for _, ev := range events {
		switch ev.Type {
		case ledger.EventRelease:
			fmt.Fprintf(stdout, "event %d: recorded %s@%s %s (signer: %s)\n", ev.Seq, ev.Record.Name, ev.Record.Version, ev.Image, ev.Record.Signer)
		case ledger.EventPromote:
			fmt.Fprintf(stdout, "event %d: promoted %s to %s\n", ev.Seq, ev.Image, ev.Channel)
		case ledger.EventRevoke:
			what := "no channel head changed"
			if ev.Rollback != "" {
				what = "channels it headed now point at " + ev.Rollback
			} else if ev.Empty {
				what = "channels it headed are now empty"
			}
			fmt.Fprintf(stdout, "event %d: revoked %s (%s); %s\n", ev.Seq, ev.Image, ev.Reason, what)
		}
	}
	return exitOK
}

// releaseSummary is one release as list/show print it.
type releaseSummary struct {
	Name     string             `json:"name"`
	Version  string             `json:"version"`
	Image    string             `json:"image"`
	Record   string             `json:"record"`
	Seq      uint64             `json:"seq"`
	Signed   bool               `json:"signed"`
	Channels []string           `json:"channels"`
	Revoked  *ledger.Revocation `json:"revoked,omitempty"`
	Detail   *ledger.Record     `json:"detail,omitempty"`
	History  []releaseChange    `json:"history,omitempty"`
}

type releaseChange struct {
	Seq     uint64           `json:"seq"`
	Type    ledger.EventType `json:"type"`
	Channel string           `json:"channel,omitempty"`
	Reason  string           `json:"reason,omitempty"`
	Actor   ledger.Actor     `json:"actor"`
	Time    time.Time        `json:"time"`
}

func summarize(st *ledger.State, rel *ledger.Release) releaseSummary {
	r := rel.Record
	return releaseSummary{Name: r.Name, Version: r.Version, Image: r.Image.Digest, Record: rel.RecordDigest, Seq: rel.Seq,
		Signed: r.Signed(), Channels: nonNil(st.HeadedBy(r.Image.Digest)), Revoked: st.Revoked[r.Image.Digest]}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func releaseList(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("release list", "--ledger URL [-o json]", stderr)
	if _, ok := c.parse(args); !ok {
		return exitUsage
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	st, err := l.State(ctx)
	if err != nil {
		return c.fail(err)
	}
	out := []releaseSummary{}
	for _, img := range st.Order {
		out = append(out, summarize(st, st.Releases[img]))
	}
	if c.output == "json" {
		releaseJSON(stdout, map[string]any{"events": st.Seq, "head": st.Head, "releases": out, "channels": channelHeads(st)})
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tIMAGE\tSIGNED\tCHANNELS\tSTATUS")
	for _, s := range out {
		status := "ok"
		if s.Revoked != nil {
			status = "REVOKED: " + s.Revoked.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", s.Name, s.Version, s.Image[:19], s.Signed, strings.Join(s.Channels, ","), status)
	}
	tw.Flush()
	for _, name := range st.ChannelNames() {
		ch := st.Channels[name]
		head := "(empty)"
		if rel, ok := st.Releases[ch.Head]; ok {
			head = rel.Record.Name + "@" + rel.Record.Version + " " + ch.Head
		}
		req := ""
		if len(ch.Requires) > 0 {
			req = " (requires " + strings.Join(ch.Requires, ", ") + ")"
		}
		fmt.Fprintf(stdout, "channel %s: %s%s\n", name, head, req)
	}
	fmt.Fprintf(stdout, "%d events, chain verified, head %s\n", st.Seq, st.Head)
	return exitOK
}

func channelHeads(st *ledger.State) map[string]any {
	out := map[string]any{}
	for _, n := range st.ChannelNames() {
		ch := st.Channels[n]
		out[n] = map[string]any{"head": ch.Head, "requires": nonNil(ch.Requires), "history": ch.History}
	}
	return out
}

func releaseShow(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("release show", "--ledger URL (REF | --channel C) [-o json]", stderr)
	var channel string
	c.fs.StringVar(&channel, "channel", "", "show the channel's current release instead of REF")
	pos, ok := c.parse(args)
	if !ok {
		return exitUsage
	}
	if (len(pos) == 1) == (channel != "") {
		fmt.Fprintln(stderr, "fixity release show: give exactly one of REF (digest, digest prefix, name@version or artifact id) and --channel")
		return exitUsage
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	st, err := l.State(ctx)
	if err != nil {
		return c.fail(err)
	}
	var rel *ledger.Release
	if channel != "" {
		rel, err = st.Current(channel)
	} else {
		rel, err = st.Lookup(pos[0])
	}
	if err != nil {
		return c.fail(err)
	}
	s := summarize(st, rel)
	s.Detail = rel.Record
	for _, ev := range st.Events {
		if ev.Image == rel.Record.Image.Digest || ev.Rollback == rel.Record.Image.Digest {
			s.History = append(s.History, releaseChange{Seq: ev.Seq, Type: ev.Type, Channel: ev.Channel, Reason: ev.Reason, Actor: ev.Actor, Time: ev.Time})
		}
	}
	if c.output == "json" {
		releaseJSON(stdout, s)
		return exitOK
	}
	r := rel.Record
	fmt.Fprintf(stdout, "%s@%s\n  image:     %s\n  record:    %s (event %d)\n", r.Name, r.Version, r.Image.Digest, rel.RecordDigest, rel.Seq)
	fmt.Fprintf(stdout, "  signer:    %s\n  bundle:    %s\n  policy:    %s\n  base:      %s\n  source:    %s\n  ci run:    %s\n  created:   %s\n  previous:  %s\n",
		r.Signer, r.BundleDigest, r.PolicyDigest, r.BaseDigest, r.SourceRevision, r.CIRunURL, r.Created.Format(time.RFC3339), r.Previous)
	arts := append([]ledger.Artifact(nil), r.Artifacts...)
	sort.Slice(arts, func(i, j int) bool { return arts[i].Provider+arts[i].Region < arts[j].Provider+arts[j].Region })
	for _, a := range arts {
		fmt.Fprintf(stdout, "  artifact:  %s %s %s\n", a.Provider, a.Region, a.ID)
	}
	fmt.Fprintf(stdout, "  channels:  %s\n", strings.Join(s.Channels, ", "))
	if s.Revoked != nil {
		fmt.Fprintf(stdout, "  REVOKED at event %d by %s: %s\n", s.Revoked.Seq, s.Revoked.Actor, s.Revoked.Reason)
	}
	for _, h := range s.History {
		fmt.Fprintf(stdout, "  event %d: %s %s %s by %s at %s\n", h.Seq, h.Type, h.Channel, h.Reason, h.Actor, h.Time.Format(time.RFC3339))
	}
	return exitOK
}

func releasePromote(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("release promote", "--ledger URL REF --channel C [--requires PREV] [--reason R]", stderr)
	c.withActor()
	var channel, reason string
	var requires releaseStrings
	c.fs.StringVar(&channel, "channel", "", "channel to promote to (required)")
	c.fs.Var(&requires, "requires", "channel the release must already be in (repeatable); once declared it holds for every later promotion")
	c.fs.StringVar(&reason, "reason", "", "why (kept in the ledger)")
	pos, ok := c.parse(args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 1 || channel == "" {
		fmt.Fprintln(stderr, "fixity release promote: give one REF (digest, name@version, artifact id) and --channel; promoting an older release is a rollback")
		return exitUsage
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	ev, err := ledger.Promote(ctx, l, pos[0], channel, requires, reason, c.actorValue())
	if err != nil {
		return c.fail(err)
	}
	return releasePrintEvents(c, stdout, []*ledger.Event{ev})
}

func releaseRevoke(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("release revoke", "--ledger URL REF --reason R [--rollback REF | --empty]", stderr)
	c.withActor()
	var reason, rollback string
	var empty bool
	c.fs.StringVar(&reason, "reason", "", "why the release must not run (required)")
	c.fs.StringVar(&rollback, "rollback", "", "release the channels it heads fall back to")
	c.fs.BoolVar(&empty, "empty", false, "leave the channels it heads empty (consumers fail closed)")
	pos, ok := c.parse(args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 1 || reason == "" {
		fmt.Fprintln(stderr, "fixity release revoke: give one REF and --reason")
		return exitUsage
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	ev, err := ledger.Revoke(ctx, l, pos[0], reason, rollback, empty, c.actorValue())
	if err != nil {
		return c.fail(err)
	}
	return releasePrintEvents(c, stdout, []*ledger.Event{ev})
}

func releaseVerifyChain(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("release verify-chain", "--ledger URL [-o json]", stderr)
	if _, ok := c.parse(args); !ok {
		return exitUsage
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	st, err := l.State(ctx)
	if err != nil {
		if c.output == "json" {
			releaseJSON(stdout, map[string]any{"ledger": l.URL(), "valid": false, "error": err.Error()})
		}
		return c.fail(err)
	}
	if c.output == "json" {
		releaseJSON(stdout, map[string]any{"ledger": l.URL(), "valid": true, "events": st.Seq, "head": st.Head, "releases": len(st.Releases), "revoked": len(st.Revoked)})
		return exitOK
	}
	fmt.Fprintf(stdout, "ledger %s: chain valid: %d events, %d releases, %d revoked, head %s\n", l.URL(), st.Seq, len(st.Releases), len(st.Revoked), st.Head)
	return exitOK
}
