// Package e2e_test drives the browser client in real headless Chromium
// against a real poosmsd: people sign up, add each other, chat and hold a
// video call.
package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const chromiumPath = "/usr/bin/chromium"

// patience stretches every deadline in waitFor.
const patience = 2

// ---- the server ----

type server struct {
	url     string
	c2s     string // the STARTTLS client address
	cmd     *exec.Cmd
	done    chan error
	stopped bool
}

// stop ends poosmsd now (the network is gone, as far as browsers see).
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	// Tests run in their package's folder, web/e2e.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// freePort finds a loopback port free for TCP and for UDP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatal("no free loopback port")
	return 0
}

// poosmsd is built once for the package's tests.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func buildServer(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "poosms-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "poosmsd")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/poosmsd")
		build.Dir = repoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build poosmsd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// startServer runs poosmsd on loopback ports; extra flags are added.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	bin := buildServer(t)
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }
	httpAddr, c2sAddr := addr(), addr()
	logPath := filepath.Join(dir, "poosmsd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve",
		"--data-dir", filepath.Join(dir, "data"),
		"--domain", "localhost",
		"--http-addr", httpAddr,
		"--metrics-addr", "",
		"--c2s-addr", c2sAddr,
		"--c2s-tls-addr", "",
		"--media-udp-addr", addr(),
		"--media-tcp-addr", "",
		"--turn-addr", addr(),
		"--turn-allow-peers", "127.0.0.0/8",
		"--s2s-addr", "",
		"--log-level", "info",
		// Files are sent to the page's own origin.
		"--upload-url", "http://" + httpAddr + "/upload",
	}, extra...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{url: "http://" + httpAddr, c2s: c2sAddr, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		if s.stopped {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("poosmsd exit: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
			t.Error("poosmsd did not stop within 20s of SIGTERM")
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("poosmsd log (last 6000 bytes):\n%s", tail(string(b), 6000))
			}
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("poosmsd exited at start: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("poosmsd not healthy within 30s")
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// ---- browsers ----

// person is one browser with its own profile, logged in as name.
type person struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func newPerson(t *testing.T, ctx context.Context, name string) *person {
	return newPersonWith(t, ctx, name, true)
}

// newPersonWith starts a browser; fakeMedia gives it a fake camera and
// microphone, without it the browser has none.
func newPersonWith(t *testing.T, ctx context.Context, name string, fakeMedia bool) *person {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1100, 800),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-device-for-media-stream", fakeMedia),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("auto-select-desktop-capture-source", "Entire screen"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	listen := func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.Trim(string(a.Value), `"`))
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				t.Logf("[%s console.%s] %s", name, ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			t.Logf("[%s exception] %s", name, exceptionText(ev.ExceptionDetails))
		}
	}
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithListener(listen))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	// The first run starts the browser and must not carry a timeout: the
	// browser lives as long as that run's context.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	return &person{t: t, name: name, ctx: bctx}
}

func (p *person) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](p *person, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is true, or fails the
// test with what after the deadline.
func (p *person) waitFor(what, expr string, within time.Duration) {
	p.t.Helper()
	// The deadlines below are what a person would accept on an idle
	// machine; CI machines run other tests beside four browsers.
	within *= patience
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			diag, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById('banner').textContent + ' | ' + (document.body.dataset.connection||'') + ' | ' + document.getElementById('call-notice').textContent + ' | tiles: ' + [...document.querySelectorAll('#grid .tile')].map(t => t.querySelector('figcaption').textContent + '=' + (t.dataset.jid || t.dataset.key)).join(', ') + '\n' + (window.poosmsTrace || []).slice(-20).join('\n')`))
			p.t.Fatalf("%s: %s: not within %s (err %v; page: %s)", p.name, what, within, err, diag)
		}
		select {
		case <-tick.C:
		case <-p.ctx.Done():
			p.t.Fatalf("%s: %s: %v", p.name, what, p.ctx.Err())
		}
	}
}

func (p *person) screenshot(dir, name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
}

func js(s string) string { return strconv.Quote(s) }

const password = "correct horse battery"

// signUp registers through the client's inline form, which logs in.
func (p *person) signUp(url string) {
	p.t.Helper()
	p.run(chromedp.Navigate(url+"/"),
		chromedp.Click(chromedp.CSS("#tab-signup")),
		chromedp.SendKeys(chromedp.CSS("#signup-username"), p.name),
		chromedp.SendKeys(chromedp.CSS("#signup-password"), password),
		chromedp.SendKeys(chromedp.CSS("#signup-confirm"), password),
		chromedp.Click(chromedp.CSS("#signup-form button[type=submit]")),
	)
	p.waitOnline()
}

