package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Input limits, enforced before the HCL parser sees a byte, so a hostile or broken file
// is refused with a clear error instead of exhausting memory or the stack.
const (
	MaxFileSize   = 1 << 20 // bytes per policy file
	MaxNesting    = 32      // depth of {, [ and ( nesting
	MaxJWKSSize   = 256 << 10
	maxGlobStars  = 8
	maxCELLength  = 4096
	maxTestClaims = 256
)

// LoadError is every problem found while loading policy files, each with file:line:col.
type LoadError struct {
	Diags hcl.Diagnostics
}

func (e *LoadError) Error() string {
	return strings.Join(e.Lines(), "\n")
}

// Lines renders each diagnostic as "file:line:col: summary: detail".
func (e *LoadError) Lines() []string {
	var out []string
	for _, d := range e.Diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		loc := "policy"
		if d.Subject != nil {
			loc = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		msg := loc + ": " + d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		out = append(out, msg)
	}
	return out
}

// LoadFiles parses, validates and compiles one or more policy files into one Policy.
// Relative paths inside a file (jwks { file = … }) resolve against that file's folder.
// Every error is a *LoadError whose lines carry file:line:col.
func LoadFiles(paths ...string) (*Policy, error) {
	if len(paths) == 0 {
		return nil, &LoadError{Diags: hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "no policy files given", Detail: "pass at least one *.fixity.hcl file"}}}
	}
	l := newLoader()
	for _, p := range paths {
		src, err := readCapped(p, MaxFileSize)
		if err != nil {
			l.errorf(fileRange(p), "cannot read policy file", "%v", err)
			continue
		}
		l.addFile(p, src, filepath.Dir(p))
	}
	return l.finish()
}

// LoadSource loads one policy held in memory; baseDir resolves relative paths.
func LoadSource(name string, src []byte, baseDir string) (*Policy, error) {
	l := newLoader()
	l.addFile(name, src, baseDir)
	return l.finish()
}

func readCapped(path string, limit int64) ([]byte, error) {
	// Stat first: opening a FIFO or device would block or never end.
	if st, err := os.Stat(path); err != nil {
		return nil, err
	} else if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, want a file", path)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, over the %d byte limit: split it or remove unused content", path, st.Size(), limit)
	}
	buf := make([]byte, 0, st.Size()+1)
	b := bytes.NewBuffer(buf)
	n, err := b.ReadFrom(&limitedReader{f: f, n: limit + 1})
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%s is over the %d byte limit", path, limit)
	}
	return b.Bytes(), nil
}

type limitedReader struct {
	f *os.File
	n int64
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, fmt.Errorf("input over limit")
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.f.Read(p)
	r.n -= int64(n)
	return n, err
}

// checkShape refuses oversized or deeply nested input before parsing. The nesting scan
// skips quoted strings and comments, so braces inside values do not count.
func checkShape(name string, src []byte) *hcl.Diagnostic {
	if len(src) > MaxFileSize {
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "policy file too large",
			Detail: fmt.Sprintf("%d bytes, the limit is %d; split the policy into several files", len(src), MaxFileSize), Subject: fileRange(name).Ptr()}
	}
	depth, line, col := 0, 1, 0
	inStr, inLineComment, inBlockComment := false, false, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		col++
		if c == '\n' {
			line, col = line+1, 0
			inLineComment = false
			continue
		}
		switch {
		case inLineComment:
			continue
		case inBlockComment:
			if c == '*' && i+1 < len(src) && src[i+1] == '/' {
				inBlockComment = false
				i++
			}
			continue
		case inStr:
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '#':
			inLineComment = true
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				inLineComment = true
			} else if i+1 < len(src) && src[i+1] == '*' {
				inBlockComment = true
			}
		case '{', '[', '(':
			depth++
			if depth > MaxNesting {
				return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "policy nesting too deep",
					Detail:  fmt.Sprintf("more than %d nested brackets; flatten the structure", MaxNesting),
					Subject: &hcl.Range{Filename: name, Start: hcl.Pos{Line: line, Column: col, Byte: i}, End: hcl.Pos{Line: line, Column: col + 1, Byte: i + 1}}}
			}
		case '}', ']', ')':
			if depth > 0 {
				depth--
			}
		}
	}
	return nil
}

