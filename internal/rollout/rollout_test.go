package rollout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/ledgertest"
)

func rec(version string, amis ...string) *ledger.Record {
	r := ledgertest.Rec("web", version)
	r.Artifacts = nil
	for _, a := range amis {
		region, id, _ := strings.Cut(a, ":")
		r.Artifacts = append(r.Artifacts, ledger.Artifact{Provider: "aws", Region: region, ID: id})
	}
	return r
}

// demoLedger: 1.0.0 and 1.1.0 in staging and prod (prod head 1.1.0), 0.9.0 unsigned.
func demoLedger(t *testing.T) (ledger.Ledger, map[string]*ledger.Record) {
	t.Helper()
	ctx := context.Background()
	l, err := ledger.Open("file://" + filepath.Join(t.TempDir(), "l"))
	if err != nil {
		t.Fatal(err)
	}
	rs := map[string]*ledger.Record{
		"0.9.0": rec("0.9.0", "us-east-1:ami-0f1x0000000000000"),
		"1.0.0": rec("1.0.0", "us-east-1:ami-0f1x0000000000001", "eu-west-1:ami-0e2x0000000000001"),
		"1.1.0": rec("1.1.0", "us-east-1:ami-0f1x0000000000002", "eu-west-1:ami-0e2x0000000000002"),
	}
	rs["0.9.0"].Signer, rs["0.9.0"].BundleDigest = nil, ""
	a := ledger.DefaultActor()
	for _, v := range []string{"0.9.0", "1.0.0", "1.1.0"} {
		if _, err := ledger.RecordRelease(ctx, l, rs[v], a); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		for _, ch := range []string{"staging", "prod"} {
			if _, err := ledger.Promote(ctx, l, "web@"+v, ch, nil, "", a); err != nil {
				t.Fatal(err)
			}
		}
	}
	return l, rs
}

func TestPlanClassifiesEveryDriftClass(t *testing.T) {
	l, rs := demoLedger(t)
	ctx := context.Background()
	var inv []Instance
	for _, f := range []string{"aws:testdata/aws.json", "csv:testdata/hosts.csv", "k8s:testdata/k8s.json"} {
		in, err := ReadInventory(f)
		if err != nil {
			t.Fatal(err)
		}
		inv = append(inv, in...)
	}
	inv = append(inv, Instance{ID: "db-1", Image: "registry/web@" + rs["1.1.0"].Image.Digest}, Instance{ID: "old-1", Image: "ami-0f1x0000000000000", Provider: "aws", Region: "us-east-1"})
	st, _ := l.State(ctx)
	p, err := Build(st, "prod", inv, Batch{N: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		Channel:    "prod",
		Current:    []string{"db-1", "edge-1", "i-0aaa000000000001", "i-0aaa000000000002", "i-0bbb000000000001"},
		Replace:    []string{"edge-2", "i-0aaa000000000003"},
		ReplaceNow: []Item{{"i-0bbb000000000002", "never-recorded: ami-0hand0000000000bad is not in the ledger"}, {"old-1", "unsigned: web@0.9.0 was recorded without a verified signature"}, {"shop/web-7d9f8b6c5-abcde/web", "never-recorded: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae is not in the ledger"}},
		Unknown:    []string{"shop/web-7d9f8b6c5-fghij"},
		Batches:    [][]string{{"i-0bbb000000000002", "old-1", "shop/web-7d9f8b6c5-abcde/web"}, {"edge-2", "i-0aaa000000000003"}},
	}
	p.Target = nil
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("plan:\n got %+v\nwant %+v", p, want)
	}
	if !p.Urgent() {
		t.Fatal("plan with replace_now must be urgent")
	}

	// Revoke 1.1.0 with rollback to 1.0.0: its machines must go now, 1.0.0 is current.
	if _, err := ledger.Revoke(ctx, l, "web@1.1.0", "CVE-2026-0001", "web@1.0.0", false, ledger.DefaultActor()); err != nil {
		t.Fatal(err)
	}
	st, _ = l.State(ctx)
	aws, _ := ReadInventory("aws:../../example/release/instances.json")
	p, err = Build(st, "prod", aws, Batch{Percent: 50})
	if err != nil {
		t.Fatal(err)
	}
	if p.Target.Version != "1.0.0" || len(p.ReplaceNow) != 3 || !strings.HasPrefix(p.ReplaceNow[0].Reason, "revoked: web@1.1.0: CVE-2026-0001") || !reflect.DeepEqual(p.Current, []string{"i-0aaa000000000003"}) {
		t.Fatalf("plan after revoke: %+v", p)
	}
	if len(p.Batches) != 2 || len(p.Batches[0]) != 2 { // 50% of 4 machines
		t.Fatalf("batches: %v", p.Batches)
	}
}

func TestPlanRefusesBadInput(t *testing.T) {
	l, _ := demoLedger(t)
	st, _ := l.State(context.Background())
	if _, err := Build(st, "canary", nil, Batch{N: 1}); err == nil || !strings.Contains(err.Error(), "known: prod, staging") {
		t.Fatalf("unknown channel: %v", err)
	}
	if _, err := Build(st, "prod", []Instance{{ID: "a", Image: "x", Source: "f:1"}, {ID: "a", Image: "y", Source: "f:2"}}, Batch{N: 1}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate id: %v", err)
	}
	for _, s := range []string{"0", "-1", "0%", "101%", "x"} {
		if _, err := ParseBatch(s); err == nil {
			t.Errorf("ParseBatch(%q) accepted", s)
		}
	}
}

