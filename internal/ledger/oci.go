package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI ledger layout (one repository):
//
//	ev-<seq:12>-<event digest hex:16>    a committed event (artifact manifest, layer = event JSON,
//	                                     subject = the image when it is an OCI image)
//	cand-<seq>-<hex16>, wd-<seq>-<hex16> a writer's announcement for seq, and its withdrawal
//	head, channel-<name>                 caches of the latest event / a channel's last change
//
// Registries have no compare-and-swap on tags (last writer wins) and referrer lists
// drop entries under concurrent pushes, so events are found by unique tags and writers
// agree on who takes the next seq with announce-then-check: a writer pushes cand-N,
// lists the tags, and commits ev-N only if no other live announcement or commit for N
// exists; otherwise it withdraws (wd-N), backs off and retries on the new head. Of two
// writers that announce for the same N, the one that checks later always sees the
// other, so at most one commits. Announcements of writers that died are ignored once
// older than the lease; a writer never commits later than half a lease after its
// announcement. A fork (two ev-N) that slips through anyway — clocks skewed by more
// than the lease — is reported by the writer that made it and refused on every read.
const (
	ociEmptyMediaType = "application/vnd.oci.empty.v1+json"
	annSeq            = "dev.fixity.ledger.seq"
	annType           = "dev.fixity.ledger.type"
	annEvent          = "dev.fixity.ledger.event"
	annCreated        = "org.opencontainers.image.created"
	// DefaultLease is how long an announcement blocks other writers if its writer died.
	DefaultLease = 30 * time.Second
)

// OCIOptions tunes the OCI backend.
type OCIOptions struct {
	// Lease bounds how long a dead writer's announcement blocks others (DefaultLease).
	Lease time.Duration
	// Insecure talks plain HTTP; loopback hosts always do.
	Insecure bool
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

// OCILedger is the oci://HOST[:PORT]/REPO backend.
type OCILedger struct {
	raw  string
	repo name.Repository
	opts OCIOptions

	mu    sync.Mutex
	cache map[string][]byte // ev tag -> verified event bytes (tags are immutable by content)
}

// OpenOCI opens the ledger at "HOST[:PORT]/REPO[?lease=30s&insecure=1]".
func OpenOCI(ref string, opts OCIOptions) (*OCILedger, error) {
	raw := "oci://" + ref
	if i := strings.IndexByte(ref, '?'); i >= 0 {
		q, err := url.ParseQuery(ref[i+1:])
		if err != nil {
			return nil, fmt.Errorf("ledger URL %s: query: %w", raw, err)
		}
		ref = ref[:i]
		if v := q.Get("lease"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("ledger URL %s: lease %q: want a positive duration like 30s", raw, v)
			}
			opts.Lease = d
		}
		if v := q.Get("insecure"); v == "1" || v == "true" {
			opts.Insecure = true
		}
	}
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
		if v := os.Getenv("FIXITY_LEDGER_LEASE"); v != "" {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				opts.Lease = d
			}
		}
	}
	host := ref
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		host = ref[:i]
	}
	hn := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hn = h
	}
	nopts := []name.Option{name.StrictValidation}
	if opts.Insecure || hn == "localhost" || (net.ParseIP(hn) != nil && net.ParseIP(hn).IsLoopback()) {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("ledger URL %s: %w (want oci://HOST:PORT/REPO, e.g. oci://127.0.0.1:5000/fixity/ledger)", raw, err)
	}
	if !strings.Contains(ref, "/") {
		return nil, fmt.Errorf("ledger URL %s: no repository: want oci://HOST:PORT/REPO", raw)
	}
	return &OCILedger{raw: raw, repo: repo, opts: opts, cache: map[string][]byte{}}, nil
}

// URL implements Ledger.
func (o *OCILedger) URL() string { return o.raw }

// Close implements Ledger.
func (o *OCILedger) Close() error { return nil }

func (o *OCILedger) ropts(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if o.opts.Transport != nil {
		opts = append(opts, remote.WithTransport(o.opts.Transport))
	}
	return opts
}

