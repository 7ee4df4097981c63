package ledger

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// State is the replay of every event: nothing in it is stored, so nothing in it can
// be edited except by appending events.
type State struct {
	// Seq and Head are the last event's sequence number and digest ("" when empty).
	Seq  uint64
	Head string
	// Events and EventDigests are the whole history in order.
	Events       []*Event
	EventDigests []string
	// Releases by image digest, and image digests in release order.
	Releases map[string]*Release
	Order    []string
	// LastRecord is the digest of the newest release record.
	LastRecord string
	Channels   map[string]*Channel
	Revoked    map[string]*Revocation

	byArtifact map[string]string // artifactKey -> image digest
	byID       map[string]string // bare artifact id / index digest -> image digest
	byVersion  map[string]string // name@version -> image digest
}

// Release is a recorded release with its record digest and the event that recorded it.
type Release struct {
	Record       *Record
	RecordDigest string
	Seq          uint64
}

// Channel is a replayed channel: its head ("" when emptied by a revocation), the
// channels a release must pass first, and every head change.
type Channel struct {
	Name     string
	Head     string
	Requires []string
	History  []ChannelChange
	// ever records every image that was ever head of this channel.
	ever map[string]bool
}

// ChannelChange is one head change of a channel.
type ChannelChange struct {
	Seq   uint64    `json:"seq"`
	Type  EventType `json:"type"`
	Image string    `json:"image"` // "" when the channel was emptied
	Time  time.Time `json:"time"`
	Actor Actor     `json:"actor"`
}

// Revocation says why and by whom an image was revoked.
type Revocation struct {
	Seq    uint64    `json:"seq"`
	Reason string    `json:"reason"`
	Actor  Actor     `json:"actor"`
	Time   time.Time `json:"time"`
}

// NewState returns the state of an empty ledger.
func NewState() *State {
	return &State{
		Releases:   map[string]*Release{},
		Channels:   map[string]*Channel{},
		Revoked:    map[string]*Revocation{},
		byArtifact: map[string]string{},
		byID:       map[string]string{},
		byVersion:  map[string]string{},
	}
}

// ChainError reports a broken hash chain: the ledger was edited, events were
// dropped or reordered, or the stored head does not match. Every read path returns
// it instead of a state (fail closed).
type ChainError struct {
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("ledger chain broken at event %d: %s; the ledger was tampered with or damaged — do not trust it, restore it from a copy and run `fixity release verify-chain`", e.Seq, e.Reason)
}

// IsChainError reports whether err is (or wraps) a ChainError.
func IsChainError(err error) bool {
	var ce *ChainError
	return errors.As(err, &ce)
}

