"""Interop check: XEP-0198 stream resumption with slixmpp.

Usage: slixmpp_resume.py HOST PORT DOMAIN

alice enables stream management with resumption; bob sends her messages;
her TCP connection is killed without a closing tag; bob sends more while
she is away; she reconnects and resumes. Every message must reach her
exactly once. Exits non-zero on failure.
"""
import asyncio
import collections
import logging
import ssl
import sys

import slixmpp

HOST, PORT, DOMAIN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ALICE, BOB = "alice@" + DOMAIN + "/phone", "bob@" + DOMAIN + "/desk"
TIMEOUT = 20


def step(msg):
    print("ok:", msg, flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, sm):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0199")
        if sm:
            self.register_plugin("xep_0198")
        self.got = collections.Counter()
        self.arrived = asyncio.Queue()
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    def on_start(self, _):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def on_message(self, m):
        if m["body"]:
            self.got[m["body"]] += 1
            self.arrived.put_nowait(m["body"])

    async def login(self):
        self.connect((HOST, PORT), force_starttls=True)
        await asyncio.wait_for(self.started, TIMEOUT)

    async def wait_for(self, bodies):
        async def loop():
            while not all(self.got[b] >= 1 for b in bodies):
                await self.arrived.get()
        await asyncio.wait_for(loop(), TIMEOUT)


async def event(client, name):
    fut = asyncio.get_event_loop().create_future()
    client.add_event_handler(name, lambda e: fut.done() or fut.set_result(e))
    return fut


async def main():
    alice = Client(ALICE, "alice-password", sm=True)
    bob = Client(BOB, "bob-password", sm=False)
    enabled = await event(alice, "sm_enabled")
    await alice.login()
    await asyncio.wait_for(enabled, TIMEOUT)
    step("alice enabled stream management with resumption")
    await bob.login()

    first = ["before %d" % i for i in range(5)]
    for b in first:
        bob.send_message(mto=ALICE, mbody=b, mtype="chat")
    await alice.wait_for(first)
    step("alice received %d messages" % len(first))

    # Kill alice's TCP connection: no closing tag, no goodbye.
    lost = await event(alice, "disconnected")
    alice.transport.abort()
    await asyncio.wait_for(lost, TIMEOUT)
    step("alice's connection was killed")

    later = ["while away %d" % i for i in range(3)]
    for b in later:
        bob.send_message(mto=ALICE, mbody=b, mtype="chat")
    await bob["xep_0199"].ping(jid=DOMAIN, timeout=TIMEOUT)

    resumed = await event(alice, "session_resumed")
    alice.connect((HOST, PORT), force_starttls=True)
    await asyncio.wait_for(resumed, TIMEOUT)
    step("alice resumed her session")
    await alice.wait_for(later)
    # An IQ round trip flushes anything still on its way.
    await alice["xep_0199"].ping(jid=DOMAIN, timeout=TIMEOUT)
    dup = {b: n for b, n in alice.got.items() if n != 1}
    missing = [b for b in first + later if alice.got[b] == 0]
    if dup or missing:
        raise RuntimeError("delivered more than once: %s; missing: %s" % (dup, missing))
    step("all %d messages delivered exactly once" % (len(first) + len(later)))
    alice.disconnect()
    bob.disconnect()
    print("PASS", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.wait_for(main(), 120))
    except Exception as e:
        print("FAIL:", repr(e), flush=True)
        sys.exit(1)
