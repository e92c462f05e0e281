package e2e_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserOpensOffline: once loaded, the app opens from its service
// worker when the server cannot be reached, and says it is offline
// instead of failing.
func TestBrowserOpensOffline(t *testing.T) {
	requireChromium(t)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	olga := newPerson(t, ctx, "olga")
	olga.signUp(srv.url)
	olga.run(chromedp.Click(chromedp.CSS("#logout")))
	olga.waitFor("logged out", `!document.getElementById('login-view').hidden && !localStorage.getItem('poosms.remember')`, 10*time.Second)
	olga.logIn(srv.url, true)
	olga.waitFor("the service worker keeps the shell", `navigator.serviceWorker.controller !== null`, 20*time.Second)
	olga.waitFor("the shell cached", `(window.cached = window.cached || caches.keys().then((k) => Promise.all(k.map((n) => caches.open(n).then((c) => c.keys())))).then((l) => { window.shellSize = l.flat().length; })), window.shellSize >= 6`, 20*time.Second)
	srv.stop(t)
	olga.run(chromedp.Reload())
	olga.sees("You are offline.", 20*time.Second)
	olga.waitFor("the app's own page", `!!document.getElementById('login-view') && document.body.dataset.connection === 'offline'`, 5*time.Second)
	olga.shot("offline")
}

// TestSlixmppInterop: the browser client and slixmpp (another client
// library) exchange files (OOB), reactions, corrections and nudges, and
// each shows what the other sent.
func TestSlixmppInterop(t *testing.T) {
	requireChromium(t)
	if err := exec.Command("/usr/bin/python3", "-c", "import slixmpp").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-slixmpp is missing (%v); install it with apt-get install python3-slixmpp", err)
		}
		t.Skipf("python3-slixmpp is missing: %v", err)
	}
	srv := startServer(t)
	register(t, srv.url, "sam")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ann := newPerson(t, ctx, "ann")
	ann.signUp(srv.url)

	host, port, _ := net.SplitHostPort(srv.c2s)
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/slixmpp_messenger.py", host, port, "localhost", "ann", password)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	got := map[string]string{}
	wait := func(what string, within time.Duration) string {
		t.Helper()
		deadline := time.After(within * patience)
		for {
			if v, ok := got[what]; ok {
				return v
			}
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("slixmpp ended before %s", what)
				}
				t.Logf("slixmpp: %s", l)
				if strings.HasPrefix(l, "GOT ") {
					k, v, _ := strings.Cut(strings.TrimPrefix(l, "GOT "), " ")
					got[k] = v
				} else {
					got[l] = ""
				}
			case <-deadline:
				t.Fatalf("slixmpp: no %s within %s", what, within*patience)
			}
		}
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	wait("READY", 30*time.Second)

	ann.fill("Add a contact", "sam")
	ann.press("Add")
	ann.waitFor("sam online", `document.querySelector('`+contactSel("sam@localhost")+`[data-presence="available"]')`, 20*time.Second)
	ann.openChat("sam@localhost")

	// What slixmpp sends shows here: a file, a corrected message, a nudge.
	ann.waitFor("sam's file", `[...document.querySelectorAll('#messages li.msg.in .file-card')].some((c) => c.innerText.includes('notes-from-sam.txt'))`, 20*time.Second)
	ann.waitFor("sam's correction", `[...document.querySelectorAll('#messages li.msg.in')].some((m) => m.innerText.includes('Hello again from slixmpp') && m.innerText.includes('edited')) && !document.body.innerText.includes('Hello from slixmpp')`, 20*time.Second)
	ann.sees("sam@localhost sent you a nudge!", 20*time.Second)

	// What the browser sends reaches slixmpp.
	ann.say("Hi sam")
	ann.waitFor("sam's reaction", lastMessage("out")+`?.querySelector('.reaction')?.textContent === '❤️ 1'`, 20*time.Second)
	textID := eval[string](ann, lastMessage("out")+`.dataset.id`)
	ann.pressIn(`[...document.querySelectorAll('#messages li.msg.in')].find((m) => m.innerText.includes('Hello again'))`, "React to this message")
	ann.pressIn(`[...document.querySelectorAll('#messages li.msg.in')].find((m) => m.innerText.includes('Hello again'))`, "thumbs up")
	ann.pressIn(lastMessage("out"), "Edit message")
	ann.fill("Message", "Hi sam!\r")
	ann.run(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{picture(t, "for-sam.png", 50, 50)}))
	ann.waitFor("nudge button", `!document.getElementById('nudge-btn').disabled`, 5*time.Second)
	ann.press("Nudge")

	if v := wait("text", 20*time.Second); v != "Hi sam" {
		t.Errorf("slixmpp got the text %q", v)
	}
	if v := wait("reaction", 20*time.Second); v != "sam-1 👍" {
		t.Errorf("slixmpp got the reaction %q, want sam-1 👍", v)
	}
	if v := wait("correction", 20*time.Second); v != textID+" Hi sam!" {
		t.Errorf("slixmpp got the correction %q, want %q", v, textID+" Hi sam!")
	}
	if v := wait("file", 20*time.Second); !strings.HasSuffix(v, "/for-sam.png") {
		t.Errorf("slixmpp got the file %q", v)
	}
	wait("nudge", 20*time.Second)
	wait("PASS", 20*time.Second)
}
