package ledger

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ledger is one release ledger. Both backends give the same guarantees:
//   - State reads every event, verifies the whole chain and replays it; a broken
//     chain, a fork or a missing event is an error, never a partial state.
//   - Append commits exactly one event at the head, built by build from the freshly
//     verified state. Concurrent writers are serialised: a writer that loses a race
//     calls build again on the new state, so no update is lost and no fork is made.
type Ledger interface {
	State(ctx context.Context) (*State, error)
	Append(ctx context.Context, build func(*State) (*Event, error)) (*Event, error)
	// PutBundle stores a signature bundle (content-addressed) so consumers can
	// re-verify a release later; it returns "sha256:<hex>" of b.
	PutBundle(ctx context.Context, b []byte) (string, error)
	// Bundle returns the stored bundle with that digest, checked against it.
	Bundle(ctx context.Context, digest string) ([]byte, error)
	// URL is the ledger's location as the user gave it.
	URL() string
	Close() error
}

// Open opens a ledger by URL: file://DIR (or a bare path) or oci://HOST[:PORT]/REPO.
func Open(raw string) (Ledger, error) {
	switch {
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("ledger URL %q: %w (want file:///abs/dir or file://relative/dir)", raw, err)
		}
		dir := u.Host + u.Path
		if dir == "" {
			return nil, fmt.Errorf("ledger URL %q: no directory: want file:///abs/dir", raw)
		}
		return OpenFile(dir)
	case strings.HasPrefix(raw, "oci://"):
		return OpenOCI(strings.TrimPrefix(raw, "oci://"), OCIOptions{})
	case strings.Contains(raw, "://"):
		return nil, fmt.Errorf("ledger URL %q: unknown scheme: use file://DIR or oci://HOST:PORT/REPO", raw)
	case raw == "":
		return nil, fmt.Errorf("ledger URL is empty: pass --ledger file://DIR or oci://HOST:PORT/REPO")
	default:
		abs, err := filepath.Abs(raw)
		if err != nil {
			return nil, err
		}
		return OpenFile(abs)
	}
}

// DefaultActor names the local user when no OIDC identity is at hand.
func DefaultActor() Actor {
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = fmt.Sprintf("uid-%d", os.Getuid())
	}
	return Actor{Issuer: "local", Subject: user + "@" + host}
}

// RecordRelease appends a release event for rec.
func RecordRelease(ctx context.Context, l Ledger, rec *Record, actor Actor) (*Event, error) {
	if rec.Schema == "" {
		rec.Schema = RecordSchema
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC().Truncate(time.Second)
	}
	return l.Append(ctx, func(*State) (*Event, error) {
		r := *rec
		return &Event{Type: EventRelease, Image: rec.Image.Digest, Record: &r, Actor: actor}, nil
	})
}

// Promote appends a promote event; ref is resolved with State.Lookup on the state
// the event is appended to. Promoting an older release is how a channel rolls back.
func Promote(ctx context.Context, l Ledger, ref, channel string, requires []string, reason string, actor Actor) (*Event, error) {
	return l.Append(ctx, func(s *State) (*Event, error) {
		rel, err := s.Lookup(ref)
		if err != nil {
			return nil, err
		}
		return &Event{Type: EventPromote, Image: rel.Record.Image.Digest, Channel: channel, Requires: requires, Reason: reason, Actor: actor}, nil
	})
}

// Revoke appends a revoke event. When the image heads a channel the caller must pick
// rollback (a release ref) or empty.
func Revoke(ctx context.Context, l Ledger, ref, reason, rollback string, empty bool, actor Actor) (*Event, error) {
	return l.Append(ctx, func(s *State) (*Event, error) {
		rel, err := s.Lookup(ref)
		if err != nil {
			return nil, err
		}
		ev := &Event{Type: EventRevoke, Image: rel.Record.Image.Digest, Reason: reason, Empty: empty, Actor: actor}
		if rollback != "" {
			rb, err := s.Lookup(rollback)
			if err != nil {
				return nil, fmt.Errorf("rollback target: %w", err)
			}
			ev.Rollback = rb.Record.Image.Digest
		}
		return ev, nil
	})
}
