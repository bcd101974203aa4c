package event

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// ErrInvalid is what every validation failure matches with errors.Is: the
// gateway answers it with a client error instead of retrying.
var ErrInvalid = errors.New("invalid event")

// ValidationError says which field of an event is wrong and why. Path uses
// the wire names (data.user.age); it is empty when the event as a whole is
// wrong (not JSON, not an object, invalid UTF-8).
type ValidationError struct {
	Path   string
	Reason string
}

// Error returns "<path>: <reason>", or the reason alone for a problem of the
// whole event.
func (e *ValidationError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalid) hold for every ValidationError.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(path, reason string) error {
	return &ValidationError{Path: path, Reason: reason}
}

// invalidJSON keeps fastjson's description of a syntax error, whose
// beginning says where and whose end says what, but bounds it: on deeply
// nested input it repeats one clause per level.
func invalidJSON(err error) error {
	const keep = 120
	msg := err.Error()
	if len(msg) > 2*keep+3 {
		head, tail := keep, len(msg)-keep
		for head > 0 && !utf8.RuneStart(msg[head]) {
			head--
		}
		for tail < len(msg) && !utf8.RuneStart(msg[tail]) {
			tail++
		}
		msg = msg[:head] + "..." + msg[tail:]
	}
	return invalid("", "must be valid JSON: "+msg)
}

// Limits that protect what is downstream of the parser rather than describe
// the publisher.
const (
	// MaxEventIDLen bounds eventId, which becomes the Nats-Msg-Id header and
	// the primary key.
	MaxEventIDLen = 256
	// MaxPurchaseAmountLen bounds purchaseAmount, which is stored as numeric.
	MaxPurchaseAmountLen = 32

	// maxAge is the largest age the integer column can hold.
	maxAge = math.MaxInt32
	// pooledMaxLen keeps a parser that has seen an outsized event out of the
	// pool, so one 20 MB event does not pin 20 MB per pooled parser.
	pooledMaxLen = 64 << 10
)

// enum is a closed set of allowed string values with its error reason.
type enum struct {
	values []string
	reason string
}

func newEnum(values ...string) enum {
	return enum{values: values, reason: "must be one of " + strings.Join(values, ", ")}
}

// match returns the canonical value equal to b, so a valid event shares
// these constants instead of allocating a copy of each enumerated field.
func (en enum) match(b []byte) (string, bool) {
	for _, v := range en.values {
		if string(b) == v {
			return v, true
		}
	}
	return "", false
}

var (
	sourceEnum        = newEnum(string(Facebook), string(TikTok))
	stageEnum         = newEnum(string(Top), string(Bottom))
	genderEnum        = newEnum("male", "female", "non-binary")
	referrerEnum      = newEnum("newsfeed", "marketplace", "groups")
	clickPositionEnum = newEnum("top_left", "bottom_right", "center")
	fbDeviceEnum      = newEnum("mobile", "desktop")
	browserEnum       = newEnum("Chrome", "Firefox", "Safari")
	ttDeviceEnum      = newEnum("Android", "iOS", "Desktop")
)

// Parser parses and validates events. Its buffers are reused from one event
// to the next, so a Parser is not safe for concurrent use: keep one per
// goroutine, or call the package-level Parse.
type Parser struct {
	json fastjson.Parser
	// num holds the text of the number being read: fastjson exposes it only
	// through MarshalTo, and strconv rounds correctly where fastjson's own
	// float parser may not, which AppendJSON's round trip depends on.
	num []byte
	// keys is scratch for finding duplicate keys.
	keys [][]byte
}

var parsers = sync.Pool{New: func() any { return new(Parser) }}

// Parse parses and validates one event with a pooled Parser. It is safe for
// concurrent use.
func Parse(raw []byte) (Event, error) {
	p := parsers.Get().(*Parser)
	e, err := p.Parse(raw)
	if len(raw) <= pooledMaxLen {
		parsers.Put(p)
	}
	return e, err
}

