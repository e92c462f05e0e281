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
#                          [--rounds 1] [--turn-args "--rates '...'"] [--skip-turn] [--skip-sfu]
#
# The two SFUs take turns shape by shape (which one goes first alternates
# from round to round), so that both see the machine in the same state;
# with --rounds N each shape runs N times per server and the table gives
# every round's figures and the ratio of the medians.
#
# Needs what media.sh and turn-ceiling.sh need (Go, taskset, coturn; the
# LiveKit server is installed by media.sh on first use).
set -euo pipefail
SHAPES="1x2+10 4x2+10 1x2+40 1x6+0"
DURATION=10s
ROUNDS=1
TURN_ARGS=
SFU=1 TURN=1
while [ $# -gt 0 ]; do
	case $1 in
	--shapes) SHAPES=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
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
	for ((round = 1; round <= ROUNDS; round++)); do
		order="poosms livekit"
		if ((round % 2 == 0)); then order="livekit poosms"; fi
		for shape in $SHAPES; do
			for target in $order; do
				echo "round $round: media.sh --target $target --shapes $shape" >&2
				"$HERE/media.sh" --target "$target" --shapes "$shape" --duration "$DURATION" >>"$OUT/$target.out" 2>>"$OUT/$target.err"
			done
		done
	done
	echo "## SFU: poosms and LiveKit ($DURATION per shape, $ROUNDS round(s), taking turns shape by shape)"
	echo
	echo "| shape | poosms pkts per CPU-s | LiveKit pkts per CPU-s | ratio per round | ratio of the medians | loss poosms / LiveKit | join → first packet p50 poosms / LiveKit | load average poosms / LiveKit |"
	echo "|---|---|---|---|---|---|---|---|"
	# media.sh prints "# TARGET SHAPE: load average A B C, TIME" before each
	# shape's JSON line.
	/usr/bin/python3 - "$OUT/poosms.out" "$OUT/livekit.out" <<'PY'
import json, statistics, sys
def read(path):
    # Each shape run: its "# " line, then one (indented) JSON object.
    rows = {}
    for chunk in open(path).read().split("\n# "):
        head, _, body = chunk.lstrip("# ").partition("\n")
        if ":" not in head or "{" not in body:
            continue
        shape = head.split(":")[0].split()[1]
        load = head.split("load average ")[1].split()[0]
        obj, _ = json.JSONDecoder().raw_decode(body[body.index("{"):])
        rows.setdefault(shape, []).append((obj, load))
    return rows
def span(vals, fmt):
    lo, hi = fmt.format(min(vals)), fmt.format(max(vals))
    return lo if lo == hi else lo + "–" + hi
p, l = read(sys.argv[1]), read(sys.argv[2])
for shape in p:
    a, b = p[shape], l.get(shape, [])
    pa = [x.get("forwarded_packets_per_cpu_second", 0) for x, _ in a]
    pb = [x.get("forwarded_packets_per_cpu_second", 0) for x, _ in b] or [0]
    rounds = " / ".join(f"{x / y:.2f}" if y else "-" for x, y in zip(pa, pb))
    mb = statistics.median(pb)
    ratio = f"**{statistics.median(pa) / mb:.2f}×**" if mb else "-"
    loss = lambda rs: span([x.get("loss_percent", 0) for x, _ in rs] or [0], "{:.2f}") + " %"
    join = lambda rs: span([x.get("join_to_first_packet_p50_ms", 0) for x, _ in rs] or [0], "{:.0f}")
    load = lambda rs: span([float(ld) for _, ld in rs] or [0], "{:.2f}")
    print(f"| {shape} | {' / '.join(f'{x:,.0f}' for x in pa)} | {' / '.join(f'{x:,.0f}' for x in pb)} | {rounds} | {ratio} "
          f"| {loss(a)} / {loss(b)} | {join(a)} / {join(b)} ms | {load(a)} / {load(b)} |")
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
