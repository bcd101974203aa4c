package config

import (
	"strings"
	"testing"
	"time"
)

// readCase is one setting read by one Reader method: env holds the
// variable (absent when unset), want is the value the read must return,
// and wantErr says whether Err must then report the variable.
type readCase[T comparable] struct {
	name    string
	env     map[string]string
	want    T
	wantErr bool
}

// runReads runs cases against read, which reads variable name from a
// fresh Reader. A bad value must come back as the default and as an error
// "NAME: ..." that quotes the value, so the operator sees what to fix.
func runReads[T comparable](t *testing.T, name string, cases []readCase[T], read func(r *Reader) T) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(MapLookup(tc.env))
			got := read(r)
			if got != tc.want {
				t.Errorf("value: got %v; want %v", got, tc.want)
			}
			checkErr(t, r.Err(), name, tc.env[name], tc.wantErr)
		})
	}
}

// checkErr checks err against a read of variable name holding bad.
func checkErr(t *testing.T, err error, name, bad string, wantErr bool) {
	t.Helper()
	if !wantErr {
		if err != nil {
			t.Errorf("Err: got %v; want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Err: got nil; want an error naming %s", name)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, name+": ") {
		t.Errorf("Err: got %q; want it to start with %q", msg, name+": ")
	}
	if msg := err.Error(); !strings.Contains(msg, strings.TrimSpace(bad)) {
		t.Errorf("Err: got %q; want it to quote the bad value %q", msg, bad)
	}
}

func env(name, value string) map[string]string { return map[string]string{name: value} }

func TestString(t *testing.T) {
	runReads(t, "NAME", []readCase[string]{
		{name: "unset", env: nil, want: "def"},
		{name: "blank", env: env("NAME", "   "), want: "def"},
		{name: "set", env: env("NAME", "value"), want: "value"},
		{name: "trimmed", env: env("NAME", "  value \n"), want: "value"},
	}, func(r *Reader) string { return r.String("NAME", "def") })
}

func TestRequired(t *testing.T) {
	runReads(t, "NAME", []readCase[string]{
		{name: "set", env: env("NAME", "value"), want: "value"},
		{name: "trimmed", env: env("NAME", " value "), want: "value"},
		{name: "unset", env: nil, want: "", wantErr: true},
		{name: "blank", env: env("NAME", "  "), want: "", wantErr: true},
	}, func(r *Reader) string { return r.Required("NAME") })
}

func TestEnum(t *testing.T) {
	runReads(t, "MODE", []readCase[string]{
		{name: "unset", env: nil, want: "b"},
		{name: "blank", env: env("MODE", " "), want: "b"},
		{name: "first allowed", env: env("MODE", "a"), want: "a"},
		{name: "last allowed", env: env("MODE", "c"), want: "c"},
		{name: "trimmed", env: env("MODE", " c "), want: "c"},
		{name: "not allowed", env: env("MODE", "d"), want: "b", wantErr: true},
		{name: "case differs", env: env("MODE", "A"), want: "b", wantErr: true},
	}, func(r *Reader) string { return r.Enum("MODE", "b", "a", "b", "c") })
}

func TestInt(t *testing.T) {
	runReads(t, "PORT", []readCase[int]{
		{name: "unset", env: nil, want: 3000},
		{name: "blank", env: env("PORT", ""), want: 3000},
		{name: "valid", env: env("PORT", "8080"), want: 8080},
		{name: "trimmed", env: env("PORT", " 8080 "), want: 8080},
		{name: "low bound", env: env("PORT", "1"), want: 1},
		{name: "high bound", env: env("PORT", "65535"), want: 65535},
		{name: "below low", env: env("PORT", "0"), want: 3000, wantErr: true},
		{name: "above high", env: env("PORT", "65536"), want: 3000, wantErr: true},
		{name: "negative", env: env("PORT", "-5"), want: 3000, wantErr: true},
		{name: "fraction", env: env("PORT", "80.5"), want: 3000, wantErr: true},
		{name: "word", env: env("PORT", "http"), want: 3000, wantErr: true},
	}, func(r *Reader) int { return r.Int("PORT", 3000, 1, 65535) })
}

func TestFloat(t *testing.T) {
	runReads(t, "RATIO", []readCase[float64]{
		{name: "unset", env: nil, want: 0.5},
		{name: "blank", env: env("RATIO", " "), want: 0.5},
		{name: "valid", env: env("RATIO", "0.25"), want: 0.25},
		{name: "low bound", env: env("RATIO", "0"), want: 0},
		{name: "high bound", env: env("RATIO", "1"), want: 1},
		{name: "below low", env: env("RATIO", "-0.1"), want: 0.5, wantErr: true},
		{name: "above high", env: env("RATIO", "1.01"), want: 0.5, wantErr: true},
		{name: "infinite", env: env("RATIO", "+Inf"), want: 0.5, wantErr: true},
		// NaN fails every comparison, so a bounds check written as
		// "f < lo || f > hi" lets it through.
		{name: "not a number", env: env("RATIO", "NaN"), want: 0.5, wantErr: true},
		{name: "word", env: env("RATIO", "half"), want: 0.5, wantErr: true},
	}, func(r *Reader) float64 { return r.Float("RATIO", 0.5, 0, 1) })
}

func TestDuration(t *testing.T) {
	runReads(t, "TIMEOUT", []readCase[time.Duration]{
		{name: "unset", env: nil, want: 20 * time.Second},
		{name: "blank", env: env("TIMEOUT", "  "), want: 20 * time.Second},
		{name: "milliseconds", env: env("TIMEOUT", "500ms"), want: 500 * time.Millisecond},
		{name: "seconds", env: env("TIMEOUT", "30s"), want: 30 * time.Second},
		{name: "compound", env: env("TIMEOUT", "1h30m"), want: 90 * time.Minute},
		{name: "zero", env: env("TIMEOUT", "0"), want: 20 * time.Second, wantErr: true},
		{name: "zero with unit", env: env("TIMEOUT", "0s"), want: 20 * time.Second, wantErr: true},
		{name: "negative", env: env("TIMEOUT", "-1s"), want: 20 * time.Second, wantErr: true},
		{name: "no unit", env: env("TIMEOUT", "30"), want: 20 * time.Second, wantErr: true},
		{name: "word", env: env("TIMEOUT", "soon"), want: 20 * time.Second, wantErr: true},
	}, func(r *Reader) time.Duration { return r.Duration("TIMEOUT", 20*time.Second) })
}

func TestBool(t *testing.T) {
	runReads(t, "VERBOSE", []readCase[bool]{
		{name: "unset", env: nil, want: true},
		{name: "blank", env: env("VERBOSE", " "), want: true},
		{name: "false", env: env("VERBOSE", "false"), want: false},
		{name: "zero", env: env("VERBOSE", "0"), want: false},
		{name: "true", env: env("VERBOSE", "true"), want: true},
		{name: "one", env: env("VERBOSE", "1"), want: true},
		{name: "upper case", env: env("VERBOSE", "FALSE"), want: false},
		{name: "yes", env: env("VERBOSE", "yes"), want: true, wantErr: true},
	}, func(r *Reader) bool { return r.Bool("VERBOSE", true) })
}

func TestBytes(t *testing.T) {
	const def = 64 << 20
	cases := []struct {
		name           string
		value          *string
		allowUnlimited bool
		want           int64
		wantErr        bool
	}{
		{name: "unset", value: nil, want: def},
		{name: "blank", value: ptr(" "), want: def},
		{name: "plain number", value: ptr("1048576"), want: 1048576},
		{name: "B", value: ptr("512B"), want: 512},
		{name: "KiB", value: ptr("2KiB"), want: 2 << 10},
		{name: "MiB", value: ptr("64MiB"), want: 64 << 20},
		{name: "GiB", value: ptr("3GiB"), want: 3 << 30},
		{name: "TiB", value: ptr("1TiB"), want: 1 << 40},
		{name: "KB", value: ptr("2KB"), want: 2_000},
		{name: "MB", value: ptr("5MB"), want: 5_000_000},
		{name: "GB", value: ptr("2GB"), want: 2_000_000_000},
		{name: "TB", value: ptr("1TB"), want: 1_000_000_000_000},
		{name: "space before unit", value: ptr(" 64 MiB "), want: 64 << 20},
		{name: "largest accepted", value: ptr("4294967296GiB"), want: 1 << 62},
		{name: "unlimited allowed", value: ptr("-1"), allowUnlimited: true, want: -1},
		{name: "unlimited not allowed", value: ptr("-1"), want: def, wantErr: true},
		{name: "other negative", value: ptr("-2"), allowUnlimited: true, want: def, wantErr: true},
		{name: "negative with unit", value: ptr("-1KiB"), allowUnlimited: true, want: def, wantErr: true},
		{name: "zero", value: ptr("0"), allowUnlimited: true, want: def, wantErr: true},
		{name: "fraction", value: ptr("1.5GiB"), want: def, wantErr: true},
		{name: "lower-case unit", value: ptr("64mib"), want: def, wantErr: true},
		{name: "unit alone", value: ptr("MiB"), want: def, wantErr: true},
		{name: "word", value: ptr("lots"), want: def, wantErr: true},
		{name: "overflows int64", value: ptr("9223372036854775808"), want: def, wantErr: true},
		{name: "over the cap", value: ptr("4611686018427387905"), want: def, wantErr: true},
		{name: "unit overflows", value: ptr("4294967297GiB"), want: def, wantErr: true},
		{name: "unit overflows far", value: ptr("9223372036854775807KB"), want: def, wantErr: true},
		// -(2^34-1) GiB is -2^64 + 2^30, which wraps to +1GiB in int64.
		{name: "negative wraps to positive", value: ptr("-17179869183GiB"), allowUnlimited: true, want: def, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]string{}
			if tc.value != nil {
				m["MAX_BYTES"] = *tc.value
			}
			r := NewReader(MapLookup(m))
			if got := r.Bytes("MAX_BYTES", def, tc.allowUnlimited); got != tc.want {
				t.Errorf("value: got %d; want %d", got, tc.want)
			}
			checkErr(t, r.Err(), "MAX_BYTES", m["MAX_BYTES"], tc.wantErr)
		})
	}
}

