package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// The helpers below find what a person finds: a control by the name it
// shows (its text, or its accessible name), an input by its label.

// byName is a JavaScript expression for the visible control named name.
func byName(name string) string {
	return `(() => { const want = ` + js(name) + `; return [...document.querySelectorAll('button, a, [role=tab], summary')].find((e) => {
		if (e.closest('[hidden]') || e.disabled) return false;
		const r = e.getBoundingClientRect(); if (!r.width && !r.height) return false;
		return (e.getAttribute('aria-label') || e.textContent).trim() === want; }) })()`
}

// fieldByLabel is a JavaScript expression for the control the visible
// label with this text names.
func fieldByLabel(label string) string {
	return `(() => { const want = ` + js(label) + `; const l = [...document.querySelectorAll('label')].find((l) => !l.closest('[hidden]') && l.textContent.trim() === want);
		return l && document.getElementById(l.htmlFor); })()`
}

// press clicks the control a person sees named name.
func (p *person) press(name string) {
	p.t.Helper()
	p.waitFor("a control named "+name, `(() => { const b = `+byName(name)+`; b?.click(); return !!b })()`, 10*time.Second)
}

// fill types text into the field labelled label, as a person would.
func (p *person) fill(label, text string) {
	p.t.Helper()
	p.waitFor("a field labelled "+label, `(() => { const f = `+fieldByLabel(label)+`; if (f) { f.dataset.e2e = 'fill'; f.value = ''; } return !!f })()`, 10*time.Second)
	p.run(chromedp.SendKeys(chromedp.CSS(`[data-e2e="fill"]`), text))
	eval[bool](p, `(() => { const f = document.querySelector('[data-e2e="fill"]'); delete f.dataset.e2e; f.dispatchEvent(new Event('change')); return true })()`)
}

// check ticks (or unticks) the checkbox labelled label.
func (p *person) check(label string, on bool) {
	p.t.Helper()
	p.waitFor("a checkbox labelled "+label, fmt.Sprintf(`(() => { const f = %s; if (f && f.checked !== %v) f.click(); return !!f && f.checked === %v })()`, fieldByLabel(label), on, on), 10*time.Second)
}

// sees waits until the page shows text.
func (p *person) sees(text string, within time.Duration) {
	p.t.Helper()
	p.waitFor("the page shows "+text, `document.body.innerText.includes(`+js(text)+`)`, within)
}

// shot writes a desktop and a phone screenshot of what p sees, when
// POOSMS_E2E_SCREENSHOTS names a folder.
func (p *person) shot(name string) {
	p.t.Helper()
	dir := os.Getenv("POOSMS_E2E_SCREENSHOTS")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	p.screenshot(dir, name+"-desktop")
	p.run(chromedp.EmulateViewport(390, 800))
	p.screenshot(dir, name+"-phone")
	p.run(chromedp.EmulateViewport(1100, 800))
}

func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is missing (%v); install it with apt-get install chromium", err)
		}
		t.Skipf("chromium is missing: %v", err)
	}
}