// Parse parses raw, one JSON event, and checks it against events.md. The
// returned error is a *ValidationError naming the first problem found:
// whole-event problems first, then the envelope in the order of events.md,
// then data.user, then data.engagement, then anything anywhere in the event
// that cannot be stored (U+0000, non-finite numbers, duplicate keys).
//
// The Event shares no memory with raw or with the Parser.
func (p *Parser) Parse(raw []byte) (Event, error) {
	// The cheapest checks go first so that garbage is turned away before it
	// costs a parse.
	if i := firstNonSpace(raw); i < 0 || raw[i] != '{' {
		return Event{}, invalid("", "must be a JSON object")
	}
	// PostgreSQL refuses invalid UTF-8 in jsonb, where the raw event is kept.
	if !utf8.Valid(raw) {
		return Event{}, invalid("", "must be valid UTF-8")
	}
	// fastjson's parser bounds nesting depth but tolerates malformed input
	// (NaN, bad escapes, raw control characters); its validator is strict
	// but unbounded in depth. Parsing first lets the validator run only on
	// bounded input.
	root, err := p.json.ParseBytes(raw)
	if err != nil {
		return Event{}, invalidJSON(err)
	}
	if err := fastjson.ValidateBytes(raw); err != nil {
		return Event{}, invalidJSON(err)
	}
	if i := RawControlInString(raw); i >= 0 {
		return Event{}, invalid("", "must be valid JSON: control character 0x"+strconv.FormatUint(uint64(raw[i]), 16)+" in a string")
	}
	if err := checkSurrogates(raw); err != nil {
		return Event{}, err
	}
	obj, err := root.Object()
	if err != nil {
		return Event{}, invalid("", "must be a JSON object")
	}

	var e Event
	if err := p.envelope(obj, &e); err != nil {
		return Event{}, err
	}
	data, err := object(obj, "data", "data")
	if err != nil {
		return Event{}, err
	}
	user, err := object(data, "user", "data.user")
	if err != nil {
		return Event{}, err
	}
	if err := p.user(user, &e); err != nil {
		return Event{}, err
	}
	eng, err := object(data, "engagement", "data.engagement")
	if err != nil {
		return Event{}, err
	}
	if err := p.engagement(eng, &e); err != nil {
		return Event{}, err
	}
	if err := p.storable(root); err != nil {
		err.Path = strings.TrimPrefix(err.Path, ".")
		return Event{}, err
	}
	return e, nil
}

func (p *Parser) envelope(o *fastjson.Object, e *Event) error {
	id, err := str(o, "eventId", "eventId")
	if err != nil {
		return err
	}
	if err := checkEventID(id); err != nil {
		return err
	}
	if e.Timestamp, err = timestamp(o, "timestamp", "timestamp"); err != nil {
		return err
	}
	src, err := oneOf(o, "source", "source", sourceEnum)
	if err != nil {
		return err
	}
	stage, err := oneOf(o, "funnelStage", "funnelStage", stageEnum)
	if err != nil {
		return err
	}
	typ, err := str(o, "eventType", "eventType")
	if err != nil {
		return err
	}
	e.Source, e.FunnelStage = Source(src), Stage(stage)
	if e.Type, err = eventType(e.Source, e.FunnelStage, typ); err != nil {
		return err
	}
	e.ID = string(id)
	return nil
}

// checkEventID keeps eventId usable as a NATS header value and a log field.
func checkEventID(id []byte) error {
	if len(id) > MaxEventIDLen {
		return invalid("eventId", "must be at most "+strconv.Itoa(MaxEventIDLen)+" bytes")
	}
	for i := 0; i < len(id); {
		r, size := utf8.DecodeRune(id[i:])
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return invalid("eventId", "must not contain whitespace or control characters")
		}
		i += size
	}
	return nil
}

