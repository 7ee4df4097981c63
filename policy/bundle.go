package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fixity-dev/packer-plugin-fixity/internal/atomicfile"
)

// Bundle file names. A bundle is a folder: policy.json (canonical IR), one
// jwks/<issuer>.json per pinned key set, and manifest.json listing the sha256 of every
// other file. The policy digest is "sha256:" + hex(sha256(manifest.json bytes)): the
// manifest pins every file, so the digest pins the whole bundle.
const (
	BundlePolicyFile   = "policy.json"
	BundleManifestFile = "manifest.json"
	BundleJWKSDir      = "jwks"
	BundleSchema       = "fixity.dev/policy-bundle/v1"
	maxBundleFile      = 4 << 20
)

// Manifest is manifest.json.
type Manifest struct {
	Schema        string `json:"schema"`
	PolicyVersion int    `json:"policy_version"`
	ToolVersion   string `json:"tool_version"`
	// Created is the source date epoch as RFC 3339 UTC (never the wall clock).
	Created string `json:"created"`
	// Files maps each bundle path (slash separated) to "sha256:<hex>".
	Files map[string]string `json:"files"`
}

// RenderOptions control Render.
type RenderOptions struct {
	// SourceDateEpoch is the `created` time in seconds (SOURCE_DATE_EPOCH); default 0.
	SourceDateEpoch int64
	// ToolVersion is recorded in the manifest (the CLI/plugin version).
	ToolVersion string
	// HTTPClient fetches pinned keys by OIDC discovery for pinned issuers without a
	// jwks file; nil uses a client with a 30 s timeout.
	HTTPClient *http.Client
	// Context bounds those fetches.
	Context context.Context
}

// CanonicalJSON is the bundle encoding of the policy: two-space indented JSON with a
// final newline, file positions reduced to base names, pinned key files renamed to
// jwks/<issuer>.json. The same policy always gives the same bytes.
func CanonicalJSON(p *Policy) ([]byte, error) {
	c, err := canonicalCopy(p)
	if err != nil {
		return nil, err
	}
	return marshalCanonical(c)
}

func marshalCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// canonicalCopy deep-copies p (via JSON) and normalises what must not depend on the
// build machine.
func canonicalCopy(p *Policy) (*Policy, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("policy: encode: %w", err)
	}
	var c Policy
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	base := func(pos *Pos) {
		if pos.File != "" {
			pos.File = filepath.Base(pos.File)
		}
	}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		base(&is.Pos)
		base(&is.JWKS.Pos)
		for j := range is.Tenant {
			base(&is.Tenant[j].Pos)
		}
		is.JWKS.Keys = p.Issuers[i].JWKS.Keys
		if len(is.JWKS.Keys) > 0 {
			is.JWKS.File = path.Join(BundleJWKSDir, is.ID+".json")
			sum := sha256.Sum256(is.JWKS.Keys)
			is.JWKS.SHA256 = hex.EncodeToString(sum[:])
		} else {
			is.JWKS.File, is.JWKS.SHA256 = "", ""
		}
	}
	for i := range c.Identities {
		id := &c.Identities[i]
		base(&id.Pos)
		base(&id.ConditionPos)
		for j := range id.Match {
			base(&id.Match[j].Pos)
			for k := range id.Match[j].Constraints {
				base(&id.Match[j].Constraints[k].Pos)
			}
		}
		for j := range id.Require {
			base(&id.Require[j].Pos)
		}
	}
	for i := range c.Profiles {
		base(&c.Profiles[i].Pos)
	}
	for i := range c.Bindings {
		base(&c.Bindings[i].Pos)
	}
	for i := range c.Tests {
		base(&c.Tests[i].Pos)
	}
	return &c, nil
}

// Render writes the canonical bundle to dir and returns the policy digest. Pinned
// issuers without a key file get their keys by OIDC discovery now (build time). The
// folder is written beside dir and renamed into place, so dir is either the old bundle
// or the complete new one; an existing dir is replaced only if it holds a bundle.
func Render(p *Policy, dir string, opts RenderOptions) (string, error) {
	files, digest, err := renderFiles(p, opts)
	if err != nil {
		return "", err
	}
	if err := writeDirAtomic(dir, files); err != nil {
		return "", err
	}
	return digest, nil
}

// Digest computes the policy digest Render would produce, without writing anything.
func Digest(p *Policy, opts RenderOptions) (string, error) {
	_, d, err := renderFiles(p, opts)
	return d, err
}