// tagSet is the parsed tag list of the ledger repository.
type tagSet struct {
	ev   map[uint64][]string // seq -> short digests
	cand map[uint64][]string
	wd   map[uint64]map[string]bool
	max  uint64
}

func evTag(kind string, seq uint64, short string) string {
	return fmt.Sprintf("%s-%012d-%s", kind, seq, short)
}

func shortHex(d string) string { return strings.TrimPrefix(d, "sha256:")[:16] }

func parseTags(tags []string) *tagSet {
	ts := &tagSet{ev: map[uint64][]string{}, cand: map[uint64][]string{}, wd: map[uint64]map[string]bool{}}
	for _, t := range tags {
		parts := strings.Split(t, "-")
		if len(parts) != 3 || len(parts[1]) != 12 || len(parts[2]) != 16 {
			continue
		}
		seq, err := strconv.ParseUint(parts[1], 10, 64)
		if err != nil || seq == 0 {
			continue
		}
		switch parts[0] {
		case "ev":
			ts.ev[seq] = append(ts.ev[seq], parts[2])
			if seq > ts.max {
				ts.max = seq
			}
		case "cand":
			ts.cand[seq] = append(ts.cand[seq], parts[2])
		case "wd":
			if ts.wd[seq] == nil {
				ts.wd[seq] = map[string]bool{}
			}
			ts.wd[seq][parts[2]] = true
		}
	}
	return ts
}

func (o *OCILedger) listTags(ctx context.Context) (*tagSet, error) {
	tags, err := remote.List(o.repo, o.ropts(ctx)...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return parseTags(nil), nil // repository not created yet: an empty ledger
		}
		return nil, fmt.Errorf("ledger %s: list tags: %w", o.raw, err)
	}
	return parseTags(tags), nil
}

type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// fetchEvent reads and authenticates the event behind an ev tag: the layer digest is
// checked against the manifest, the event digest against the tag.
func (o *OCILedger) fetchEvent(ctx context.Context, seq uint64, short string) ([]byte, error) {
	tag := evTag("ev", seq, short)
	o.mu.Lock()
	b, ok := o.cache[tag]
	o.mu.Unlock()
	if ok {
		return b, nil
	}
	fail := func(format string, a ...any) error {
		return &ChainError{Seq: seq, Reason: fmt.Sprintf("tag %s: ", tag) + fmt.Sprintf(format, a...)}
	}
	// A registry may list a tag a moment before it resolves (distribution writes the
	// tag directory before its link): retry briefly before calling it missing.
	var desc *remote.Descriptor
	var err error
	for try := 0; ; try++ {
		desc, err = remote.Get(o.repo.Tag(tag), o.ropts(ctx)...)
		var te *transport.Error
		if err == nil || try >= 40 || !errors.As(err, &te) || te.StatusCode != http.StatusNotFound {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ledger %s: read %s: %w", o.raw, tag, err)
	}
	var m manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fail("manifest is not JSON: %v", err)
	}
	if m.ArtifactType != EventSchema || len(m.Layers) != 1 || m.Layers[0].MediaType != types.MediaType(EventSchema) {
		return nil, fail("not a ledger event manifest (artifactType %q, %d layers)", m.ArtifactType, len(m.Layers))
	}
	if m.Layers[0].Size > 16<<20 {
		return nil, fail("event of %d bytes is too large", m.Layers[0].Size)
	}
	l, err := remote.Layer(o.repo.Digest(m.Layers[0].Digest.String()), o.ropts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: read %s event blob: %w", o.raw, tag, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("ledger %s: read %s event blob: %w", o.raw, tag, err)
	}
	defer rc.Close()
	b, err = io.ReadAll(io.LimitReader(rc, m.Layers[0].Size+1))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: read %s event blob: %w", o.raw, tag, err)
	}
	if d := DigestBytes(b); d != m.Layers[0].Digest.String() {
		return nil, fail("blob digest %s does not match the manifest's %s", d, m.Layers[0].Digest)
	}
	if d := DigestBytes(b); shortHex(d) != short {
		return nil, fail("event digest %s does not match the tag (the event under this tag was replaced)", d)
	}
	o.mu.Lock()
	o.cache[tag] = b
	o.mu.Unlock()
	return b, nil
}

