// Package httpserver runs a service's HTTP side: a gin engine carrying the
// probes (/healthz, /readyz), /metrics, correlation ids and one log line per
// request, and a server whose listener is bound at start so a busy port
// fails the service at once.
package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Correlation headers, in the order they are looked for on a request.
const (
	HeaderCorrelationID = "X-Correlation-ID"
	HeaderRequestID     = "X-Request-ID"
)

// Check is one readiness dependency: Fn returns nil while it is usable.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Readiness answers /readyz from its checks, and turns not ready for good
// once Drain is called so load balancers stop sending work before shutdown.
type Readiness struct {
	checks   []Check
	timeout  time.Duration
	draining atomic.Bool
}

// NewReadiness returns a Readiness over checks, each given at most two
// seconds per probe.
func NewReadiness(checks ...Check) *Readiness {
	return &Readiness{checks: checks, timeout: 2 * time.Second}
}

// Drain makes every later probe fail with "shutting down".
func (r *Readiness) Drain() { r.draining.Store(true) }

// Ready returns the name of the first failing check and its error, or
// ("", nil) when every check passes.
func (r *Readiness) Ready(ctx context.Context) (string, error) {
	if r.draining.Load() {
		return "shutdown", errors.New("shutting down")
	}
	for _, c := range r.checks {
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		err := c.Fn(cctx)
		cancel()
		if err != nil {
			return c.Name, err
		}
	}
	return "", nil
}

// ErrorBody is the one JSON shape of every HTTP error these services send.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong; Parameter names the query parameter at
// fault when there is one.
type ErrorDetail struct {
	Code      string `json:"code"`
	Parameter string `json:"parameter,omitempty"`
	Message   string `json:"message"`
}

// Error aborts the request with status and the common error body.
func Error(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

type ctxKey struct{}

// CorrelationID returns the request's correlation id carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// WithCorrelationID returns ctx carrying id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// NewCorrelationID returns a random 128-bit id in hex.
func NewCorrelationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SanitizeCorrelationID returns id when it is safe to echo in headers and
// logs (1..128 printable ASCII characters without spaces), else "".
func SanitizeCorrelationID(id string) string {
	if len(id) == 0 || len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return ""
		}
	}
	return id
}

const logAttrsKey = "httpserver.logattrs"

// AddLogAttrs adds attributes to the request's one log line.
func AddLogAttrs(c *gin.Context, attrs ...any) {
	prev, _ := c.Get(logAttrsKey)
	list, _ := prev.([]any)
	c.Set(logAttrsKey, append(list, attrs...))
}

// NewEngine returns a gin engine with recovery, correlation ids, request
// logging and the /healthz, /readyz and /metrics routes.
func NewEngine(logger *slog.Logger, ready *Readiness, gatherer prometheus.Gatherer) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(correlate, logRequests(logger), recovery(logger))
	e.NoRoute(func(c *gin.Context) { Error(c, http.StatusNotFound, "not_found", "no such endpoint") })
	e.NoMethod(func(c *gin.Context) {
		Error(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint")
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", func(c *gin.Context) {
		failing, err := ready.Ready(c.Request.Context())
		if err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "check": failing, "error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
	return e
}

func correlate(c *gin.Context) {
	id := SanitizeCorrelationID(c.GetHeader(HeaderCorrelationID))
	if id == "" {
		id = SanitizeCorrelationID(c.GetHeader(HeaderRequestID))
	}
	if id == "" {
		id = NewCorrelationID()
	}
	c.Header(HeaderCorrelationID, id)
	c.Request = c.Request.WithContext(WithCorrelationID(c.Request.Context(), id))
	c.Next()
}

func quiet(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

func logRequests(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		level := slog.LevelInfo
		if quiet(c.Request.URL.Path) {
			level = slog.LevelDebug
		}
		attrs := []any{
			"correlation_id", CorrelationID(c.Request.Context()),
			"method", c.Request.Method,
			"path", c.Request.URL.Path,
			"status", c.Writer.Status(),
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
		}
		if extra, ok := c.Get(logAttrsKey); ok {
			attrs = append(attrs, extra.([]any)...)
		}
		// A probe answering 503 is readiness doing its job, not an error.
		if c.Writer.Status() >= 500 && !quiet(c.Request.URL.Path) {
			level = slog.LevelError
		}
		logger.Log(c.Request.Context(), level, "request", attrs...)
	}
}

func recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if err, ok := r.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(r)
				}
				logger.Error("handler panic", "correlation_id", CorrelationID(c.Request.Context()), "panic", fmt.Sprint(r))
				Error(c, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		c.Next()
	}
}

// Server is an HTTP server whose listener is already bound.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Options tunes the HTTP server; zero values take safe defaults.
type Options struct {
	// ReadTimeout bounds reading a whole request, body included; a 22 MB
	// body over a slow link needs room.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from header read to response written.
	WriteTimeout time.Duration
}

// Start binds addr and serves handler in the background.
func Start(addr string, handler http.Handler, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 2 * time.Minute
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 3 * time.Minute
	}
	s := &Server{
		srv: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       opts.ReadTimeout,
			WriteTimeout:      opts.WriteTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
		},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr returns the bound address, useful after listening on port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns http://<bound address>.
func (s *Server) URL() string {
	return "http://" + strings.Replace(s.Addr(), "[::]", "127.0.0.1", 1)
}

// Done receives the serve error when the server stops on its own (its
// listener failed), or nil after Shutdown.
func (s *Server) Done() <-chan error { return s.done }

// Shutdown stops accepting connections and waits, until ctx ends, for
// in-flight requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// NewRegistry returns a registry carrying the Go runtime and process
// collectors; services add their own metrics to it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
