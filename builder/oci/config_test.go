package oci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func prepare(t *testing.T, raw map[string]interface{}) (*Config, error) {
	t.Helper()
	var c Config
	_, err := c.Prepare(raw)
	return &c, err
}

func TestPrepareDefaults(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	c, err := prepare(t, map[string]interface{}{"base": "scratch", "output_dir": filepath.Join(t.TempDir(), "out"), "version": "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if c.compress != "gzip" || c.epoch != 0 || strings.Join(c.resolvedT, ",") != "1.2.3" {
		t.Fatalf("defaults: compress=%q epoch=%d tags=%v", c.compress, c.epoch, c.resolvedT)
	}
}

func TestPrepareSourceDateEpochFromEnvironment(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	c, err := prepare(t, map[string]interface{}{"base": "scratch", "output_dir": filepath.Join(t.TempDir(), "out")})
	if err != nil {
		t.Fatal(err)
	}
	if c.epoch != 1700000000 {
		t.Fatalf("epoch = %d", c.epoch)
	}
	c, err = prepare(t, map[string]interface{}{"base": "scratch", "output_dir": filepath.Join(t.TempDir(), "out"), "source_date_epoch": "5"})
	if err != nil || c.epoch != 5 {
		t.Fatalf("explicit epoch must win over the environment: %d %v", c.epoch, err)
	}
}

func TestPrepareErrorsNameTheField(t *testing.T) {
	notLayout := t.TempDir()
	if err := os.WriteFile(filepath.Join(notLayout, "precious.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	cases := []struct {
		name  string
		raw   map[string]interface{}
		field string
	}{
		{"missing base", map[string]interface{}{"output_dir": out}, "base is required"},
		{"missing output", map[string]interface{}{"base": "scratch"}, "output_dir is required"},
		{"output not a layout", map[string]interface{}{"base": "scratch", "output_dir": notLayout}, "not an OCI image layout"},
		{"unknown compression", map[string]interface{}{"base": "scratch", "output_dir": out, "compression": "lz4"}, "compression"},
		{"bad epoch", map[string]interface{}{"base": "scratch", "output_dir": out, "source_date_epoch": "yesterday"}, "source_date_epoch"},
		{"bad platform", map[string]interface{}{"base": "scratch", "output_dir": out, "platform": "amd64"}, "platform"},
		{"bad tag", map[string]interface{}{"base": "scratch", "output_dir": out, "tags": []string{"-x"}}, "tags"},
		{"reserved annotation", map[string]interface{}{"base": "scratch", "output_dir": out, "annotations": map[string]string{annVersion: "9"}}, "annotations"},
		{"bad push", map[string]interface{}{"base": "scratch", "output_dir": out, "push": "justaname"}, "push"},
		{"unknown key", map[string]interface{}{"base": "scratch", "output_dir": out, "bogus": 1}, "bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prepare(t, tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v does not mention %q", err, tc.field)
			}
		})
	}
}

func TestPrepareIsIdempotent(t *testing.T) {
	raw := map[string]interface{}{"base": "scratch", "output_dir": filepath.Join(t.TempDir(), "o"), "tags": []string{"a"}}
	var c Config
	if _, err := c.Prepare(raw); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(raw); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.resolvedT, ",") != "a" {
		t.Fatalf("tags after second Prepare: %v", c.resolvedT)
	}
}