// picture writes a w×h PNG with a colour gradient and returns its path.
func picture(t *testing.T, name string, w, h int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// befriend has a add b and b accept.
func befriend(a, b *person) {
	a.t.Helper()
	a.fill("Add a contact", b.name)
	a.press("Add")
	b.press("Accept " + a.name + "@localhost")
	a.waitFor(b.name+" online", `document.querySelector('`+contactSel(b.name+"@localhost")+`[data-presence="available"]')`, 15*time.Second)
	b.waitFor(a.name+" online", `document.querySelector('`+contactSel(a.name+"@localhost")+`[data-presence="available"]')`, 15*time.Second)
}

// at binds p to the (sub)test t.
func (p *person) at(t *testing.T) *person { c := *p; c.t = t; return &c }

// TestBrowserMessenger walks through what the client offers besides chat
// and room calls, with two people (ann and ben) in two browsers: polish,
// profiles and avatars, finding people, files, nudges, reactions, edits
// and removals, one-to-one calls, notifications, rooms and languages.
func TestBrowserMessenger(t *testing.T) {
	requireChromium(t)
	srv := startServer(t, "--upload-max-bytes", "300000")
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	ann := newPerson(t, ctx, "ann")
	ben := newPerson(t, ctx, "ben")
	ann.signUp(srv.url)
	ben.signUp(srv.url)

	t.Run("Polish", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		// The add-contact hint is not clipped at desktop width.
		if clipped := eval[bool](ann, `(() => { const i = document.getElementById('add-jid'); const c = document.createElement('canvas').getContext('2d');
			c.font = getComputedStyle(i).font; return c.measureText(i.placeholder).width > i.clientWidth - 10 })()`); clipped {
			t.Error("the add-contact hint is clipped")
		}
		befriend(ann, ben)
		// The notice of the request stays out of the way of the top bar.
		if covered := eval[bool](ann, `(() => { const b = document.getElementById('banner'); if (b.hidden) return false;
			const r = b.getBoundingClientRect(), s = document.getElementById('my-show').getBoundingClientRect();
			return !(r.bottom <= s.top || r.top >= s.bottom || r.right <= s.left || r.left >= s.right) })()`); covered {
			t.Error("the notice covers the status menu")
		}
		// Custom status messages show next to the contact.
		ann.fill("Status message", "Out for lunch\r")
		ben.waitFor("ann's status", `document.querySelector('`+contactSel("ann@localhost")+` .status')?.textContent === 'Out for lunch'`, 10*time.Second)
		ann.shot("contacts")
	})

	t.Run("Profile", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		ann.press("Profile")
		ann.fill("Display name", "Ann Archer")
		ann.run(chromedp.SetUploadFiles(chromedp.CSS(`#avatar-file`), []string{picture(t, "me.png", 320, 200)}))
		ann.waitFor("zoom enabled", `!`+fieldByLabel("Zoom")+`.disabled`, 5*time.Second)
		ann.check("List me in the people directory", true)
		ann.fill("Interests (separated by commas)", "archery, tea")
		ann.shot("profile")
		// Ben's page notes the photo hashes in ann's presence (XEP-0153).
		eval[bool](ben, `(() => { window.hashes = []; window.poosms.conn.addEventListener('stanza', (e) => {
			const s = e.detail; if (s.localName !== 'presence' || !s.getAttribute('from')?.startsWith('ann@localhost/')) return;
			const p = s.getElementsByTagNameNS('vcard-temp:x:update', 'photo')[0]; if (p && p.textContent) window.hashes.push(p.textContent); }); return true })()`)
		ann.press("Save profile")
		ann.sees("Profile saved.", 15*time.Second)
		// Ben sees her name, with her address as secondary text, and her
		// picture: in the list and in the conversation's header.
		ben.waitFor("ann's name", `document.querySelector('`+contactSel("ann@localhost")+` .name')?.textContent === 'Ann Archer' && `+
			`document.querySelector('`+contactSel("ann@localhost")+` .jid')?.textContent === 'ann@localhost' && `+
			`document.querySelector('`+contactSel("ann@localhost")+` img.avatar')?.naturalWidth === 128`, 20*time.Second)
		// The same picture, by the same hash, in her vCard, in her XEP-0084
		// metadata and in her presence.
		ben.waitFor("the hash in ann's presence", `window.hashes.length > 0`, 10*time.Second)
		inStep := eval[string](ben, `(async () => { try { const m = await import('/client/xmpp.js'); const c = window.poosms.conn;
			const v = await c.iq('get', 'ann@localhost', m.x('vCard', { xmlns: 'vcard-temp' }));
			const bin = v.getElementsByTagName('BINVAL')[0].textContent.replace(/\s+/g, '');
			const bytes = Uint8Array.from(atob(bin), (ch) => ch.charCodeAt(0));
			const sha = [...new Uint8Array(await crypto.subtle.digest('SHA-1', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
			const meta = await c.iq('get', 'ann@localhost', m.x('pubsub', { xmlns: 'http://jabber.org/protocol/pubsub' }, m.x('items', { node: 'urn:xmpp:avatar:metadata' })));
			const info = meta.getElementsByTagNameNS('urn:xmpp:avatar:metadata', 'info')[0];
			const data = await c.iq('get', 'ann@localhost', m.x('pubsub', { xmlns: 'http://jabber.org/protocol/pubsub' }, m.x('items', { node: 'urn:xmpp:avatar:data' }, m.x('item', { id: info.getAttribute('id') }))));
			const pep = data.getElementsByTagNameNS('urn:xmpp:avatar:data', 'data')[0].textContent.replace(/\s+/g, '');
			return [sha, info.getAttribute('id'), window.hashes.at(-1), pep === bin ? 'same data' : 'other data', info.getAttribute('width')].join(' ') } catch (e) { return 'error ' + e.condition + ' ' + e.stack } })()`)
		if f := strings.Fields(inStep); len(f) != 6 || f[0] != f[1] || f[0] != f[2] || f[3]+" "+f[4] != "same data" || f[5] != "128" {
			t.Errorf("vCard sha1, XEP-0084 id, presence hash, data, width: %s", inStep)
		}
		ben.press("Ann Archer, Available, Out for lunch")
		ben.waitFor("header", `document.getElementById('chat-title').textContent === 'Ann Archer' && document.getElementById('chat-jid').textContent === 'ann@localhost' && !document.getElementById('chat-avatar').hidden`, 10*time.Second)
	})

	t.Run("FindPeople", func(t *testing.T) {
		ben := ben.at(t)
		// Eve lists herself from another client; Ben finds her and adds her.
		register(t, srv.url, "eve")
		eve := xmppLogin(t, srv, "eve", "desk")
		if err := eve.SendRaw(`<presence/>`); err != nil {
			t.Fatal(err)
		}
		iq(t, eve, "directory.localhost", "set", `<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>`+
			`<field var='FORM_TYPE'><value>jabber:iq:register</value></field><field var='nick'><value>Eve Evergreen</value></field>`+
			`<field var='country'><value>FR</value></field><field var='interests'><value>tea</value><value>chess</value></field></x></query>`)
		ben.press("Find people")
		ben.fill("Interest", "tea")
		ben.press("Search")
		ben.sees("2 people found.", 10*time.Second)
		ben.waitFor("ann in the results", `document.querySelector('#find-results li[data-jid="ann@localhost"]')?.innerText.includes('Ann Archer')`, 10*time.Second)
		ben.sees("In your contacts", 5*time.Second)
		ben.shot("find-people")
		ben.press("Add Eve Evergreen as a contact")
		if _, err := eve.Expect(10*time.Second, func(e *stanza.Element) bool {
			return e.Local == "presence" && e.PresenceType() == stanza.SubscribePresence && strings.HasPrefix(e.From(), "ben@localhost")
		}); err != nil {
			t.Fatalf("eve got no contact request from ben: %v", err)
		}
		ben.waitFor("eve in ben's contacts", `document.querySelector('`+contactSel("eve@localhost")+`')`, 10*time.Second)
	})

	t.Run("Files", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		ann.openChat("ben@localhost")
		// A picture by the button (the file chooser it opens).
		ann.run(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{picture(t, "photo.png", 400, 300)}))
		ben.press("Ann Archer, Available, Out for lunch")
		ben.waitFor("a thumbnail", `document.querySelector('#messages li.msg.in .thumb img[alt="photo.png"]')?.naturalWidth === 400`, 20*time.Second)
		ben.press("Open picture photo.png")
		ben.waitFor("full size", `document.getElementById('viewer').open && document.getElementById('viewer-img').naturalWidth === 400`, 10*time.Second)
		ben.shot("picture")
		ben.press("Close")
		// A file dropped on the conversation, and a picture pasted.
		eval[bool](ann, `(() => { const dt = new DataTransfer(); dt.items.add(new File(['hello, ben!'], 'notes.txt', { type: 'text/plain' }));
			const v = document.getElementById('chat-view');
			v.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
			v.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })); return true })()`)
		ben.waitFor("a file card", `[...document.querySelectorAll('#messages li.msg.in .file-card')].some((c) => c.innerText.includes('notes.txt') && c.innerText.includes('11 bytes') && c.querySelector('a[href*="/upload/"]'))`, 20*time.Second)
		eval[bool](ann, `(async () => { const c = document.createElement('canvas'); c.width = 60; c.height = 40; c.getContext('2d').fillRect(0, 0, 30, 20);
			const blob = await new Promise((r) => c.toBlob(r, 'image/png')); const dt = new DataTransfer(); dt.items.add(new File([blob], 'pasted.png', { type: 'image/png' }));
			document.getElementById('compose').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })); return true })()`)
		ben.waitFor("the pasted picture", `document.querySelector('#messages li.msg.in .thumb img[alt="pasted.png"]')?.naturalWidth === 60`, 20*time.Second)
		// The message is what other clients expect: the URL as body and as OOB data.
		if ok := eval[bool](ben, `(() => { const m = window.poosms.state.chats.get('ann@localhost').messages.find((m) => m.file?.name === 'notes.txt'); return !!m && m.body === m.file.url })()`); !ok {
			t.Error("the file message does not carry its URL as body")
		}
		// Too large: refused with the limit.
		big := filepath.Join(t.TempDir(), "big.bin")
		if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 400000), 0o644); err != nil {
			t.Fatal(err)
		}
		ann.run(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{big}))
		ann.waitFor("too large", `document.querySelector('#uploads .error')?.textContent.includes('big.bin is too large to send (391 KB); the limit is 293 KB.')`, 15*time.Second)
		ann.shot("upload-error")
		ann.press("Dismiss")
		// Progress, and a cancel that sends nothing.
		mid := filepath.Join(t.TempDir(), "slow.bin")
		if err := os.WriteFile(mid, bytes.Repeat([]byte("y"), 250000), 0o644); err != nil {
			t.Fatal(err)
		}
		ann.cdp(func(ctx context.Context) error {
			if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
				MatchedNetworkConditions: []*network.Conditions{{URLPattern: srv.url + "/upload/*", DownloadThroughput: -1, UploadThroughput: 20000}}})
			return err
		})
		ann.run(chromedp.SetUploadFiles(chromedp.CSS(`#file-input`), []string{mid}))
		ann.waitFor("progress", `document.querySelector('#uploads progress')`, 10*time.Second)
		ann.shot("upload-progress")
		ann.press("Cancel sending slow.bin")
		ann.waitFor("cancelled", `!document.querySelector('#uploads li')`, 10*time.Second)
		ann.cdp(func(ctx context.Context) error {
			_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: []*network.Conditions{}})
			return err
		})
		n := eval[int](ben, `document.querySelectorAll('#messages li.msg.in').length`)
		ann.say("after the cancel")
		ben.waitFor("the next message", lastMessage("in")+`?.innerText.includes('after the cancel')`, 10*time.Second)
		if got := eval[int](ben, `document.querySelectorAll('#messages li.msg.in').length`); got != n+1 {
			t.Errorf("ben got %d messages after the cancelled upload, want 1 (the text)", got-n)
		}
	})

	t.Run("Nudge", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		ann.press("Nudge")
		ben.sees("Ann Archer sent you a nudge!", 10*time.Second)
		ben.waitFor("the window shook and buzzed", `document.body.dataset.shakes === '1' && window.poosms.alerts.played.includes('nudge')`, 5*time.Second)
		ann.sees("You nudged ben@localhost.", 5*time.Second)
		if !eval[bool](ann, `document.getElementById('nudge-btn').disabled`) {
			t.Error("the nudge button can be pressed again at once")
		}
		// A client that ignores the limit does not shake ben more than once.
		eval[bool](ann, `(async () => { const m = await import('/client/xmpp.js'); for (let i = 0; i < 5; i++)
			window.poosms.conn.send(m.x('message', { to: 'ben@localhost', type: 'headline' }, m.x('attention', { xmlns: 'urn:xmpp:attention:0' }))); return true })()`)
		ann.say("stop shaking")
		ben.waitFor("after the flood", lastMessage("in")+`?.innerText.includes('stop shaking')`, 10*time.Second)
		if got := eval[string](ben, `document.body.dataset.shakes`); got != "1" {
			t.Errorf("ben's window shook %s times, want 1", got)
		}
		ben.shot("nudge")
	})

	t.Run("ReactEditRemove", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		ann.openChat("ben@localhost")
		ben.press("Ann Archer, Available, Out for lunch")
		ann.say("Lunch at noon :)")
		ben.waitFor("emoticon as emoji", lastMessage("in")+`?.querySelector('.body')?.textContent === 'Lunch at noon 🙂'`, 10*time.Second)
		ben.pressIn(lastMessage("in"), "React to this message")
		ben.waitFor("the picker focused", `document.activeElement?.closest('.picker') !== null`, 5*time.Second)
		// The picker stays open while the chat is redrawn (here for the
		// message's own correction); it used to close when the redraw took
		// its focus.
		ann.pressIn(lastMessage("out"), "Edit message")
		ann.fill("Message", "Lunch at one :)\r")
		ben.waitFor("the correction", lastMessage("in")+`?.querySelector('.body')?.textContent === 'Lunch at one 🙂' && `+lastMessage("in")+`.innerText.includes('edited')`, 10*time.Second)
		ben.waitFor("the picker still open and focused", lastMessage("in")+`?.querySelector('.picker')?.contains(document.activeElement)`, 5*time.Second)
		ben.pressIn(lastMessage("in"), "thumbs up")
		ann.waitFor("ben's reaction", lastMessage("out")+`?.querySelector('.reaction')?.textContent === '👍 1'`, 10*time.Second)
		ann.say("Oops, wrong chat")
		ben.waitFor("the mistake", lastMessage("in")+`?.innerText.includes('Oops')`, 10*time.Second)
		ann.pressIn(lastMessage("out"), "Remove message")
		ann.pressIn(lastMessage("out"), "Really remove?")
		ben.waitFor("removed", lastMessage("in")+`?.innerText.includes('This message was removed.')`, 10*time.Second)
		ann.waitFor("removed for ann", lastMessage("out")+`?.innerText.includes('This message was removed.')`, 10*time.Second)
		// The composer's emoji picker.
		ben.press("Insert an emoji")
		ben.press("party")
		ben.waitFor("emoji inserted", `document.getElementById('compose').value === '🥳'`, 5*time.Second)
		ben.run(chromedp.SendKeys(chromedp.CSS("#compose"), " see you\r"))
		ann.waitFor("ben's emoji", lastMessage("in")+`?.querySelector('.body')?.textContent === '🥳 see you'`, 10*time.Second)
		ben.waitFor("delivered", lastMessage("out")+`?.dataset.state === 'delivered'`, 10*time.Second)
		ben.shot("reactions")
		// After a reload everything reads the same, from the archive:
		// the edit, the reaction, the removal, and "Delivered" (never "Sent").
		ben.logIn(srv.url, false)
		ben.press("Ann Archer, Available, Out for lunch")
		want := `[...document.querySelectorAll('#messages li.msg')].map((m) => (m.querySelector('.body') || m.querySelector('.thumb img') || m.querySelector('.file-name'))?.textContent || m.querySelector('img')?.alt)`
		ben.waitFor("history as it was", `(() => { const l = [...document.querySelectorAll('#messages li.msg')]; const by = (t) => l.find((m) => m.innerText.includes(t));
			const lunch = by('Lunch at one'); const mine = by('see you');
			return lunch && lunch.innerText.includes('edited') && lunch.querySelector('.reaction')?.textContent === '👍 1' && !by('Lunch at noon') && !by('Oops')
				&& by('This message was removed.') && mine && mine.dataset.state === 'delivered' })()`, 15*time.Second)
		_ = want
	})

	t.Run("Language", func(t *testing.T) {
		ann := ann.at(t)
		ann.press("Settings")
		ann.run(chromedp.SetValue(chromedp.CSS(`#settings-lang`), "fr"))
		eval[bool](ann, `document.getElementById('settings-lang').dispatchEvent(new Event('change')), true`)
		ann.waitFor("French", byName("Trouver des gens")+` && document.documentElement.lang === 'fr'`, 5*time.Second)
		ann.shot("settings-fr")
		ann.run(chromedp.SetValue(chromedp.CSS(`#settings-lang`), "en"))
		eval[bool](ann, `document.getElementById('settings-lang').dispatchEvent(new Event('change')), true`)
		ann.waitFor("English again", byName("Find people"), 5*time.Second)
	})

	t.Run("Notifications", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		origin := eval[string](ann, `location.origin`)
		ann.cdp(func(ctx context.Context) error {
			_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
				Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: browser.PermissionSettingGranted, Origin: origin})
			return err
		})
		ann.press("Settings")
		ann.check("Desktop notifications while this page is hidden", true)
		ann.shot("settings")
		// The page goes to the background (as when another tab is chosen).
		eval[bool](ann, `(() => { window.shown = []; window.badges = []; const N = window.Notification;
			window.Notification = class extends N { constructor(t, o) { super(t, o); window.shown.push(t + ': ' + o.body); } };
			navigator.setAppBadge = (n) => { window.badges.push(n); return Promise.resolve(); };
			navigator.clearAppBadge = () => { window.badges.push(0); return Promise.resolve(); };
			Object.defineProperty(document, 'hidden', { value: true, configurable: true });
			Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
			document.dispatchEvent(new Event('visibilitychange')); return true })()`)
		ben.say("Are you there?")
		ann.waitFor("a notification, a sound and a badge", `window.shown.includes('ben@localhost: Are you there?') && window.badges.at(-1) === 1 && window.poosms.alerts.played.at(-1) === 'message'`, 10*time.Second)
		eval[bool](ann, `(() => { delete document.hidden; delete document.visibilityState; document.dispatchEvent(new Event('visibilitychange')); return true })()`)
		ann.openChat("ben@localhost")
		ann.waitFor("badge cleared", `window.badges.at(-1) === 0`, 5*time.Second)
	})

	t.Run("Rooms", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		ann.press("New room")
		ann.fill("Room title", "Book club")
		ann.check("Members only", true)
		ann.fill("Password (optional)", "secret")
		ann.shot("new-room")
		ann.press("Create room")
		ann.waitFor("in the room", `document.getElementById('chat-title').textContent === '#Book club' && window.poosms.state.rooms.get('book-club@conference.localhost')?.self`, 15*time.Second)
		ann.press("Invite")
		ann.run(chromedp.SetValue(chromedp.CSS(`#invite-jid`), "ben@localhost"))
		ann.press("Send invitation")
		ben.sees("Ann Archer invites you to #book-club", 10*time.Second)
		ben.shot("invitation")
		ben.press("Join #book-club")
		ben.waitFor("ben in the room", `window.poosms.state.rooms.get('book-club@conference.localhost')?.self && document.getElementById('chat-title').textContent === '#book-club'`, 15*time.Second)
		ben.say("Thanks for the invitation")
		ann.waitFor("ben's message in the room", lastMessage("in")+`?.innerText.includes('Thanks for the invitation')`, 10*time.Second)
		// Reactions in a room name the room's stanza-id; everyone sees them.
		ann.pressIn(lastMessage("in"), "React to this message")
		ann.pressIn(lastMessage("in"), "heart")
		ben.waitFor("ann's reaction in the room", lastMessage("out")+`?.querySelector('.reaction')?.textContent === '❤️ 1'`, 10*time.Second)
		// Rooms are bookmarks: ann's other device lists the room and enters it.
		tab, closeTab := chromedp.NewContext(ann.ctx)
		defer closeTab()
		// The first run opens the tab and must not carry a timeout.
		if err := chromedp.Do(tab); err != nil {
			t.Fatal(err)
		}
		other := &person{t: t, name: "ann", ctx: tab}
		other.logIn(srv.url, false)
		other.waitFor("the room listed and entered", `document.querySelector('#rooms li[data-jid="book-club@conference.localhost"]') && window.poosms.state.rooms.get('book-club@conference.localhost')?.self`, 15*time.Second)
		other.run(chromedp.Navigate("about:blank"))
	})

	t.Run("Calls", func(t *testing.T) {
		ann, ben := ann.at(t), ben.at(t)
		ann.openChat("ben@localhost")
		ben.press("Ann Archer, Available, Out for lunch")

		// Declined.
		ann.press("Voice call")
		ben.waitFor("ringing", `document.getElementById('ring').open && document.getElementById('ring-title').textContent === 'Ann Archer is calling you'`, 15*time.Second)
		ben.shot("ringing")
		ann.shot("calling")
		ben.press("Decline the call from Ann Archer")
		ann.sees("ben@localhost declined the call.", 10*time.Second)
		ann.waitFor("ann's call over", `!window.poosms.state.one && document.getElementById('call-view').hidden`, 10*time.Second)
		ben.sees("You declined a voice call from Ann Archer", 5*time.Second)

		// Cancelled before an answer: a missed call for ben.
		ann.press("Video call")
		ben.waitFor("ringing", `document.getElementById('ring').open`, 15*time.Second)
		ann.press("Cancel call")
		ben.waitFor("no longer ringing", `!document.getElementById('ring').open && !window.poosms.state.one`, 10*time.Second)
		ben.sees("Missed video call from Ann Archer", 5*time.Second)

		// Answered: a private video call, then hung up.
		ann.press("Video call")
		ben.press("Accept the call from Ann Archer")
		ann.seesVideo("ben")
		ben.seesVideo("ann")
		ann.sees("In a call with ben@localhost", 5*time.Second)
		ann.shot("call-one-to-one")
		room := eval[string](ann, `window.poosms.state.one.room`)
		// Nobody else can enter its room, so nobody else can join its call.
		eve := xmppLogin(t, srv, "eve", "phone")
		if err := eve.SendRaw(`<presence to='` + room + `/eve'><x xmlns='http://jabber.org/protocol/muc'/></presence>`); err != nil {
			t.Fatal(err)
		}
		if p, err := eve.Expect(10*time.Second, func(e *stanza.Element) bool { return e.Local == "presence" && strings.HasPrefix(e.From(), room) }); err != nil || !p.IsError() {
			t.Fatalf("eve entering the private call's room: %v %v", p, err)
		}
		if r := iqErr(t, eve, room, "set", `<join xmlns='urn:poosms:conference:0'/>`); r == "" {
			t.Fatal("eve joined the private call")
		}
		ben.press("Hang up")
		ann.sees("ben@localhost hung up.", 10*time.Second)
		ann.waitFor("ann out", `!window.poosms.state.one && !window.poosms.state.call && !window.poosms.state.rooms.has(`+js(room)+`)`, 10*time.Second)
		ben.waitFor("ben out", `!window.poosms.state.one && !window.poosms.state.call`, 10*time.Second)

		// A voice call: no camera used, the avatar stands in for video.
		ben.press("Voice call")
		ann.press("Accept the call from ben@localhost")
		ann.waitFor("ben heard", videoOf("ben")+`?.srcObject?.getAudioTracks().some((t) => t.readyState === 'live')`, 30*time.Second)
		ben.waitFor("voice only", `window.poosms.state.call?.local && window.poosms.state.call.local.getVideoTracks().length === 0 && window.poosms.state.call.local.getAudioTracks().length === 1`, 10*time.Second)
		ben.waitFor("ann's picture on her tile", tileOf("ann")+`?.querySelector('.tile-avatar:not([hidden])')`, 15*time.Second)
		ben.shot("voice-call")
		ann.press("Hang up")
		ben.sees("Ann Archer hung up.", 10*time.Second)

		// No answer within 30 seconds: the call stops on both sides.
		ann.press("Voice call")
		ben.waitFor("ringing", `document.getElementById('ring').open`, 15*time.Second)
		ann.sees("ben@localhost did not answer.", 40*time.Second)
		ben.waitFor("ringing stopped", `!document.getElementById('ring').open && !window.poosms.state.one`, 10*time.Second)
		ben.sees("Missed voice call from Ann Archer", 5*time.Second)
	})
}

