package ledgertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
)

// FileTamper edits a file ledger's events.log directly.
type FileTamper struct{ Dir string }

func (f FileTamper) lines(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func (f FileTamper) write(t *testing.T, lines [][]byte) {
	t.Helper()
	b := append(bytes.Join(lines, []byte("\n")), '\n')
	if err := os.WriteFile(filepath.Join(f.Dir, "events.log"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Edit implements Tamperer.
func (f FileTamper) Edit(t *testing.T, seq uint64, change func(*ledger.Event)) {
	ls := f.lines(t)
	ev, err := ledger.DecodeEvent(ls[seq-1])
	if err != nil {
		t.Fatal(err)
	}
	change(ev)
	ls[seq-1], _ = ev.Encode()
	f.write(t, ls)
}

// Drop implements Tamperer.
func (f FileTamper) Drop(t *testing.T, seq uint64) {
	ls := f.lines(t)
	f.write(t, append(ls[:seq-1:seq-1], ls[seq:]...))
}

// Swap implements Tamperer.
func (f FileTamper) Swap(t *testing.T, a, b uint64) {
	ls := f.lines(t)
	ls[a-1], ls[b-1] = ls[b-1], ls[a-1]
	f.write(t, ls)
}

// OCITamper edits an OCI ledger's tags directly, as anyone with push access could.
type OCITamper struct {
	// Repo is "HOST:PORT/REPO".
	Repo string
}

func (o OCITamper) repo(t *testing.T) name.Repository {
	r, err := name.NewRepository(o.Repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// evTag finds the ev-<seq>-* tag.
func (o OCITamper) evTag(t *testing.T, seq uint64) string {
	t.Helper()
	tags, err := remote.List(o.repo(t))
	if err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("ev-%012d-", seq)
	for _, tg := range tags {
		if strings.HasPrefix(tg, p) {
			return tg
		}
	}
	t.Fatalf("no tag for event %d in %v", seq, tags)
	return ""
}

// Edit implements Tamperer: the edited event is pushed under the original tag.
func (o OCITamper) Edit(t *testing.T, seq uint64, change func(*ledger.Event)) {
	t.Helper()
	r := o.repo(t)
	tag := o.evTag(t, seq)
	desc, err := remote.Get(r.Tag(tag))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %v %d", err, len(ls))
	}
	rc, _ := ls[0].Compressed()
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	ev, err := ledger.DecodeEvent(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	change(ev)
	nb, _ := ev.Encode()
	nl := static.NewLayer(nb, types.MediaType(ledger.EventSchema))
	if err := remote.WriteLayer(r, nl); err != nil {
		t.Fatal(err)
	}
	d, _ := nl.Digest()
	layers := m["layers"].([]any)
	l0 := layers[0].(map[string]any)
	l0["digest"] = d.String()
	l0["size"] = len(nb)
	mb, _ := json.Marshal(m)
	if err := remote.Put(r.Tag(tag), rawManifest(mb)); err != nil {
		t.Fatal(err)
	}
}

// Drop implements Tamperer.
func (o OCITamper) Drop(t *testing.T, seq uint64) {
	t.Helper()
	if err := remote.Delete(o.repo(t).Tag(o.evTag(t, seq))); err != nil {
		t.Fatal(err)
	}
}

// Swap implements Tamperer: the two tags are re-pointed at each other's events.
func (o OCITamper) Swap(t *testing.T, a, b uint64) {
	t.Helper()
	r := o.repo(t)
	ta, tb := o.evTag(t, a), o.evTag(t, b)
	da, err := remote.Get(r.Tag(ta))
	if err != nil {
		t.Fatal(err)
	}
	db, err := remote.Get(r.Tag(tb))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r.Tag(ta), rawManifest(db.Manifest)); err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r.Tag(tb), rawManifest(da.Manifest)); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
