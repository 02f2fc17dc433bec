package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// minimumVersions are the lowest versions of the security-relevant
// dependencies we accept (in place of govulncheck, which cannot
// reach its database from CI). golang-jwt v5.2.2 fixed the excessive
// allocation in header parsing (CVE-2025-30204); the other two are the
// minimums that fix known vulnerabilities.
var minimumVersions = map[string]string{
	"github.com/golang-jwt/jwt/v5": "v5.2.2",
	"modernc.org/sqlite":           "v1.46.1",
	"github.com/mark3labs/mcp-go":  "v1.2.1",
}

// TestMinimumVersions checks each pinned module twice: the require line
// of go.mod (what a build selects) and the version linked into this test
// binary (what actually runs). A replace directive must not swap a pinned
// module for an older version or a local directory.
func TestMinimumVersions(t *testing.T) {
	gomod := findGoMod(t)
	f, err := os.Open(gomod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	requires, replaces, err := parseGoMod(f)
	if err != nil {
		t.Fatalf("%s: %v", gomod, err)
	}
	linked := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			v := d.Version
			if d.Replace != nil {
				v = d.Replace.Version // "" for a directory replacement
			}
			linked[d.Path] = v
		}
	} else {
		t.Error("no build info in the test binary")
	}
	ok := 0
	for mod, minimum := range minimumVersions {
		good := true
		req, found := requires[mod]
		switch {
		case !found:
			good = false
			t.Errorf("go.mod does not require %s", mod)
		case compareSemver(req, minimum) < 0:
			good = false
			t.Errorf("go.mod requires %s %s, want >= %s", mod, req, minimum)
		}
		if rep, found := replaces[mod]; found && (rep == "" || compareSemver(rep, minimum) < 0) {
			good = false
			t.Errorf("go.mod replaces %s with %q, want a version >= %s", mod, rep, minimum)
		}
		if v, found := linked[mod]; !found {
			good = false
			t.Errorf("%s is not linked into the test binary", mod)
		} else if v == "" || compareSemver(v, minimum) < 0 {
			good = false
			t.Errorf("linked %s is %q, want >= %s", mod, v, minimum)
		}
		if good {
			ok++
		}
	}
	t.Logf("metric pins_ok=%d/%d", ok, len(minimumVersions))
}

// findGoMod returns the go.mod above the working directory.
func findGoMod(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "go.mod")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// parseGoMod reads the require and replace directives of a go.mod, in
// their one-line and block forms. A replacement by a directory maps to "".
func parseGoMod(r io.Reader) (requires, replaces map[string]string, err error) {
	requires, replaces = map[string]string{}, map[string]string{}
	block := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "//")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		verb := block
		switch {
		case block != "" && fields[0] == ")":
			block = ""
			continue
		case block != "":
		case (fields[0] == "require" || fields[0] == "replace") && len(fields) == 2 && fields[1] == "(":
			block = fields[0]
			continue
		case fields[0] == "require" || fields[0] == "replace":
			verb, fields = fields[0], fields[1:]
		default:
			continue
		}
		switch verb {
		case "require":
			if len(fields) != 2 {
				return nil, nil, fmt.Errorf("line %d: malformed require %q", n, line)
			}
			requires[unquote(fields[0])] = fields[1]
		case "replace":
			// old [version] => new [version]
			arrow := slices.Index(fields, "=>")
			if arrow < 1 || arrow == len(fields)-1 {
				return nil, nil, fmt.Errorf("line %d: malformed replace %q", n, line)
			}
			v := ""
			if target := fields[arrow+1:]; len(target) == 2 {
				v = target[1]
			}
			replaces[unquote(fields[0])] = v
		}
	}
	return requires, replaces, sc.Err()
}

func TestParseGoMod(t *testing.T) {
	const in = `module example.com/m

go 1.26

require example.com/one v1.0.0 // indirect

require (
	example.com/two v2.1.0
	"example.com/three" v0.3.0 // indirect
)

replace example.com/two => example.com/fork v2.0.9

replace (
	example.com/three v0.3.0 => ../three
)
`
	requires, replaces, err := parseGoMod(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	wantReq := map[string]string{"example.com/one": "v1.0.0", "example.com/two": "v2.1.0", "example.com/three": "v0.3.0"}
	wantRep := map[string]string{"example.com/two": "v2.0.9", "example.com/three": ""}
	if !maps.Equal(requires, wantReq) || !maps.Equal(replaces, wantRep) {
		t.Errorf("parseGoMod = %v, %v; want %v, %v", requires, replaces, wantReq, wantRep)
	}
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// compareSemver compares two semantic versions "vMAJOR.MINOR.PATCH[-pre][+build]":
// -1, 0 or +1. A pre-release (and so a pseudo-version) sorts before its
// release; pre-release identifiers compare numerically or lexically per
// semver 2.0. An unparsable version sorts lowest.
func compareSemver(a, b string) int {
	pa, oka := parseSemver(a)
	pb, okb := parseSemver(b)
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	}
	for i := range 3 {
		if pa.num[i] != pb.num[i] {
			if pa.num[i] < pb.num[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case pa.pre == "" && pb.pre == "":
		return 0
	case pa.pre == "":
		return 1
	case pb.pre == "":
		return -1
	}
	ia, ib := strings.Split(pa.pre, "."), strings.Split(pb.pre, ".")
	for i := 0; i < len(ia) && i < len(ib); i++ {
		na, errA := strconv.ParseUint(ia[i], 10, 64)
		nb, errB := strconv.ParseUint(ib[i], 10, 64)
		switch {
		case errA == nil && errB == nil && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case errA == nil && errB != nil:
			return -1
		case errA != nil && errB == nil:
			return 1
		case errA != nil && errB != nil && ia[i] != ib[i]:
			if ia[i] < ib[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(ia) < len(ib):
		return -1
	case len(ia) > len(ib):
		return 1
	}
	return 0
}

type semver struct {
	num [3]uint64
	pre string
}

func parseSemver(v string) (semver, bool) {
	var s semver
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return s, false
	}
	rest, _, _ = strings.Cut(rest, "+")
	rest = strings.TrimSuffix(rest, "+incompatible")
	core, pre, hasPre := strings.Cut(rest, "-")
	if hasPre && pre == "" {
		return s, false
	}
	s.pre = pre
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return s, false
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return s, false
		}
		s.num[i] = n
	}
	return s, true
}

func TestCompareSemver(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"v5.3.1", "v5.2.2", 1},
		{"v5.2.2", "v5.2.2", 0},
		{"v5.2.1", "v5.2.2", -1},
		{"v1.62.0", "v1.46.1", 1},
		{"v1.9.0", "v1.46.1", -1}, // numeric, not lexical
		{"v1.2.1-rc.1", "v1.2.1", -1},
		{"v1.2.1-rc.2", "v1.2.1-rc.10", -1},
		{"v1.2.1-alpha", "v1.2.1-1", 1},
		{"v0.0.0-20250101000000-abcdef123456", "v0.0.1", -1},
		{"v1.2.1+meta", "v1.2.1", 0},
		{"garbage", "v0.0.0", -1},
		{"v1.2", "v1.2.0", -1},
	}
	for _, tc := range tests {
		if got := compareSemver(tc.a, tc.b); got != tc.want {
			t.Errorf("compareSemver(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