func ptr(s string) *string { return &s }

func TestURL(t *testing.T) {
	cases := []struct {
		name    string
		value   *string
		list    bool
		schemes []string
		want    string
		wantErr bool
	}{
		{name: "unset", value: nil, schemes: []string{"nats"}, want: "def"},
		{name: "blank", value: ptr(" "), schemes: []string{"nats"}, want: "def"},
		{name: "nats", value: ptr("nats://127.0.0.1:4222"), schemes: []string{"nats"}, want: "nats://127.0.0.1:4222"},
		{name: "nats list", value: ptr("nats://a:4222,nats://b:4222"), list: true, schemes: []string{"nats", "tls"}, want: "nats://a:4222,nats://b:4222"},
		{name: "nats list with spaces", value: ptr("nats://a:4222, tls://b:4222"), list: true, schemes: []string{"nats", "tls"}, want: "nats://a:4222, tls://b:4222"},
		{name: "list with a bad scheme", value: ptr("nats://a:4222,http://b:4222"), list: true, schemes: []string{"nats", "tls"}, want: "def", wantErr: true},
		{name: "list with an empty entry", value: ptr("nats://a:4222,"), list: true, schemes: []string{"nats"}, want: "def", wantErr: true},
		{name: "postgres", value: ptr("postgres://u:p@db:5432/events"), schemes: []string{"postgres", "postgresql"}, want: "postgres://u:p@db:5432/events"},
		{name: "postgresql", value: ptr("postgresql://db/events"), schemes: []string{"postgres", "postgresql"}, want: "postgresql://db/events"},
		{name: "wrong scheme", value: ptr("mysql://db/events"), schemes: []string{"postgres", "postgresql"}, want: "def", wantErr: true},
		{name: "no scheme", value: ptr("db:5432"), schemes: []string{"postgres"}, want: "def", wantErr: true},
		{name: "no host", value: ptr("postgres:///events"), schemes: []string{"postgres"}, want: "def", wantErr: true},
		{name: "unparsable", value: ptr("postgres://db:port/x"), schemes: []string{"postgres"}, want: "def", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]string{}
			if tc.value != nil {
				m["DB_URL"] = *tc.value
			}
			r := NewReader(MapLookup(m))
			if got := r.URL("DB_URL", "def", tc.list, tc.schemes...); got != tc.want {
				t.Errorf("value: got %q; want %q", got, tc.want)
			}
			err := r.Err()
			switch {
			case !tc.wantErr && err != nil:
				t.Errorf("Err: got %v; want nil", err)
			case tc.wantErr && err == nil:
				t.Errorf("Err: got nil; want an error naming DB_URL")
			case tc.wantErr && !strings.HasPrefix(err.Error(), "DB_URL: "):
				t.Errorf("Err: got %q; want it to start with %q", err, "DB_URL: ")
			case tc.wantErr && !strings.Contains(err.Error(), tc.schemes[0]+"://"):
				t.Errorf("Err: got %q; want it to show the expected scheme %s", err, tc.schemes[0])
			}
		})
	}
}

