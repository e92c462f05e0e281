package muc

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPasswordMatches(t *testing.T) {
	for _, tc := range []struct {
		given, want string
		ok          bool
	}{
		{"s3cret", "s3cret", true},
		{"s3cre", "s3cret", false},
		{"s3cret!", "s3cret", false},
		{"S3cret", "s3cret", false},
		{"", "s3cret", false},
		{"", "", true},
		{"s3cret\x00", "s3cret", false},
	} {
		if got := passwordMatches(tc.given, tc.want); got != tc.ok {
			t.Errorf("passwordMatches(%q, %q) = %v, want %v", tc.given, tc.want, got, tc.ok)
		}
	}
}

// TestPasswordTimingDoesNotLeak: guessing a room password must not be
// helped by timing. A guess that shares a long prefix with the password
// takes as long to refuse as one that differs in its first byte. (A plain
// string comparison stops at the first difference, which this test sees
// as a factor of hundreds.)
func TestPasswordTimingDoesNotLeak(t *testing.T) {
	const n = 1 << 20
	want := strings.Repeat("a", n)
	late := strings.Repeat("a", n-1) + "b"  // differs in the last byte
	early := "b" + strings.Repeat("a", n-1) // differs in the first byte
	// fastest returns the quickest of several timings of a refusal, which
	// is the least disturbed by the rest of the machine.
	fastest := func(given string) time.Duration {
		var ds []time.Duration
		for range 15 {
			start := time.Now()
			if passwordMatches(given, want) {
				t.Fatal("a wrong password matched")
			}
			ds = append(ds, time.Since(start))
		}
		return slices.Min(ds)
	}
	tLate, tEarly := fastest(late), fastest(early)
	if tLate > 4*tEarly || tEarly > 4*tLate {
		t.Errorf("a guess wrong in its last byte takes %v, one wrong in its first byte %v: the comparison stops early", tLate, tEarly)
	}
}
