// Command report turns the `go test -json` (test2json) streams that
// hack/conformance/run.sh wrote, one per engine and moby integration
// package, into build/conformance/results.json and a Markdown summary.
//
//	report -dir build/conformance -moby v28.3.3 -engines "jevm dockerd" -pkgs "container image"
//
// Layout read: DIR/ENGINE/engine.txt (one line: the engine's version and
// API version), DIR/ENGINE/PKG.json (test2json events; PKG with "/" as "_"),
// DIR/ENGINE/PKG.status ("EXIT SECONDS"). Counts are of top-level tests; a
// test that started and never ended (the package timed out or crashed) is a
// failure, and one that failed only because it starts a dockerd of its own
// is "local". Subtests are listed in the per-test outcomes but not counted.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type event struct {
	Action  string
	Test    string
	Package string
	Output  string
	Elapsed float64
}

// PackageResult is one package's run against one engine.
type PackageResult struct {
	Pass int `json:"pass"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
	// Local counts tests that failed because they start a dockerd of
	// their own (testutil/daemon), which a remote-daemon run cannot do:
	// not applicable, neither passed nor failed.
	Local    int     `json:"local"`
	Seconds  float64 `json:"seconds"`
	Exit     int     `json:"exit"`
	TimedOut bool    `json:"timed_out,omitempty"`
	// Error is set when the package failed outside any test (TestMain,
	// a panic, a missing binary).
	Error string `json:"error,omitempty"`
	// Tests maps every test and subtest name to pass, fail, skip,
	// "incomplete" (started, no result: timeout or crash) or, for
	// top-level tests, "local" (see Local).
	Tests map[string]string `json:"tests"`
	// SkipReasons and FailOutput keep a short excerpt for top-level tests.
	SkipReasons map[string]string `json:"skip_reasons,omitempty"`
	FailOutput  map[string]string `json:"fail_output,omitempty"`
}

// Results is results.json.
type Results struct {
	MobyVersion string                               `json:"moby_version"`
	Date        string                               `json:"date"`
	Machine     string                               `json:"machine"`
	RunRegex    string                               `json:"run_regex,omitempty"`
	Timeout     string                               `json:"package_timeout"`
	Engines     map[string]string                    `json:"engines"`
	Packages    []string                             `json:"packages"`
	Results     map[string]map[string]*PackageResult `json:"results"` // package -> engine -> result
	TotalSecs   map[string]float64                   `json:"total_seconds"`
}

func main() {
	dir := flag.String("dir", "build/conformance", "results directory")
	moby := flag.String("moby", "", "moby version tested")
	engines := flag.String("engines", "jevm dockerd", "engines, space separated")
	pkgs := flag.String("pkgs", "", "packages, space separated (relative to integration/)")
	run := flag.String("run", "", "the -test.run regex, if any")
	timeout := flag.String("timeout", "", "per-package timeout")
	machine := flag.String("machine", "", "machine description")
	flag.Parse()

	res := Results{
		MobyVersion: *moby, Date: time.Now().UTC().Format(time.RFC3339), Machine: *machine,
		RunRegex: *run, Timeout: *timeout, Engines: map[string]string{},
		Packages: strings.Fields(*pkgs), Results: map[string]map[string]*PackageResult{},
		TotalSecs: map[string]float64{},
	}
	engs := strings.Fields(*engines)
	for _, e := range engs {
		b, _ := os.ReadFile(filepath.Join(*dir, e, "engine.txt"))
		res.Engines[e] = strings.TrimSpace(string(b))
	}
	for _, p := range res.Packages {
		res.Results[p] = map[string]*PackageResult{}
		for _, e := range engs {
			base := filepath.Join(*dir, e, strings.ReplaceAll(p, "/", "_"))
			r := parse(base)
			res.Results[p][e] = r
			res.TotalSecs[e] += r.Seconds
		}
	}
	out, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "results.json"), append(out, '\n'), 0o644); err != nil {
		fatal(err)
	}
	f, err := os.Create(filepath.Join(*dir, "results.md"))
	if err != nil {
		fatal(err)
	}
	writeMarkdown(f, &res, engs)
	f.Close()
	writeMarkdown(os.Stdout, &res, engs)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

func parse(base string) *PackageResult {
	r := &PackageResult{Tests: map[string]string{}, SkipReasons: map[string]string{}, FailOutput: map[string]string{}, Exit: -1}
	if b, err := os.ReadFile(base + ".status"); err == nil {
		fmt.Sscan(string(b), &r.Exit, &r.Seconds)
	}
	f, err := os.Open(base + ".json")
	if err != nil {
		r.Error = "not run: " + err.Error()
		return r
	}
	defer f.Close()
	output := map[string]*strings.Builder{}
	var pkgOut strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		switch ev.Action {
		case "run":
			if ev.Test != "" {
				r.Tests[ev.Test] = "incomplete"
			}
		case "output":
			if ev.Test == "" {
				pkgOut.WriteString(ev.Output)
				if strings.Contains(ev.Output, "panic: test timed out") {
					r.TimedOut = true
				}
				continue
			}
			// a subtest's output counts as its top-level test's
			top, _, _ := strings.Cut(ev.Test, "/")
			b := output[top]
			if b == nil {
				b = &strings.Builder{}
				output[top] = b
			}
			if b.Len() < 64<<10 {
				b.WriteString(ev.Output)
			}
			if strings.Contains(ev.Output, "panic: test timed out") {
				r.TimedOut = true
			}
		case "pass", "fail", "skip":
			if ev.Test != "" {
				r.Tests[ev.Test] = ev.Action
			}
		}
	}
	if r.Exit == 124 || r.Exit == 137 {
		r.TimedOut = true
	}
	for name, st := range r.Tests {
		if strings.Contains(name, "/") {
			continue
		}
		switch st {
		case "pass":
			r.Pass++
		case "skip":
			r.Skip++
			r.SkipReasons[name] = excerpt(output[name], "SKIP", 200)
		default:
			if b := output[name]; b != nil && isLocal(b.String()) {
				r.Local++
				r.Tests[name] = "local"
				continue
			}
			r.Fail++
			r.FailOutput[name] = excerpt(output[name], "", 600)
		}
	}
	if r.Exit != 0 && r.Fail == 0 && r.Local == 0 {
		r.Error = lastLines(pkgOut.String(), 8)
		if r.Error == "" {
			r.Error = fmt.Sprintf("exit status %d", r.Exit)
		}
	}
	return r
}

// excerpt returns the interesting part of a test's output, each line
// once: for skips the lines naming the reason (marker "SKIP" or a
// file.go:line), for failures the file.go:line assertion lines and panics,
// else whatever is not a === / --- marker.
func excerpt(b *strings.Builder, marker string, n int) string {
	if b == nil {
		return ""
	}
	var keep, other []string
	seen := map[string]bool{}
	for _, l := range strings.Split(b.String(), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || seen[t] || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		seen[t] = true
		if (marker != "" && strings.Contains(l, marker)) || strings.Contains(l, ".go:") || strings.HasPrefix(t, "panic:") {
			keep = append(keep, t)
		} else {
			other = append(other, t)
		}
	}
	if len(keep) == 0 {
		keep = other
	}
	s := strings.Join(keep, " | ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// isLocal tells a test that failed because it could not start a dockerd
// of its own: testutil/daemon's message, whatever dockerd was found (the
// harness's stub, or a real one that refused the test's arguments).
func isLocal(out string) bool {
	return strings.Contains(out, "failed to start daemon with arguments") ||
		strings.Contains(out, "tried to start its own dockerd")
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

func writeMarkdown(w io.Writer, res *Results, engs []string) {
	fmt.Fprintf(w, "moby %s, %s, %s", res.MobyVersion, res.Date, res.Machine)
	if res.RunRegex != "" {
		fmt.Fprintf(w, ", -test.run %q", res.RunRegex)
	}
	fmt.Fprintf(w, ", per-package timeout %s\n\n", res.Timeout)
	for _, e := range engs {
		fmt.Fprintf(w, "- %s: %s (tests ran %.0f s)\n", e, res.Engines[e], res.TotalSecs[e])
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "| package |")
	for _, e := range engs {
		fmt.Fprintf(w, " %s pass / fail / skip / local | %s time |", e, e)
	}
	fmt.Fprint(w, "\n|---|")
	for range engs {
		fmt.Fprint(w, "---|---|")
	}
	fmt.Fprintln(w)
	tot := map[string]*PackageResult{}
	for _, e := range engs {
		tot[e] = &PackageResult{}
	}
	for _, p := range res.Packages {
		fmt.Fprintf(w, "| %s |", p)
		for _, e := range engs {
			r := res.Results[p][e]
			note := ""
			if r.TimedOut {
				note = " (timed out)"
			} else if r.Error != "" {
				note = " (package error)"
			}
			fmt.Fprintf(w, " %d / %d / %d / %d%s | %.0f s |", r.Pass, r.Fail, r.Skip, r.Local, note, r.Seconds)
			tot[e].Local += r.Local
			tot[e].Pass += r.Pass
			tot[e].Fail += r.Fail
			tot[e].Skip += r.Skip
			tot[e].Seconds += r.Seconds
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "| **total** |")
	for _, e := range engs {
		fmt.Fprintf(w, " **%d / %d / %d / %d** | %.0f s |", tot[e].Pass, tot[e].Fail, tot[e].Skip, tot[e].Local, tot[e].Seconds)
	}
	fmt.Fprintln(w)
	if len(engs) < 2 {
		return
	}
	// Failures of the first engine, with the others' outcome of the same test.
	first := engs[0]
	fmt.Fprintf(w, "\nTop-level tests that fail on %s (outcome on %s):\n\n", first, strings.Join(engs[1:], ", "))
	for _, p := range res.Packages {
		r := res.Results[p][first]
		var names []string
		for n := range r.FailOutput {
			names = append(names, n)
		}
		sort.Strings(names)
		if r.Error != "" && r.Fail == 0 {
			fmt.Fprintf(w, "- %s: package error: %s\n", p, strings.ReplaceAll(firstLine(r.Error), "|", "\\|"))
		}
		for _, n := range names {
			var others []string
			for _, e := range engs[1:] {
				st := res.Results[p][e].Tests[n]
				if st == "" {
					st = "not run"
				}
				others = append(others, st)
			}
			fmt.Fprintf(w, "- %s %s: %s — %s\n", p, n, strings.Join(others, ", "), strings.ReplaceAll(r.FailOutput[n], "\n", " "))
		}
	}
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