// eventType returns the canonical type string, and says whether the source
// or the funnel stage disagrees with the type when it does not belong.
func eventType(s Source, st Stage, b []byte) (string, error) {
	for _, t := range Types(s, st) {
		if string(b) == t {
			return t, nil
		}
	}
	reason := quote(b) + " is not a " + string(s) + " " + string(st) + " event type"
	if other, ok := StageOf(s, string(b)); ok {
		reason += " (it is a " + string(s) + " " + string(other) + " one)"
	} else {
		for _, src := range Sources {
			if other, ok := StageOf(src, string(b)); ok {
				reason += " (it is a " + string(src) + " " + string(other) + " one)"
				break
			}
		}
	}
	return "", invalid("eventType", reason)
}

func (p *Parser) user(o *fastjson.Object, e *Event) error {
	u := &e.User
	id, err := str(o, "userId", "data.user.userId")
	if err != nil {
		return err
	}
	switch e.Source {
	case Facebook:
		name, err := str(o, "name", "data.user.name")
		if err != nil {
			return err
		}
		age, err := p.integer(o, "age", "data.user.age", maxAge)
		if err != nil {
			return err
		}
		if u.Gender, err = oneOf(o, "gender", "data.user.gender", genderEnum); err != nil {
			return err
		}
		loc, err := object(o, "location", "data.user.location")
		if err != nil {
			return err
		}
		country, err := str(loc, "country", "data.user.location.country")
		if err != nil {
			return err
		}
		city, err := str(loc, "city", "data.user.location.city")
		if err != nil {
			return err
		}
		u.Name, u.Age, u.Country, u.City = string(name), int(age), string(country), string(city)
	case TikTok:
		username, err := str(o, "username", "data.user.username")
		if err != nil {
			return err
		}
		if u.Followers, err = p.integer(o, "followers", "data.user.followers", math.MaxInt64); err != nil {
			return err
		}
		u.Username = string(username)
	}
	u.ID = string(id)
	return nil
}

func (p *Parser) engagement(o *fastjson.Object, e *Event) error {
	g := &e.Engagement
	var err error
	switch {
	case e.Source == Facebook && e.FunnelStage == Top:
		if g.ActionTime, err = timestamp(o, "actionTime", "data.engagement.actionTime"); err != nil {
			return err
		}
		if g.Referrer, err = oneOf(o, "referrer", "data.engagement.referrer", referrerEnum); err != nil {
			return err
		}
		if g.VideoID, err = nullableStr(o, "videoId", "data.engagement.videoId"); err != nil {
			return err
		}
	case e.Source == Facebook && e.FunnelStage == Bottom:
		adID, err := str(o, "adId", "data.engagement.adId")
		if err != nil {
			return err
		}
		campaignID, err := str(o, "campaignId", "data.engagement.campaignId")
		if err != nil {
			return err
		}
		if g.ClickPosition, err = oneOf(o, "clickPosition", "data.engagement.clickPosition", clickPositionEnum); err != nil {
			return err
		}
		if g.Device, err = oneOf(o, "device", "data.engagement.device", fbDeviceEnum); err != nil {
			return err
		}
		if g.Browser, err = oneOf(o, "browser", "data.engagement.browser", browserEnum); err != nil {
			return err
		}
		if g.PurchaseAmount, err = purchaseAmount(o); err != nil {
			return err
		}
		g.AdID, g.CampaignID = string(adID), string(campaignID)
	case e.Source == TikTok && e.FunnelStage == Top:
		if g.WatchTime, err = p.number(o, "watchTime", "data.engagement.watchTime"); err != nil {
			return err
		}
		if g.WatchTime < 0 {
			return invalid("data.engagement.watchTime", "must not be negative")
		}
		if g.PercentageWatched, err = p.number(o, "percentageWatched", "data.engagement.percentageWatched"); err != nil {
			return err
		}
		if g.PercentageWatched < 0 || g.PercentageWatched > 100 {
			return invalid("data.engagement.percentageWatched", "must be between 0 and 100")
		}
		if g.Device, err = oneOf(o, "device", "data.engagement.device", ttDeviceEnum); err != nil {
			return err
		}
		country, err := str(o, "country", "data.engagement.country")
		if err != nil {
			return err
		}
		videoID, err := str(o, "videoId", "data.engagement.videoId")
		if err != nil {
			return err
		}
		g.Country = string(country)
		v := string(videoID)
		g.VideoID = &v
	case e.Source == TikTok && e.FunnelStage == Bottom:
		if g.ActionTime, err = timestamp(o, "actionTime", "data.engagement.actionTime"); err != nil {
			return err
		}
		if g.ProfileID, err = nullableStr(o, "profileId", "data.engagement.profileId"); err != nil {
			return err
		}
		if g.PurchasedItem, err = nullableStr(o, "purchasedItem", "data.engagement.purchasedItem"); err != nil {
			return err
		}
		if g.PurchaseAmount, err = purchaseAmount(o); err != nil {
			return err
		}
	}
	return nil
}

