package main

import (
	"slices"
	"testing"

	"poosms.org/poosms/config"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/s2s"
	"poosms.org/poosms/stanza"
)

// fedNode starts an in-process node serving domain, federating on a
// loopback address, its streams to other domains routed as given.
func fedNode(t *testing.T, domain, s2sAddr string, routes map[string]string, edit func(c *config.Config)) *testNode {
	t.Helper()
	cfg := testConfig(t, "")
	cfg.Domain = domain
	cfg.S2SAddr, cfg.S2SRoutes = s2sAddr, routes
	cfg.S2STimeout = 3e9
	if edit != nil {
		edit(&cfg)
	}
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	addUser(t, cfg, "bob", "bob-password")
	return n
}

func (n *testNode) side() fedSide { return fedSide{domain: n.cfg.Domain, addr: n.c2sAddr()} }

// TestFederationBetweenTwoPoosmsServers: alice on alpha.test and bob on
// beta.test, each a poosmsd of its own with a self-signed certificate
// (so Server Dialback over TLS), chat, subscribe and see each other
// across the two servers; when beta.test dies, alice stops seeing bob
// online, and sees him again once it is back.
func TestFederationBetweenTwoPoosmsServers(t *testing.T) {
	alpha, beta, far := alphaAndBetaProcess(t)
	alice, _ := chatScenario(t, alpha.side(), far)

	out, in := streamMethods(alpha.s2s, "alpha.test", "beta.test")
	if !slices.Contains(out, s2s.MethodDialback) || !slices.Contains(in, s2s.MethodDialback) {
		t.Errorf("alpha's streams with beta: out %v, in %v; want dialback both ways", out, in)
	}

	// beta.test dies without a word: alice's view of bob goes offline.
	beta.Kill()
	want(t, alice, "bob going offline with his server", isPresence("bob@beta.test/phone", "unavailable"))

	// Back, bob logs in again and alice sees him.
	beta.Start(t)
	bob := far.login(t, "bob", "phone")
	want(t, alice, "bob back online", isPresence("bob@beta.test/phone", ""))
	bob.Send(chatMessage("alice@alpha.test", "back again"))
	want(t, alice, "bob's message after the restart", isMessage("bob@beta.test/phone", "back again"))
}

// alphaAndBetaProcess starts alpha.test in the test process and
// beta.test as a poosmsd process of its own (to be killed), federating
// through static routes, with bob's account on beta.test.
func alphaAndBetaProcess(t *testing.T) (*testNode, *testenv.Daemon, fedSide) {
	t.Helper()
	bin := testenv.BuildPoosmsd(t)
	alphaS2S, betaS2S := testenv.FreeAddr(t), testenv.FreeAddr(t)
	alpha := fedNode(t, "alpha.test", alphaS2S, map[string]string{"beta.test": betaS2S}, nil)
	beta := testenv.NewDaemon(t, bin, "--domain", "beta.test", "--s2s-addr", betaS2S, "--s2s-tls-addr", "",
		"--s2s-route", "alpha.test="+alphaS2S, "--s2s-timeout", "3s")
	beta.Run(t, "bob-password\n", "user", "add", "bob")
	beta.Start(t)
	return alpha, beta, fedSide{domain: "beta.test", addr: beta.C2S}
}

// streamMethods lists the authentication methods of srv's streams
// between local and remote, outgoing and incoming.
func streamMethods(srv *s2s.Server, local, remote string) (out, in []string) {
	for _, st := range srv.Streams() {
		if st.Local != local || st.Remote != remote {
			continue
		}
		if st.Outgoing {
			out = append(out, st.Method)
		} else {
			in = append(in, st.Method)
		}
	}
	return out, in
}

// TestFederationWithCertificates: with certificates from a CA both
// servers trust, the streams authenticate with SASL EXTERNAL both ways.
func TestFederationWithCertificates(t *testing.T) {
	ca := newTestCA(t)
	alphaS2S, betaS2S := testenv.FreeAddr(t), testenv.FreeAddr(t)
	withCA := func(domain string) func(c *config.Config) {
		return func(c *config.Config) {
			c.TLSCert, c.TLSKey = ca.issue(t, domain, "conference."+domain, "upload."+domain)
			c.S2SCAFile = ca.file
			c.S2SSecureAuth = true
		}
	}
	alpha := fedNode(t, "alpha.test", alphaS2S, map[string]string{"beta.test": betaS2S}, withCA("alpha.test"))
	beta := fedNode(t, "beta.test", betaS2S, map[string]string{"alpha.test": alphaS2S}, withCA("beta.test"))

	alice := alpha.side().login(t, "alice", "desk")
	bob := beta.side().login(t, "bob", "phone")
	alice.Send(chatMessage("bob@beta.test", "certified"))
	want(t, bob, "alice's message", isMessage("alice@alpha.test/desk", "certified"))
	bob.Send(chatMessage("alice@alpha.test", "certified back"))
	want(t, alice, "bob's message", isMessage("bob@beta.test/phone", "certified back"))
	// alpha's upload service tells a user of another server what it is,
	// and serves him nothing.
	bob.Send(iq("get", "upload.alpha.test", "upload-info", stanza.New("http://jabber.org/protocol/disco#info", "query")))
	if r := want(t, bob, "the upload service's answer", isIQ("upload-info")); r.IQType() != stanza.ResultIQ {
		t.Errorf("a remote disco#info to the upload service got %s", r)
	}
	bob.Send(iq("get", "upload.alpha.test", "upload-slot", stanza.New("urn:xmpp:http:upload:0", "request").
		SetAttr("filename", "a.txt").SetAttr("size", "10")))
	if r := want(t, bob, "the upload service's refusal", isIQ("upload-slot")); stanza.ErrorCondition(r) != "forbidden" {
		t.Errorf("a remote slot request got %s", r)
	}
	for _, n := range []*testNode{alpha, beta} {
		other := "beta.test"
		if n == beta {
			other = "alpha.test"
		}
		out, in := streamMethods(n.s2s, n.cfg.Domain, other)
		if !slices.Equal(out, []string{s2s.MethodSASLExternal}) || !slices.Equal(in, []string{s2s.MethodSASLExternal}) {
			t.Errorf("%s's streams with %s: out %v, in %v; want SASL EXTERNAL both ways", n.cfg.Domain, other, out, in)
		}
	}
}

// TestFederationOff: with --s2s-addr empty, nothing federates and other
// domains are refused as before.
func TestFederationOff(t *testing.T) {
	cfg := testConfig(t, "")
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	if n.s2s != nil {
		t.Fatal("federation runs with --s2s-addr empty")
	}
	alice := fedSide{domain: cfg.Domain, addr: n.c2sAddr()}.login(t, "alice", "desk")
	alice.Send(chatMessage("bob@elsewhere.example", "anyone?"))
	r := want(t, alice, "the refusal", func(e *stanza.Element) bool { return e.Local == "message" && e.IsError() })
	if stanza.ErrorCondition(r) != "remote-server-not-found" {
		t.Fatalf("got %s", r)
	}
}