func fileRange(name string) hcl.Range {
	return hcl.Range{Filename: name, Start: hcl.Pos{Line: 1, Column: 1}, End: hcl.Pos{Line: 1, Column: 1}}
}

func posOf(r hcl.Range) Pos { return Pos{File: r.Filename, Line: r.Start.Line, Col: r.Start.Column} }

type loader struct {
	p       *Policy
	diags   hcl.Diagnostics
	version *hcl.Range
	// ranges of declarations for duplicate and reference errors
	refs      []pendingRef
	bindingN  int
	testBases map[string]*testDecl
}

type pendingRef struct {
	kind, name string
	rng        hcl.Range
	what       string
}

type testDecl struct {
	t              *Test
	extendsRng     hcl.Range
	hasClaims      bool
	hasRequest     bool
	hasExpect      bool
	hasMutants     bool
	claimOverrides map[string]any
}

func newLoader() *loader {
	return &loader{p: &Policy{}, testBases: map[string]*testDecl{}}
}

func (l *loader) errorf(rng hcl.Range, summary, detail string, args ...any) {
	r := rng
	l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: &r})
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "policy_version"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "issuer", LabelNames: []string{"name"}},
		{Type: "identity", LabelNames: []string{"name"}},
		{Type: "profile", LabelNames: []string{"name"}},
		{Type: "binding"},
		{Type: "test", LabelNames: []string{"name"}},
	},
}

func (l *loader) addFile(name string, src []byte, baseDir string) {
	if d := checkShape(name, src); d != nil {
		l.diags = append(l.diags, d)
		return
	}
	f, diags := hclsyntax.ParseConfig(src, name, hcl.Pos{Line: 1, Column: 1, Byte: 0})
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	content, diags := f.Body.Content(rootSchema)
	l.diags = append(l.diags, diags...)
	if a, ok := content.Attributes["policy_version"]; ok {
		var v int
		if l.intAttr(a, &v) {
			if l.version != nil && l.p.Version != v {
				l.errorf(a.Range, "conflicting policy_version", "already set to %d at %s; use one value in every file", l.p.Version, l.version)
			}
			if v < 1 {
				l.errorf(a.Range, "invalid policy_version", "must be a positive integer, got %d", v)
			}
			l.p.Version = v
			r := a.Range
			l.version = &r
		}
	}
	for _, b := range content.Blocks {
		switch b.Type {
		case "issuer":
			l.issuer(b, baseDir)
		case "identity":
			l.identity(b)
		case "profile":
			l.profile(b)
		case "binding":
			l.binding(b)
		case "test":
			l.test(b)
		}
	}
}

// ---- attribute helpers ----

func (l *loader) value(a *hcl.Attribute) (cty.Value, bool) {
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		for _, d := range diags {
			if d.Subject == nil {
				d.Subject = a.Range.Ptr()
			}
			if strings.Contains(d.Summary, "Variables not allowed") || strings.Contains(d.Summary, "Unknown variable") {
				d.Detail += " Policy files allow only literal values (and references like issuer.NAME where documented)."
			}
		}
		l.diags = append(l.diags, diags...)
		return cty.NilVal, false
	}
	if v.IsNull() || !v.IsWhollyKnown() {
		l.errorf(a.Range, "missing value", "attribute %q is null; give it a value or remove it", a.Name)
		return cty.NilVal, false
	}
	return v, true
}

