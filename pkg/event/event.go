// Package event holds the domain model of a marketing webhook event: its
// types, the rules of the wire format (shared/spec/events.md), parsing with
// per-field validation, encoding, and the JetStream subjects events travel on.
//
// It has no knowledge of NATS, PostgreSQL or HTTP.
package event

import (
	"time"
)

// Source is the ad platform an event comes from.
type Source string

// The known sources.
const (
	Facebook Source = "facebook"
	TikTok   Source = "tiktok"
)

// Sources lists every known source in report order.
var Sources = []Source{Facebook, TikTok}

// Stage is the funnel stage of an event.
type Stage string

// The known funnel stages.
const (
	Top    Stage = "top"
	Bottom Stage = "bottom"
)

// Stages lists every funnel stage in report order.
var Stages = []Stage{Top, Bottom}

// types maps each source and stage to its event types, in the order events.md
// lists them.
var types = map[Source]map[Stage][]string{
	Facebook: {
		Top:    {"ad.view", "page.like", "comment", "video.view"},
		Bottom: {"ad.click", "form.submission", "checkout.complete"},
	},
	TikTok: {
		Top:    {"video.view", "like", "share", "comment"},
		Bottom: {"profile.visit", "purchase", "follow"},
	},
}

// Types returns the event types of a source and stage.
func Types(s Source, st Stage) []string {
	return types[s][st]
}

// StageOf returns the funnel stage a source's event type belongs to, and
// false when the type is not one of the source's.
func StageOf(s Source, eventType string) (Stage, bool) {
	for _, st := range Stages {
		for _, t := range types[s][st] {
			if t == eventType {
				return st, true
			}
		}
	}
	return "", false
}

// KnownType reports whether eventType is a type of any source.
func KnownType(eventType string) bool {
	for _, s := range Sources {
		if _, ok := StageOf(s, eventType); ok {
			return true
		}
	}
	return false
}

// ValidSource reports whether s is a known source.
func ValidSource(s string) bool { return s == string(Facebook) || s == string(TikTok) }

// ValidStage reports whether s is a known funnel stage.
func ValidStage(s string) bool { return s == string(Top) || s == string(Bottom) }

// Transactional event types carry revenue in purchaseAmount.
const (
	FacebookPurchaseType = "checkout.complete"
	TikTokPurchaseType   = "purchase"
)

// Event is one validated event. Fields that only one source or stage carries
// are zero for the others; nullable wire fields are pointers.
type Event struct {
	ID          string
	Timestamp   time.Time
	Source      Source
	FunnelStage Stage
	Type        string

	User       User
	Engagement Engagement
}

// User is data.user. Facebook events fill Name, Age, Gender and the location;
// TikTok events fill Username and Followers.
type User struct {
	ID string // userId

	Name    string
	Age     int
	Gender  string
	Country string // location.country
	City    string // location.city

	Username  string
	Followers int64
}

// Engagement is data.engagement. Which fields are set depends on the source
// and funnel stage (events.md).
type Engagement struct {
	// Facebook top and TikTok bottom.
	ActionTime time.Time

	// Facebook top.
	Referrer string
	VideoID  *string // facebook top: string or null; tiktok top: always set

	// Facebook bottom.
	AdID          string
	CampaignID    string
	ClickPosition string
	Device        string // facebook bottom: mobile|desktop; tiktok top: Android|iOS|Desktop
	Browser       string

	// Facebook bottom and TikTok bottom: a non-negative decimal string, exact.
	PurchaseAmount *string

	// TikTok top.
	WatchTime         float64
	PercentageWatched float64
	Country           string

	// TikTok bottom.
	ProfileID     *string
	PurchasedItem *string
}

// Revenue returns the event's purchase amount when the event is
// transactional (facebook checkout.complete, tiktok purchase) and carries one.
func (e *Event) Revenue() (string, bool) {
	if e.Engagement.PurchaseAmount == nil {
		return "", false
	}
	if (e.Source == Facebook && e.Type == FacebookPurchaseType) ||
		(e.Source == TikTok && e.Type == TikTokPurchaseType) {
		return *e.Engagement.PurchaseAmount, true
	}
	return "", false
}

// SubjectPrefix is the first token of every event subject.
const SubjectPrefix = "events"

// Subject returns the JetStream subject an event of this source and type is
// published on: events.<source>.<eventType>.
func Subject(s Source, eventType string) string {
	return SubjectPrefix + "." + string(s) + "." + eventType
}

// SourceFilter returns the subject filter matching every event of a source.
func SourceFilter(s Source) string {
	return SubjectPrefix + "." + string(s) + ".>"
}

// TimeLayout is how timestamps are written: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"