// Replay decodes and applies raw events in order, verifying every link. It is the
// single read path all backends use.
func Replay(raws [][]byte) (*State, error) {
	st := NewState()
	for _, raw := range raws {
		if err := st.ApplyRaw(raw); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// ApplyRaw verifies and applies one more stored event to s, as Replay does for each.
func (s *State) ApplyRaw(raw []byte) error {
	want := s.Seq + 1
	ev, err := DecodeEvent(raw)
	if err != nil {
		return &ChainError{Seq: want, Reason: err.Error()}
	}
	return s.apply(ev, DigestBytes(raw), want)
}

// apply checks one decoded event's position in the chain, then its meaning.
func (s *State) apply(ev *Event, digest string, want uint64) error {
	if ev.Seq != want {
		return &ChainError{Seq: want, Reason: fmt.Sprintf("found seq %d where seq %d belongs (an event was dropped, duplicated or reordered)", ev.Seq, want)}
	}
	if ev.Prev != s.Head {
		return &ChainError{Seq: want, Reason: fmt.Sprintf("prev %q does not match the digest %q of event %d (an earlier event was edited, dropped or reordered)", ev.Prev, s.Head, s.Seq)}
	}
	if err := s.Check(ev); err != nil {
		return &ChainError{Seq: want, Reason: "event is not valid at its position: " + err.Error()}
	}
	s.commit(ev, digest)
	return nil
}

// Check reports whether ev may be appended to s: the ledger's rules, applied both
// when writing and on every replay.
func (s *State) Check(ev *Event) error {
	if ev.Schema != EventSchema {
		return fmt.Errorf("schema %q: want %q", ev.Schema, EventSchema)
	}
	if ev.Time.IsZero() {
		return fmt.Errorf("time: missing")
	}
	if ev.Actor.Subject == "" || ev.Actor.Issuer == "" {
		return fmt.Errorf("actor: issuer and subject are required (who appended this event)")
	}
	if !ValidDigest(ev.Image) {
		return fmt.Errorf("image %q: want sha256:<64 hex>", ev.Image)
	}
	switch ev.Type {
	case EventRelease:
		return s.checkRelease(ev)
	case EventPromote:
		return s.checkPromote(ev)
	case EventRevoke:
		return s.checkRevoke(ev)
	default:
		return fmt.Errorf("type %q: want release, promote or revoke", ev.Type)
	}
}

func (s *State) checkRelease(ev *Event) error {
	r := ev.Record
	if r == nil {
		return fmt.Errorf("release of %s: record missing", ev.Image)
	}
	if ev.Channel != "" || ev.Rollback != "" || ev.Empty || len(ev.Requires) > 0 {
		return fmt.Errorf("release of %s: channel/requires/rollback/empty belong to promote and revoke events", ev.Image)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Image.Digest != ev.Image {
		return fmt.Errorf("release: event image %s differs from record image %s", ev.Image, r.Image.Digest)
	}
	if old, ok := s.Releases[ev.Image]; ok {
		return fmt.Errorf("image %s is already recorded as %s@%s (one record per image hash)", ev.Image, old.Record.Name, old.Record.Version)
	}
	if old, ok := s.byVersion[r.Name+"@"+r.Version]; ok {
		return fmt.Errorf("%s@%s is already recorded with image %s: a version cannot point at two hashes; bump the version", r.Name, r.Version, old)
	}
	if r.Previous != s.LastRecord {
		return fmt.Errorf("record previous %q does not match the newest record %q", r.Previous, s.LastRecord)
	}
	for _, id := range []string{r.Image.IndexDigest} {
		if id != "" {
			if other, ok := s.byID[id]; ok && other != ev.Image {
				return fmt.Errorf("index digest %s already belongs to image %s", id, other)
			}
		}
	}
	for _, a := range r.Artifacts {
		if other, ok := s.byArtifact[artifactKey(a.Provider, a.Region, a.ID)]; ok && other != ev.Image {
			return fmt.Errorf("artifact %s %s %s already belongs to image %s (a provider copy maps to one hash)", a.Provider, a.Region, a.ID, other)
		}
	}
	return nil
}

func (s *State) usable(img string) error {
	rel, ok := s.Releases[img]
	if !ok {
		return fmt.Errorf("image %s is not recorded in this ledger: record it first (fixity-release post-processor or `fixity release record`)", img)
	}
	if rv, ok := s.Revoked[img]; ok {
		return fmt.Errorf("%s@%s (%s) was revoked at event %d: %s", rel.Record.Name, rel.Record.Version, img, rv.Seq, rv.Reason)
	}
	return nil
}

// requires is the channel's declared predecessors plus extra, deduplicated and sorted.
func (s *State) requires(channel string, extra []string) []string {
	set := map[string]bool{}
	if c, ok := s.Channels[channel]; ok {
		for _, r := range c.Requires {
			set[r] = true
		}
	}
	for _, r := range extra {
		set[r] = true
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (s *State) checkRequires(channel, img string, extra []string) error {
	for _, req := range s.requires(channel, extra) {
		c, ok := s.Channels[req]
		if !ok || !c.ever[img] {
			return fmt.Errorf("channel %s requires %s first: promote %s to %s before %s", channel, req, short(img), req, channel)
		}
	}
	return nil
}

func (s *State) checkPromote(ev *Event) error {
	if !ValidChannel(ev.Channel) {
		return fmt.Errorf("promote: channel %q: use lowercase letters, digits, '.', '_', '-' (1–64 chars)", ev.Channel)
	}
	if ev.Record != nil || ev.Rollback != "" || ev.Empty {
		return fmt.Errorf("promote to %s: record/rollback/empty belong to release and revoke events", ev.Channel)
	}
	for _, r := range ev.Requires {
		if !ValidChannel(r) || r == ev.Channel {
			return fmt.Errorf("promote to %s: requires %q: name another valid channel", ev.Channel, r)
		}
	}
	if err := s.usable(ev.Image); err != nil {
		return fmt.Errorf("promote to %s: %w", ev.Channel, err)
	}
	if c, ok := s.Channels[ev.Channel]; ok && c.Head == ev.Image {
		return fmt.Errorf("promote to %s: %s is already the head", ev.Channel, short(ev.Image))
	}
	return s.checkRequires(ev.Channel, ev.Image, ev.Requires)
}

func (s *State) checkRevoke(ev *Event) error {
	if strings.TrimSpace(ev.Reason) == "" {
		return fmt.Errorf("revoke %s: reason is required (say why, for the audit trail)", short(ev.Image))
	}
	if ev.Record != nil || ev.Channel != "" || len(ev.Requires) > 0 {
		return fmt.Errorf("revoke %s: record/channel/requires belong to release and promote events", short(ev.Image))
	}
	if err := s.usable(ev.Image); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if ev.Rollback != "" && ev.Empty {
		return fmt.Errorf("revoke %s: choose either a rollback target or empty, not both", short(ev.Image))
	}
	heads := s.HeadedBy(ev.Image)
	if len(heads) > 0 && ev.Rollback == "" && !ev.Empty {
		return fmt.Errorf("revoke %s: it is the head of channel(s) %s: pass a rollback target (--rollback DIGEST) or leave them empty (--empty)", short(ev.Image), strings.Join(heads, ", "))
	}
	if ev.Rollback != "" {
		if ev.Rollback == ev.Image {
			return fmt.Errorf("revoke %s: the rollback target is the revoked image itself", short(ev.Image))
		}
		if err := s.usable(ev.Rollback); err != nil {
			return fmt.Errorf("revoke %s: rollback target: %w", short(ev.Image), err)
		}
		for _, ch := range heads {
			if err := s.checkRequires(ch, ev.Rollback, nil); err != nil {
				return fmt.Errorf("revoke %s: rollback target: %w", short(ev.Image), err)
			}
		}
	}
	return nil
}

// HeadedBy lists the channels whose head is img, sorted.
func (s *State) HeadedBy(img string) []string {
	var out []string
	for name, c := range s.Channels {
		if c.Head == img {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (s *State) channel(name string) *Channel {
	c, ok := s.Channels[name]
	if !ok {
		c = &Channel{Name: name, ever: map[string]bool{}}
		s.Channels[name] = c
	}
	return c
}

func (s *State) setHead(c *Channel, ev *Event, img string) {
	c.Head = img
	if img != "" {
		c.ever[img] = true
	}
	c.History = append(c.History, ChannelChange{Seq: ev.Seq, Type: ev.Type, Image: img, Time: ev.Time, Actor: ev.Actor})
}

// commit applies a checked event.
func (s *State) commit(ev *Event, digest string) {
	switch ev.Type {
	case EventRelease:
		r := ev.Record
		rd := r.Digest()
		s.Releases[ev.Image] = &Release{Record: r, RecordDigest: rd, Seq: ev.Seq}
		s.Order = append(s.Order, ev.Image)
		s.LastRecord = rd
		s.byVersion[r.Name+"@"+r.Version] = ev.Image
		s.byID[ev.Image] = ev.Image
		if r.Image.IndexDigest != "" {
			s.byID[r.Image.IndexDigest] = ev.Image
		}
		for _, a := range r.Artifacts {
			s.byArtifact[artifactKey(a.Provider, a.Region, a.ID)] = ev.Image
			s.byID[a.ID] = ev.Image
		}
	case EventPromote:
		c := s.channel(ev.Channel)
		c.Requires = s.requires(ev.Channel, ev.Requires)
		s.setHead(c, ev, ev.Image)
	case EventRevoke:
		for _, name := range s.HeadedBy(ev.Image) {
			target := ev.Rollback
			if ev.Empty {
				target = ""
			}
			s.setHead(s.Channels[name], ev, target)
		}
		s.Revoked[ev.Image] = &Revocation{Seq: ev.Seq, Reason: ev.Reason, Actor: ev.Actor, Time: ev.Time}
	}
	s.Seq = ev.Seq
	s.Head = digest
	s.Events = append(s.Events, ev)
	s.EventDigests = append(s.EventDigests, digest)
}

// Next fills in the chain fields of ev for appending to s and checks it. Backends
// call it with the state they just verified under their lock or race protocol.
func (s *State) Next(ev *Event, now time.Time) ([]byte, error) {
	ev.Schema = EventSchema
	ev.Seq = s.Seq + 1
	ev.Prev = s.Head
	if ev.Time.IsZero() {
		ev.Time = now.UTC()
	}
	if ev.Type == EventRelease && ev.Record != nil {
		ev.Record.Previous = s.LastRecord
	}
	if err := s.Check(ev); err != nil {
		return nil, err
	}
	return ev.Encode()
}

// Lookup finds a release by image digest, unique digest prefix ("sha256:abcd…" or
// "abcd…"), name@version, or provider artifact id.
func (s *State) Lookup(ref string) (*Release, error) {
	if img, ok := s.byVersion[ref]; ok {
		return s.Releases[img], nil
	}
	if img, ok := s.byID[ref]; ok {
		return s.Releases[img], nil
	}
	p := ref
	if !strings.HasPrefix(p, "sha256:") {
		p = "sha256:" + p
	}
	if len(p) >= len("sha256:")+8 {
		var found *Release
		for img, r := range s.Releases {
			if strings.HasPrefix(img, p) {
				if found != nil {
					return nil, fmt.Errorf("release %q is ambiguous: give more digest characters", ref)
				}
				found = r
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("release %q not found in the ledger (give an image digest, a unique digest prefix of 8+ hex, name@version or an artifact id)", ref)
}

// ResolveArtifact maps a provider id (AMI id, digest, index digest) to a release;
// region narrows AMI lookups when known.
func (s *State) ResolveArtifact(provider, region, id string) (*Release, bool) {
	if img, ok := s.byArtifact[artifactKey(provider, region, id)]; ok {
		return s.Releases[img], true
	}
	if img, ok := s.byID[id]; ok {
		rel := s.Releases[img]
		if region != "" && provider != "" {
			// An id recorded for another region is not this machine's image.
			for _, a := range rel.Record.Artifacts {
				if a.ID == id && a.Provider == provider && a.Region != "" && a.Region != region {
					return nil, false
				}
			}
		}
		return rel, true
	}
	return nil, false
}

// Current is a channel's head release; it fails closed when the channel is unknown,
// empty or its head was revoked.
func (s *State) Current(channel string) (*Release, error) {
	c, ok := s.Channels[channel]
	if !ok {
		return nil, fmt.Errorf("channel %q has no promotions in this ledger (known: %s)", channel, strings.Join(s.ChannelNames(), ", "))
	}
	if c.Head == "" {
		return nil, fmt.Errorf("channel %q is empty: its head was revoked without a rollback target; promote a release to it", channel)
	}
	if err := s.usable(c.Head); err != nil {
		return nil, fmt.Errorf("channel %q: %w", channel, err)
	}
	return s.Releases[c.Head], nil
}

// ChannelNames lists channels, sorted.
func (s *State) ChannelNames() []string {
	out := make([]string, 0, len(s.Channels))
	for n := range s.Channels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func short(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