func (l *loader) strAttr(a *hcl.Attribute, out *string) bool {
	v, ok := l.value(a)
	if !ok {
		return false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil || !v.Type().IsPrimitiveType() {
		l.errorf(a.Range, "wrong type", "attribute %q must be a string, got %s", a.Name, v.Type().FriendlyName())
		return false
	}
	*out = s.AsString()
	return true
}

func (l *loader) intAttr(a *hcl.Attribute, out *int) bool {
	v, ok := l.value(a)
	if !ok {
		return false
	}
	if v.Type() != cty.Number {
		l.errorf(a.Range, "wrong type", "attribute %q must be a whole number", a.Name)
		return false
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if acc != big.Exact || i > 1<<31 || i < -(1<<31) {
		l.errorf(a.Range, "wrong type", "attribute %q must be a whole number", a.Name)
		return false
	}
	*out = int(i)
	return true
}

func (l *loader) boolAttr(a *hcl.Attribute, out *bool) bool {
	v, ok := l.value(a)
	if !ok {
		return false
	}
	if v.Type() != cty.Bool {
		l.errorf(a.Range, "wrong type", "attribute %q must be true or false", a.Name)
		return false
	}
	*out = v.True()
	return true
}

func (l *loader) durAttr(a *hcl.Attribute, out *Duration) bool {
	var s string
	if !l.strAttr(a, &s) {
		return false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		l.errorf(a.Range, "invalid duration", "attribute %q = %q: write a Go duration such as \"60s\" or \"10m\"", a.Name, s)
		return false
	}
	*out = Duration(d)
	return true
}

// strListValue accepts a string or a list/tuple of strings (numbers and bools are
// converted to their string form, as claims arrive as strings).
func (l *loader) strListValue(v cty.Value, rng hcl.Range, name string) ([]string, bool) {
	var elems []cty.Value
	switch {
	case v.Type().IsPrimitiveType():
		elems = []cty.Value{v}
	case v.Type().IsListType() || v.Type().IsTupleType() || v.Type().IsSetType():
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			elems = append(elems, e)
		}
	default:
		l.errorf(rng, "wrong type", "%q must be a string or a list of strings, got %s", name, v.Type().FriendlyName())
		return nil, false
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		if e.IsNull() || !e.Type().IsPrimitiveType() {
			l.errorf(rng, "wrong type", "%q: every value must be a string", name)
			return nil, false
		}
		s, err := convert.Convert(e, cty.String)
		if err != nil {
			l.errorf(rng, "wrong type", "%q: %v", name, err)
			return nil, false
		}
		out = append(out, s.AsString())
	}
	if len(out) == 0 {
		l.errorf(rng, "empty list", "%q must have at least one value", name)
		return nil, false
	}
	return out, true
}

func (l *loader) strListAttr(a *hcl.Attribute) ([]string, bool) {
	v, ok := l.value(a)
	if !ok {
		return nil, false
	}
	return l.strListValue(v, a.Range, a.Name)
}

// ref resolves `kind.NAME` (or the plain string "NAME") to NAME and records it for the
// existence check after every file is loaded.
func (l *loader) ref(expr hcl.Expression, kind, what string) (string, bool) {
	rng := expr.Range()
	if tr, diags := hcl.AbsTraversalForExpr(expr); !diags.HasErrors() {
		if len(tr) == 2 && tr.RootName() == kind {
			if at, ok := tr[1].(hcl.TraverseAttr); ok {
				l.refs = append(l.refs, pendingRef{kind: kind, name: at.Name, rng: rng, what: what})
				return at.Name, true
			}
		}
		l.errorf(rng, "invalid reference", "%s must reference a %s block as %s.NAME", what, kind, kind)
		return "", false
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() || v.IsNull() || v.Type() != cty.String {
		l.errorf(rng, "invalid reference", "%s must be %s.NAME", what, kind)
		return "", false
	}
	l.refs = append(l.refs, pendingRef{kind: kind, name: v.AsString(), rng: rng, what: what})
	return v.AsString(), true
}

// constraints decodes a block whose attributes are claim names (match, match_glob,
// require, tenant). Claims whose names are not HCL identifiers go in `claims = { … }`.
func (l *loader) constraints(body hcl.Body, glob bool, blockType string) []Constraint {
	attrs, diags := body.JustAttributes()
	l.diags = append(l.diags, diags...)
	var out []Constraint
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[string]hcl.Range{}
	add := func(claim string, v cty.Value, rng hcl.Range) {
		if claim == "" {
			l.errorf(rng, "empty claim name", "give the claim a name")
			return
		}
		if prev, dup := seen[claim]; dup {
			l.errorf(rng, "duplicate claim", "claim %q is already constrained at %s in this %s block; put both values in one list", claim, prev, blockType)
			return
		}
		seen[claim] = rng
		vals, ok := l.strListValue(v, rng, claim)
		if !ok {
			return
		}
		c := Constraint{Claim: claim, Values: vals, Glob: glob, Pos: posOf(rng)}
		for _, s := range vals {
			if !glob && isGlob(s) {
				l.errorf(rng, "wildcard in exact match", "%s.%s = %q: `*` is literal in %s; move it to a match_glob block if you mean a pattern", blockType, claim, s, blockType)
			}
			if glob && strings.Count(s, "*") > maxGlobStars {
				l.errorf(rng, "glob too complex", "%q has more than %d wildcards", s, maxGlobStars)
			}
		}
		out = append(out, c)
	}
	for _, n := range names {
		a := attrs[n]
		if n == "claims" {
			v, ok := l.value(a)
			if !ok {
				continue
			}
			if !(v.Type().IsObjectType() || v.Type().IsMapType()) {
				l.errorf(a.Range, "wrong type", "claims must be a map of claim name to value(s)")
				continue
			}
			keys := []string{}
			m := v.AsValueMap()
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				add(k, m[k], a.Range)
			}
			continue
		}
		v, ok := l.value(a)
		if !ok {
			continue
		}
		add(n, v, a.Range)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Claim < out[j].Claim })
	return out
}