func TestInventoryErrorsNameFileAndRecord(t *testing.T) {
	aws, _ := os.ReadFile("testdata/aws.json")
	cases := []struct{ format, body, want string }{
		{"aws", string(aws[:len(aws)/2]), "inv: truncated JSON"},
		{"aws", `{"Reservations":[{"Instances":[{"InstanceId":"i-1"}]}]}`, "inv: Reservations[0].Instances[0] (i-1): missing ImageId"},
		{"aws", `{"Reservations":[{"Instances":[{"ImageId":"ami-1"}]}]}`, "Reservations[0].Instances[0]: missing InstanceId"},
		{"aws", `{"Items":[]}`, `no "Reservations" field`},
		{"aws", `{"Reservations":[]} {}`, "trailing data"},
		{"aws", ``, "empty file"},
		{"k8s", `{"kind":"List","items":[{"metadata":{"name":"p"},"status":{"containerStatuses":[{"name":"c","image":"x"}]}}]}`, "items[0].status.containerStatuses[0] (default/p/c): missing imageID"},
		{"k8s", `{"kind":"List","items":[{"kind":"Deployment","metadata":{"name":"d"}}]}`, `kind "Deployment"`},
		{"k8s", `{"kind":"List"}`, "neither a List"},
		{"csv", "id,image\nm1\n", "inv:2: 1 fields, want 2"},
		{"csv", "id,image\nm1,\n", "inv:2 (m1): empty image"},
		{"csv", "", "no rows"},
		{"yaml", "x", `unknown format "yaml"`},
	}
	for _, c := range cases {
		_, err := Parse(c.format, "inv", []byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: err = %v, want it to contain %q", c.format, c.body, err, c.want)
		}
	}
	if _, err := ReadInventory("instances.json"); err == nil || !strings.Contains(err.Error(), "FORMAT:FILE") {
		t.Errorf("spec without format: %v", err)
	}
}

func fuzzParser(f *testing.F, format string, seeds ...string) {
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := Parse(format, "fuzz", b)
		if err != nil {
			if inv != nil {
				t.Fatal("partial inventory returned with an error")
			}
			return
		}
		for _, in := range inv {
			if in.ID == "" {
				t.Fatalf("instance without id: %+v", in)
			}
		}
	})
}

func FuzzParseAWS(f *testing.F) { fuzzParser(f, "aws", "testdata/aws.json") }
func FuzzParseK8s(f *testing.F) { fuzzParser(f, "k8s", "testdata/k8s.json") }
func FuzzParseCSV(f *testing.F) { fuzzParser(f, "csv", "testdata/hosts.csv") }

// BenchmarkPlan100k classifies 100,000 instances against a ledger of 1,000 releases.
func BenchmarkPlan100k(b *testing.B) {
	st := ledger.NewState()
	_ = st
	l, err := ledger.Open("file://" + b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	a := ledger.DefaultActor()
	for i := 0; i < 1000; i++ {
		if _, err := ledger.RecordRelease(ctx, l, rec(fmt.Sprintf("1.%d", i), fmt.Sprintf("us-east-1:ami-%017d", i)), a); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := ledger.Promote(ctx, l, "web@1.999", "prod", nil, "", a); err != nil {
		b.Fatal(err)
	}
	st, _ = l.State(ctx)
	inv := make([]Instance, 100000)
	for i := range inv {
		inv[i] = Instance{ID: fmt.Sprintf("i-%017d", i), Provider: "aws", Region: "us-east-1", Image: fmt.Sprintf("ami-%017d", i%1200)}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := Build(st, "prod", inv, Batch{Percent: 10})
		if err != nil || len(p.Batches) != 10 {
			b.Fatal(err, len(p.Batches))
		}
	}
}

func TestPlanUnverified(t *testing.T) {
	l, rs := demoLedger(t)
	st, _ := l.State(context.Background())
	inv := []Instance{{ID: "a", Image: rs["1.0.0"].Image.Digest}, {ID: "b", Image: rs["1.1.0"].Image.Digest}}
	bad := func(rel *ledger.Release) error {
		if rel.Record.Version == "1.0.0" {
			return fmt.Errorf("identity mismatch")
		}
		return nil
	}
	p, err := BuildVerified(st, "prod", inv, Batch{N: 5}, bad)
	if err != nil || len(p.ReplaceNow) != 1 || p.ReplaceNow[0].Reason != "unverified: web@1.0.0: identity mismatch" || len(p.Current) != 1 {
		t.Fatalf("plan = %+v, %v", p, err)
	}
	// An unverifiable head fails the plan.
	if _, err := BuildVerified(st, "prod", inv, Batch{N: 5}, func(*ledger.Release) error { return fmt.Errorf("no") }); err == nil {
		t.Fatal("plan with an unverifiable head")
	}
}
