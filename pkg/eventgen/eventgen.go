// Package eventgen generates realistic, valid marketing events the way the
// andriiuni/events publisher does (shared/spec/events.md, "How the real
// publisher behaves"), and corrupts them the way it does.
//
// Everything is drawn from the generator's own seeded source, never from
// crypto/rand or the global one, so a seed reproduces the exact same stream:
// a failing test or a load run can be replayed.
package eventgen

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eventpipe/eventpipe/pkg/event"
)

const (
	// UsersPerSource is the size of each source's user pool. Drawing users
	// from a bounded pool makes them come back, so distinct-user counts in
	// the demographics report are smaller than event counts, as in real
	// traffic.
	UsersPerSource = 20000

	// Campaigns is the size of the campaign pool, small so that revenue by
	// campaign has groups with many transactions.
	Campaigns = 50
)

// The PCG streams are fixed constants so that the seed alone decides the
// output. Campaigns use a fixed seed too: runs with different seeds then
// report on the same campaign ids.
const (
	eventStream  = 0x9e3779b97f4a7c15
	userStream   = 0xbf58476d1ce4e5b9
	campaignSeed = 0x94d049bb133111eb
)

const (
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)

// Generator produces events. It is not safe for concurrent use: give each
// goroutine its own.
type Generator struct {
	rng       *rand.Rand
	seed      uint64
	campaigns [Campaigns]string
	// users is indexed by sourceIndex, then by user number. Users are built
	// on first use, each from its own stream derived from the seed and its
	// number, so a user's attributes do not depend on the order of draws.
	users [2][]*user
	buf   []byte
}

// user holds the attributes that stay the same across a user's events.
type user struct {
	id string

	// facebook
	name    string
	age     int
	gender  string
	country string
	city    string

	// tiktok; country is shared with facebook's field
	username  string
	followers int64
	device    string
}

// New returns a generator whose output is determined by seed.
func New(seed int64) *Generator {
	g := &Generator{
		rng:  rand.New(rand.NewPCG(uint64(seed), eventStream)),
		seed: uint64(seed),
	}
	cr := rand.New(rand.NewPCG(campaignSeed, campaignSeed))
	for i := range g.campaigns {
		g.campaigns[i] = string(appendRandom([]byte("camp-"), cr, 5, alnum))
	}
	for i := range g.users {
		g.users[i] = make([]*user, UsersPerSource)
	}
	return g
}

// Next returns a new valid event of a random source, funnel stage and type,
// stamped ts (at millisecond precision, as on the wire). Events that carry
// an actionTime get ts as well.
func (g *Generator) Next(ts time.Time) event.Event {
	ts = ts.UTC().Truncate(time.Millisecond)
	src := event.Facebook
	if g.rng.IntN(2) == 1 {
		src = event.TikTok
	}
	stage := event.Top
	if g.rng.IntN(2) == 1 {
		stage = event.Bottom
	}
	types := event.Types(src, stage)
	e := event.Event{
		ID:          g.eventID(src),
		Timestamp:   ts,
		Source:      src,
		FunnelStage: stage,
		Type:        types[g.rng.IntN(len(types))],
	}
	u := g.user(src)
	if src == event.Facebook {
		e.User = event.User{ID: u.id, Name: u.name, Age: u.age, Gender: u.gender, Country: u.country, City: u.city}
		g.facebookEngagement(&e, ts)
	} else {
		e.User = event.User{ID: u.id, Username: u.username, Followers: u.followers}
		g.tiktokEngagement(&e, u, ts)
	}
	return e
}

func (g *Generator) facebookEngagement(e *event.Event, ts time.Time) {
	en := &e.Engagement
	if e.FunnelStage == event.Top {
		en.ActionTime = ts
		en.Referrer = pick(g.rng, referrers[:])
		if e.Type == "video.view" {
			en.VideoID = ptr(g.randomID("vid-", 8, alnum))
		}
		return
	}
	en.AdID = g.randomID("ad-", 8, alnum)
	en.CampaignID = g.campaigns[g.rng.IntN(Campaigns)]
	en.ClickPosition = pick(g.rng, clickPositions[:])
	en.Device = pick(g.rng, fbDevices[:])
	en.Browser = pick(g.rng, browsers[:])
	if e.Type == event.FacebookPurchaseType {
		en.PurchaseAmount = g.amount(10_00, 1000_00)
	}
}