// TestURLErrorHidesSecrets pins down why URL errors, unlike the others, do
// not quote the value: a database URL carries its password.
func TestURLErrorHidesSecrets(t *testing.T) {
	r := NewReader(MapLookup(env("DATABASE_URL", "mysql://app:s3cret@db/events")))
	r.URL("DATABASE_URL", "", false, "postgres", "postgresql")
	if err := r.Err(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Err: got %v; want an error without the password", err)
	}
}

func TestFirstErrorKept(t *testing.T) {
	r := NewReader(MapLookup(map[string]string{
		"PORT":    "http",
		"TIMEOUT": "soon",
	}))
	r.Int("PORT", 1, 1, 10)
	r.Duration("TIMEOUT", time.Second)
	r.Required("MISSING")
	r.Fail("RELATION", "must be below %d", 5)
	want := `PORT: must be an integer from 1 to 10, got "http"`
	if err := r.Err(); err == nil || err.Error() != want {
		t.Errorf("Err: got %v; want %s", err, want)
	}
}

func TestFail(t *testing.T) {
	r := NewReader(MapLookup(nil))
	r.Fail("MIN_BATCH", "must not exceed MAX_BATCH (%d), got %d", 10, 20)
	want := "MIN_BATCH: must not exceed MAX_BATCH (10), got 20"
	if err := r.Err(); err == nil || err.Error() != want {
		t.Errorf("Err: got %v; want %s", err, want)
	}
}

