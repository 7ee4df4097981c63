// Command fixity is the Fixity CLI for security teams, operators and the runtime
// inside images. It stays thin: it parses flags and calls the library packages.
//
// Exit codes (every verb): 0 success, 1 a negative answer (deny, not verified, lint
// errors, failing tests), 2 unusable input or invocation; `rollout plan` also uses 3.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/fixity-dev/packer-plugin-fixity/version"
)

// Exit codes shared by every verb.
const (
	exitOK       = 0
	exitNegative = 1
	exitUsage    = 2
)

// command is one verb (or verb group) of the CLI. Each verb lives in its own file and
// registers itself from init, so verbs can be added without touching this file.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("fixity: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(stdout, "fixity", version.String())
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fixity: unknown command %q; run `fixity help` for the list\n", args[0])
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fixity <command> [arguments]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "version", "print the version")
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 negative answer (deny, not verified, findings), 2 unusable input")
}

// subcommands dispatches "fixity GROUP VERB args…" to one of verbs.
func subcommands(group string, verbs map[string]func([]string, io.Writer, io.Writer) int, args []string, stdout, stderr io.Writer) int {
	names := make([]string, 0, len(verbs))
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: fixity %s %s [arguments]\n", group, strings.Join(names, "|"))
		return exitUsage
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fixity %s: unknown verb %q; want one of %s\n", group, args[0], strings.Join(names, ", "))
		return exitUsage
	}
	return v(args[1:], stdout, stderr)
}
