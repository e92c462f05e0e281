package main

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set by a release build (-ldflags "-X main.version=v1.2.0").
// Without it, the version comes from what Go stamps into every binary:
// the module version (go install …@v1.2.0) or the git revision of the
// checkout it was built from.
var version string

// buildInfo is what Go recorded about this binary; tests replace it.
var buildInfo = debug.ReadBuildInfo

// shortVersion names this build in one word: the release version,
// "devel-REVISION[-dirty]" for a build from a git checkout, or "devel".
// It goes into logs and the XEP-0092 software version answer.
func shortVersion() string {
	short, _ := describeBuild()
	return short
}

// versionString is shortVersion with how the binary was built, for
// "poosmsd version".
func versionString() string {
	short, detail := describeBuild()
	return short + " (" + detail + ")"
}

func describeBuild() (short, detail string) {
	var rev, when string
	modified := false
	mod := ""
	if bi, ok := buildInfo(); ok {
		mod = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var parts []string
	switch {
	case version != "":
		short = version
	case mod != "" && mod != "(devel)":
		short = mod
	case rev != "":
		short = "devel-" + rev[:min(12, len(rev))]
		if modified {
			short += "-dirty"
		}
	default:
		short = "devel"
	}
	if rev != "" {
		c := "commit " + rev
		if when != "" {
			c += " of " + when
		}
		if modified {
			c += " with uncommitted changes"
		}
		parts = append(parts, c)
	} else if version == "" {
		parts = append(parts, "no version control information: built outside a git checkout or with -buildvcs=false")
	}
	parts = append(parts, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return short, strings.Join(parts, "; ")
}
