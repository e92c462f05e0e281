#!/usr/bin/env python3
"""Connection flood from one address: what a poosmsd keeps open for it.

Opens N (default 300) connections from 127.0.0.2 to each of a running
poosmsd's c2s port (sending nothing), HTTP port (a POST whose body comes a
byte a second) and TURN TCP port (a STUN binding request a second, no
credentials), and prints how many the server still holds after 1.5 s,
15.5 s and 35.5 s, with its goroutines, open files and RSS from /metrics.
Loopback only. Start the server first, so that loopback counts:

    ulimit -n 8192
    poosmsd --data-dir /tmp/flood --c2s-addr 127.0.0.1:15222 --c2s-tls-addr "" \\
      --http-addr 127.0.0.1:15280 --metrics-addr 127.0.0.1:19280 \\
      --turn-addr 127.0.0.1:13478 --media-udp-addr 127.0.0.1:17882 \\
      --media-tcp-addr "" --s2s-addr "" --s2s-tls-addr "" --conn-limit-exempt ""
    ulimit -n 8192; python3 bench/connflood.py 300

Figures: docs/security.md, "Time and connections".
"""
import socket, struct, os, sys, time, urllib.request, re
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
def metrics():
    t = urllib.request.urlopen("http://127.0.0.1:19280/metrics").read().decode()
    g = re.search(r"^go_goroutines (\S+)", t, re.M).group(1)
    f = re.search(r"^process_open_fds (\S+)", t, re.M).group(1)
    r = re.search(r"^process_resident_memory_bytes (\S+)", t, re.M).group(1)
    return int(float(g)), int(float(f)), float(r)/2**20
def alive(socks):
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            while True:
                d = s.recv(65536)
                if d == b"":
                    break
        except BlockingIOError:
            n += 1
            continue
        except OSError:
            pass
    return n
def openmany(port, k, payload=None):
    out = []
    for i in range(k):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        if payload: s.send(payload)
        out.append(s)
    return out
print("baseline goroutines, fds, rss MiB:", metrics())
c2s = openmany(15222, N)
http = openmany(15280, N, b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
# TURN: a STUN binding request (no credentials), repeated below
stun = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
turn = openmany(13478, N, stun)
time.sleep(1.5)
print("after 1.5 s: c2s open %d/%d, http open %d/%d, turn open %d/%d" % (alive(c2s), N, alive(http), N, alive(turn), N), "goroutines, fds, rss:", metrics())
for i in range(14):
    time.sleep(1)
    for s in turn:
        try: s.send(stun)
        except OSError: pass
    for s in http:
        try: s.send(b"x")
        except OSError: pass
print("after 15.5 s (turn and http kept talking): c2s open %d, http open %d, turn open %d" % (alive(c2s), alive(http), alive(turn)), "goroutines, fds, rss:", metrics())
time.sleep(20)
print("after 35.5 s: c2s open %d, http open %d, turn open %d" % (alive(c2s), alive(http), alive(turn)), "goroutines, fds, rss:", metrics())