// cdp runs protocol commands in p's page.
func (p *person) cdp(fn func(ctx context.Context) error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := fn(ctx); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// pressIn clicks the control named name inside the element scope finds.
func (p *person) pressIn(scope, name string) {
	p.t.Helper()
	p.waitFor("a control named "+name, `(() => { const s = `+scope+`; const b = s && [...s.querySelectorAll('button, a')].find((e) => !e.disabled && (e.getAttribute('aria-label') || e.textContent).trim() === `+js(name)+`); b?.click(); return !!b })()`, 10*time.Second)
}

// iq sends an IQ from a plain client and fails the test unless it succeeds.
func iq(t *testing.T, c *xmppclient.Client, to, typ, payload string) *stanza.Element {
	t.Helper()
	id := fmt.Sprintf("q%d", time.Now().UnixNano())
	if err := c.SendRaw(`<iq type='` + typ + `' to='` + to + `' id='` + id + `'>` + payload + `</iq>`); err != nil {
		t.Fatal(err)
	}
	r, err := c.Expect(10*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if err != nil || r.IQType() != stanza.ResultIQ {
		t.Fatalf("iq to %s: %v %v", to, r, err)
	}
	return r
}

// iqErr sends an IQ and returns its error condition ("" for a result).
func iqErr(t *testing.T, c *xmppclient.Client, to, typ, payload string) string {
	t.Helper()
	id := fmt.Sprintf("e%d", time.Now().UnixNano())
	if err := c.SendRaw(`<iq type='` + typ + `' to='` + to + `' id='` + id + `'>` + payload + `</iq>`); err != nil {
		t.Fatal(err)
	}
	r, err := c.Expect(10*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if err != nil {
		t.Fatal(err)
	}
	if r.IQType() == stanza.ResultIQ {
		return ""
	}
	if e := r.Child(stanza.NSClient, "error"); e != nil && e.FirstElement() != nil {
		return e.FirstElement().Local
	}
	return "error"
}
