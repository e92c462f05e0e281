"""Interop check: two slixmpp clients against a running poosmsd.

Usage: slixmpp_chat.py HOST PORT DOMAIN

Logs alice and bob in over STARTTLS + SCRAM-SHA-256, makes them subscribe to
each other, exchanges messages both ways, then sends bob a message while he
is offline and checks it arrives with its XEP-0203 delay stamp when he
returns. Prints one line per step; exits non-zero on the first failure.
"""
import asyncio
import datetime
import logging
import ssl
import sys

import slixmpp

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ALICE, BOB = "alice@" + DOMAIN, "bob@" + DOMAIN
PASSWORDS = {ALICE: "alice-password", BOB: "bob-password"}
TIMEOUT = 20


def step(msg):
    print("ok:", msg, flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, resource):
        super().__init__(jid + "/" + resource, PASSWORDS[jid])
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0199", "xep_0203"):
            self.register_plugin(p)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.inbox = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        # slixmpp tries SCRAM-*-PLUS with tls-unique first, which TLS 1.3
        # lacks, then falls back; only a failure of every mechanism counts.
        self.add_event_handler("failed_all_auth", self.on_failed)
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("presence_available", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("presence_unavailable", lambda p: self.presences.put_nowait(p))

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def on_failed(self, _):
        if not self.started.done():
            self.started.set_exception(RuntimeError(str(self.boundjid) + ": authentication failed"))

    async def login(self):
        self.connect((HOST, PORT), force_starttls=True)
        await asyncio.wait_for(self.started, TIMEOUT)
        mech = self["feature_mechanisms"].mech
        name = getattr(mech, "name", "?")
        if name != "SCRAM-SHA-256":
            raise RuntimeError("logged in with %s, want SCRAM-SHA-256" % name)
        if self.transport.get_extra_info("ssl_object") is None:
            raise RuntimeError("the stream is not encrypted")
        step("%s logged in over STARTTLS with %s" % (self.boundjid, name))

    async def wait_message(self, want_from, body):
        async def loop():
            while True:
                m = await self.inbox.get()
                if m["type"] in ("chat", "normal") and m["body"] == body:
                    return m
        m = await asyncio.wait_for(loop(), TIMEOUT)
        if m["from"].bare != want_from:
            raise RuntimeError("message from %s, want %s" % (m["from"], want_from))
        return m

    async def wait_presence(self, who, available):
        async def loop():
            while True:
                p = await self.presences.get()
                if p["from"].bare == who and (p["type"] != "unavailable") == available:
                    return p
        return await asyncio.wait_for(loop(), TIMEOUT)

    async def wait_subscription(self, who, state):
        async def loop():
            while self.client_roster[who]["subscription"] != state:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(loop(), TIMEOUT)

    async def logout(self):
        done = asyncio.get_event_loop().create_future()
        self.add_event_handler("disconnected", lambda _: done.done() or done.set_result(True))
        self.disconnect()
        await asyncio.wait_for(done, TIMEOUT)


async def main():
    alice, bob = Client(ALICE, "laptop"), Client(BOB, "phone")
    await alice.login()
    await bob.login()

    alice.send_presence(pto=BOB, ptype="subscribe")
    await alice.wait_subscription(BOB, "both")
    await bob.wait_subscription(ALICE, "both")
    step("alice and bob are subscribed both ways")
    await alice.wait_presence(BOB, True)
    await bob.wait_presence(ALICE, True)
    step("each sees the other available")

    alice.send_message(mto=BOB, mbody="hello bob, from slixmpp", mtype="chat")
    m = await bob.wait_message(ALICE, "hello bob, from slixmpp")
    if str(m["from"]) != ALICE + "/laptop":
        raise RuntimeError("from was %s, want alice's full JID" % m["from"])
    bob.send_message(mto=ALICE, mbody="hi alice", mtype="chat")
    await alice.wait_message(BOB, "hi alice")
    step("messages delivered both ways with the sender stamped")

    await bob.logout()
    await alice.wait_presence(BOB, False)
    step("alice sees bob go offline")
    sent = datetime.datetime.now(datetime.timezone.utc)
    alice.send_message(mto=BOB, mbody="while you were away", mtype="chat")
    # An IQ round trip proves the server has handled the message before bob returns.
    await alice["xep_0199"].ping(jid=DOMAIN, timeout=TIMEOUT)

    bob2 = Client(BOB, "phone")
    await bob2.login()
    m = await bob2.wait_message(ALICE, "while you were away")
    stamp = m["delay"]["stamp"]
    if stamp is None:
        raise RuntimeError("offline message has no delay stamp: %s" % m)
    skew = abs((stamp - sent).total_seconds())
    if skew > 60:
        raise RuntimeError("delay stamp %s is %ss away from the send time %s" % (stamp, skew, sent))
    step("offline message delivered with delay stamp %s" % stamp.isoformat())

    await alice.logout()
    await bob2.logout()
    print("PASS", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), 120))
    except Exception as e:
        print("FAIL:", repr(e), flush=True)
        sys.exit(1)