// ---- blocks ----

var issuerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "preset", Required: true}, {Name: "url", Required: true}, {Name: "audience", Required: true},
		{Name: "algorithms"}, {Name: "clock_skew"}, {Name: "max_token_lifetime"}, {Name: "subject_format"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "tenant"}, {Type: "jwks"}},
}

var jwksSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "mode", Required: true}, {Name: "file"}, {Name: "url"}, {Name: "min_refresh_interval"}, {Name: "snapshot_date"}, {Name: "max_snapshot_age"}},
}

// Default leeway when clock_skew is not set (lint L15 bounds explicit values).
const defaultClockSkew = 60 * time.Second

func (l *loader) issuer(b *hcl.Block, baseDir string) {
	c, diags := b.Body.Content(issuerSchema)
	l.diags = append(l.diags, diags...)
	is := Issuer{ID: b.Labels[0], Pos: posOf(b.DefRange), ClockSkew: Duration(defaultClockSkew), Algorithms: []string{"RS256"}, SubjectFormat: "default",
		AttrPos: attrPositions(c.Attributes)}
	if a, ok := c.Attributes["preset"]; ok && l.strAttr(a, &is.Preset) {
		if LookupPreset(is.Preset) == nil {
			l.errorf(a.Range, "unknown preset", "preset %q is not one of %s", is.Preset, strings.Join(PresetNames(), ", "))
		}
	}
	if a, ok := c.Attributes["url"]; ok {
		l.strAttr(a, &is.URL)
	}
	if a, ok := c.Attributes["audience"]; ok {
		v, ok := l.value(a)
		if ok {
			if v.Type() != cty.String {
				l.errorf(a.Range, "exactly one audience", "audience must be one string unique to this relying party, got %s", v.Type().FriendlyName())
			} else {
				is.Audience = v.AsString()
			}
		}
	}
	if a, ok := c.Attributes["algorithms"]; ok {
		if algs, ok := l.strListAttr(a); ok {
			for _, alg := range algs {
				if !validAlg(alg) {
					l.errorf(a.Range, "unsupported algorithm", "%q: use asymmetric JWS algorithms only (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", alg)
				}
			}
			is.Algorithms = algs
		}
	}
	if a, ok := c.Attributes["clock_skew"]; ok {
		l.durAttr(a, &is.ClockSkew)
	}
	if a, ok := c.Attributes["max_token_lifetime"]; ok {
		l.durAttr(a, &is.MaxTokenLifetime)
	}
	if a, ok := c.Attributes["subject_format"]; ok && l.strAttr(a, &is.SubjectFormat) {
		if !contains([]string{"default", "immutable", "custom"}, is.SubjectFormat) {
			l.errorf(a.Range, "invalid subject_format", "%q: use default, immutable or custom", is.SubjectFormat)
		}
	}
	tenants, jwks := 0, 0
	for _, nb := range c.Blocks {
		switch nb.Type {
		case "tenant":
			if tenants++; tenants > 1 {
				l.errorf(nb.DefRange, "duplicate tenant block", "an issuer has one tenant block; put every pin in it")
				continue
			}
			is.Tenant = l.constraints(nb.Body, false, "tenant")
		case "jwks":
			if jwks++; jwks > 1 {
				l.errorf(nb.DefRange, "duplicate jwks block", "an issuer has one jwks block")
				continue
			}
			l.jwks(nb, &is, baseDir)
		}
	}
	if jwks == 0 {
		l.errorf(b.DefRange, "missing jwks block", "issuer %q: add jwks { mode = \"pinned\" file = \"keys/%s.jwks.json\" } (or mode = \"remote\")", is.ID, is.ID)
	}
	l.p.Issuers = append(l.p.Issuers, is)
}

