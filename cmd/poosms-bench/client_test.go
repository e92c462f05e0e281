package main

import (
	"os"
	"testing"

	"github.com/spf13/pflag"
)

func TestClientFlags(t *testing.T) {
	var c clientFlags
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.register(fs, "where", "who")
	if err := fs.Parse([]string{"--addr", "a:1,b:2", "--user-prefix", "u", "--mechanism", "PLAIN"}); err != nil {
		t.Fatal(err)
	}
	want := clientFlags{addr: "a:1,b:2", domain: "localhost", userPrefix: "u", password: "bench-password", mechanism: "PLAIN"}
	if c != want {
		t.Errorf("parsed %+v, want %+v", c, want)
	}
	if u := fs.Lookup("addr").Usage; u != "where" {
		t.Errorf("--addr usage %q", u)
	}
	if u := fs.Lookup("user-prefix").Usage; u != "who" {
		t.Errorf("--user-prefix usage %q", u)
	}
	if got := c.username(12); got != "u12" {
		t.Errorf("username(12) = %q", got)
	}
}

func TestServerSampler(t *testing.T) {
	s := sampleServer(os.Getpid())
	s.watchPeak()
	if rss, err := s.rss(); err != nil || rss <= 0 {
		t.Errorf("rss() = %d, %v", rss, err)
	}
	if cpu, ok := s.cpu(); !ok || cpu < 0 {
		t.Errorf("cpu() = %v, %v", cpu, ok)
	}
	if peak := s.peakRSS(); peak <= 0 {
		t.Errorf("peakRSS() = %d", peak)
	}

	none := sampleServer(0)
	none.watchPeak()
	if _, ok := none.cpu(); ok {
		t.Error("cpu() without a pid succeeded")
	}
	if _, err := none.rss(); err == nil {
		t.Error("rss() without a pid succeeded")
	}
	if peak := none.peakRSS(); peak != 0 {
		t.Errorf("peakRSS() without a pid = %d", peak)
	}
}
