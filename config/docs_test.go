package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/configuration.md lists exactly the settings "poosmsd --help" shows:
// a new setting without its row, or a row for a setting that is gone,
// fails here.
func TestConfigurationDocMatchesHelp(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	// The YAML keys in the first column of the settings table(s).
	documented := map[string]bool{}
	key := regexp.MustCompile("`([a-z0-9_]+)`")
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range key.FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}
	// The flags of --help, as YAML keys.
	var help []string
	flag := regexp.MustCompile(`^\s+--([a-z0-9-]+)`)
	for _, line := range strings.Split(Usage(), "\n") {
		if m := flag.FindStringSubmatch(line); m != nil {
			help = append(help, strings.ReplaceAll(m[1], "-", "_"))
		}
	}
	if len(help) < 40 {
		t.Fatalf("read only %d flags from --help:\n%s", len(help), Usage())
	}
	for _, k := range help {
		if !documented[k] {
			t.Errorf("--help shows %s but docs/configuration.md has no row for `%s`", strings.ReplaceAll(k, "_", "-"), k)
		}
	}
	for k := range documented {
		if !slices.Contains(help, k) {
			t.Errorf("docs/configuration.md documents `%s`, which --help does not show", k)
		}
	}
}
