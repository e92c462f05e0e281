package muc

import (
	"fmt"
	"time"
)

// DefaultNewRoomsPerHour is Config.NewRoomsPerHour's default.
const DefaultNewRoomsPerHour = 30

// creationWindow is the window Config.NewRoomsPerHour counts over.
const creationWindow = time.Hour

// creations remembers when each user created rooms within the last
// creationWindow, so that no user can create rooms without end. The
// service's mu guards it.
type creations struct {
	max       int
	by        map[string][]time.Time // bare JID → creation times, oldest first
	lastSweep time.Time
}

func newCreations(max int) *creations {
	return &creations{max: max, by: make(map[string][]time.Time)}
}

// recent returns user's creations within the window ending at now.
func (c *creations) recent(user string, now time.Time) []time.Time {
	times := c.by[user]
	i := 0
	for i < len(times) && !times[i].After(now.Add(-creationWindow)) {
		i++
	}
	return times[i:]
}

// allow reports whether user may create a room at now; if not, refusal
// says why and when.
func (c *creations) allow(user string, now time.Time) (ok bool, refusal string) {
	times := c.recent(user, now)
	if len(times) < c.max {
		return true, ""
	}
	wait := times[0].Add(creationWindow).Sub(now).Round(time.Minute)
	return false, fmt.Sprintf("you may create at most %d rooms an hour; try again in %s", c.max, max(wait, time.Minute))
}

// record notes that user created a room at now, and now and then forgets
// users whose creations are all out of the window.
func (c *creations) record(user string, now time.Time) {
	c.by[user] = append(c.recent(user, now), now)
	if now.Sub(c.lastSweep) < creationWindow {
		return
	}
	c.lastSweep = now
	for u := range c.by {
		if len(c.recent(u, now)) == 0 {
			delete(c.by, u)
		}
	}
}
