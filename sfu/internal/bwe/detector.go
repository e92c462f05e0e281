package bwe

// signal is what the delay detector makes of a new group.
type signal int8

const (
	noSignal signal = iota // no new group, or not enough of them yet
	normal
	overusing
	underusing
)

type group struct {
	firstSend, lastSend, lastArr int64 // µs
}

// detector is the delay-gradient detector (see the package doc). Times
// are µs: send times on the server's clock, arrival times on the
// subscriber's.
type detector struct {
	cur, prev        group
	haveCur, havePrv bool

	accum, smoothed float64 // ms
	origin          int64   // arrival time of x = 0, µs
	xs, ys          [trendWindow]float64
	n, head         int
	deltas          int

	threshold  float64
	lastUpdate int64 // arrival time of the last threshold update, µs
	prevTrend  float64
	overSince  int64 // arrival time overuse began, µs; -1 none
	overCount  int
	last       signal
}

func (d *detector) reset() {
	*d = detector{threshold: initialThreshold, overSince: -1, lastUpdate: -1}
}

// packet takes one received packet, in the order of the feedback.
func (d *detector) packet(send, arr int64) signal {
	if !d.haveCur {
		d.cur, d.haveCur = group{send, send, arr}, true
		return noSignal
	}
	if send-d.cur.firstSend <= groupSpan {
		d.cur.lastSend = max(d.cur.lastSend, send)
		d.cur.lastArr = max(d.cur.lastArr, arr)
		return noSignal
	}
	done := d.cur
	d.cur = group{send, send, arr}
	if !d.havePrv {
		d.prev, d.havePrv = done, true
		d.origin = done.lastArr
		return noSignal
	}
	prev := d.prev
	d.prev = done
	sendD, arrD := done.lastSend-prev.lastSend, done.lastArr-prev.lastArr
	if sendD < 0 || arrD < 0 {
		return noSignal // reordered
	}
	if sendD > maxAge || arrD > maxAge {
		// A long pause: start the trend again from this group.
		keep := d.cur
		d.reset()
		d.cur, d.haveCur = keep, true
		d.prev, d.havePrv = done, true
		d.origin = done.lastArr
		return noSignal
	}
	d.accum += float64(arrD-sendD) / 1000
	d.smoothed = smoothing*d.smoothed + (1-smoothing)*d.accum
	d.xs[d.head] = float64(done.lastArr-d.origin) / 1000
	d.ys[d.head] = d.smoothed
	d.head = (d.head + 1) % trendWindow
	d.n = min(d.n+1, trendWindow)
	d.deltas = min(d.deltas+1, maxDeltas)
	if d.n < trendWindow {
		return noSignal
	}
	trend, ok := d.slope()
	if !ok {
		return noSignal
	}
	d.last = d.detect(trend, done.lastArr)
	return d.last
}

// slope is the least-squares slope through the points.
func (d *detector) slope() (float64, bool) {
	var mx, my float64
	for i := range d.n {
		mx += d.xs[i]
		my += d.ys[i]
	}
	mx /= float64(d.n)
	my /= float64(d.n)
	var num, den float64
	for i := range d.n {
		num += (d.xs[i] - mx) * (d.ys[i] - my)
		den += (d.xs[i] - mx) * (d.xs[i] - mx)
	}
	if den == 0 {
		return 0, false
	}
	s := num / den
	return s, s == s && s-s == 0 // not NaN or infinite
}

// detect compares the modified trend with the adaptive threshold.
func (d *detector) detect(trend float64, now int64) signal {
	m := float64(d.deltas) * trend * trendGain
	var s signal
	switch {
	case m > d.threshold:
		if d.overSince < 0 {
			d.overSince, d.overCount = now, 0
		}
		d.overCount++
		s = normal
		if d.last == overusing || (now-d.overSince >= overuseTime && d.overCount > 1 && trend >= d.prevTrend) {
			s = overusing
		}
	case m < -d.threshold:
		d.overSince = -1
		s = underusing
	default:
		d.overSince = -1
		s = normal
	}
	d.prevTrend = trend
	d.adapt(m, now)
	return s
}

// adapt moves the threshold toward |m|: up slowly, down faster, so that
// jitter the path always has does not read as overuse.
func (d *detector) adapt(m float64, now int64) {
	if m < 0 {
		m = -m
	}
	if d.lastUpdate < 0 {
		d.lastUpdate = now
	}
	if m > d.threshold+15 { // a spike: leave the threshold alone
		d.lastUpdate = now
		return
	}
	k := kDown
	if m > d.threshold {
		k = kUp
	}
	dt := min(float64(now-d.lastUpdate)/1000, 100) // ms
	d.threshold += k * (m - d.threshold) * dt
	d.threshold = min(max(d.threshold, minThreshold), maxThreshold)
	d.lastUpdate = now
}