func (p *person) waitOnline() {
	p.t.Helper()
	p.waitFor("logged in", `!document.getElementById('app-view').hidden && document.getElementById('me').dataset.jid === `+js(p.name+"@localhost")+
		` && document.body.dataset.connection === 'online'`, 20*time.Second)
}

func (p *person) logIn(url string, remember bool) {
	p.t.Helper()
	acts := []chromedp.Action[chromedp.Void]{chromedp.Navigate(url + "/"),
		chromedp.WaitVisible(chromedp.CSS("#login-username")),
		chromedp.SendKeys(chromedp.CSS("#login-username"), p.name),
		chromedp.SendKeys(chromedp.CSS("#login-password"), password),
	}
	if remember {
		acts = append(acts, chromedp.Click(chromedp.CSS("#login-remember")))
	}
	acts = append(acts, chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	p.run(acts...)
	p.waitOnline()
}

// press activates a button from the keyboard (focus, Enter), which does
// not depend on where the button is while the call grid changes.
func press(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), kb.Enter)
}

func contactSel(jid string) string { return `#contacts li[data-jid="` + jid + `"]` }

// clickInPage clicks the element sel finds, inside the page: lists drawn
// again on every presence change may drop a node that one DevTools call
// found before the next one clicks it.
func (p *person) clickInPage(sel string) {
	p.t.Helper()
	p.waitFor("something to click at "+sel, `(() => { const b = document.querySelector(`+js(sel)+`); b?.click(); return !!b })()`, 5*time.Second)
}

func (p *person) openChat(jid string) {
	p.t.Helper()
	p.clickInPage(contactSel(jid) + " button.open")
	p.waitFor("chat with "+jid+" open", `document.getElementById('chat-title').textContent === `+js(jid), 5*time.Second)
}

func (p *person) say(text string) {
	p.t.Helper()
	p.run(chromedp.SendKeys(chromedp.CSS("#compose"), text+"\r"))
}

func lastMessage(dir string) string {
	return `[...document.querySelectorAll('#messages li.msg.` + dir + `')].at(-1)`
}

// tileOf is a JavaScript expression for the call tile of the participant
// with this nickname in the room (the call shows people as the room does).
func tileOf(nick string) string {
	return `document.querySelector('#grid .tile[data-nick="` + nick + `"]')`
}

// videoOf is a JavaScript expression for the video of nick's tile.
func videoOf(nick string) string {
	return tileOf(nick) + `?.querySelector('video')`
}

// seesVideo waits until nick's video plays: it has dimensions, its time
// advances, and its stream has a live audio track.
func (p *person) seesVideo(nick string) {
	p.t.Helper()
	v := videoOf(nick)
	p.waitFor("video of "+nick+" has frames", v+` && `+v+`.videoWidth > 0 && `+v+`.videoHeight > 0 && `+v+`.readyState >= 2`, 30*time.Second)
	t0 := eval[float64](p, v+`.currentTime`)
	p.waitFor("video of "+nick+" advances", fmt.Sprintf(`%s.currentTime > %f + 0.5 && !%s.paused`, v, t0, v), 15*time.Second)
	p.waitFor("audio of "+nick+" live", v+`.srcObject.getAudioTracks().some(t => t.readyState === 'live' && !t.muted)`, 15*time.Second)
	w, h := eval[int](p, v+`.videoWidth`), eval[int](p, v+`.videoHeight`)
	p.t.Logf("%s sees %s: %dx%d video", p.name, nick, w, h)
}

func (p *person) joinCall(room string) {
	p.t.Helper()
	p.run(chromedp.SendKeys(chromedp.CSS("#room-name"), room+"\r"))
	p.waitFor("room open", `document.getElementById('chat-title').textContent === `+js("#"+room), 5*time.Second)
	p.run(chromedp.Click(chromedp.CSS("#call-btn")))
	p.waitFor("in the call", `window.poosms.state.call && window.poosms.state.call.self && window.poosms.state.call.pc.connectionState === 'connected'`, 30*time.Second)
}

