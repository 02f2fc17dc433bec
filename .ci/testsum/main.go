// Command testsum reads the `go test -json` stream of one CI stage and
// prints what a reader of the CI log needs: one line per package, the
// output of every failed test, the output of packages that failed without a
// failing test (build errors, panics, timeouts), and counts of top-level
// tests and subtests apart. It appends the stage's `metric name=value`
// figures to a file and exits 1 when anything failed or when the stage ran
// no test at all (a -run filter that matches nothing after a rename).
//
// Usage: testsum -stage NAME [-prefix P] [-figures FILE] [-counts FILE] RESULT.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action      string
	Package     string
	ImportPath  string // build-output and build-fail events
	Test        string
	Output      string
	Elapsed     float64
	FailedBuild string
}

// counts are one stage's results; top-level tests and subtests apart.
type counts struct {
	passed, failed, skipped          int // top-level tests
	subPassed, subFailed, subSkipped int // subtests (name contains "/")
	failedPackages                   int // packages that failed, for any reason
}

var metricRE = regexp.MustCompile(`metric ([a-z0-9_]+)=(\S+)`)

func main() {
	stage := flag.String("stage", "", "stage name printed with the counts")
	prefix := flag.String("prefix", "", "prefix for the stage's metric names (e.g. pg_)")
	figures := flag.String("figures", "", "file the stage's metric lines are appended to")
	countsFile := flag.String("counts", "", "file the stage's count line is appended to")
	flag.Parse()
	if flag.NArg() != 1 || *stage == "" {
		fmt.Fprintln(os.Stderr, "usage: testsum -stage NAME [-prefix P] [-figures FILE] [-counts FILE] RESULT.json")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	defer f.Close()
	c, metrics, err := summarize(f, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	line := fmt.Sprintf("%s: tests %d passed, %d failed, %d skipped; subtests %d passed, %d failed, %d skipped; failed packages %d",
		*stage, c.passed, c.failed, c.skipped, c.subPassed, c.subFailed, c.subSkipped, c.failedPackages)
	fmt.Println(line)
	if *countsFile != "" {
		appendLine(*countsFile, line)
	}
	if *figures != "" {
		for _, m := range metrics {
			appendLine(*figures, "metric "+*prefix+m)
		}
	}
	switch {
	case c.failed > 0 || c.subFailed > 0 || c.failedPackages > 0:
		os.Exit(1)
	case c.passed+c.failed+c.skipped == 0:
		fmt.Printf("%s: FAIL: the stage ran no test (does its -run filter still match?)\n", *stage)
		os.Exit(1)
	case c.passed == 0:
		fmt.Printf("%s: FAIL: every test of the stage skipped\n", *stage)
		os.Exit(1)
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	fmt.Fprintln(f, line)
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
}

// summarize reads a go test -json stream, writes the per-package and
// failure report to w, and returns the counts and the metric figures as
// "name=value" (a name logged by several top-level tests gets the test's
// name appended, so that no figure hides another).
func summarize(r io.Reader, w io.Writer) (counts, []string, error) {
	var c counts
	output := map[string][]string{}    // "pkg\x00test" -> output lines
	pkgOutput := map[string][]string{} // package-level output (no test)
	running := map[string]bool{}       // tests started and not finished
	type fig struct{ test, value string }
	figs := map[string][]fig{}
	var order []string

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// go test writes non-JSON lines for some failures (e.g. setup):
			// keep them visible.
			fmt.Fprintf(w, "  | %s\n", line)
			continue
		}
		pkg := e.Package
		if pkg == "" {
			pkg = e.ImportPath
		}
		key := pkg + "\x00" + e.Test
		switch e.Action {
		case "output", "build-output":
			if e.Test == "" {
				pkgOutput[pkg] = append(pkgOutput[pkg], e.Output)
				continue
			}
			output[key] = append(output[key], e.Output)
			for _, m := range metricRE.FindAllStringSubmatch(e.Output, -1) {
				top, _, _ := strings.Cut(e.Test, "/")
				if _, ok := figs[m[1]]; !ok {
					order = append(order, m[1])
				}
				figs[m[1]] = append(figs[m[1]], fig{top, m[2]})
			}
		case "build-fail":
			fmt.Fprintf(w, "FAIL %s [build failed]\n", pkg)
			for _, l := range pkgOutput[pkg] {
				fmt.Fprintf(w, "  | %s", l)
			}
			c.failedPackages++
		case "run":
			running[key] = true
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "fail" {
					if e.FailedBuild != "" {
						continue // counted at its build-fail event
					}
					c.failedPackages++
					fmt.Fprintf(w, "FAIL %s (%.1fs)\n", pkg, e.Elapsed)
					// panics, timeouts and TestMain failures print here,
					// and what the tests still running at that moment said
					printTail(w, pkgOutput[pkg], 60)
					for k := range running {
						if p, test, _ := strings.Cut(k, "\x00"); p == pkg {
							fmt.Fprintf(w, "--- UNFINISHED %s %s\n", pkg, test)
							printTail(w, output[k], 40)
						}
					}
				} else {
					fmt.Fprintf(w, "%-4s %s (%.1fs)\n", map[string]string{"pass": "ok", "skip": "?"}[e.Action], pkg, e.Elapsed)
				}
				continue
			}
			sub := strings.Contains(e.Test, "/")
			switch {
			case e.Action == "pass" && sub:
				c.subPassed++
			case e.Action == "pass":
				c.passed++
			case e.Action == "skip" && sub:
				c.subSkipped++
			case e.Action == "skip":
				c.skipped++
			case sub:
				c.subFailed++
				fmt.Fprintf(w, "--- FAIL %s %s\n", pkg, e.Test)
				printTail(w, output[key], 40)
			default:
				c.failed++
				fmt.Fprintf(w, "--- FAIL %s %s\n", pkg, e.Test)
				printTail(w, output[key], 40)
			}
			delete(output, key)
			delete(running, key)
		}
	}
	if err := sc.Err(); err != nil {
		return c, nil, err
	}
	var metrics []string
	for _, name := range order {
		fs := figs[name]
		tests := map[string]bool{}
		for _, f := range fs {
			tests[f.test] = true
		}
		for _, f := range fs {
			n := name
			if len(tests) > 1 {
				n = name + "_" + strings.ToLower(strings.TrimPrefix(f.test, "Test"))
			}
			metrics = append(metrics, n+"="+f.value)
		}
	}
	sort.Strings(metrics)
	return c, metrics, nil
}

func printTail(w io.Writer, lines []string, n int) {
	if len(lines) > n {
		fmt.Fprintf(w, "  | … %d lines before\n", len(lines)-n)
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  | %s", strings.TrimRight(l, "\n")+"\n")
	}
}