// readCache returns the seq and event digest a cache tag (head, channel-X) points at.
func (o *OCILedger) readCache(ctx context.Context, tag string) (uint64, string, error) {
	desc, err := remote.Get(o.repo.Tag(tag), o.ropts(ctx)...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return 0, "", nil
		}
		return 0, "", fmt.Errorf("ledger %s: read %s: %w", o.raw, tag, err)
	}
	var m manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return 0, "", &ChainError{Reason: fmt.Sprintf("tag %s: manifest is not JSON", tag)}
	}
	seq, _ := strconv.ParseUint(m.Annotations[annSeq], 10, 64)
	return seq, m.Annotations[annEvent], nil
}

func (o *OCILedger) load(ctx context.Context) (*State, *tagSet, error) {
	// Read the head cache before listing: every event committed before the cache was
	// written is then in the list, so a cache ahead of the list means deleted events.
	headSeq, headDigest, err := o.readCache(ctx, "head")
	if err != nil {
		return nil, nil, err
	}
	ts, err := o.listTags(ctx)
	if err != nil {
		return nil, nil, err
	}
	for seq := uint64(1); seq <= ts.max; seq++ {
		switch n := len(ts.ev[seq]); {
		case n == 0:
			return nil, nil, fmt.Errorf("ledger %s: %w", o.raw, &ChainError{Seq: seq, Reason: fmt.Sprintf("event %d is missing but event %d exists (deleted)", seq, ts.max)})
		case n > 1:
			sort.Strings(ts.ev[seq])
			return nil, nil, fmt.Errorf("ledger %s: %w", o.raw, &ChainError{Seq: seq, Reason: fmt.Sprintf("fork: %d events claim seq %d (%s)", n, seq, strings.Join(ts.ev[seq], ", "))})
		}
	}
	if headSeq > ts.max {
		return nil, nil, fmt.Errorf("ledger %s: %w", o.raw, &ChainError{Seq: ts.max, Reason: fmt.Sprintf("the head tag names event %d but only %d events exist (events were deleted)", headSeq, ts.max)})
	}
	raws := make([][]byte, ts.max)
	var (
		wg    sync.WaitGroup
		emu   sync.Mutex
		first error
		next  = make(chan uint64)
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range next {
				b, err := o.fetchEvent(ctx, seq, ts.ev[seq][0])
				emu.Lock()
				if err != nil && first == nil {
					first = err
				}
				raws[seq-1] = b
				emu.Unlock()
			}
		}()
	}
	for seq := uint64(1); seq <= ts.max; seq++ {
		next <- seq
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, nil, first
	}
	st, err := Replay(raws)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger %s: %w", o.raw, err)
	}
	if headSeq == st.Seq && headDigest != "" && headDigest != st.Head {
		return nil, nil, fmt.Errorf("ledger %s: %w", o.raw, &ChainError{Seq: st.Seq, Reason: fmt.Sprintf("the head tag names event digest %s but event %d is %s (the last event was replaced)", headDigest, st.Seq, st.Head)})
	}
	return st, ts, nil
}

// State implements Ledger.
func (o *OCILedger) State(ctx context.Context) (*State, error) {
	st, _, err := o.load(ctx)
	return st, err
}

// put tags the manifest. A failure of ggcr's fallback-referrers bookkeeping (a
// read-modify-write that races on registries without the referrers API) does not
// matter to the ledger, so success is judged by what the tag resolves to.
func (o *OCILedger) put(ctx context.Context, tag string, m []byte, d v1.Hash) error {
	ref := o.repo.Tag(tag)
	err := remote.Put(ref, rawOCIManifest(m), o.ropts(ctx)...)
	if err == nil {
		return nil
	}
	got, herr := remote.Head(ref, o.ropts(ctx)...)
	if herr == nil && got.Digest == d {
		return nil
	}
	return fmt.Errorf("ledger %s: push %s: %w", o.raw, tag, err)
}

