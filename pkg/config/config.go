// Package config reads service settings from environment variables.
//
// A Reader collects the first bad setting and reports it as one line naming
// the variable, so a service can stop at start with a clear message instead
// of failing later on a half-valid configuration.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lookup finds an environment variable; os.LookupEnv fits.
type Lookup func(name string) (string, bool)

// MapLookup serves settings from a map, for tests and tools.
func MapLookup(m map[string]string) Lookup {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// Reader reads typed settings. After the reads, Err returns the first
// setting that was missing or invalid.
type Reader struct {
	lookup Lookup
	err    error
}

// NewReader returns a Reader over lookup.
func NewReader(lookup Lookup) *Reader {
	return &Reader{lookup: lookup}
}

// Err returns the first invalid setting, as "NAME: reason".
func (r *Reader) Err() error { return r.err }

// Fail records a problem with a setting found by the caller, e.g. a
// relation between two settings.
func (r *Reader) Fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (r *Reader) raw(name string) (string, bool) {
	v, ok := r.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// String returns the setting or def when unset.
func (r *Reader) String(name, def string) string {
	if v, ok := r.raw(name); ok {
		return v
	}
	return def
}

// Required returns the setting, failing when it is unset or empty.
func (r *Reader) Required(name string) string {
	v, ok := r.raw(name)
	if !ok {
		r.Fail(name, "is required")
	}
	return v
}

// Enum returns the setting, which must be one of allowed, or def.
func (r *Reader) Enum(name, def string, allowed ...string) string {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.Fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	return def
}

// Int returns an integer setting within [lo, hi], or def when unset.
func (r *Reader) Int(name string, def, lo, hi int) int {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.Fail(name, "must be an integer from %d to %d, got %q", lo, hi, v)
		return def
	}
	return n
}

// Float returns a number within [lo, hi], or def when unset.
func (r *Reader) Float(name string, def, lo, hi float64) float64 {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	// NaN fails every comparison, so it needs its own check.
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		r.Fail(name, "must be a number from %g to %g, got %q", lo, hi, v)
		return def
	}
	return f
}

// Duration returns a positive Go duration ("500ms", "30s"), or def.
func (r *Reader) Duration(name string, def time.Duration) time.Duration {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.Fail(name, "must be a positive duration such as 500ms or 30s, got %q", v)
		return def
	}
	return d
}

// Bool returns a boolean setting (true/false/1/0), or def.
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail(name, "must be true or false, got %q", v)
		return def
	}
	return b
}

// Bytes returns a size in bytes, written as a plain number or with a unit
// (KiB, MiB, GiB, KB, MB, GB), or def. Negative means unlimited where the
// caller allows it (allowUnlimited); otherwise it must be positive.
func (r *Reader) Bytes(name string, def int64, allowUnlimited bool) int64 {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := parseBytes(v)
	if err == nil && n == -1 && allowUnlimited {
		return n
	}
	if err != nil || n <= 0 {
		r.Fail(name, "must be a positive size such as 64MiB or 1048576, got %q", v)
		return def
	}
	return n
}

var units = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func parseBytes(v string) (int64, error) {
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	// Bound both signs: a large negative times mult wraps around int64
	// and can come out positive.
	if n > (1<<62)/mult || n < -(1<<62)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// URL returns a setting that must be a URL with one of the given schemes
// (a comma-separated list of them when list is true, as NATS accepts), or
// def when unset.
func (r *Reader) URL(name, def string, list bool, schemes ...string) string {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	parts := []string{v}
	if list {
		parts = strings.Split(v, ",")
	}
	for _, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
			r.Fail(name, "must be a URL such as %s://host:port", schemes[0])
			return def
		}
	}
	return v
}

// Common holds the settings every service reads (api.md).
type Common struct {
	Port      int
	LogLevel  string
	LogFormat string
	// ShutdownTimeout bounds the whole graceful stop; keep it under the
	// orchestrator's grace period (Kubernetes terminationGracePeriodSeconds,
	// compose stop_grace_period).
	ShutdownTimeout time.Duration
}

// ReadCommon reads PORT, LOG_LEVEL, LOG_FORMAT and SHUTDOWN_TIMEOUT.
func (r *Reader) ReadCommon(defaultPort int) Common {
	return Common{
		Port:            r.Int("PORT", defaultPort, 1, 65535),
		LogLevel:        r.Enum("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		LogFormat:       r.Enum("LOG_FORMAT", "json", "json", "text"),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", 20*time.Second),
	}
}