func validAlg(a string) bool {
	switch a {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

func (l *loader) jwks(b *hcl.Block, is *Issuer, baseDir string) {
	c, diags := b.Body.Content(jwksSchema)
	l.diags = append(l.diags, diags...)
	j := &is.JWKS
	j.Pos = posOf(b.DefRange)
	if a, ok := c.Attributes["mode"]; ok && l.strAttr(a, &j.Mode) {
		if !contains([]string{JWKSPinned, JWKSRemote, JWKSPinnedRefresh}, j.Mode) {
			l.errorf(a.Range, "invalid jwks mode", "%q: use pinned, remote or pinned+refresh", j.Mode)
		}
	}
	if a, ok := c.Attributes["url"]; ok {
		l.strAttr(a, &j.URL)
	}
	if a, ok := c.Attributes["min_refresh_interval"]; ok {
		l.durAttr(a, &j.MinRefreshInterval)
	}
	if a, ok := c.Attributes["snapshot_date"]; ok && l.strAttr(a, &j.SnapshotDate) {
		if _, err := parseSnapshotDate(j.SnapshotDate); err != nil {
			l.errorf(a.Range, "invalid snapshot_date", "%q: write the date the keys were fetched, e.g. \"2026-11-01\" or an RFC 3339 time", j.SnapshotDate)
		}
	}
	if a, ok := c.Attributes["max_snapshot_age"]; ok {
		l.durAttr(a, &j.MaxSnapshotAge)
	}
	if a, ok := c.Attributes["file"]; ok && l.strAttr(a, &j.File) {
		if j.Mode == JWKSRemote {
			l.errorf(a.Range, "file with remote mode", "mode \"remote\" fetches keys at run time; drop file or use mode \"pinned+refresh\"")
		}
		p := j.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		data, err := readCapped(p, MaxJWKSSize)
		if err != nil {
			l.errorf(a.Range, "cannot read pinned JWKS", "%v; the path is relative to the policy file's folder", err)
			return
		}
		keys, err := compactJWKS(data)
		if err != nil {
			l.errorf(a.Range, "invalid pinned JWKS", "%s: %v", p, err)
			return
		}
		j.Keys = keys
	}
}

// parseSnapshotDate accepts "2006-01-02" or an RFC 3339 time.
func parseSnapshotDate(s string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

// compactJWKS checks that data is a JWK Set ({"keys":[…]}) and returns it compacted,
// so the bundle bytes do not depend on the input's whitespace.
func compactJWKS(data []byte) ([]byte, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JSON JWK Set: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("the key set has no keys")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var identitySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "issuer", Required: true}, {Name: "kind"}, {Name: "condition"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "match"}, {Type: "match_glob"}, {Type: "require"}},
}

func (l *loader) identity(b *hcl.Block) {
	c, diags := b.Body.Content(identitySchema)
	l.diags = append(l.diags, diags...)
	id := Identity{ID: b.Labels[0], Pos: posOf(b.DefRange), Kind: "pipeline"}
	if a, ok := c.Attributes["issuer"]; ok {
		id.Issuer, _ = l.ref(a.Expr, "issuer", "identity.issuer")
	}
	if a, ok := c.Attributes["kind"]; ok && l.strAttr(a, &id.Kind) {
		if !contains([]string{"pipeline", "job", "human", "service"}, id.Kind) {
			l.errorf(a.Range, "invalid kind", "%q: use pipeline, job, human or service", id.Kind)
		}
	}
	if a, ok := c.Attributes["condition"]; ok && l.strAttr(a, &id.Condition) {
		id.ConditionPos = posOf(a.Range)
		if len(id.Condition) > maxCELLength {
			l.errorf(a.Range, "condition too long", "%d characters, the limit is %d", len(id.Condition), maxCELLength)
		} else if _, err := compileCondition(id.Condition); err != nil && !isTypeOnly(err) {
			l.errorf(a.Range, "invalid CEL condition", "%v", err)
		}
	}
	requires := 0
	for _, nb := range c.Blocks {
		switch nb.Type {
		case "match", "match_glob":
			alt := Alternative{Glob: nb.Type == "match_glob", Pos: posOf(nb.DefRange)}
			alt.Constraints = l.constraints(nb.Body, alt.Glob, nb.Type)
			if len(alt.Constraints) == 0 {
				l.errorf(nb.DefRange, "empty "+nb.Type+" block", "an empty block matches every token of the issuer; add claim constraints")
			}
			id.Match = append(id.Match, alt)
		case "require":
			if requires++; requires > 1 {
				l.errorf(nb.DefRange, "duplicate require block", "put every required claim in one require block")
				continue
			}
			id.Require = l.constraints(nb.Body, false, "require")
		}
	}
	l.p.Identities = append(l.p.Identities, id)
}

var profileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "environment", Required: true}, {Name: "permissions", Required: true},
		{Name: "resources"}, {Name: "max_session"}, {Name: "single_use"}},
}

