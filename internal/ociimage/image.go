package ociimage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// HistoryCreatedBy is the created_by of the history entry for the new layer.
const HistoryCreatedBy = "fixity-oci"

// WriteImage writes the image into the OCI image layout at outputDir, atomically:
//   - outputDir missing (or an empty directory) → everything is built in a sibling temp
//     directory, fsynced, and renamed into place;
//   - outputDir an existing OCI layout → blobs are added (content-addressed), then
//     index.json is replaced atomically (temp + fsync + rename), so the new manifest and
//     its tags appear at once; a tag that named another manifest moves; writers of one
//     layout take turns (an exclusive lock on the directory, held for the whole call);
//   - outputDir exists and is not an OCI layout → error naming output_dir.
//
// On error or cancellation nothing half-written is left: the temp directory is removed,
// or, for an existing layout, index.json is unchanged and the blobs this call added are
// removed again.
func WriteImage(ctx context.Context, outputDir string, spec ImageSpec) (*Result, error) {
	if err := checkSpec(&spec); err != nil {
		return nil, err
	}
	base := spec.Base
	if base == nil {
		base = &Base{Kind: BaseScratch, Ref: "scratch"}
	}
	created := spec.Created.Truncate(time.Second).UTC()

	w := &layoutWriter{final: outputDir}
	if err := w.open(ctx); err != nil {
		return nil, err
	}
	defer w.unlock()
	res, err := w.build(ctx, base, spec, created)
	if err != nil {
		w.rollback()
		return nil, err
	}
	return res, nil
}

func checkSpec(spec *ImageSpec) error {
	if _, err := ParseCompression(string(spec.Compression)); err != nil {
		return err
	}
	if spec.Platform.OS == "" || spec.Platform.Architecture == "" {
		return fmt.Errorf("platform %q: os and architecture are both required (for example linux/amd64)", spec.Platform.OS+"/"+spec.Platform.Architecture)
	}
	if spec.RootDir == "" {
		return errors.New("root dir: empty; the staged filesystem tree is required")
	}
	for i, t := range spec.Tags {
		if !tagPattern.MatchString(t) {
			return fmt.Errorf("tags[%d] %q: not a valid tag (letters, digits, '_', '.', '-'; up to 128; not starting with '.' or '-')", i, t)
		}
	}
	for k := range spec.Annotations {
		if k == "" {
			return errors.New("annotations: empty key")
		}
	}
	if spec.Created.Unix() < 0 {
		return fmt.Errorf("source_date_epoch %d: must not be negative", spec.Created.Unix())
	}
	return nil
}

// layoutWriter tracks where this call writes and what it must undo.
type layoutWriter struct {
	final    string   // outputDir as given
	work     string   // where blobs are written: a temp dir (fresh) or final (existing)
	fresh    bool     // building a new layout in a temp dir
	replaceE bool     // final existed as an empty directory
	added    []string // blobs created in an existing layout (removed on rollback)
	files    []string // blob paths of this image, relative to the layout
	unlock   func()   // releases the lock on an existing layout
}

func (w *layoutWriter) open(ctx context.Context) error {
	w.unlock = func() {}
	fi, err := os.Stat(w.final)
	switch {
	case errors.Is(err, os.ErrNotExist):
		w.fresh = true
	case err != nil:
		return fmt.Errorf("output_dir %s: %w", w.final, err)
	case !fi.IsDir():
		return fmt.Errorf("output_dir %s: exists and is not a directory; choose a new path or an existing OCI image layout", w.final)
	case isLayout(w.final):
		unlock, err := lockLayout(ctx, w.final)
		if err != nil {
			return fmt.Errorf("output_dir %s: %w", w.final, err)
		}
		if _, err := readIndex(w.final); err != nil {
			unlock()
			return fmt.Errorf("output_dir %s: broken OCI image layout: %w; repair or remove it", w.final, err)
		}
		w.work, w.unlock = w.final, unlock
		return nil
	default:
		ents, err := os.ReadDir(w.final)
		if err != nil {
			return fmt.Errorf("output_dir %s: %w", w.final, err)
		}
		if len(ents) > 0 {
			return fmt.Errorf("output_dir %s: exists, is not empty and is not an OCI image layout (no oci-layout file); choose a new path, an empty directory or an existing layout", w.final)
		}
		w.fresh, w.replaceE = true, true
	}
	parent := filepath.Dir(filepath.Clean(w.final))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(w.final))+".tmp-*")
	if err != nil {
		return fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	w.work = tmp
	return nil
}

