package httpserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/eventpipe/eventpipe/pkg/config"
)

// ProbeTimeout bounds the healthcheck subcommand. /readyz gives each of its
// checks two seconds, so a dependency that hangs still gets a verdict in
// time; container healthchecks allow a little more (5s).
const ProbeTimeout = 4 * time.Second

// Probe GETs url and returns nil only when it answers 200 OK. It is the
// health probe of images that carry no curl or wget (distroless), so it
// ignores proxy settings and never follows a redirect.
func Probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The body of a failing /readyz names the failing check: worth keeping
	// in the container's health log.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// HealthCheck is every service's `healthcheck` subcommand: it probes
// http://127.0.0.1:$PORT/readyz (defaultPort when PORT is unset) and
// returns the exit code a container healthcheck expects, 0 when ready and
// 1 otherwise, with the reason on stderr.
func HealthCheck(lookup config.Lookup, defaultPort int, stderr io.Writer) int {
	r := config.NewReader(lookup)
	port := r.Int("PORT", defaultPort, 1, 65535)
	err := r.Err()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
		defer cancel()
		err = Probe(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/readyz")
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer from /readyz within %s: %w", ProbeTimeout, err)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	return 0
}
