package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// EventType is what an event does to the ledger state.
type EventType string

// The only event types. Nothing is ever edited: a rollback is a new promote, a
// revocation a new revoke.
const (
	EventRelease EventType = "release"
	EventPromote EventType = "promote"
	EventRevoke  EventType = "revoke"
)

// Actor is who appended an event (an OIDC identity or a local user).
type Actor struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

func (a Actor) String() string { return a.Subject + " (" + a.Issuer + ")" }

// Event is one entry of the log. Seq counts from 1; Prev is the digest of the
// encoded previous event, which makes the log a hash chain: editing, dropping or
// reordering any event breaks the link after it (and the head the backend stores).
type Event struct {
	Schema string    `json:"schema"`
	Seq    uint64    `json:"seq"`
	Prev   string    `json:"prev,omitempty"`
	Type   EventType `json:"type"`
	Time   time.Time `json:"time"`
	Actor  Actor     `json:"actor"`
	// Image is the image digest the event is about.
	Image string `json:"image"`
	// Record is the release record (release events only).
	Record *Record `json:"record,omitempty"`
	// Channel is the promotion target (promote events only).
	Channel string `json:"channel,omitempty"`
	// Requires declares channels a release must have been promoted to before this
	// channel; once declared for a channel it holds for every later promotion.
	Requires []string `json:"requires,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	// Rollback (revoke only) is the image digest that channels headed by the revoked
	// image fall back to; Empty leaves those channels without a head instead.
	Rollback string `json:"rollback,omitempty"`
	Empty    bool   `json:"empty,omitempty"`
}

// Encode returns the canonical encoding of e: the bytes whose digest chains the log.
func (e *Event) Encode() ([]byte, error) {
	return json.Marshal(e)
}

// DecodeEvent parses one stored event. It is strict: unknown fields, trailing data
// and non-canonical encodings are refused, so two different byte strings can never
// stand for the same event (the digest is taken over the stored bytes).
func DecodeEvent(raw []byte) (*Event, error) {
	// Unknown fields need no decoder option: they cannot survive the canonical
	// re-encoding below, so such bytes are refused there.
	var e Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	canon, err := e.Encode()
	if err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if !bytes.Equal(bytes.TrimRight(raw, "\n"), canon) {
		return nil, fmt.Errorf("decode event seq %d: bytes are not the canonical encoding (edited by hand?)", e.Seq)
	}
	if e.Schema != EventSchema {
		return nil, fmt.Errorf("decode event seq %d: schema %q: want %q", e.Seq, e.Schema, EventSchema)
	}
	return &e, nil
}

// DecodeRecord parses a release record strictly (unknown fields refused) and validates it.
func DecodeRecord(raw []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode record: trailing data after the JSON object")
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Encode returns the canonical JSON of the record (whose digest is the record id).
func (r *Record) Encode() ([]byte, error) { return json.Marshal(r) }