func (w *layoutWriter) rollback() {
	if w.fresh {
		os.RemoveAll(w.work)
		return
	}
	for _, p := range w.added {
		os.Remove(p)
	}
}

// note records a blob of this image; in an existing layout it remembers whether this
// call created it, so a failed build removes only its own blobs.
func (w *layoutWriter) note(d digest.Digest, existed bool) {
	p := blobPath(w.work, d)
	rel, _ := filepath.Rel(w.work, p)
	if !slices.Contains(w.files, rel) {
		w.files = append(w.files, rel)
	}
	if !w.fresh && !existed && !slices.Contains(w.added, p) {
		w.added = append(w.added, p)
	}
}

func (w *layoutWriter) exists(d digest.Digest) bool {
	_, err := os.Stat(blobPath(w.work, d))
	return err == nil
}

func (w *layoutWriter) build(ctx context.Context, base *Base, spec ImageSpec, created time.Time) (*Result, error) {
	res := &Result{}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	history := slices.Clone(base.Config.History)

	switch base.Kind {
	case BaseScratch:
	case BaseLayout:
		for _, l := range base.Layers {
			existed := w.exists(l.Digest)
			if _, err := copyBlob(ctx, base.layoutDir, w.work, l); err != nil {
				return nil, fmt.Errorf("base %q: layer %w", base.Ref, err)
			}
			w.note(l.Digest, existed)
			layers = append(layers, l)
		}
		diffIDs = slices.Clone(base.Config.RootFS.DiffIDs)
	case BaseTarball:
		lr, err := w.writeTarballLayer(ctx, base, spec.Compression, created)
		if err != nil {
			return nil, err
		}
		res.BaseLayer = ocispec.Descriptor{MediaType: lr.MediaType, Digest: lr.Digest, Size: lr.Size}
		layers = append(layers, res.BaseLayer)
		diffIDs = append(diffIDs, lr.DiffID)
		history = append(history, ocispec.History{Created: &created, CreatedBy: HistoryCreatedBy + " base rootfs tarball"})
	default:
		return nil, fmt.Errorf("base: unknown kind %q; load it with LoadBase", base.Kind)
	}

	// The new layer: streamed into a temp blob, renamed to its digest.
	bw, err := newBlobWriter(w.work)
	if err != nil {
		return nil, fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	lr, err := WriteLayer(ctx, spec.RootDir, bw, LayerOptions{Compression: spec.Compression, Created: created, OverlayUpper: spec.RootIsOverlayUpper})
	if err != nil {
		bw.discard()
		return nil, err
	}
	existed := w.exists(lr.Digest)
	if _, err := bw.commit(lr.Digest); err != nil {
		return nil, fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	w.note(lr.Digest, existed)
	res.Layer = ocispec.Descriptor{MediaType: lr.MediaType, Digest: lr.Digest, Size: lr.Size}
	res.DiffID = lr.DiffID
	layers = append(layers, res.Layer)
	diffIDs = append(diffIDs, lr.DiffID)
	history = append(history, ocispec.History{Created: &created, CreatedBy: HistoryCreatedBy})

	cfg := ocispec.Image{
		Created:  &created,
		Platform: spec.Platform,
		Config:   mergeConfig(base.Config.Config, spec.Config),
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		History:  history,
	}
	cb, err := marshal(cfg)
	if err != nil {
		return nil, err
	}
	if res.Config, err = w.put(ocispec.MediaTypeImageConfig, cb); err != nil {
		return nil, err
	}

	ann := maps.Clone(spec.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[CompressionAnnotation] = CompressionSettings(spec.Compression)
	man := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      res.Config,
		Layers:      layers,
		Annotations: ann,
	}
	mb, err := marshal(man)
	if err != nil {
		return nil, err
	}
	if res.Manifest, err = w.put(ocispec.MediaTypeImageManifest, mb); err != nil {
		return nil, err
	}

	// index.json: the last step, after every blob is durable.
	idx := newIndex()
	if !w.fresh {
		if idx, err = readIndex(w.work); err != nil {
			return nil, fmt.Errorf("output_dir %s: %w", w.final, err)
		}
	}
	entry := res.Manifest
	p := spec.Platform
	entry.Platform = &p
	idx.Manifests = setTags(idx.Manifests, entry, spec.Tags)
	ib, err := marshal(idx)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if w.fresh {
		err := w.commitFresh(ib)
		if errors.Is(err, errLayoutAppeared) {
			err = w.mergeInto(ctx, entry, spec.Tags)
		} else if err == nil {
			res.Created = !w.replaceE
			res.Files = append(res.Files, filepath.Join(w.final, layoutFile))
		}
		if err != nil {
			return nil, fmt.Errorf("output_dir %s: %w", w.final, err)
		}
	} else {
		if err := atomicfile.WriteFile(filepath.Join(w.work, indexFile), ib, 0o644); err != nil {
			return nil, fmt.Errorf("output_dir %s: %w", w.final, err)
		}
	}
	res.Files = append(res.Files, filepath.Join(w.final, indexFile))
	for _, f := range w.files {
		res.Files = append(res.Files, filepath.Join(w.final, f))
	}
	return res, nil
}

func (w *layoutWriter) put(mediaType string, data []byte) (ocispec.Descriptor, error) {
	d := digest.FromBytes(data)
	existed := w.exists(d)
	desc, _, err := putBlob(w.work, mediaType, data)
	if err != nil {
		return desc, fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	w.note(d, existed)
	return desc, nil
}

// commitFresh finishes a new layout in the temp dir and renames it into place.
func (w *layoutWriter) commitFresh(index []byte) error {
	for name, data := range map[string][]byte{layoutFile: layoutMarker(), indexFile: index} {
		f, err := os.OpenFile(filepath.Join(w.work, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, d := range []string{filepath.Join(w.work, ocispec.ImageBlobsDir, "sha256"), filepath.Join(w.work, ocispec.ImageBlobsDir), w.work} {
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	if w.replaceE {
		// os.Rename refuses an existing directory even when it is empty. Another writer
		// may have removed it first (and may be about to put its layout there).
		if err := os.Remove(w.final); err != nil && !errors.Is(err, os.ErrNotExist) {
			if isLayout(w.final) {
				return errLayoutAppeared
			}
			return err
		}
	}
	if err := os.Rename(w.work, w.final); err != nil {
		if isLayout(w.final) {
			return errLayoutAppeared
		}
		return err
	}
	w.fresh = false // nothing to roll back any more
	w.added = nil
	return atomicfile.SyncDir(filepath.Dir(filepath.Clean(w.final)))
}

// errLayoutAppeared: while this build wrote a new layout, another writer created one at
// output_dir (parallel sources of one template writing to one new output_dir, say one
// per platform).
var errLayoutAppeared = errors.New("another writer created the layout first")

// mergeInto adds this build's image to the layout another writer created at output_dir
// meanwhile: under the layout lock, the blobs move over (same file system: the temp dir
// is a sibling) and index.json gains the entry. On failure the blobs moved so far are
// removed again and the temp dir goes with the rollback.
func (w *layoutWriter) mergeInto(ctx context.Context, entry ocispec.Descriptor, tags []string) (err error) {
	unlock, err := lockLayout(ctx, w.final)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := readIndex(w.final)
	if err != nil {
		return fmt.Errorf("broken OCI image layout: %w; repair or remove it", err)
	}
	var moved []string
	defer func() {
		if err != nil {
			for _, p := range moved {
				os.Remove(p)
			}
		}
	}()
	if err := os.MkdirAll(filepath.Join(w.final, ocispec.ImageBlobsDir, "sha256"), 0o755); err != nil {
		return err
	}
	for _, rel := range w.files {
		dst := filepath.Join(w.final, rel)
		if _, err := os.Stat(dst); err == nil {
			continue // content-addressed: the same bytes are already there
		}
		if err := os.Rename(filepath.Join(w.work, rel), dst); err != nil {
			return err
		}
		moved = append(moved, dst)
	}
	if err := atomicfile.SyncDir(filepath.Join(w.final, ocispec.ImageBlobsDir, "sha256")); err != nil {
		return err
	}
	idx.Manifests = setTags(idx.Manifests, entry, tags)
	ib, err := marshal(idx)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(w.final, indexFile), ib, 0o644); err != nil {
		return err
	}
	os.RemoveAll(w.work)
	w.fresh, w.added = false, nil
	return nil
}

// setTags adds desc to the index once per tag, moving tags that named other manifests;
// without tags desc is added untagged (once).
func setTags(manifests []ocispec.Descriptor, desc ocispec.Descriptor, tags []string) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, m := range manifests {
		if name, ok := m.Annotations[ocispec.AnnotationRefName]; ok && slices.Contains(tags, name) {
			continue
		}
		if len(tags) == 0 && m.Digest == desc.Digest && m.Annotations[ocispec.AnnotationRefName] == "" {
			continue
		}
		out = append(out, m)
	}
	if len(tags) == 0 {
		return append(out, desc)
	}
	seen := map[string]bool{}
	for _, t := range tags {
		if seen[t] {
			continue
		}
		seen[t] = true
		d := desc
		d.Annotations = map[string]string{ocispec.AnnotationRefName: t}
		out = append(out, d)
	}
	return out
}

// mergeConfig lays over on top of base the way Dockerfile instructions do: a set
// User, WorkingDir or StopSignal replaces; Env entries replace the same variable in
// place and new ones are appended; Labels merge by key; ExposedPorts and Volumes add
// up; a set Entrypoint replaces the entrypoint and drops the inherited Cmd (as
// ENTRYPOINT does), a set Cmd replaces the Cmd.
func mergeConfig(base, over ocispec.ImageConfig) ocispec.ImageConfig {
	out := ocispec.ImageConfig{
		User:       base.User,
		WorkingDir: base.WorkingDir,
		StopSignal: base.StopSignal,
		Env:        slices.Clone(base.Env),
		Entrypoint: slices.Clone(base.Entrypoint),
		Cmd:        slices.Clone(base.Cmd),
	}
	if over.User != "" {
		out.User = over.User
	}
	if over.WorkingDir != "" {
		out.WorkingDir = over.WorkingDir
	}
	if over.StopSignal != "" {
		out.StopSignal = over.StopSignal
	}
	for _, kv := range over.Env {
		key, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out.Env, func(e string) bool { k, _, _ := strings.Cut(e, "="); return k == key })
		if i >= 0 {
			out.Env[i] = kv
		} else {
			out.Env = append(out.Env, kv)
		}
	}
	if over.Entrypoint != nil {
		out.Entrypoint = slices.Clone(over.Entrypoint)
		out.Cmd = slices.Clone(over.Cmd)
	} else if over.Cmd != nil {
		out.Cmd = slices.Clone(over.Cmd)
	}
	out.Labels = mergeMap(base.Labels, over.Labels)
	out.ExposedPorts = mergeMap(base.ExposedPorts, over.ExposedPorts)
	out.Volumes = mergeMap(base.Volumes, over.Volumes)
	return out
}

func mergeMap[V any](a, b map[string]V) map[string]V {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make(map[string]V, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// writeTarballLayer re-writes a rootfs tarball base as the first layer, checking on
// the way that the file is still the one LoadBase hashed.
func (w *layoutWriter) writeTarballLayer(ctx context.Context, base *Base, c Compression, created time.Time) (LayerResult, error) {
	f, err := os.Open(base.tarball)
	if err != nil {
		return LayerResult{}, fmt.Errorf("base %q: %w", base.Ref, err)
	}
	defer f.Close()
	bw, err := newBlobWriter(w.work)
	if err != nil {
		return LayerResult{}, fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	sink, err := newLayerSink(bw, c)
	if err != nil {
		bw.discard()
		return LayerResult{}, err
	}
	h := sha256.New()
	err = rewriteTar(ctx, io.TeeReader(f, h), sink.in, created)
	if err == nil {
		_, err = io.Copy(h, f)
	}
	if err != nil {
		sink.abort()
		bw.discard()
		return LayerResult{}, fmt.Errorf("base %q: %w", base.Ref, err)
	}
	lr, err := sink.finish()
	if err != nil {
		bw.discard()
		return LayerResult{}, err
	}
	if got := digest.NewDigest(digest.SHA256, h); got != base.Digest {
		bw.discard()
		return LayerResult{}, fmt.Errorf("base %q: the file changed since it was loaded (sha256 %s, was %s)", base.Ref, got, base.Digest)
	}
	existed := w.exists(lr.Digest)
	if _, err := bw.commit(lr.Digest); err != nil {
		return LayerResult{}, fmt.Errorf("output_dir %s: %w", w.final, err)
	}
	w.note(lr.Digest, existed)
	return lr, nil
}
