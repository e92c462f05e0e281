#!/usr/bin/env bash
# media-compare.sh: issue 14's same-run table. poosms's SFU against
# LiveKit (bench/media.sh, both driven by poosms-bench media with the same
# publishers and subscribers) and poosms's TURN relay against coturn
# (bench/turn-ceiling.sh, poosms-bench turn and turnutils_uclient), one
# after the other in one sitting, every server pinned to CPU 1 and every
# load tool to CPU 0. Prints Markdown: the SFU table with the ratio per
# room shape, then turn-ceiling.sh's table. The raw JSON and logs stay in
# the directory it names at the end.
#
#   bench/media-compare.sh [--shapes "1x2+10 4x2+10 1x2+40 1x6+0"] [--duration 10s]
#                          [--turn-args "--rates '...'"] [--skip-turn] [--skip-sfu]
#
# Needs what media.sh and turn-ceiling.sh need (Go, taskset, coturn; the
# LiveKit server is installed by media.sh on first use).
set -euo pipefail
SHAPES="1x2+10 4x2+10 1x2+40 1x6+0"
DURATION=10s
TURN_ARGS=
SFU=1 TURN=1
while [ $# -gt 0 ]; do
	case $1 in
	--shapes) SHAPES=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--turn-args) TURN_ARGS=$2; shift 2 ;;
	--skip-turn) TURN=0; shift ;;
	--skip-sfu) SFU=0; shift ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d /tmp/poosms-media-compare.XXXXXX)

echo "# Media, same run ($(date -u +%FT%TZ); $(git -C "$HERE" rev-parse --short HEAD); servers on CPU 1, load on CPU 0)"
echo
if [ "$SFU" = 1 ]; then
	for target in poosms livekit; do
		echo "running media.sh --target $target" >&2
		"$HERE/media.sh" --target "$target" --shapes "$SHAPES" --duration "$DURATION" >"$OUT/$target.out" 2>"$OUT/$target.err"
	done
	echo "## SFU: poosms and LiveKit ($DURATION per shape)"
	echo
	echo "| shape | poosms pkts per CPU-s | LiveKit pkts per CPU-s | ratio | loss poosms / LiveKit | join → first packet p50 poosms / LiveKit | load average poosms / LiveKit |"
	echo "|---|---|---|---|---|---|---|"
	# media.sh prints "# TARGET SHAPE: load average A B C, TIME" before each
	# shape's JSON line.
	/usr/bin/python3 - "$OUT/poosms.out" "$OUT/livekit.out" <<'PY'
import json, sys
def read(path):
    # Each shape: its "# " line, then one (indented) JSON object.
    rows = {}
    for chunk in open(path).read().split("\n# "):
        head, _, body = chunk.lstrip("# ").partition("\n")
        if ":" not in head or "{" not in body:
            continue
        shape = head.split(":")[0].split()[1]
        load = head.split("load average ")[1].split()[0]
        obj, _ = json.JSONDecoder().raw_decode(body[body.index("{"):])
        rows[shape] = (obj, load)
    return rows
p, l = read(sys.argv[1]), read(sys.argv[2])
for shape in p:
    a, la = p[shape]
    b, lb = l.get(shape, ({}, "-"))
    pa = a.get("forwarded_packets_per_cpu_second", 0)
    pb = b.get("forwarded_packets_per_cpu_second", 0)
    ratio = f"{pa / pb:.2f}×" if pb else "-"
    print(f"| {shape} | {pa:,.0f} | {pb:,.0f} | {ratio} | {a.get('loss_percent', 0):.2f} % / {b.get('loss_percent', 0):.2f} % "
          f"| {a.get('join_to_first_packet_p50_ms', 0):.0f} / {b.get('join_to_first_packet_p50_ms', 0):.0f} ms | {la} / {lb} |")
PY
	echo
fi
if [ "$TURN" = 1 ]; then
	echo "running turn-ceiling.sh $TURN_ARGS" >&2
	echo "## TURN: poosms and coturn"
	echo
	eval "\"$HERE/turn-ceiling.sh\" $TURN_ARGS" 2>"$OUT/turn.err" | tee "$OUT/turn.out"
	echo
fi
echo "raw output in $OUT" >&2