func (g *Generator) tiktokEngagement(e *event.Event, u *user, ts time.Time) {
	en := &e.Engagement
	if e.FunnelStage == event.Top {
		en.WatchTime = float64(1 + g.rng.IntN(300))
		en.PercentageWatched = float64(g.rng.IntN(101))
		en.Device = u.device
		en.Country = u.country
		en.VideoID = ptr(g.randomID("vid-", 8, alnum))
		return
	}
	en.ActionTime = ts
	switch e.Type {
	case "profile.visit":
		en.ProfileID = ptr(g.randomID("profile-", 6, upperAlnum))
	case event.TikTokPurchaseType:
		en.PurchasedItem = ptr(pick(g.rng, products[:]))
		en.PurchaseAmount = g.amount(5_00, 500_00)
	}
}

// amount returns a decimal string with two decimals for a uniform number of
// cents in [lo, hi].
func (g *Generator) amount(lo, hi int) *string {
	cents := lo + g.rng.IntN(hi-lo+1)
	b := strconv.AppendInt(g.buf[:0], int64(cents/100), 10)
	b = append(b, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	g.buf = b
	return ptr(string(b))
}

func (g *Generator) eventID(src event.Source) string {
	prefix := "fb-"
	if src == event.TikTok {
		prefix = "ttk-"
	}
	g.buf = appendUUID(append(g.buf[:0], prefix...), g.rng)
	return string(g.buf)
}

func (g *Generator) randomID(prefix string, n int, alphabet string) string {
	g.buf = appendRandom(append(g.buf[:0], prefix...), g.rng, n, alphabet)
	return string(g.buf)
}

func ptr(s string) *string { return &s }

func sourceIndex(src event.Source) int {
	if src == event.TikTok {
		return 1
	}
	return 0
}

func (g *Generator) user(src event.Source) *user {
	si := sourceIndex(src)
	n := g.rng.IntN(UsersPerSource)
	if u := g.users[si][n]; u != nil {
		return u
	}
	r := rand.New(rand.NewPCG(g.seed^userStream, uint64(si)<<32|uint64(n)))
	u := &user{id: string(appendUUID(nil, r))}
	p := places[r.IntN(len(places))]
	u.country = p.country
	first := pick(r, firstNames[:])
	last := pick(r, lastNames[:])
	if src == event.Facebook {
		u.name = first + " " + last
		u.age = 18 + r.IntN(48)
		u.gender = pickGender(r)
		u.city = pick(r, p.cities)
	} else {
		u.username = username(r, first, last)
		u.followers = followers(r)
		u.device = pick(r, ttkDevices[:])
	}
	g.users[si][n] = u
	return u
}

// username mixes the shapes seen in the publisher's output ("Eliza92",
// "rob_k").
func username(r *rand.Rand, first, last string) string {
	switch r.IntN(3) {
	case 0:
		return first + strconv.Itoa(10+r.IntN(90))
	case 1:
		initial, _ := utf8.DecodeRuneInString(last)
		return strings.ToLower(first) + "_" + strings.ToLower(string(initial))
	default:
		return strings.ToLower(first) + strconv.Itoa(1+r.IntN(9999))
	}
}

// followers is log-uniform over 0..1,000,000 rather than uniform: a uniform
// draw would put 90% of users in the 100k-1M tier and leave the lower tiers
// of the demographics report nearly empty.
func followers(r *rand.Rand) int64 {
	return int64(math.Exp(r.Float64()*math.Log(1_000_002))) - 1
}

func pickGender(r *rand.Rand) string {
	total := 0
	for _, g := range genders {
		total += g.weight
	}
	n := r.IntN(total)
	for _, g := range genders {
		if n < g.weight {
			return g.name
		}
		n -= g.weight
	}
	return genders[len(genders)-1].name
}

func pick(r *rand.Rand, from []string) string {
	return from[r.IntN(len(from))]
}

func appendRandom(dst []byte, r *rand.Rand, n int, alphabet string) []byte {
	for range n {
		dst = append(dst, alphabet[r.IntN(len(alphabet))])
	}
	return dst
}

// appendUUID appends a random UUID shaped as version 4 (RFC 9562), drawn
// from r so that it is reproducible.
func appendUUID(dst []byte, r *rand.Rand) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.Uint64())
	binary.BigEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	dst = hex.AppendEncode(dst, b[0:4])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, b[4:6])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, b[6:8])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, b[8:10])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, b[10:16])
}
