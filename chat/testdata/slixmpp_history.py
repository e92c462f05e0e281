"""Interop check: slixmpp's carbons (XEP-0280) and archive (XEP-0313) clients
against poosms's chat.

Usage: slixmpp_history.py HOST PORT DOMAIN

Alice logs in twice (one, two) with carbons on, bob once. Alice/one and bob
exchange five messages; alice/two sees each as a sent or received carbon.
Then alice/two pages her archive two messages at a time, forwards and
backwards, and bob his with a 'with' filter. Passwords are USER-secret.
Prints one line per step and PASS at the end; exits non-zero on failure.
"""
import asyncio
import logging
import ssl
import sys
import traceback

import slixmpp

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ALICE, BOB = "alice@" + DOMAIN, "bob@" + DOMAIN
TIMEOUT = 20


def step(msg):
    print("ok:", msg, flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, resource):
        super().__init__(jid + "/" + resource, jid.split("@")[0] + "-secret")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0059", "xep_0199", "xep_0280", "xep_0297", "xep_0313", "xep_0359"):
            self.register_plugin(p)
        self.inbox = asyncio.Queue()
        self.carbons = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.put_nowait(("sent", m)))
        self.add_event_handler("carbon_received", lambda m: self.carbons.put_nowait(("received", m)))

    async def on_start(self, _):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    async def login(self):
        self.connect((HOST, PORT), force_starttls=True)
        await asyncio.wait_for(self.started, TIMEOUT)
        step("%s logged in" % self.boundjid)

    async def wait_body(self, body):
        async def loop():
            while True:
                m = await self.inbox.get()
                if m["type"] == "chat" and m["body"] == body:
                    return m
        return await asyncio.wait_for(loop(), TIMEOUT)

    async def wait_carbon(self, kind, body):
        k, m = await asyncio.wait_for(self.carbons.get(), TIMEOUT)
        fwd = m["carbon_" + k]
        if k != kind or fwd["body"] != body:
            raise RuntimeError("carbon %s %r, want %s %r" % (k, fwd["body"], kind, body))
        return fwd

    async def archive(self, reverse=False, with_jid=None):
        bodies = []
        async for m in self["xep_0313"].iterate(rsm={"max": 2}, reverse=reverse, with_jid=with_jid):
            bodies.append(m["mam_result"]["forwarded"]["stanza"]["body"])
        return bodies


async def main():
    one, two, bob = Client(ALICE, "one"), Client(ALICE, "two"), Client(BOB, "phone")
    for c in (one, two, bob):
        await c.login()
    for c in (one, two):
        await c["xep_0280"].enable(timeout=TIMEOUT)
    step("carbons enabled on alice's two resources")

    sent = []
    for i in range(5):
        if i % 2 == 0:
            body = "alice says %d" % i
            one.send_message(mto=BOB, mbody=body, mtype="chat")
            m = await bob.wait_body(body)
            if not m["stanza_id"]["id"] or str(m["stanza_id"]["by"]) != BOB:
                raise RuntimeError("bob's copy has no stanza-id by %s: %s" % (BOB, m))
            await two.wait_carbon("sent", body)
        else:
            body = "bob says %d" % i
            bob.send_message(mto=ALICE + "/one", mbody=body, mtype="chat")
            await one.wait_body(body)
            await two.wait_carbon("received", body)
        sent.append(body)
    step("five messages, each seen by alice/two as a carbon")

    got = await two.archive()
    if got != sent:
        raise RuntimeError("archive forwards %r, want %r" % (got, sent))
    step("alice's archive paged forwards two at a time")
    got = await two.archive(reverse=True)
    if got != list(reversed(sent)):
        raise RuntimeError("archive backwards %r, want %r" % (got, list(reversed(sent))))
    step("alice's archive paged backwards")
    got = await bob.archive(with_jid=slixmpp.JID(ALICE))
    if got != sent:
        raise RuntimeError("bob's archive with alice %r, want %r" % (got, sent))
    step("bob's archive filtered on alice")

    for c in (one, two, bob):
        c.disconnect()
    print("PASS", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), 120))
    except Exception as e:  # noqa: BLE001 - any failure ends the check
        traceback.print_exc()
        print("FAIL:", e, flush=True)
        sys.exit(1)