func (l *loader) profile(b *hcl.Block) {
	c, diags := b.Body.Content(profileSchema)
	l.diags = append(l.diags, diags...)
	pr := Profile{ID: b.Labels[0], Pos: posOf(b.DefRange), AttrPos: attrPositions(c.Attributes)}
	if a, ok := c.Attributes["environment"]; ok {
		l.strAttr(a, &pr.Environment)
	}
	if a, ok := c.Attributes["permissions"]; ok {
		pr.Permissions, _ = l.strListAttr(a)
	}
	if a, ok := c.Attributes["resources"]; ok {
		pr.Resources, _ = l.strListAttr(a)
	}
	if a, ok := c.Attributes["max_session"]; ok {
		l.durAttr(a, &pr.MaxSession)
	}
	if a, ok := c.Attributes["single_use"]; ok {
		l.boolAttr(a, &pr.SingleUse)
	}
	l.p.Profiles = append(l.p.Profiles, pr)
}

var bindingSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "identity", Required: true}, {Name: "profiles", Required: true}, {Name: "effect"}, {Name: "name"}},
}

func (l *loader) binding(b *hcl.Block) {
	c, diags := b.Body.Content(bindingSchema)
	l.diags = append(l.diags, diags...)
	l.bindingN++
	bd := Binding{ID: fmt.Sprintf("binding[%d]", l.bindingN), Effect: EffectAllow, Pos: posOf(b.DefRange)}
	if a, ok := c.Attributes["name"]; ok {
		l.strAttr(a, &bd.ID)
	}
	if a, ok := c.Attributes["identity"]; ok {
		bd.Identity, _ = l.ref(a.Expr, "identity", "binding.identity")
	}
	if a, ok := c.Attributes["effect"]; ok && l.strAttr(a, &bd.Effect) {
		if bd.Effect != EffectAllow && bd.Effect != EffectDeny {
			l.errorf(a.Range, "invalid effect", "%q: use \"allow\" or \"deny\"", bd.Effect)
		}
	}
	if a, ok := c.Attributes["profiles"]; ok {
		exprs, diags := hcl.ExprList(a.Expr)
		if diags.HasErrors() {
			l.errorf(a.Range, "invalid profiles", "profiles must be a list like [profile.NAME, …]")
		}
		for _, e := range exprs {
			if n, ok := l.ref(e, "profile", "binding.profiles"); ok {
				bd.Profiles = append(bd.Profiles, n)
			}
		}
		if len(exprs) == 0 && !diags.HasErrors() {
			l.errorf(a.Range, "empty profiles", "a binding needs at least one profile")
		}
	}
	l.p.Bindings = append(l.p.Bindings, bd)
}

var testSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "claims"}, {Name: "expect"}, {Name: "expect_reason"}, {Name: "mutants"}, {Name: "extends"}, {Name: "now"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "request"}},
}

var requestSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "profile"}, {Name: "permission"}, {Name: "resource"}},
}