func TestBrowserChatAndCall(t *testing.T) {
	requireChromium(t)
	shots := os.Getenv("POOSMS_E2E_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", shots)

	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	alice := newPerson(t, ctx, "alice")
	bob := newPerson(t, ctx, "bob")

	// Sign up through the form; log out and in again (alice asks to be
	// remembered, so a reload logs her in without her password).
	alice.signUp(srv.url)
	bob.signUp(srv.url)
	alice.run(chromedp.Click(chromedp.CSS("#logout")))
	alice.waitFor("logged out", `!document.getElementById('login-view').hidden && !localStorage.getItem('poosms.remember')`, 10*time.Second)
	alice.logIn(srv.url, true)
	saved := eval[string](alice, `localStorage.getItem('poosms.remember') || ''`)
	if saved == "" || strings.Contains(saved, password) {
		t.Fatalf("remember me saved %q", saved)
	}
	alice.run(chromedp.Reload())
	alice.waitOnline()

	// Alice adds Bob; Bob accepts; each sees the other online.
	alice.run(chromedp.SendKeys(chromedp.CSS("#add-jid"), "bob\r"))
	bob.waitFor("alice's request", `document.querySelector('#requests li[data-jid="alice@localhost"] button.accept')`, 10*time.Second)
	bob.clickInPage(`#requests li[data-jid="alice@localhost"] button.accept`)
	alice.waitFor("bob online", `document.querySelector('`+contactSel("bob@localhost")+`[data-presence="available"]')`, 10*time.Second)
	bob.waitFor("alice online", `document.querySelector('`+contactSel("alice@localhost")+`[data-presence="available"]')`, 10*time.Second)

	// Alice is busy, and says why.
	alice.run(chromedp.SetValue(chromedp.CSS("#my-show"), "dnd"),
		chromedp.SendKeys(chromedp.CSS("#my-status"), "In a meeting\r"))
	bob.waitFor("alice busy", `document.querySelector('`+contactSel("alice@localhost")+`[data-presence="dnd"] .status')?.textContent === 'In a meeting'`, 10*time.Second)

	// Chat both ways, with unread counts, typing and delivery receipts.
	alice.openChat("bob@localhost")
	alice.say("Hello Bob!")
	bob.waitFor("unread count", `document.querySelector('`+contactSel("alice@localhost")+` .unread')?.textContent === '1'`, 10*time.Second)
	alice.waitFor("delivered", lastMessage("out")+`?.dataset.state === 'delivered'`, 10*time.Second)
	bob.openChat("alice@localhost")
	bob.waitFor("alice's message", lastMessage("in")+`?.querySelector('.body').textContent === 'Hello Bob!'`, 5*time.Second)
	bob.waitFor("unread cleared", `!document.querySelector('`+contactSel("alice@localhost")+` .unread')`, 5*time.Second)
	bob.run(chromedp.SendKeys(chromedp.CSS("#compose"), "Hi Alice, nice to"))
	alice.waitFor("bob typing", `document.getElementById('typing').textContent.includes('typing')`, 10*time.Second)
	bob.run(chromedp.SendKeys(chromedp.CSS("#compose"), " see you here.\r"))
	alice.waitFor("bob's reply", lastMessage("in")+`?.querySelector('.body').textContent === 'Hi Alice, nice to see you here.'`, 10*time.Second)
	alice.waitFor("typing cleared", `document.getElementById('typing').textContent === ''`, 5*time.Second)
	bob.waitFor("reply delivered", lastMessage("out")+`?.dataset.state === 'delivered'`, 10*time.Second)

	// A dropped connection comes back by itself and loses nothing.
	eval[bool](alice, `window.poosms.conn.drop(), true`)
	alice.waitFor("reconnecting shown", `document.body.dataset.connection !== 'online'`, 5*time.Second)
	bob.say("Are you still there?")
	alice.waitFor("back online", `document.body.dataset.connection === 'online'`, 20*time.Second)
	alice.waitFor("message sent while away", lastMessage("in")+`?.querySelector('.body').textContent === 'Are you still there?'`, 10*time.Second)
	alice.say("Yes, reconnected.")
	bob.waitFor("alice after reconnect", lastMessage("in")+`?.querySelector('.body').textContent === 'Yes, reconnected.'`, 10*time.Second)
	alice.screenshot(shots, "chat-alice")
	bob.screenshot(shots, "chat-bob")

	// Both join one conference and see and hear each other.
	alice.joinCall("standup")
	bob.joinCall("standup")
	alice.seesVideo("bob")
	bob.seesVideo("alice")
	// The call shows people as the room does: alice, the room's owner and
	// so a moderator, sees bob's address; bob, a participant in a
	// semi-anonymous room, sees alice's nickname only.
	alice.waitFor("bob's address on his tile", tileOf("bob")+`.dataset.jid.startsWith('bob@localhost/')`, 5*time.Second)
	if got := eval[string](bob, tileOf("alice")+`.dataset.jid`); got != "" {
		t.Errorf("bob, a participant in a semi-anonymous room, sees alice's address %q on her tile", got)
	}

	// The room has its chat beside the call.
	alice.say("Standup starts now.")
	bob.waitFor("room message", lastMessage("in")+`?.querySelector('.body').textContent === 'Standup starts now.' && `+
		lastMessage("in")+`.querySelector('.who').textContent === 'alice'`, 10*time.Second)
	alice.waitFor("own room message", lastMessage("out")+`?.querySelector('.body').textContent === 'Standup starts now.'`, 10*time.Second)
	alice.screenshot(shots, "call-alice")
	bob.screenshot(shots, "call-bob")

	// A third person joins, is seen, and leaves.
	carol := newPerson(t, ctx, "carol")
	carol.signUp(srv.url)
	// Alice refuses Carol's contact request.
	carol.run(chromedp.SendKeys(chromedp.CSS("#add-jid"), "alice\r"))
	alice.waitFor("carol's request", `document.querySelector('#requests li[data-jid="carol@localhost"] button.refuse')`, 10*time.Second)
	alice.run(press(`#requests li[data-jid="carol@localhost"] button.refuse`))
	alice.waitFor("request gone", `!document.querySelector('#requests li') && document.getElementById('requests-box').hidden`, 5*time.Second)
	carol.waitFor("refused", `document.querySelector('`+contactSel("alice@localhost")+` .status')?.textContent === 'not sharing presence'`, 10*time.Second)
	carol.joinCall("standup")
	carol.seesVideo("alice")
	carol.seesVideo("bob")
	alice.seesVideo("carol")
	carol.screenshot(shots, "call-carol")
	carol.run(press("#leave-btn"))
	carol.waitFor("carol out of the call", `!window.poosms.state.call && document.getElementById('call-view').hidden`, 10*time.Second)
	alice.waitFor("carol's tile gone", `!`+tileOf("carol"), 10*time.Second)
	bob.waitFor("carol's tile gone", `!`+tileOf("carol"), 10*time.Second)
	bob.seesVideo("alice")

	// Someone without a camera is told so, and still sees and hears the others.
	carol.run(chromedp.Click(chromedp.CSS("#logout")))
	dave := newPersonWith(t, ctx, "dave", false)
	dave.signUp(srv.url)
	dave.joinCall("standup")
	dave.waitFor("no-camera notice", `document.getElementById('call-notice').textContent.includes('No camera')`, 10*time.Second)
	dave.seesVideo("bob")
	dave.waitFor("tiles for dave, alice and bob only", `[...document.querySelectorAll('#grid .tile figcaption')].map(f => f.textContent).sort().join() === 'You (no camera),alice,bob'`, 10*time.Second)
	bob.waitFor("dave's tile", tileOf("dave")+`?.querySelector('figcaption').textContent === 'dave'`, 10*time.Second)
	dave.screenshot(shots, "call-without-camera")
	dave.run(press("#leave-btn"))
	bob.waitFor("dave's tile gone", `!`+tileOf("dave"), 10*time.Second)

	// Mute and camera off are shown on the controls.
	bob.run(press("#mute-btn"), press("#camera-btn"))
	bob.waitFor("muted", `document.getElementById('mute-btn').getAttribute('aria-pressed') === 'true' && `+
		`document.getElementById('camera-btn').getAttribute('aria-pressed') === 'true' && `+
		`!window.poosms.state.call.local.getAudioTracks()[0].enabled && !window.poosms.state.call.local.getVideoTracks()[0].enabled`, 5*time.Second)

	// Screen sharing replaces Bob's camera for the others.
	bob.run(press("#screen-btn"))
	bob.waitFor("screen shared or refused", `window.poosms.state.call.sharing || document.getElementById('call-notice').textContent.includes('Screen sharing')`, 10*time.Second)
	if eval[bool](bob, `!!window.poosms.state.call.sharing`) {
		bob.waitFor("sharing shown", `document.getElementById('screen-btn').getAttribute('aria-pressed') === 'true'`, 5*time.Second)
		alice.seesVideo("bob")
		bob.run(press("#screen-btn"))
		bob.waitFor("sharing stopped", `!window.poosms.state.call.sharing && document.getElementById('screen-btn').getAttribute('aria-pressed') === 'false'`, 5*time.Second)
	} else {
		t.Log("this Chromium refused screen capture: " + eval[string](bob, `document.getElementById('call-notice').textContent`))
	}

	// Alice leaves too; Bob's grid shows only himself.
	alice.run(press("#leave-btn"))
	bob.waitFor("alice's tile gone", `document.querySelectorAll('#grid .tile').length === 1`, 10*time.Second)

	// Bob goes offline; Alice's message waits for him and keeps its time.
	bob.run(chromedp.Click(chromedp.CSS("#logout")))
	bob.waitFor("logged out", `!document.getElementById('login-view').hidden`, 10*time.Second)
	alice.waitFor("bob offline", `document.querySelector('`+contactSel("bob@localhost")+`[data-presence="offline"]')`, 10*time.Second)
	alice.openChat("bob@localhost")
	alice.say("See you tomorrow.")
	alice.waitFor("accepted by the server", lastMessage("out")+`?.dataset.state === 'sent'`, 10*time.Second)
	sentAt := eval[string](alice, lastMessage("out")+`.querySelector('time').dateTime`)
	bob.logIn(srv.url, false)
	bob.waitFor("unread offline message", `document.querySelector('`+contactSel("alice@localhost")+` .unread')?.textContent === '1'`, 10*time.Second)
	bob.openChat("alice@localhost")
	bob.waitFor("offline message", lastMessage("in")+`?.querySelector('.body').textContent === 'See you tomorrow.' && `+
		lastMessage("in")+`.querySelector('.meta').textContent.includes('while you were away')`, 10*time.Second)
	// Bob's page was reloaded at logout: the earlier conversation comes
	// back from the server's archive, in order.
	bob.waitFor("history from the archive", `[...document.querySelectorAll('#messages li.msg .body')].map(b => b.textContent).join('|') === `+
		js("Hello Bob!|Hi Alice, nice to see you here.|Are you still there?|Yes, reconnected.|See you tomorrow."), 10*time.Second)
	shownAt := eval[string](bob, lastMessage("in")+`.querySelector('time').dateTime`)
	t1, err1 := time.Parse(time.RFC3339Nano, sentAt)
	t2, err2 := time.Parse(time.RFC3339Nano, shownAt)
	if err1 != nil || err2 != nil || t2.Sub(t1).Abs() > 2*time.Second {
		t.Errorf("offline message sent at %s shown with time %s", sentAt, shownAt)
	}
	alice.waitFor("delivered once bob is back", lastMessage("out")+`?.dataset.state === 'delivered'`, 10*time.Second)
	bob.screenshot(shots, "offline-message")

	// At phone width the open conversation takes the whole screen, with a
	// way back to the list.
	bob.run(chromedp.EmulateViewport(390, 800))
	bob.waitFor("phone layout", `getComputedStyle(document.getElementById('sidebar')).display === 'none' && `+
		`getComputedStyle(document.getElementById('back')).display !== 'none' && `+
		`document.getElementById('messages').getBoundingClientRect().width <= 390`, 5*time.Second)
	bob.screenshot(shots, "phone-chat")
	bob.run(press("#back"))
	bob.waitFor("list shown", `getComputedStyle(document.getElementById('sidebar')).display !== 'none' && document.getElementById('chat-view').hidden`, 5*time.Second)

	// Bob removes Alice (the button asks once more); she stops seeing him.
	bob.openChat("alice@localhost")
	bob.run(press("#remove-contact"))
	bob.waitFor("asked to confirm", `document.getElementById('remove-contact').textContent.startsWith('Really remove')`, 5*time.Second)
	bob.run(press("#remove-contact"))
	bob.waitFor("alice removed", `!document.querySelector('`+contactSel("alice@localhost")+`') && document.getElementById('chat-view').hidden`, 10*time.Second)
	alice.waitFor("bob no longer shared", `document.querySelector('`+contactSel("bob@localhost")+`[data-presence="offline"] .status')?.textContent === 'not sharing presence'`, 10*time.Second)
}

func exceptionText(d *runtime.ExceptionDetails) string {
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d)", s, d.URL, d.LineNumber)
}
