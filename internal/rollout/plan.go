package rollout

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
)

// Target is the release a channel's machines should run.
type Target struct {
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Image     string            `json:"image"`
	Record    string            `json:"record"`
	Signer    string            `json:"signer"`
	Artifacts []ledger.Artifact `json:"artifacts"`
}

// Item is a machine to replace now and why.
type Item struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Plan is the answer for one channel. Every instance is in exactly one of Current,
// Replace, ReplaceNow or Unknown; Batches orders the replacements (urgent first).
type Plan struct {
	Channel    string     `json:"channel"`
	Target     *Target    `json:"target"`
	Current    []string   `json:"current"`
	Replace    []string   `json:"replace"`
	ReplaceNow []Item     `json:"replace_now"`
	Unknown    []string   `json:"unknown"`
	Batches    [][]string `json:"batches"`
}

// Urgent reports whether something must be replaced now (the CI gate: exit 3).
func (p *Plan) Urgent() bool { return len(p.ReplaceNow) > 0 }

// Batch is a batch size: a count, or a percentage of the fleet.
type Batch struct {
	N       int
	Percent float64
}

// ParseBatch reads "N" or "P%".
func ParseBatch(s string) (Batch, error) {
	if s == "" {
		return Batch{Percent: 100}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return Batch{}, fmt.Errorf("--batch %q: want a percentage in (0,100], like 25%%", s)
		}
		return Batch{Percent: f}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return Batch{}, fmt.Errorf("--batch %q: want a positive count like 10, or a percentage like 25%%", s)
	}
	return Batch{N: n}, nil
}

func (b Batch) size(fleet int) int {
	if b.N > 0 {
		return b.N
	}
	n := int(math.Ceil(float64(fleet) * b.Percent / 100))
	return max(n, 1)
}

var digestAtEnd = regexp.MustCompile(`sha256:[0-9a-f]{64}$`)

// UnverifiedHeadError: the channel's head failed signature verification, so no plan
// can say what should run.
type UnverifiedHeadError struct {
	Channel, Release string
	Err              error
}

func (e *UnverifiedHeadError) Error() string {
	return fmt.Sprintf("channel %s head %s: %v", e.Channel, e.Release, e.Err)
}

func (e *UnverifiedHeadError) Unwrap() error { return e.Err }

// Build classifies instances against channel in st (a verified ledger replay).
func Build(st *ledger.State, channel string, instances []Instance, batch Batch) (*Plan, error) {
	return BuildVerified(st, channel, instances, batch, nil)
}

// BuildVerified is Build with signature re-verification: verify is called once per
// release that machines run (and for the channel head); a release that fails is
// "unverified" and treated like an unknown hash (replace now). A head that fails
// makes the whole plan fail (fail closed).
func BuildVerified(st *ledger.State, channel string, instances []Instance, batch Batch, verify func(*ledger.Release) error) (*Plan, error) {
	verdicts := map[string]error{}
	check := func(rel *ledger.Release) error {
		if verify == nil {
			return nil
		}
		d := rel.Record.Image.Digest
		if err, ok := verdicts[d]; ok {
			return err
		}
		err := verify(rel)
		verdicts[d] = err
		return err
	}
	c, ok := st.Channels[channel]
	if !ok {
		return nil, fmt.Errorf("channel %q has no promotions in the ledger (known: %s)", channel, strings.Join(st.ChannelNames(), ", "))
	}
	p := &Plan{Channel: channel, Current: []string{}, Replace: []string{}, ReplaceNow: []Item{}, Unknown: []string{}, Batches: [][]string{}}
	head := c.Head
	if head != "" {
		if _, revoked := st.Revoked[head]; revoked {
			head = "" // cannot happen through the ledger's rules; fail closed anyway
		}
	}
	if head != "" {
		rel := st.Releases[head]
		if err := check(rel); err != nil {
			return nil, &UnverifiedHeadError{Channel: channel, Release: rel.Record.Name + "@" + rel.Record.Version, Err: err}
		}
		r := rel.Record
		p.Target = &Target{Name: r.Name, Version: r.Version, Image: r.Image.Digest, Record: rel.RecordDigest, Signer: r.Signer.String(), Artifacts: append([]ledger.Artifact{}, r.Artifacts...)}
	}
	seen := make(map[string]string, len(instances))
	for _, in := range instances {
		if prev, dup := seen[in.ID]; dup {
			return nil, fmt.Errorf("instance %q appears twice (%s and %s): each id must be unique across inventories", in.ID, prev, in.Source)
		}
		seen[in.ID] = in.Source
		if in.Image == "" {
			p.Unknown = append(p.Unknown, in.ID)
			continue
		}
		var rel *ledger.Release
		if d := digestAtEnd.FindString(in.Image); d != "" {
			rel, ok = st.ResolveArtifact("", "", d)
		} else {
			rel, ok = st.ResolveArtifact(in.Provider, in.Region, in.Image)
		}
		switch {
		case !ok:
			p.ReplaceNow = append(p.ReplaceNow, Item{in.ID, "never-recorded: " + in.Image + " is not in the ledger"})
		case st.Revoked[rel.Record.Image.Digest] != nil:
			p.ReplaceNow = append(p.ReplaceNow, Item{in.ID, fmt.Sprintf("revoked: %s@%s: %s", rel.Record.Name, rel.Record.Version, st.Revoked[rel.Record.Image.Digest].Reason)})
		case !rel.Record.Signed():
			p.ReplaceNow = append(p.ReplaceNow, Item{in.ID, fmt.Sprintf("unsigned: %s@%s was recorded without a verified signature", rel.Record.Name, rel.Record.Version)})
		case check(rel) != nil:
			p.ReplaceNow = append(p.ReplaceNow, Item{in.ID, fmt.Sprintf("unverified: %s@%s: %v", rel.Record.Name, rel.Record.Version, check(rel))})
		case head == "":
			p.ReplaceNow = append(p.ReplaceNow, Item{in.ID, fmt.Sprintf("channel %s is empty: no release is approved", channel)})
		case rel.Record.Image.Digest == head:
			p.Current = append(p.Current, in.ID)
		default:
			p.Replace = append(p.Replace, in.ID)
		}
	}
	sort.Strings(p.Current)
	sort.Strings(p.Replace)
	sort.Strings(p.Unknown)
	sort.Slice(p.ReplaceNow, func(i, j int) bool { return p.ReplaceNow[i].ID < p.ReplaceNow[j].ID })
	todo := make([]string, 0, len(p.ReplaceNow)+len(p.Replace))
	for _, it := range p.ReplaceNow {
		todo = append(todo, it.ID)
	}
	todo = append(todo, p.Replace...)
	size := batch.size(len(instances))
	for len(todo) > 0 {
		n := min(size, len(todo))
		p.Batches = append(p.Batches, todo[:n:n])
		todo = todo[n:]
	}
	return p, nil
}