// purchaseAmount reads the nullable money field. It stays a string so no
// cent is lost on its way to the numeric column.
func purchaseAmount(o *fastjson.Object) (*string, error) {
	const path = "data.engagement.purchaseAmount"
	amount, err := nullableStr(o, "purchaseAmount", path)
	if err != nil || amount == nil {
		return nil, err
	}
	if len(*amount) > MaxPurchaseAmountLen {
		return nil, invalid(path, "must be at most "+strconv.Itoa(MaxPurchaseAmountLen)+" characters")
	}
	if !isDecimal(*amount) {
		return nil, invalid(path, `must be a non-negative decimal string such as "414.29"`)
	}
	return amount, nil
}

// isDecimal reports whether s matches ^[0-9]+(\.[0-9]+)?$ without the cost
// of a regexp on the hot path.
func isDecimal(s string) bool {
	digits := func(s string) int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		return n
	}
	n := digits(s)
	if n == 0 {
		return false
	}
	if n == len(s) {
		return true
	}
	if s[n] != '.' {
		return false
	}
	frac := s[n+1:]
	m := digits(frac)
	return m > 0 && m == len(frac)
}

func field(o *fastjson.Object, key, path string) (*fastjson.Value, error) {
	v := o.Get(key)
	if v == nil {
		return nil, invalid(path, "is required")
	}
	return v, nil
}

func object(o *fastjson.Object, key, path string) (*fastjson.Object, error) {
	v, err := field(o, key, path)
	if err != nil {
		return nil, err
	}
	obj, err := v.Object()
	if err != nil {
		return nil, invalid(path, "must be an object")
	}
	return obj, nil
}

// str returns a required, non-empty string field. The bytes belong to the
// fastjson parser: copy what must outlive the next Parse.
func str(o *fastjson.Object, key, path string) ([]byte, error) {
	v, err := field(o, key, path)
	if err != nil {
		return nil, err
	}
	return strValue(v, path)
}

func strValue(v *fastjson.Value, path string) ([]byte, error) {
	b, err := v.StringBytes()
	if err != nil {
		return nil, invalid(path, "must be a string")
	}
	if len(b) == 0 {
		return nil, invalid(path, "must not be empty")
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, invalid(path, "must not contain U+0000")
	}
	return b, nil
}

