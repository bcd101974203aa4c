// Command bench is the benchmark suite of the README's "Throughput"
// section. It runs the services as they ship (the built binaries, each its
// own process) against a JetStream server embedded in this process and a
// private PostgreSQL, and measures four parts:
//
//   - gateway: the gateway alone, JetStream acknowledging, no collector:
//     events/s and request latency per body size, and the process's peak
//     RSS with two concurrent 50,000-event bodies;
//   - collectors: both collectors draining a backlog published before they
//     start, with and without duplicates;
//   - e2e: the publisher at fixed rates against the whole system, with the
//     collectors' consumer lag sampled throughout;
//   - reports: report latency through the reporter over events bulk-loaded
//     with COPY.
//
// It prints one table, with issue 6's targets next to what was measured,
// and writes every figure as JSON to bench-results/. It exits non-zero only
// when something could not be measured, never for a missed target.
//
//	go run ./hack/bench                  # -size ci: a few minutes
//	go run ./hack/bench -size full       # issue 6's sizes, by hand
//	go run ./hack/bench -size full -parts gateway,reports -report-events 1000000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := parseFlags(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	command := append([]string{"go", "run", "./hack/bench"}, os.Args[1:]...)
	res, path, err := bench(ctx, cfg, command, logger)
	if res != nil {
		res.writeTable(os.Stdout)
	}
	if path != "" {
		fmt.Fprintln(os.Stdout, "results:", path)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// bench runs the selected parts and writes the results file. A part that
// fails is recorded and the next one still runs; the error returned joins
// every failure.
func bench(ctx context.Context, cfg benchConfig, command []string, logger *slog.Logger) (*Results, string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, "", err
	}
	res := &Results{
		Command: command,
		Config:  cfg,
		Machine: describeMachine(ctx, root),
		Started: time.Now(),
	}
	logger.Info("machine", "description", res.Machine.String())

	dir := cfg.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "eventpipe-bench-"); err != nil {
			return nil, "", err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, "", err
	}
	// PostgreSQL runs as its own user when we are root: it must reach the
	// folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", err
	}
	e := &env{dir: dir, logDir: filepath.Join(dir, "logs"), pgFast: cfg.PGFast, logger: logger}
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		return nil, "", err
	}

	var errs []error
	defer func() {
		// Logs are kept when something failed; the data never is.
		switch {
		case cfg.Keep:
			logger.Info("work folder kept", "dir", dir)
		case len(errs) > 0:
			_ = os.RemoveAll(filepath.Join(dir, "postgres"))
			_ = os.RemoveAll(filepath.Join(dir, "bin"))
			logger.Info("service logs kept", "dir", e.logDir)
		default:
			_ = os.RemoveAll(dir)
		}
	}()

	if e.binDir = cfg.BinDir; e.binDir == "" {
		e.binDir = filepath.Join(dir, "bin")
		logger.Info("building the services", "into", e.binDir)
		if err := buildBinaries(ctx, root, e.binDir); err != nil {
			errs = append(errs, err)
			return nil, "", err
		}
	} else if e.binDir, err = filepath.Abs(e.binDir); err != nil {
		return nil, "", err
	}

	for _, part := range cfg.Parts {
		if ctx.Err() != nil {
			break
		}
		logger.Info("part starts", "part", part)
		start := time.Now()
		var err error
		switch part {
		case "gateway":
			res.Gateway, err = runGateway(ctx, e, cfg.Sizes, cfg.Seed)
		case "collectors":
			res.Collectors, err = runCollectors(ctx, e, cfg.Sizes, cfg.Seed)
		case "e2e":
			res.E2E, err = runE2E(ctx, e, cfg.Sizes, cfg.Seed)
		case "reports":
			res.Reports, err = runReports(ctx, e, cfg.Sizes, cfg.Seed)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", part, err))
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", part, err))
			logger.Error("part failed", "part", part, "error", err)
		}
		logger.Info("part done", "part", part, "took", time.Since(start).Round(time.Second).String())
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
		res.Errors = append(res.Errors, "interrupted")
	}
	if e.pg != nil {
		res.Machine.Postgres = postgresVersion(e)
		if err := e.close(); err != nil {
			errs = append(errs, err)
		}
	}
	res.DurationSeconds = time.Since(res.Started).Seconds()
	res.Targets = res.targets()

	out := cfg.OutDir
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	path, err := writeJSON(out, res)
	if err != nil {
		errs = append(errs, err)
	}
	return res, path, errors.Join(errs...)
}

func postgresVersion(e *env) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.dbURL("postgres"))
	if err != nil {
		return ""
	}
	defer conn.Close(ctx)
	var v string
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v
}

func writeJSON(dir string, res *Results) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, res.Started.UTC().Format("20060102T150405Z")+"-"+res.Config.Size+".json")
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}