type rawOCIManifest []byte

func (r rawOCIManifest) RawManifest() ([]byte, error) { return r, nil }
func (r rawOCIManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

func (o *OCILedger) eventManifest(ctx context.Context, st *State, ev *Event, raw []byte) ([]byte, error) {
	evLayer := static.NewLayer(raw, types.MediaType(EventSchema))
	empty := static.NewLayer([]byte("{}"), ociEmptyMediaType)
	for _, l := range []v1.Layer{empty, evLayer} {
		if err := remote.WriteLayer(o.repo, l, o.ropts(ctx)...); err != nil {
			return nil, fmt.Errorf("ledger %s: upload blob: %w", o.raw, err)
		}
	}
	ed, _ := empty.Digest()
	ld, _ := evLayer.Digest()
	m := manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  EventSchema,
		Config:        v1.Descriptor{MediaType: ociEmptyMediaType, Digest: ed, Size: 2, Data: []byte("{}")},
		Layers:        []v1.Descriptor{{MediaType: types.MediaType(EventSchema), Digest: ld, Size: int64(len(raw))}},
		Annotations: map[string]string{
			annCreated: ev.Time.UTC().Format(time.RFC3339Nano),
			annSeq:     strconv.FormatUint(ev.Seq, 10),
			annType:    string(ev.Type),
			annEvent:   DigestBytes(raw),
		},
	}
	img := ev.Record
	if img == nil {
		if rel, ok := st.Releases[ev.Image]; ok {
			img = rel.Record
		}
	}
	if img != nil && img.Image.Size > 0 && isOCIManifestType(img.Image.MediaType) {
		h, err := v1.NewHash(img.Image.Digest)
		if err == nil {
			m.Subject = &v1.Descriptor{MediaType: types.MediaType(img.Image.MediaType), Digest: h, Size: img.Image.Size}
		}
	}
	return json.Marshal(m)
}

func isOCIManifestType(mt string) bool {
	switch types.MediaType(mt) {
	case types.OCIManifestSchema1, types.OCIImageIndex, types.DockerManifestSchema2, types.DockerManifestList:
		return true
	}
	return false
}

// liveRival reports whether another writer holds a live announcement for seq.
func (o *OCILedger) liveRival(ctx context.Context, ts *tagSet, seq uint64, mine string) (bool, error) {
	for _, c := range ts.cand[seq] {
		if c == mine || ts.wd[seq][c] {
			continue
		}
		desc, err := remote.Get(o.repo.Tag(evTag("cand", seq, c)), o.ropts(ctx)...)
		if err != nil {
			return true, nil // cannot tell: assume alive, retry later
		}
		var m manifest
		if json.Unmarshal(desc.Manifest, &m) != nil {
			continue
		}
		created, err := time.Parse(time.RFC3339Nano, m.Annotations[annCreated])
		if err != nil || time.Since(created) < o.opts.Lease {
			return true, nil
		}
	}
	return false, nil
}