// nullableStr returns a field that must be present and is either null or a
// non-empty string.
func nullableStr(o *fastjson.Object, key, path string) (*string, error) {
	v, err := field(o, key, path)
	if err != nil {
		return nil, err
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil, nil
	case fastjson.TypeString:
	default:
		return nil, invalid(path, "must be a string or null")
	}
	b, err := strValue(v, path)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

func oneOf(o *fastjson.Object, key, path string, en enum) (string, error) {
	v, err := field(o, key, path)
	if err != nil {
		return "", err
	}
	b, err := v.StringBytes()
	if err != nil {
		return "", invalid(path, "must be a string")
	}
	s, ok := en.match(b)
	if !ok {
		return "", invalid(path, en.reason)
	}
	return s, nil
}

// timestamp reads an RFC 3339 time as UTC. Years that leave 0000..9999 once
// in UTC are refused: they cannot be written back in RFC 3339.
func timestamp(o *fastjson.Object, key, path string) (time.Time, error) {
	v, err := field(o, key, path)
	if err != nil {
		return time.Time{}, err
	}
	b, err := v.StringBytes()
	if err != nil {
		return time.Time{}, invalid(path, "must be a string")
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, invalid(path, "must be an RFC 3339 timestamp")
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, invalid(path, "must be an RFC 3339 timestamp with a UTC year from 0000 to 9999")
	}
	return t, nil
}

// numberText returns the JSON text of a number value, in p.num.
func (p *Parser) numberText(v *fastjson.Value) ([]byte, bool) {
	if v.Type() != fastjson.TypeNumber {
		return nil, false
	}
	p.num = v.MarshalTo(p.num[:0])
	return p.num, true
}

// number reads a finite JSON number.
func (p *Parser) number(o *fastjson.Object, key, path string) (float64, error) {
	v, err := field(o, key, path)
	if err != nil {
		return 0, err
	}
	text, ok := p.numberText(v)
	if !ok {
		return 0, invalid(path, "must be a number")
	}
	// The text is valid JSON, so the only possible error is ErrRange: an
	// overflow (reported as infinite) or an underflow to zero, which is a
	// faithful value.
	f, _ := strconv.ParseFloat(string(text), 64)
	if math.IsInf(f, 0) {
		return 0, invalid(path, "must be a finite number")
	}
	return f, nil
}

// integer reads a non-negative JSON integer no larger than limit. Only the
// integer form is accepted: 57.0 and 5.7e1 are refused, because the raw
// event is stored as jsonb and reports cast these fields with ::integer,
// which fails on "57.0".
func (p *Parser) integer(o *fastjson.Object, key, path string, limit int64) (int64, error) {
	v, err := field(o, key, path)
	if err != nil {
		return 0, err
	}
	text, ok := p.numberText(v)
	if !ok {
		return 0, invalid(path, "must be an integer")
	}
	if bytes.ContainsAny(text, ".eE") {
		if f, _ := strconv.ParseFloat(string(text), 64); math.IsInf(f, 0) {
			return 0, invalid(path, "must be a finite number")
		}
		return 0, invalid(path, "must be an integer")
	}
	n, err := strconv.ParseInt(string(text), 10, 64)
	switch {
	case n < 0 || err != nil && text[0] == '-':
		return 0, invalid(path, "must not be negative")
	case err != nil || n > limit:
		return 0, invalid(path, "must be at most "+strconv.FormatInt(limit, 10))
	}
	return n, nil
}

// storable walks the whole event, unknown fields included, for what would
// break the jsonb column the raw event is stored in, or would make the
// stored event disagree with the parsed one: U+0000 in a string or key,
// non-finite numbers, and duplicate keys (jsonb keeps the last, this parser
// reads the first). fastjson has already bounded the depth.
func (p *Parser) storable(v *fastjson.Value) *ValidationError {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if bytes.IndexByte(b, 0) >= 0 {
			return &ValidationError{Reason: "must not contain U+0000"}
		}
	case fastjson.TypeNumber:
		text, _ := p.numberText(v)
		if f, _ := strconv.ParseFloat(string(text), 64); math.IsInf(f, 0) {
			return &ValidationError{Reason: "must be a finite number"}
		}
	case fastjson.TypeArray:
		items, _ := v.Array()
		for i, item := range items {
			if err := p.storable(item); err != nil {
				return err.within("[" + strconv.Itoa(i) + "]")
			}
		}
	case fastjson.TypeObject:
		obj, _ := v.Object()
		return p.storableObject(obj)
	}
	return nil
}