func (l *loader) test(b *hcl.Block) {
	c, diags := b.Body.Content(testSchema)
	l.diags = append(l.diags, diags...)
	t := &Test{ID: b.Labels[0], Pos: posOf(b.DefRange)}
	td := &testDecl{t: t}
	if a, ok := c.Attributes["extends"]; ok {
		t.Extends, _ = l.ref(a.Expr, "test", "test.extends")
		td.extendsRng = a.Range
	}
	if a, ok := c.Attributes["claims"]; ok {
		v, ok := l.value(a)
		if ok {
			if !(v.Type().IsObjectType() || v.Type().IsMapType()) {
				l.errorf(a.Range, "wrong type", "claims must be an object of claim = value")
			} else {
				m, _ := ctyToAny(v).(map[string]any)
				if len(m) > maxTestClaims {
					l.errorf(a.Range, "too many claims", "at most %d claims per test", maxTestClaims)
				}
				td.claimOverrides = m
				td.hasClaims = true
			}
		}
	}
	if a, ok := c.Attributes["expect"]; ok && l.strAttr(a, &t.Expect) {
		td.hasExpect = true
		if t.Expect != EffectAllow && t.Expect != EffectDeny {
			l.errorf(a.Range, "invalid expect", "%q: use \"allow\" or \"deny\"", t.Expect)
		}
	}
	if a, ok := c.Attributes["expect_reason"]; ok {
		l.strAttr(a, &t.ExpectReason)
	}
	if a, ok := c.Attributes["now"]; ok {
		var s string
		if l.strAttr(a, &s) {
			tm, err := time.Parse(time.RFC3339, s)
			if err != nil {
				l.errorf(a.Range, "invalid now", "%q: write an RFC 3339 time such as \"2026-01-02T15:04:05Z\"", s)
			}
			t.Now = tm.UTC()
		}
	}
	if a, ok := c.Attributes["mutants"]; ok {
		if vals, ok := l.strListAttr(a); ok {
			td.hasMutants = true
			for _, m := range vals {
				if m != "auto" && m != "none" && !contains(MutantKinds(), m) {
					l.errorf(a.Range, "unknown mutant kind", "%q: use \"auto\", \"none\" or a list of %s", m, strings.Join(MutantKinds(), ", "))
				}
			}
			t.Mutants = vals
		}
	}
	reqs := 0
	for _, nb := range c.Blocks {
		if reqs++; reqs > 1 {
			l.errorf(nb.DefRange, "duplicate request block", "a test has one request block")
			continue
		}
		rc, diags := nb.Body.Content(requestSchema)
		l.diags = append(l.diags, diags...)
		td.hasRequest = true
		if a, ok := rc.Attributes["profile"]; ok {
			t.Request.Profile, _ = l.ref(a.Expr, "profile", "request.profile")
		}
		if a, ok := rc.Attributes["permission"]; ok {
			l.strAttr(a, &t.Request.Permission)
		}
		if a, ok := rc.Attributes["resource"]; ok {
			l.strAttr(a, &t.Request.Resource)
		}
		if t.Request.Profile == "" && t.Request.Permission == "" {
			l.errorf(nb.DefRange, "empty request", "set request.profile or request.permission")
		}
	}
	if prev, dup := l.testBases[t.ID]; dup {
		l.errorf(b.DefRange, "duplicate test", "test %q is already declared at %s", t.ID, prev.t.Pos)
		return
	}
	l.testBases[t.ID] = td
}

// ctyToAny converts a literal HCL value to the JSON-shaped value a decoded token has.
func ctyToAny(v cty.Value) any {
	if v.IsNull() {
		return nil
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString()
	case t == cty.Bool:
		return v.True()
	case t == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		out := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, ctyToAny(e))
		}
		return out
	case t.IsObjectType() || t.IsMapType():
		out := map[string]any{}
		for k, e := range v.AsValueMap() {
			out[k] = ctyToAny(e)
		}
		return out
	}
	return nil
}

// ---- cross-file checks ----

