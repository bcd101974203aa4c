// Package logging builds the slog loggers every service uses: JSON by
// default so log pipelines can index the correlation ids.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a logger writing to w at level (debug|info|warn|error) in
// format (json|text), tagged with the service name.
func New(w io.Writer, service, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "json", "":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("LOG_FORMAT: must be json or text, got %q", format)
	}
	return slog.New(h).With("service", service), nil
}
