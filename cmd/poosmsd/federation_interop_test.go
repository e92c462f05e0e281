package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/s2s"
)

// netnsEnv names, inside the test's network namespace, that namespace.
const netnsEnv = "POOSMS_FEDERATION_NETNS"

// The interop test's world: each server on a loopback address of its
// own, names resolved by the namespace's hosts file.
const fedHosts = `127.0.0.1 localhost
127.0.0.2 poosms.test conference.poosms.test upload.poosms.test directory.poosms.test
127.0.0.3 prosody.test conference.prosody.test
127.0.0.4 ejabberd.test conference.ejabberd.test
`

// TestFederationInterop federates poosmsd (poosms.test) with Debian's
// Prosody (prosody.test) and ejabberd (ejabberd.test), found through DNS
// as the operating system resolves it (no SRV records: the domains' A
// records on port 5269), first with self-signed certificates (Server
// Dialback over TLS), then with certificates from a CA every server
// trusts and valid certificates required (SASL EXTERNAL). Real clients on
// each side run the federation scenarios (chat and presence, rooms both
// ways, PEP for OMEMO and avatars, vCards and disco); with dialback, the
// far server is also killed and restarted.
//
// Name resolution must stay inside the test, so the test runs itself
// again inside a network namespace it creates, whose /etc/hosts maps the
// test domains to their loopback addresses.
func TestFederationInterop(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		runInNetns(t, "TestFederationInterop")
		return
	}
	for _, variant := range []struct {
		name   string
		secure bool // a test CA, valid certificates required
	}{{"dialback", false}, {"sasl-external", true}} {
		t.Run(variant.name, func(t *testing.T) {
			var ca *testCA
			caFile := ""
			if variant.secure {
				ca = newTestCA(t)
				caFile = ca.file
			}
			certFor := func(domain string) peerCerts {
				cert, key := issueCert(t, ca, domain, "conference."+domain, "upload."+domain)
				return peerCerts{cert: cert, key: key, ca: caFile}
			}
			peers := []*farServer{
				startFedProsody(t, "prosody.test", "127.0.0.3", certFor("prosody.test"), variant.secure),
				startFedEjabberd(t, "ejabberd.test", "127.0.0.4", certFor("ejabberd.test"), variant.secure),
			}
			method := s2s.MethodDialback
			if variant.secure {
				method = s2s.MethodSASLExternal
			}
			for _, far := range peers {
				t.Run(far.name, func(t *testing.T) {
					n := interopNode(t, certFor("poosms.test"), variant.secure)
					alice, _ := chatScenario(t, n.side(), far.side())
					out, in := streamMethods(n.s2s, "poosms.test", far.domain)
					if !slices.Contains(out, method) || len(in) == 0 || !allAre(in, method) {
						t.Errorf("streams with %s: out %v, in %v; want %s", far.domain, out, in, method)
					}
					roomAlice, roomBob := theirUsersInOurRooms(t, n.side(), far.side())
					ourUsersInTheirRooms(t, n.side(), far.side(), "conference."+far.domain, roomAlice, roomBob)
					pepScenario(t, n.side(), far.side())
					discoVCardScenario(t, n.side(), far.side())
					if variant.secure {
						return
					}
					// The far server crashes: alice stops seeing bob online,
					// and he leaves her room; once it is back, bob reaches
					// her again.
					far.kill()
					want(t, alice, "bob going offline with his server", isPresence("bob@"+far.domain+"/phone", "unavailable"))
					want(t, roomAlice, "bob removed from the room with his server", isRoomPresence("lobby@conference.poosms.test/Bob", "unavailable", 333))
					far.start(t)
					bob := far.side().login(t, "bob", "phone")
					if far.durableRoster {
						want(t, alice, "bob back online", isPresence("bob@"+far.domain+"/phone", ""))
					}
					bob.Send(chatMessage("alice@poosms.test", "back again"))
					want(t, alice, "bob's message after the restart", isMessage("bob@"+far.domain+"/phone", "back again"))
				})
			}
		})
	}
}

func allAre(list []string, v string) bool {
	for _, x := range list {
		if x != v {
			return false
		}
	}
	return true
}

// interopNode starts poosmsd for poosms.test on 127.0.0.2, federating on
// the standard ports of that address (inside the namespace).
func interopNode(t *testing.T, certs peerCerts, secure bool) *testNode {
	t.Helper()
	cfg := testConfig(t, "")
	cfg.Domain = "poosms.test"
	cfg.C2SAddr, cfg.C2STLSAddr, cfg.HTTPAddr = "127.0.0.2:0", "", "127.0.0.2:0"
	cfg.S2SAddr, cfg.S2STLSAddr = "127.0.0.2:5269", "127.0.0.2:5270"
	cfg.TLSCert, cfg.TLSKey = certs.cert, certs.key
	cfg.S2SCAFile, cfg.S2SSecureAuth = certs.ca, secure
	cfg.S2STimeout = 5e9
	n := startTestNode(t, cfg)
	addUser(t, cfg, "alice", "alice-password")
	return n
}

// runInNetns runs the test named by name again inside a network namespace
// made for it, whose hosts file is fedHosts and whose DNS server answers
// nothing, and fails if it fails there.
func runInNetns(t *testing.T, name string) {
	if os.Geteuid() != 0 {
		testenv.Require(t, "the federation interop test creates a network namespace, which needs root")
	}
	ip := testenv.Command(t, "ip", "apt-get install -y iproute2")
	testenv.Command(t, "prosody", "apt-get install -y prosody")
	testenv.Command(t, "ejabberdctl", "apt-get install -y ejabberd")
	ns := fmt.Sprintf("poosmsfed%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	etc := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	writeFile(t, filepath.Join(etc, "hosts"), fedHosts)
	// Nothing answers DNS in the namespace: SRV lookups fail at once.
	writeFile(t, filepath.Join(etc, "resolv.conf"), "nameserver 127.0.0.1\n")
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	run("netns", "exec", ns, "ip", "link", "set", "lo", "up")

	args := []string{"netns", "exec", ns, os.Args[0], "-test.run=^" + name + "$", "-test.count=1", "-test.timeout=10m"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(ip, args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	if err != nil || testing.Verbose() {
		t.Logf("inside network namespace %s:\n%s", ns, out)
	}
	if err != nil {
		t.Fatalf("the test failed inside its network namespace: %v", err)
	}
}
