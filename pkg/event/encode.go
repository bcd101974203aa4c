package event

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// nanoLayout is used instead of TimeLayout only for times with sub-millisecond
// digits, which the publisher never sends: writing them with TimeLayout would
// silently drop precision that Parse accepted.
const nanoLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends the event in the wire format of events.md to dst and
// returns the extended buffer. Only the fields of the event's source and
// funnel stage are written, in the order of the events.md samples.
//
// It is hand-written rather than built on encoding/json because the load
// generator calls it tens of thousands of times per second; with a reused
// dst it does not allocate.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"eventId":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"timestamp":`...)
	dst = appendTime(dst, e.Timestamp)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, string(e.Source))
	dst = append(dst, `,"funnelStage":`...)
	dst = appendString(dst, string(e.FunnelStage))
	dst = append(dst, `,"eventType":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"data":{"user":`...)
	dst = e.User.appendJSON(dst, e.Source)
	dst = append(dst, `,"engagement":`...)
	dst = e.Engagement.appendJSON(dst, e.Source, e.FunnelStage)
	return append(dst, "}}"...)
}

func (u *User) appendJSON(dst []byte, s Source) []byte {
	dst = append(dst, `{"userId":`...)
	dst = appendString(dst, u.ID)
	switch s {
	case Facebook:
		dst = append(dst, `,"name":`...)
		dst = appendString(dst, u.Name)
		dst = append(dst, `,"age":`...)
		dst = strconv.AppendInt(dst, int64(u.Age), 10)
		dst = append(dst, `,"gender":`...)
		dst = appendString(dst, u.Gender)
		dst = append(dst, `,"location":{"city":`...)
		dst = appendString(dst, u.City)
		dst = append(dst, `,"country":`...)
		dst = appendString(dst, u.Country)
		dst = append(dst, '}')
	case TikTok:
		dst = append(dst, `,"username":`...)
		dst = appendString(dst, u.Username)
		dst = append(dst, `,"followers":`...)
		dst = strconv.AppendInt(dst, u.Followers, 10)
	}
	return append(dst, '}')
}

func (g *Engagement) appendJSON(dst []byte, s Source, st Stage) []byte {
	switch {
	case s == Facebook && st == Top:
		dst = append(dst, `{"actionTime":`...)
		dst = appendTime(dst, g.ActionTime)
		dst = append(dst, `,"referrer":`...)
		dst = appendString(dst, g.Referrer)
		dst = append(dst, `,"videoId":`...)
		dst = appendNullable(dst, g.VideoID)
	case s == Facebook && st == Bottom:
		dst = append(dst, `{"adId":`...)
		dst = appendString(dst, g.AdID)
		dst = append(dst, `,"campaignId":`...)
		dst = appendString(dst, g.CampaignID)
		dst = append(dst, `,"clickPosition":`...)
		dst = appendString(dst, g.ClickPosition)
		dst = append(dst, `,"device":`...)
		dst = appendString(dst, g.Device)
		dst = append(dst, `,"browser":`...)
		dst = appendString(dst, g.Browser)
		dst = append(dst, `,"purchaseAmount":`...)
		dst = appendNullable(dst, g.PurchaseAmount)
	case s == TikTok && st == Top:
		dst = append(dst, `{"watchTime":`...)
		dst = strconv.AppendFloat(dst, g.WatchTime, 'f', -1, 64)
		dst = append(dst, `,"percentageWatched":`...)
		dst = strconv.AppendFloat(dst, g.PercentageWatched, 'f', -1, 64)
		dst = append(dst, `,"device":`...)
		dst = appendString(dst, g.Device)
		dst = append(dst, `,"country":`...)
		dst = appendString(dst, g.Country)
		dst = append(dst, `,"videoId":`...)
		// Always set on tiktok top events; null keeps the output valid JSON
		// for an Event built by hand without it.
		dst = appendNullable(dst, g.VideoID)
	case s == TikTok && st == Bottom:
		dst = append(dst, `{"actionTime":`...)
		dst = appendTime(dst, g.ActionTime)
		dst = append(dst, `,"profileId":`...)
		dst = appendNullable(dst, g.ProfileID)
		dst = append(dst, `,"purchasedItem":`...)
		dst = appendNullable(dst, g.PurchasedItem)
		dst = append(dst, `,"purchaseAmount":`...)
		dst = appendNullable(dst, g.PurchaseAmount)
	default:
		// An unknown source or stage has no engagement fields to write, but
		// the document must stay well-formed.
		dst = append(dst, '{')
	}
	return append(dst, '}')
}

func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	dst = append(dst, '"')
	if t.Nanosecond()%int(time.Millisecond) == 0 {
		dst = t.AppendFormat(dst, TimeLayout)
	} else {
		dst = t.AppendFormat(dst, nanoLayout)
	}
	return append(dst, '"')
}

func appendNullable(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	return appendString(dst, *s)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Like encoding/json it replaces
// invalid UTF-8 with U+FFFD so the output is always valid JSON, and escapes
// U+2028 and U+2029 so it can be embedded in JavaScript; unlike it, it does
// not escape <, > and &, which nothing downstream needs.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
