"""Interop check: three slixmpp clients in a poosms group room.

Usage: slixmpp_muc.py HOST PORT DOMAIN

alice creates den@conference.DOMAIN (an instant room), bob joins, they talk,
carol joins late and must get the history with delay stamps, the subject is
changed, bob whispers to carol, carol pages through the room archive (MAM
with RSM, forwards and backwards), and alice kicks carol. Prints one line
per step and PASS at the end; exits non-zero on the first failure.
"""
import asyncio
import logging
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ROOM = "den@conference." + DOMAIN
TIMEOUT = 20


def step(msg):
    print("ok:", msg, flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, user):
        super().__init__("%s@%s/muc" % (user, DOMAIN), user + "-secret")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0045", "xep_0059", "xep_0199", "xep_0203", "xep_0313", "xep_0359"):
            self.register_plugin(p)
        self.inbox = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("message", lambda m: m["type"] == "chat" and self.inbox.put_nowait(m))
        self.add_event_handler("groupchat_subject", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("muc::%s::presence" % ROOM, lambda p: self.presences.put_nowait(p))

    async def on_start(self, _):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    async def login(self):
        self.connect((HOST, PORT), force_starttls=True)
        await asyncio.wait_for(self.started, TIMEOUT)

    async def wait(self, what, pred):
        async def loop():
            while True:
                m = await self.inbox.get()
                if pred(m):
                    return m
        try:
            return await asyncio.wait_for(loop(), TIMEOUT)
        except asyncio.TimeoutError:
            raise RuntimeError("%s: timed out waiting for %s" % (self.boundjid, what))

    async def wait_body(self, body, mtype="groupchat"):
        return await self.wait(repr(body), lambda m: m["type"] == mtype and m["body"] == body)

    async def wait_presence(self, what, pred):
        async def loop():
            while True:
                p = await self.presences.get()
                if pred(p):
                    return p
        try:
            return await asyncio.wait_for(loop(), TIMEOUT)
        except asyncio.TimeoutError:
            raise RuntimeError("%s: timed out waiting for %s" % (self.boundjid, what))

    def say(self, body):
        self.send_message(mto=ROOM, mbody=body, mtype="groupchat")


async def main():
    alice, bob, carol = Client("alice"), Client("bob"), Client("carol")
    for c in (alice, bob, carol):
        await c.login()
    step("three clients logged in")

    pres, _, _, _ = await alice["xep_0045"].join_muc_wait(ROOM, "Alice", maxstanzas=0, timeout=TIMEOUT)
    if 'code="201"' not in ET.tostring(pres.xml, encoding="unicode"):
        raise RuntimeError("creating the room gave no status 201: %s" % pres)
    iq = alice.make_iq_set(ito=ROOM)
    q = ET.Element("{http://jabber.org/protocol/muc#owner}query")
    ET.SubElement(q, "{jabber:x:data}x", type="submit")
    iq.xml.append(q)
    await iq.send(timeout=TIMEOUT)
    step("alice created the room as an instant room")

    info = await bob["xep_0030"].get_info(jid=ROOM, timeout=TIMEOUT)
    feats = info["disco_info"]["features"]
    for f in ("http://jabber.org/protocol/muc", "urn:xmpp:mam:2", "muc_open", "muc_temporary"):
        if f not in feats:
            raise RuntimeError("room features %s lack %s" % (feats, f))
    step("disco#info on the room lists its features")

    await bob["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=TIMEOUT)
    step("bob joined")

    bodies = ["one", "two", "three", "four", "five"]
    for i, body in enumerate(bodies):
        speaker = alice if i % 2 == 0 else bob
        speaker.say(body)
        for c in (alice, bob):
            m = await c.wait_body(body)
            if m["from"].resource != ("Alice" if speaker is alice else "Bob"):
                raise RuntimeError("%r came from %s" % (body, m["from"]))
            if not m["stanza_id"]["id"] or m["stanza_id"]["by"] != ROOM:
                raise RuntimeError("%r has no stanza-id by the room: %s" % (body, m))
    step("alice and bob exchanged five messages, each with a stanza-id by the room")

    _, _, occupants, history = await carol["xep_0045"].join_muc_wait(ROOM, "Carol", maxstanzas=20, timeout=TIMEOUT)
    got = [m["body"] for m in history]
    if got != bodies:
        raise RuntimeError("carol's history %s, want %s" % (got, bodies))
    if any(m["delay"]["stamp"] is None for m in history):
        raise RuntimeError("history without a delay stamp")
    if sorted(p["from"].resource for p in occupants) != ["Alice", "Bob", "Carol"]:
        raise RuntimeError("carol saw occupants %s" % [str(p["from"]) for p in occupants])
    step("carol joined late and got the five messages as history with delay stamps")

    alice["xep_0045"].set_subject(ROOM, "Plans for Friday")
    for c in (bob, carol):
        await c.wait("the subject", lambda m: m["subject"] == "Plans for Friday")
    step("alice changed the subject; bob and carol saw it")

    bob.send_message(mto=ROOM + "/Carol", mbody="psst", mtype="chat")
    m = await carol.wait_body("psst", mtype="chat")
    if str(m["from"]) != ROOM + "/Bob":
        raise RuntimeError("private message from %s" % m["from"])
    step("bob sent carol a private message through the room")

    forward = [m["mam_result"]["forwarded"]["stanza"]["body"]
               async for m in carol["xep_0313"].iterate(jid=ROOM, rsm={"max": 2})]
    if forward != bodies:
        raise RuntimeError("archive paged forwards: %s, want %s" % (forward, bodies))
    backward = [m["mam_result"]["forwarded"]["stanza"]["body"]
                async for m in carol["xep_0313"].iterate(jid=ROOM, rsm={"max": 2}, reverse=True)]
    if backward != list(reversed(bodies)):
        raise RuntimeError("archive paged backwards: %s" % backward)
    step("carol paged through the room archive two at a time, both ways")

    await alice["xep_0045"].set_role(ROOM, "Carol", "none", reason="enough")
    p = await carol.wait_presence("being kicked", lambda p: p["type"] == "unavailable" and p["from"].resource == "Carol")
    if 'code="307"' not in ET.tostring(p.xml, encoding="unicode"):
        raise RuntimeError("kick presence without 307: %s" % p)
    await bob.wait_presence("carol's kick", lambda p: p["type"] == "unavailable" and p["from"].resource == "Carol")
    step("alice kicked carol; carol and bob saw status 307")

    for c in (alice, bob, carol):
        c.disconnect()
    print("PASS", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), 120))
    except Exception as e:
        print("FAIL:", repr(e), flush=True)
        sys.exit(1)
