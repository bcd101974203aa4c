package publisher

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

// Config is what cmd/publisher needs: the run's options and its logging.
type Config struct {
	Options   Options
	LogLevel  string // debug|info|warn|error
	LogFormat string // json|text
}

// setting is one environment variable and the flag that mirrors it.
type setting struct {
	env   string
	usage string
}

// settings is a read-only table; flags are derived from it so they cannot
// drift from the variables they mirror.
var settings = [...]setting{
	{"EVENT_ENDPOINT", "URL the events are POSTed to (default " + DefaultEndpoint + ")"},
	{"PUBLISH_INTERVAL", "time between two POSTs (default " + DefaultInterval.String() + ")"},
	{"MIN_BATCH", "fewest events in a POST (default " + strconv.Itoa(DefaultMinBatch) + ")"},
	{"MAX_BATCH", "most events in a POST (default " + strconv.Itoa(DefaultMaxBatch) + ")"},
	{"TOTAL_EVENTS", "events to send in all, then stop; 0 sends until interrupted (default 0)"},
	{"DUPLICATE_RATIO", "share 0..1 of events that repeat an event already sent (default 0)"},
	{"OUT_OF_ORDER", "stamp events up to this long in the past, at random (default 0s)"},
	{"SEED", "seed of the event stream; 0 picks one from the clock (default 0)"},
	{"CORRUPT_EVERY", "one POST in N ends with a corrupted event; 0 never (default " + strconv.Itoa(DefaultCorruptEvery) + ")"},
	{"REQUEST_TIMEOUT", "bound on each POST; 0 waits forever like the real publisher (default 0s)"},
	{"MAX_IN_FLIGHT", "most POSTs awaiting an answer; 0 is unbounded like the real publisher (default 0)"},
	{"SHUTDOWN_GRACE", "how long POSTs in flight may finish after an interrupt (default " + DefaultShutdownGrace.String() + ")"},
	{"LOG_LEVEL", "debug|info|warn|error; debug logs every POST (default info)"},
	{"LOG_FORMAT", "json|text (default json)"},
}

// maxBatch bounds MIN_BATCH and MAX_BATCH: a million events is a body of
// about 440 MB, far past any gateway's limit.
const maxBatch = 1_000_000

func flagName(env string) string {
	return strings.ToLower(strings.ReplaceAll(env, "_", "-"))
}

// LoadConfig reads the settings from the environment (through lookup, e.g.
// os.LookupEnv) and from args, the command-line flags, which win. An invalid
// setting is reported as one line naming its variable. With -h or -help it
// returns flag.ErrHelp; Usage describes the settings.
func LoadConfig(args []string, lookup func(string) (string, bool)) (Config, error) {
	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := map[string]*string{}
	for _, s := range settings {
		values[s.env] = fs.String(flagName(s.env), "", s.usage)
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: settings are flags or environment variables", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	r := config.NewReader(func(name string) (string, bool) {
		if given[flagName(name)] {
			return *values[name], true
		}
		return lookup(name)
	})

	def := DefaultOptions()
	o := Options{
		Endpoint:       r.URL("EVENT_ENDPOINT", def.Endpoint, false, "http", "https"),
		Interval:       r.Duration("PUBLISH_INTERVAL", def.Interval),
		MinBatch:       r.Int("MIN_BATCH", def.MinBatch, 1, maxBatch),
		MaxBatch:       r.Int("MAX_BATCH", def.MaxBatch, 1, maxBatch),
		Total:          nonNegativeInt64(r, "TOTAL_EVENTS"),
		DuplicateRatio: r.Float("DUPLICATE_RATIO", 0, 0, 1),
		OutOfOrder:     nonNegativeDuration(r, "OUT_OF_ORDER"),
		Seed:           seed(r, "SEED"),
		CorruptEvery:   r.Int("CORRUPT_EVERY", def.CorruptEvery, 0, maxBatch),
		Timeout:        nonNegativeDuration(r, "REQUEST_TIMEOUT"),
		MaxInFlight:    r.Int("MAX_IN_FLIGHT", 0, 0, 100_000),
		ShutdownGrace:  r.Duration("SHUTDOWN_GRACE", def.ShutdownGrace),
	}
	c := Config{
		Options:   o,
		LogLevel:  r.Enum("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		LogFormat: r.Enum("LOG_FORMAT", "json", "json", "text"),
	}
	if r.Err() == nil && o.MinBatch > o.MaxBatch {
		r.Fail("MIN_BATCH", "must not exceed MAX_BATCH, got %d > %d", o.MinBatch, o.MaxBatch)
	}
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Usage writes the settings LoadConfig reads.
func Usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: publisher [flags]")
	fmt.Fprintln(w, "Every flag mirrors an environment variable; flags win.")
	for _, s := range settings {
		fmt.Fprintf(w, "  -%s, %s\n    \t%s\n", flagName(s.env), s.env, s.usage)
	}
}

func nonNegativeInt64(r *config.Reader, name string) int64 {
	v := r.String(name, "0")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		r.Fail(name, "must be a non-negative integer, got %q", v)
		return 0
	}
	return n
}

// nonNegativeDuration differs from Reader.Duration in accepting 0, which
// here means "none".
func nonNegativeDuration(r *config.Reader, name string) time.Duration {
	v := r.String(name, "0s")
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.Fail(name, "must be a duration such as 0s, 500ms or 1h, got %q", v)
		return 0
	}
	return d
}

// seed returns the SEED setting, or one from the clock for 0 so that runs
// differ by default; the summary prints it so a run can be replayed.
func seed(r *config.Reader, name string) int64 {
	v := r.String(name, "0")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.Fail(name, "must be an integer, got %q", v)
		return 0
	}
	if n == 0 {
		n = time.Now().UnixNano()
	}
	return n
}
