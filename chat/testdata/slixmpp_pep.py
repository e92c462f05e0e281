"""Interop check: slixmpp's PEP (XEP-0163 with entity caps), avatars
(XEP-0084), vCards (XEP-0054) and blocking (XEP-0191) against poosms's chat.

Usage: slixmpp_pep.py HOST PORT DOMAIN

Alice and bob subscribe to each other. Bob's client wants avatar metadata
(+notify in its caps). Alice publishes her avatar; bob hears it; bob's
second client gets the last item when it comes online. Alice sets her
vCard and bob reads it. Alice blocks bob and reads her blocklist back.
Passwords are USER-secret. Prints PASS at the end.
"""
import asyncio
import logging
import ssl
import sys
import traceback

import slixmpp
from slixmpp.plugins.xep_0084 import MetaData

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
        for p in ("xep_0030", "xep_0054", "xep_0060", "xep_0084", "xep_0115", "xep_0163", "xep_0191"):
            self.register_plugin(p)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.avatars = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("avatar_metadata_publish", lambda m: self.avatars.put_nowait(m))

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    async def login(self):
        self.connect((HOST, PORT), force_starttls=True)
        await asyncio.wait_for(self.started, TIMEOUT)
        step("%s logged in" % self.boundjid)

    async def wait_subscription(self, who, state):
        async def loop():
            while self.client_roster[who]["subscription"] != state:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(loop(), TIMEOUT)

    async def wait_avatar(self, item_id):
        m = await asyncio.wait_for(self.avatars.get(), TIMEOUT)
        item = m["pubsub_event"]["items"]["item"]
        if m["from"].bare != ALICE or item["id"] != item_id:
            raise RuntimeError("avatar event %s" % m)
        return m


async def main():
    alice, bob = Client(ALICE, "laptop"), Client(BOB, "phone")
    await alice.login()
    await bob.login()
    alice.send_presence(pto=BOB, ptype="subscribe")
    await alice.wait_subscription(BOB, "both")
    await bob.wait_subscription(ALICE, "both")
    step("alice and bob are subscribed both ways")

    # Bob's caps announce urn:xmpp:avatar:metadata+notify. Whether the
    # server learns them before or after the publish, bob gets the item: as
    # a notification, or as the last item once his caps are known.
    await alice["xep_0084"].publish_avatar_metadata(
        items=[{"id": "0123456789abcdef", "type": "image/png", "bytes": 100}], timeout=TIMEOUT)
    step("alice published her avatar metadata")
    await bob.wait_avatar("0123456789abcdef")
    step("bob heard about it (+notify)")

    bob2 = Client(BOB, "tablet")
    await bob2.login()
    await bob2.wait_avatar("0123456789abcdef")
    step("bob's second client got the last item on presence")

    vcard = alice["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Liddell"
    await alice["xep_0054"].publish_vcard(vcard, timeout=TIMEOUT)
    iq = await bob["xep_0054"].get_vcard(jid=ALICE, local=False, cached=False, timeout=TIMEOUT)
    if iq["vcard_temp"]["FN"] != "Alice Liddell":
        raise RuntimeError("vcard %s" % iq)
    step("bob read alice's vCard")

    await alice["xep_0191"].block(BOB, timeout=TIMEOUT)
    blocked = await alice["xep_0191"].get_blocked(timeout=TIMEOUT)
    items = {str(j) for j in blocked["blocklist"]["items"]}
    if items != {BOB}:
        raise RuntimeError("blocklist %s" % items)
    step("alice blocked bob and reads %s back" % items)

    for c in (alice, bob, bob2):
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