func renderFiles(p *Policy, opts RenderOptions) (map[string][]byte, string, error) {
	if p == nil {
		return nil, "", errors.New("policy: render: nil policy")
	}
	// Fetch missing pinned key sets on a copy, so p is not modified.
	withKeys := *p
	withKeys.Issuers = append([]Issuer(nil), p.Issuers...)
	for i := range withKeys.Issuers {
		is := &withKeys.Issuers[i]
		if is.JWKS.Mode != JWKSRemote && len(is.JWKS.Keys) == 0 {
			keys, err := FetchJWKS(opts.Context, opts.HTTPClient, is)
			if err != nil {
				return nil, "", fmt.Errorf("policy %s: issuer %q: jwks mode %q needs keys: %w; or add jwks { file = \"…\" } with a snapshot", is.JWKS.Pos, is.ID, is.JWKS.Mode, err)
			}
			is.JWKS.Keys = keys
		}
	}
	c, err := canonicalCopy(&withKeys)
	if err != nil {
		return nil, "", err
	}
	files := map[string][]byte{}
	pj, err := marshalCanonical(c)
	if err != nil {
		return nil, "", err
	}
	files[BundlePolicyFile] = pj
	for _, is := range c.Issuers {
		if is.JWKS.File != "" {
			files[is.JWKS.File] = is.JWKS.Keys
		}
	}
	m := Manifest{Schema: BundleSchema, PolicyVersion: c.Version, ToolVersion: opts.ToolVersion,
		Created: time.Unix(opts.SourceDateEpoch, 0).UTC().Format(time.RFC3339), Files: map[string]string{}}
	if m.ToolVersion == "" {
		m.ToolVersion = "unknown"
	}
	for name, b := range files {
		m.Files[name] = sha256Hex(b)
	}
	mj, err := marshalCanonical(m)
	if err != nil {
		return nil, "", err
	}
	files[BundleManifestFile] = mj
	return files, sha256Hex(mj), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// FetchJWKS gets an issuer's key set: from JWKS.URL, else by OIDC discovery
// (<url>/.well-known/openid-configuration, whose issuer must equal the URL exactly).
func FetchJWKS(ctx context.Context, client *http.Client, is *Issuer) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	get := func(u string, limit int64) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("GET %s: response over %d bytes", u, limit)
		}
		return b, nil
	}
	jwksURL := is.JWKS.URL
	if jwksURL == "" {
		b, err := get(strings.TrimSuffix(is.URL, "/")+"/.well-known/openid-configuration", 64<<10)
		if err != nil {
			return nil, fmt.Errorf("oidc discovery: %w", err)
		}
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("oidc discovery: %w", err)
		}
		if doc.Issuer != is.URL {
			return nil, fmt.Errorf("oidc discovery: issuer %q does not equal the configured url %q", doc.Issuer, is.URL)
		}
		if doc.JWKSURI == "" {
			return nil, errors.New("oidc discovery: no jwks_uri")
		}
		jwksURL = doc.JWKSURI
	}
	b, err := get(jwksURL, MaxJWKSSize)
	if err != nil {
		return nil, err
	}
	return compactJWKS(b)
}

// writeDirAtomic writes files into a fresh sibling folder, fsyncs them and swaps it in.
func writeDirAtomic(dir string, files map[string][]byte) error {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("policy: render: %w", err)
	}
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("policy: render: %s exists and is not a folder; choose another -o", dir)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) > 0 {
			if _, err := os.Stat(filepath.Join(dir, BundleManifestFile)); err != nil {
				return fmt.Errorf("policy: render: refusing to replace %s: it is not empty and holds no %s; choose an empty or new folder", dir, BundleManifestFile)
			}
		}
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("policy: render: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		full := filepath.Join(tmp, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteNew(full, files[n], 0o644); err != nil {
			return fmt.Errorf("policy: render: %w", err)
		}
	}
	if err := atomicfile.SyncDir(filepath.Join(tmp, BundleJWKSDir)); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("policy: render: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("policy: render: %w", err)
	}
	ok = true
	if old != "" {
		os.RemoveAll(old)
	}
	return atomicfile.SyncDir(parent)
}

// LoadBundle reads a bundle written by Render, checks every file against the manifest
// (and refuses unlisted files), and returns the policy with its pinned keys loaded.
// Anything missing, extra, oversized or mismatched is an error: fail closed.
func LoadBundle(dir string) (*Policy, *Manifest, error) {
	p, m, err := LoadBundleFS(os.DirFS(dir))
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	return p, m, nil
}