func TestReadCommon(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    Common
		wantErr string // the variable named in the error, "" for none
	}{
		{
			name: "defaults",
			env:  nil,
			want: Common{Port: 3000, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 20 * time.Second},
		},
		{
			name: "blank is default",
			env:  map[string]string{"PORT": "", "LOG_LEVEL": " ", "LOG_FORMAT": "", "SHUTDOWN_TIMEOUT": " "},
			want: Common{Port: 3000, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 20 * time.Second},
		},
		{
			name: "set",
			env:  map[string]string{"PORT": "8080", "LOG_LEVEL": "debug", "LOG_FORMAT": "text", "SHUTDOWN_TIMEOUT": "45s"},
			want: Common{Port: 8080, LogLevel: "debug", LogFormat: "text", ShutdownTimeout: 45 * time.Second},
		},
		{
			name:    "bad port",
			env:     map[string]string{"PORT": "70000"},
			want:    Common{Port: 3000, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 20 * time.Second},
			wantErr: "PORT",
		},
		{
			name:    "bad level",
			env:     map[string]string{"LOG_LEVEL": "verbose"},
			want:    Common{Port: 3000, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 20 * time.Second},
			wantErr: "LOG_LEVEL",
		},
		{
			name:    "bad format",
			env:     map[string]string{"LOG_FORMAT": "xml"},
			want:    Common{Port: 3000, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 20 * time.Second},
			wantErr: "LOG_FORMAT",
		},
		{
			name:    "bad shutdown timeout",
			env:     map[string]string{"SHUTDOWN_TIMEOUT": "0s"},
			want:    Common{Port: 3000, LogLevel: "info", LogFormat: "json", ShutdownTimeout: 20 * time.Second},
			wantErr: "SHUTDOWN_TIMEOUT",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(MapLookup(tc.env))
			if got := r.ReadCommon(3000); got != tc.want {
				t.Errorf("ReadCommon: got %+v; want %+v", got, tc.want)
			}
			checkErr(t, r.Err(), tc.wantErr, tc.env[tc.wantErr], tc.wantErr != "")
		})
	}
}
