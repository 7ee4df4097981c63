package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger"
	"github.com/fixity-dev/packer-plugin-fixity/internal/ledger/signed"
	"github.com/fixity-dev/packer-plugin-fixity/internal/rollout"
)

// exitReplaceNow is `rollout plan`'s CI gate: something runs a revoked, unsigned or
// never-recorded hash and must be replaced now.
const exitReplaceNow = 3

func init() {
	register(command{
		name:    "rollout",
		summary: "plan replace-by-hash rollouts from fleet inventories against a ledger channel",
		run: func(args []string, stdout, stderr io.Writer) int {
			return subcommands("rollout", map[string]func([]string, io.Writer, io.Writer) int{
				"plan": rolloutPlan,
			}, args, stdout, stderr)
		},
	})
}

func rolloutPlan(args []string, stdout, stderr io.Writer) int {
	c := newReleaseCmd("rollout plan", "--ledger URL --channel C --inventory FORMAT:FILE… [--batch N|P%] [-o json|table]", stderr)
	var channel, batch string
	var inventories releaseStrings
	c.fs.StringVar(&channel, "channel", "", "channel the machines should follow (required)")
	c.fs.Var(&inventories, "inventory", "FORMAT:FILE, repeatable; FORMAT is aws (describe-instances JSON), k8s (kubectl get pods -o json) or csv (id,image)")
	c.fs.StringVar(&batch, "batch", "", "batch size: a count (10) or a share of the fleet (25%); default one batch")
	var verify bool
	var id releaseIdentity
	c.fs.BoolVar(&verify, "verify", false, "re-verify the stored bundle of every release in use against the pins (unverified = replace now)")
	id.register(c.fs)
	pos, ok := c.parse(args)
	if !ok {
		return exitUsage
	}
	if len(pos) > 0 || channel == "" || len(inventories) == 0 {
		fmt.Fprintln(stderr, "fixity rollout plan: pass --channel and at least one --inventory FORMAT:FILE (no positional arguments)")
		return exitUsage
	}
	b, err := rollout.ParseBatch(batch)
	if err != nil {
		fmt.Fprintf(stderr, "fixity rollout plan: %v\n", err)
		return exitUsage
	}
	var fleet []rollout.Instance
	for _, spec := range inventories {
		in, err := rollout.ReadInventory(spec)
		if err != nil {
			fmt.Fprintf(stderr, "fixity rollout plan: %v\nno plan was made: fix the inventory and run again\n", err)
			return exitUsage
		}
		fleet = append(fleet, in...)
	}
	l, ok := c.open()
	if !ok {
		return exitUsage
	}
	ctx, cancel := releaseCtx()
	defer cancel()
	st, err := l.State(ctx)
	if err != nil {
		return c.fail(err)
	}
	var check func(*ledger.Release) error
	if verify {
		opts, err := id.options()
		if err != nil {
			fmt.Fprintf(stderr, "fixity rollout plan: --verify: %v\n", err)
			return exitUsage
		}
		check = func(rel *ledger.Release) error {
			_, err := signed.Verify(ctx, l, rel, opts)
			return err
		}
	}
	p, err := rollout.BuildVerified(st, channel, fleet, b, check)
	var uh *rollout.UnverifiedHeadError
	if errors.As(err, &uh) {
		return c.fail(err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fixity rollout plan: %v\n", err)
		return exitUsage
	}
	switch c.output {
	case "json":
		releaseJSON(stdout, p)
	case "table":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tACTION\tBATCH\tREASON")
		batchOf := map[string]int{}
		for i, bt := range p.Batches {
			for _, id := range bt {
				batchOf[id] = i + 1
			}
		}
		for _, it := range p.ReplaceNow {
			fmt.Fprintf(tw, "%s\treplace-now\t%d\t%s\n", it.ID, batchOf[it.ID], it.Reason)
		}
		for _, id := range p.Replace {
			fmt.Fprintf(tw, "%s\treplace\t%d\tolder release\n", id, batchOf[id])
		}
		for _, id := range p.Unknown {
			fmt.Fprintf(tw, "%s\tunknown\t-\tinventory does not say which image runs\n", id)
		}
		for _, id := range p.Current {
			fmt.Fprintf(tw, "%s\tcurrent\t-\t\n", id)
		}
		tw.Flush()
	default:
		target := "(channel empty: nothing approved)"
		if p.Target != nil {
			target = fmt.Sprintf("%s@%s %s", p.Target.Name, p.Target.Version, p.Target.Image)
		}
		fmt.Fprintf(stdout, "channel %s → %s\n", p.Channel, target)
		fmt.Fprintf(stdout, "  current:     %d\n  replace:     %d\n  replace now: %d\n  unknown:     %d\n", len(p.Current), len(p.Replace), len(p.ReplaceNow), len(p.Unknown))
		for _, it := range p.ReplaceNow {
			fmt.Fprintf(stdout, "  replace now %s: %s\n", it.ID, it.Reason)
		}
		for i, bt := range p.Batches {
			fmt.Fprintf(stdout, "  batch %d: %s\n", i+1, strings.Join(bt, " "))
		}
	}
	if p.Urgent() {
		fmt.Fprintf(stderr, "fixity rollout plan: %d machine(s) run a revoked, unsigned or never-recorded image: replace them now (exit %d)\n", len(p.ReplaceNow), exitReplaceNow)
		return exitReplaceNow
	}
	return exitOK
}
