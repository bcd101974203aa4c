package report

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventpipe/eventpipe/pkg/config"
)

// DefaultPort is the reporter's PORT unless set (api.md).
const DefaultPort = 3003

// Options configures the reporter.
type Options struct {
	// Addr is where the HTTP server listens: ":"+PORT unless set; tests
	// use "127.0.0.1:0".
	Addr      string
	Port      int
	LogLevel  string
	LogFormat string
	// ShutdownTimeout bounds the whole graceful stop, in-flight reports
	// included.
	ShutdownTimeout time.Duration

	// DatabaseURL is DATABASE_URL; required.
	DatabaseURL string
	// QueryTimeout bounds each report's database work (QUERY_TIMEOUT). A
	// report that takes longer is answered 504 rather than holding a
	// connection and the client indefinitely.
	QueryTimeout time.Duration
	// DBMaxConns is the pool size (DB_MAX_CONNS): at most this many
	// reports run in the database at once.
	DBMaxConns int32
	// Started, when set, is called with the bound address once the
	// listener is up, so in-process tests learn the port.
	Started func(addr string)
}

// LoadOptions reads the reporter's settings: PORT, DATABASE_URL (required),
// LOG_LEVEL, LOG_FORMAT, SHUTDOWN_TIMEOUT, QUERY_TIMEOUT (default 30s) and
// DB_MAX_CONNS (default 10). The error names the first bad setting.
func LoadOptions(lookup config.Lookup) (Options, error) {
	r := config.NewReader(lookup)
	common := r.ReadCommon(DefaultPort)
	opts := Options{
		Port:            common.Port,
		LogLevel:        common.LogLevel,
		LogFormat:       common.LogFormat,
		ShutdownTimeout: common.ShutdownTimeout,
		DatabaseURL:     r.Required("DATABASE_URL"),
		QueryTimeout:    r.Duration("QUERY_TIMEOUT", 30*time.Second),
		DBMaxConns:      int32(r.Int("DB_MAX_CONNS", 10, 1, 1000)),
	}
	if opts.DatabaseURL != "" {
		// Parsed here so a malformed URL stops the service at start with
		// one line, not at the first report. pgx keeps passwords out of
		// its parse errors.
		if _, err := pgxpool.ParseConfig(opts.DatabaseURL); err != nil {
			r.Fail("DATABASE_URL", "%v", err)
		}
	}
	if err := r.Err(); err != nil {
		return Options{}, err
	}
	opts.Addr = ":" + strconv.Itoa(opts.Port)
	return opts, nil
}