// LoadBundleFS is LoadBundle over any file system rooted at the bundle folder.
func LoadBundleFS(fsys fs.FS) (*Policy, *Manifest, error) {
	read := func(name string) ([]byte, error) {
		f, err := fsys.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", name)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxBundleFile+1))
		if err != nil {
			return nil, err
		}
		if len(b) > maxBundleFile {
			return nil, fmt.Errorf("%s is over %d bytes", name, maxBundleFile)
		}
		return b, nil
	}
	mj, err := read(BundleManifestFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w (is this a folder written by `fixity policy render`?)", BundleManifestFile, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mj))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", BundleManifestFile, err)
	}
	if m.Schema != BundleSchema {
		return nil, nil, fmt.Errorf("%s: schema %q, want %q", BundleManifestFile, m.Schema, BundleSchema)
	}
	if _, ok := m.Files[BundlePolicyFile]; !ok {
		return nil, nil, fmt.Errorf("%s does not list %s", BundleManifestFile, BundlePolicyFile)
	}
	contents := map[string][]byte{}
	for name, want := range m.Files {
		if !validBundlePath(name) {
			return nil, nil, fmt.Errorf("%s lists %q: only %s and %s/<issuer>.json belong in a bundle", BundleManifestFile, name, BundlePolicyFile, BundleJWKSDir)
		}
		b, err := read(name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if got := sha256Hex(b); got != want {
			return nil, nil, fmt.Errorf("%s: sha256 %s does not match the manifest's %s: the bundle was modified", name, got, want)
		}
		contents[name] = b
	}
	// Refuse files the manifest does not pin: they would be unverified input.
	if err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name == "." || name == BundleJWKSDir {
				return nil
			}
			return fmt.Errorf("unexpected folder %s in the bundle", name)
		}
		if name == BundleManifestFile {
			return nil
		}
		if _, ok := m.Files[name]; !ok {
			return fmt.Errorf("unexpected file %s: it is not listed in %s", name, BundleManifestFile)
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var p Policy
	dec = json.NewDecoder(bytes.NewReader(contents[BundlePolicyFile]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", BundlePolicyFile, err)
	}
	if p.Version != m.PolicyVersion {
		return nil, nil, fmt.Errorf("%s: policy_version %d differs from the manifest's %d", BundlePolicyFile, p.Version, m.PolicyVersion)
	}
	used := map[string]bool{BundlePolicyFile: true}
	for i := range p.Issuers {
		is := &p.Issuers[i]
		switch {
		case is.JWKS.File != "":
			b, ok := contents[is.JWKS.File]
			if !ok {
				return nil, nil, fmt.Errorf("issuer %q: key file %s is not in the manifest", is.ID, is.JWKS.File)
			}
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != is.JWKS.SHA256 {
				return nil, nil, fmt.Errorf("issuer %q: key file %s does not match policy.json's sha256", is.ID, is.JWKS.File)
			}
			keys, err := compactJWKS(b)
			if err != nil {
				return nil, nil, fmt.Errorf("issuer %q: %s: %w", is.ID, is.JWKS.File, err)
			}
			is.JWKS.Keys = keys
			used[is.JWKS.File] = true
		case is.JWKS.Mode != JWKSRemote:
			return nil, nil, fmt.Errorf("issuer %q: jwks mode %q but the bundle has no pinned keys", is.ID, is.JWKS.Mode)
		}
	}
	for name := range m.Files {
		if !used[name] {
			return nil, nil, fmt.Errorf("%s lists %s, which no issuer uses", BundleManifestFile, name)
		}
	}
	if _, err := NewEvaluator(&p); err != nil {
		return nil, nil, err
	}
	return &p, &m, nil
}

func validBundlePath(name string) bool {
	if name == BundlePolicyFile {
		return true
	}
	dir, file := path.Split(name)
	return dir == BundleJWKSDir+"/" && strings.HasSuffix(file, ".json") && len(file) > len(".json") &&
		!strings.ContainsAny(file, "/\\") && file != ".." && fs.ValidPath(name)
}

// BundleDigest returns the policy digest of a bundle folder (sha256 of manifest.json)
// after verifying it with LoadBundle.
func BundleDigest(dir string) (string, error) {
	if _, _, err := LoadBundle(dir); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, BundleManifestFile))
	if err != nil {
		return "", err
	}
	return sha256Hex(b), nil
}
