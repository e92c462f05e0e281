"""Interop check between the poosms browser client and slixmpp: files
(XEP-0363 upload, XEP-0066 OOB with the URL as body), reactions (XEP-0444),
corrections (XEP-0308) and nudges (XEP-0224), both ways.

Usage: slixmpp_messenger.py HOST PORT DOMAIN BROWSER_USER PASSWORD

sam (this script, password PASSWORD) accepts the browser user's contact
request, waits for it to be online, then sends a file, a message and its
correction, and a nudge. It prints "ok: …" for each step and "GOT …" for
each thing it received from the browser: a message, a file, a correction,
a reaction and a nudge; it reacts to the browser's first message with ❤️.
It prints PASS once it got all of them, FAIL on timeout.
"""
import asyncio
import ssl
import sys
import urllib.request
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp import JID

HOST, PORT, DOMAIN, PEER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
PEER = PEER + "@" + DOMAIN
TIMEOUT = 60


def say(*a):
    print(*a, flush=True)


class Sam(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__("sam@" + DOMAIN + "/py", PASSWORD)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0066", "xep_0224", "xep_0308", "xep_0359", "xep_0444", "xep_0334"):
            self.register_plugin(p)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.got = {}
        self.done = asyncio.get_event_loop().create_future()
        self.peer_online = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("reactions", self.on_reactions)
        self.add_event_handler("message_correction", self.on_correction)
        self.add_event_handler("attention", self.on_attention)
        self.add_event_handler("presence_available", self.on_available)

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        say("READY")

    def on_available(self, p):
        if p["from"].bare == PEER and not self.peer_online.done():
            self.peer_online.set_result(True)

    def mark(self, what, detail):
        if what in self.got:
            return
        self.got[what] = detail
        say("GOT", what, detail)
        if len(self.got) == 5 and not self.done.done():
            self.done.set_result(True)

    def on_message(self, m):
        if m["from"].bare != PEER or m["type"] not in ("chat", "normal"):
            return
        body = m["body"]
        if m.xml.find("{urn:xmpp:message-correct:0}replace") is not None:
            return
        url = m["oob"]["url"]
        if url and body == url:
            self.mark("file", url)
        elif body and "text" not in self.got:
            self.mark("text", body)
            self.send_reactions(m["from"], m["id"], ["❤️"])

    def send_reactions(self, to, mid, reactions):
        self["xep_0444"].send_reactions(to, mid, reactions)
        say("ok: reacted to", mid)

    def on_reactions(self, m):
        if m["from"].bare == PEER:
            self.mark("reaction", "%s %s" % (m["reactions"]["id"], " ".join(sorted(m["reactions"]["values"]))))

    def on_correction(self, m):
        if m["from"].bare == PEER:
            self.mark("correction", "%s %s" % (m["replace"]["id"], m["body"]))

    def on_attention(self, m):
        if m["from"].bare == PEER:
            self.mark("nudge", "attention")


async def main():
    sam = Sam()
    sam.connect((HOST, PORT), force_starttls=True)
    await asyncio.wait_for(sam.peer_online, TIMEOUT)
    say("ok: %s is online" % PEER)
    # A file: a slot from the upload service, a PUT, then the URL as OOB and body.
    data = b"notes from slixmpp\n"
    # (slixmpp's own upload plugin needs aiohttp; the slot request is one IQ.)
    iq = sam.make_iq_get(ito=JID("upload." + DOMAIN))
    req = ET.Element("{urn:xmpp:http:upload:0}request", filename="notes-from-sam.txt", size=str(len(data)))
    req.set("content-type", "text/plain")
    iq.append(req)
    res = await iq.send(timeout=TIMEOUT)
    slot = res.xml.find("{urn:xmpp:http:upload:0}slot")
    put = slot.find("{urn:xmpp:http:upload:0}put").get("url")
    get = slot.find("{urn:xmpp:http:upload:0}get").get("url")
    req = urllib.request.Request(put, data=data, method="PUT", headers={"Content-Type": "text/plain"})
    await asyncio.get_event_loop().run_in_executor(None, lambda: urllib.request.urlopen(req, timeout=20).read())
    m = sam.make_message(mto=PEER, mbody=get, mtype="chat")
    m["oob"]["url"] = get
    m.send()
    say("ok: sent a file", get)
    # A message, then its correction.
    m = sam.make_message(mto=PEER, mbody="Hello from slixmpp", mtype="chat")
    m["id"] = "sam-1"
    m.send()
    m = sam.make_message(mto=PEER, mbody="Hello again from slixmpp", mtype="chat")
    m["replace"]["id"] = "sam-1"
    m.send()
    say("ok: sent a correction")
    sam["xep_0224"].request_attention(JID(PEER))
    say("ok: sent a nudge")
    try:
        await asyncio.wait_for(sam.done, TIMEOUT)
        say("PASS")
    except asyncio.TimeoutError:
        say("FAIL: missing", sorted({"text", "file", "reaction", "correction", "nudge"} - set(sam.got)))
    sam.disconnect()
    await asyncio.sleep(0.5)


asyncio.run(main())