func (l *loader) finish() (*Policy, error) {
	p := l.p
	declared := map[string]map[string]Pos{"issuer": {}, "identity": {}, "profile": {}, "test": {}, "binding": {}}
	dup := func(kind, id string, pos Pos) {
		if prev, ok := declared[kind][id]; ok {
			l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "duplicate " + kind,
				Detail:  fmt.Sprintf("%s %q is already declared at %s; names must be unique across all policy files", kind, id, prev),
				Subject: &hcl.Range{Filename: pos.File, Start: hcl.Pos{Line: pos.Line, Column: pos.Col}, End: hcl.Pos{Line: pos.Line, Column: pos.Col}}})
			return
		}
		declared[kind][id] = pos
	}
	for _, x := range p.Issuers {
		dup("issuer", x.ID, x.Pos)
	}
	for _, x := range p.Identities {
		dup("identity", x.ID, x.Pos)
	}
	for _, x := range p.Profiles {
		dup("profile", x.ID, x.Pos)
	}
	for _, x := range p.Bindings {
		dup("binding", x.ID, x.Pos)
	}
	for id, td := range l.testBases {
		declared["test"][id] = td.t.Pos
	}
	for _, r := range l.refs {
		if _, ok := declared[r.kind][r.name]; !ok {
			l.errorf(r.rng, "unknown "+r.kind, "%s refers to %s.%s, which is not declared in any policy file", r.what, r.kind, r.name)
		}
	}
	if p.Version == 0 && len(l.diags) == 0 {
		p.Version = 1
	}
	l.resolveTests()
	if l.diags.HasErrors() {
		return nil, &LoadError{Diags: l.diags}
	}
	sort.Slice(p.Issuers, func(i, j int) bool { return p.Issuers[i].ID < p.Issuers[j].ID })
	sort.Slice(p.Identities, func(i, j int) bool { return p.Identities[i].ID < p.Identities[j].ID })
	sort.Slice(p.Profiles, func(i, j int) bool { return p.Profiles[i].ID < p.Profiles[j].ID })
	sort.Slice(p.Tests, func(i, j int) bool { return p.Tests[i].ID < p.Tests[j].ID })
	return p, nil
}

// resolveTests applies `extends`: the child starts from the parent's claims (its own
// claims override key by key), request and expectation; mutants are not inherited.
func (l *loader) resolveTests() {
	done := map[string]bool{}
	var resolve func(id string, stack []string) *Test
	resolve = func(id string, stack []string) *Test {
		td := l.testBases[id]
		if td == nil {
			return nil
		}
		if done[id] {
			return td.t
		}
		for _, s := range stack {
			if s == id {
				l.errorf(td.extendsRng, "extends cycle", "tests %s extend each other; break the cycle", strings.Join(append(stack, id), " -> "))
				done[id] = true
				return td.t
			}
		}
		t := td.t
		claims := map[string]any{}
		if t.Extends != "" {
			if parent := resolve(t.Extends, append(stack, id)); parent != nil {
				for k, v := range parent.Claims {
					claims[k] = v
				}
				if !td.hasRequest {
					t.Request = parent.Request
				}
				if !td.hasExpect {
					t.Expect = parent.Expect
				}
				if t.Now.IsZero() {
					t.Now = parent.Now
				}
			}
		}
		for k, v := range td.claimOverrides {
			claims[k] = v
		}
		t.Claims = claims
		rng := hcl.Range{Filename: t.Pos.File, Start: hcl.Pos{Line: t.Pos.Line, Column: t.Pos.Col}, End: hcl.Pos{Line: t.Pos.Line, Column: t.Pos.Col}}
		if t.Expect == "" {
			l.errorf(rng, "missing expect", "test %q: set expect = \"allow\" or \"deny\"", t.ID)
		}
		if t.Request.Profile == "" && t.Request.Permission == "" {
			l.errorf(rng, "missing request", "test %q: add request { profile = profile.NAME } or request { permission = \"…\" }", t.ID)
		}
		if len(claims) == 0 {
			l.errorf(rng, "missing claims", "test %q: add claims = { iss = …, aud = …, sub = … }", t.ID)
		}
		done[id] = true
		return t
	}
	ids := make([]string, 0, len(l.testBases))
	for id := range l.testBases {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if t := resolve(id, nil); t != nil {
			l.p.Tests = append(l.p.Tests, *t)
		}
	}
}

func attrPositions(attrs hcl.Attributes) map[string]Pos {
	m := make(map[string]Pos, len(attrs))
	for n, a := range attrs {
		m[n] = posOf(a.Range)
	}
	return m
}