func (p *Parser) storableObject(obj *fastjson.Object) *ValidationError {
	// The keys of the objects being walked are stacked in p.keys; they
	// point into the fastjson parser's buffer, valid until its next Parse.
	start := len(p.keys)
	defer func() { p.keys = p.keys[:start] }()
	var seen map[string]bool
	if obj.Len() > smallObject {
		seen = make(map[string]bool, obj.Len())
	}
	var err *ValidationError
	obj.Visit(func(key []byte, item *fastjson.Value) {
		if err != nil {
			return
		}
		if bytes.IndexByte(key, 0) >= 0 {
			err = (&ValidationError{Reason: "must not contain U+0000 in a key"}).within(member(key))
			return
		}
		dup := false
		if seen != nil {
			dup = seen[string(key)]
			seen[string(key)] = true
		} else {
			for _, k := range p.keys[start:] {
				if bytes.Equal(k, key) {
					dup = true
					break
				}
			}
			p.keys = append(p.keys, key)
		}
		if dup {
			err = (&ValidationError{Reason: "is a duplicate key"}).within(member(key))
			return
		}
		if e := p.storable(item); e != nil {
			err = e.within(member(key))
		}
	})
	return err
}

// smallObject is the size up to which duplicate keys are found by comparing
// every pair, which beats a map for the small objects events are made of.
const smallObject = 16

// member formats an object key as a path element: a plain key is joined
// with a dot, anything else is quoted in brackets.
func member(key []byte) string {
	if len(key) == 0 {
		return `[""]`
	}
	for _, c := range key {
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "[" + quote(key) + "]"
		}
	}
	return "." + string(key)
}

// within prefixes the path with elem, building paths only on the error path.
func (e *ValidationError) within(elem string) *ValidationError {
	return &ValidationError{Path: elem + e.Path, Reason: e.Reason}
}

// checkSurrogates refuses \u escapes of unpaired UTF-16 surrogates, which
// PostgreSQL rejects in jsonb and fastjson would decode differently from
// other JSON readers. raw must already be valid JSON, so every backslash
// starts an escape inside a string.
func checkSurrogates(raw []byte) error {
	i := bytes.IndexByte(raw, '\\')
	for i >= 0 && i+1 < len(raw) {
		if raw[i+1] != 'u' {
			i += 2
		} else {
			r := hex4(raw[i+2:])
			i += 6
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return invalid("", "must not contain an unpaired UTF-16 surrogate escape")
			case r >= 0xd800 && r <= 0xdbff:
				if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return invalid("", "must not contain an unpaired UTF-16 surrogate escape")
				}
				if lo := hex4(raw[i+2:]); lo < 0xdc00 || lo > 0xdfff {
					return invalid("", "must not contain an unpaired UTF-16 surrogate escape")
				}
				i += 6
			}
		}
		if i >= len(raw) {
			break
		}
		j := bytes.IndexByte(raw[i:], '\\')
		if j < 0 {
			break
		}
		i += j
	}
	return nil
}

// hex4 decodes the four hex digits at the start of b, which validated JSON
// guarantees after \u; it returns -1 if they are missing.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}

// quote quotes a user-supplied value for an error reason, cut short so a
// hostile value cannot blow up the error.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "..."
	}
	return strconv.Quote(string(b))
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
	}
	return -1
}

// RawControlInString returns the offset of the first raw control character
// (below U+0020) inside a JSON string of b, or -1. JSON forbids them, and
// PostgreSQL's jsonb refuses them, but fastjson's validator lets one pass
// in a string that also holds an escape sequence ("\x1c\\b"). b is
// assumed otherwise well formed; most events have no such byte at all, so
// the common case is one quick pass.
func RawControlInString(b []byte) int {
	quick := true
	for _, c := range b {
		if c < 0x20 {
			quick = false
			break
		}
	}
	if quick {
		return -1
	}
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString && c < 0x20:
			return i
		}
	}
	return -1
}