// Append implements Ledger.
func (o *OCILedger) Append(ctx context.Context, build func(*State) (*Event, error)) (*Event, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ledger %s: append gave up after %d attempts: %w", o.raw, attempt, err)
		}
		if attempt >= 200 {
			return nil, fmt.Errorf("ledger %s: append gave up after %d attempts lost to other writers; retry later", o.raw, attempt)
		}
		st, _, err := o.load(ctx)
		if err != nil {
			return nil, err
		}
		ev, err := build(st)
		if err != nil {
			return nil, err
		}
		raw, err := st.Next(ev, time.Now())
		if err != nil {
			return nil, err
		}
		d := DigestBytes(raw)
		mine := shortHex(d)
		m, err := o.eventManifest(ctx, st, ev, raw)
		if err != nil {
			return nil, err
		}
		mh, _, _ := v1.SHA256(bytes.NewReader(m))
		announced := time.Now()
		if err := o.put(ctx, evTag("cand", ev.Seq, mine), m, mh); err != nil {
			return nil, err
		}
		ts, err := o.listTags(ctx)
		if err != nil {
			return nil, err
		}
		rival := len(ts.ev[ev.Seq]) > 0
		if !rival {
			if rival, err = o.liveRival(ctx, ts, ev.Seq, mine); err != nil {
				return nil, err
			}
		}
		if rival || time.Since(announced) > o.opts.Lease/2 {
			_ = o.put(ctx, evTag("wd", ev.Seq, mine), m, mh)
			backoff(ctx, attempt)
			continue
		}
		if err := o.put(ctx, evTag("ev", ev.Seq, mine), m, mh); err != nil {
			return nil, err
		}
		o.mu.Lock()
		o.cache[evTag("ev", ev.Seq, mine)] = raw
		o.mu.Unlock()
		// Tell the user loudly if a fork slipped through; readers refuse it anyway.
		if ts, err := o.listTags(ctx); err == nil && len(ts.ev[ev.Seq]) > 1 {
			return nil, fmt.Errorf("ledger %s: %w", o.raw, &ChainError{Seq: ev.Seq, Reason: fmt.Sprintf("fork: another writer committed seq %d at the same time (clock skew beyond the %s lease?): resolve by hand", ev.Seq, o.opts.Lease)})
		}
		// Caches only; the truth is the ev-* chain.
		_ = o.put(ctx, "head", m, mh)
		switch ev.Type {
		case EventPromote:
			_ = o.put(ctx, "channel-"+ev.Channel, m, mh)
		case EventRevoke:
			for _, c := range st.HeadedBy(ev.Image) {
				_ = o.put(ctx, "channel-"+c, m, mh)
			}
		}
		return ev, nil
	}
}

// BundleMediaType is the Sigstore bundle media type (what cosign reads as a referrer).
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// PutBundle implements Ledger: the bundle is an artifact manifest tagged
// bundle-<hex16> (tagged so registries do not garbage-collect it).
func (o *OCILedger) PutBundle(ctx context.Context, b []byte) (string, error) {
	d := DigestBytes(b)
	l := static.NewLayer(b, BundleMediaType)
	empty := static.NewLayer([]byte("{}"), ociEmptyMediaType)
	for _, x := range []v1.Layer{empty, l} {
		if err := remote.WriteLayer(o.repo, x, o.ropts(ctx)...); err != nil {
			return "", fmt.Errorf("ledger %s: upload bundle: %w", o.raw, err)
		}
	}
	ed, _ := empty.Digest()
	ld, _ := l.Digest()
	m, _ := json.Marshal(manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: BundleMediaType,
		Config: v1.Descriptor{MediaType: ociEmptyMediaType, Digest: ed, Size: 2, Data: []byte("{}")},
		Layers: []v1.Descriptor{{MediaType: BundleMediaType, Digest: ld, Size: int64(len(b))}},
	})
	mh, _, _ := v1.SHA256(bytes.NewReader(m))
	return d, o.put(ctx, "bundle-"+shortHex(d), m, mh)
}

// Bundle implements Ledger.
func (o *OCILedger) Bundle(ctx context.Context, digest string) ([]byte, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("bundle digest %q: want sha256:<64 hex>", digest)
	}
	l, err := remote.Layer(o.repo.Digest(digest), o.ropts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: bundle %s: %w", o.raw, digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("ledger %s: bundle %s: %w", o.raw, digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("ledger %s: bundle %s: %w", o.raw, digest, err)
	}
	if DigestBytes(b) != digest {
		return nil, &ChainError{Reason: fmt.Sprintf("stored bundle %s does not match its digest", digest)}
	}
	return b, nil
}

func backoff(ctx context.Context, attempt int) {
	base := 5 * time.Millisecond << min(attempt, 6)
	d := base/2 + time.Duration(rand.Int64N(int64(base)))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
