package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// A binary built from a git checkout names its commit, whatever GOFLAGS
// the machine sets; "poosmsd version" used to say "dev" for every build.
// The source is copied into a new repository first: Go finds no VCS in a
// git worktree (.git is a file there), and the copy has the working tree
// as its one commit.
func TestVersionNamesTheCommit(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	files, err := exec.Command("git", "-C", strings.TrimSpace(string(root)), "ls-files", "-co", "--exclude-standard").Output()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for _, f := range strings.Split(strings.TrimSpace(string(files)), "\n") {
		b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(root)), f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = src
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-qm", "poosms")
	rev := git("rev-parse", "HEAD")

	bin := filepath.Join(t.TempDir(), "poosmsd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/poosmsd")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto") // this machine sets -buildvcs=false in go env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Go stamps a pseudo-version (v0.0.0-DATE-REVISION) and the commit.
	short, _, _ := strings.Cut(strings.TrimPrefix(string(out), "poosmsd "), " ")
	if !strings.HasSuffix(short, rev[:12]) || !strings.Contains(string(out), "(commit "+rev) {
		t.Fatalf("poosmsd version = %q; want the revision %s and the commit", out, rev[:12])
	}
}

// Without VCS information the binary says so, and how it was built.
func TestVersionWithoutVCS(t *testing.T) {
	defer func(f func() (*debug.BuildInfo, bool)) { buildInfo = f }(buildInfo)
	buildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Path: "poosms.org/poosms", Version: "(devel)"}}, true
	}
	if got := versionString(); !strings.HasPrefix(got, "devel (no version control information") || !strings.Contains(got, "go1.") {
		t.Errorf("versionString() = %q", got)
	}
	buildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true
	}
	if got := shortVersion(); got != "v1.2.3" {
		t.Errorf("go install …@v1.2.3: shortVersion() = %q", got)
	}
	version = "v2.0.0"
	defer func() { version = "" }()
	if got := versionString(); !strings.HasPrefix(got, "v2.0.0 (go1.") {
		t.Errorf("release build: versionString() = %q", got)
	}
}
