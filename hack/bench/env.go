package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/natsembed"
	"github.com/eventpipe/eventpipe/pkg/pgserver"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// binaries are the services the harness runs as processes.
var binaries = []string{"gateway", "fb-collector", "ttk-collector", "reporter", "publisher"}

// env is what the parts share: the work folder, the binaries, one private
// PostgreSQL (started on first use) and a logger for progress lines.
type env struct {
	dir    string
	binDir string
	logDir string
	pgFast bool
	logger *slog.Logger

	pg     *pgserver.Server
	pgPort int
	pgDir  string
	dbSeq  int
}

// buildBinaries builds the services into dir, statically and trimmed, as
// `make build` and the images do.
func buildBinaries(ctx context.Context, root, dir string) error {
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + "/"}
	for _, b := range binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w: %s", err, out)
	}
	return nil
}

// moduleRoot returns the folder of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the eventpipe module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// start runs a service binary on a free port.
func (e *env) start(name, logName string, env ...string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return startProc(e.binDir, e.logDir, logName, name, port, false, env...)
}

// startReady runs a service and waits until /readyz answers 200.
func (e *env) startReady(ctx context.Context, name, logName string, env ...string) (*proc, error) {
	p, err := e.start(name, logName, env...)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 60*time.Second); err != nil {
		_ = p.stop()
		return nil, err
	}
	return p, nil
}

// natsServer is an embedded JetStream server on its own store, with a
// client connection of the harness.
type natsServer struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	dir string
}

// startNATS starts a fresh JetStream server inside the harness process,
// as the local stack does.
func (e *env) startNATS(name string) (*natsServer, error) {
	dir := filepath.Join(e.dir, "nats-"+name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.Name("bench"))
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, err
	}
	return &natsServer{srv: srv, nc: nc, js: js, dir: dir}, nil
}

func (n *natsServer) url() string { return n.srv.ClientURL() }

// ensureStreams creates the streams with the services' default settings,
// as a gateway would at start.
func (n *natsServer) ensureStreams(ctx context.Context) error {
	return stream.Ensure(ctx, n.js, defaultStreamOptions(), true)
}

func defaultStreamOptions() stream.Options {
	return stream.ReadOptions(config.NewReader(config.MapLookup(nil)))
}

// lag sums num_pending and num_ack_pending over the collectors' durable
// consumers: what is published and not yet stored. A consumer not yet
// created counts as missing.
func (n *natsServer) lag(ctx context.Context) (int64, error) {
	var total int64
	for _, name := range []string{"fb-collector", "ttk-collector"} {
		c, err := n.js.Consumer(ctx, stream.Events, name)
		if err != nil {
			return 0, fmt.Errorf("consumer %s: %w", name, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("consumer %s: %w", name, err)
		}
		total += int64(info.NumPending) + int64(info.NumAckPending)
	}
	return total, nil
}

// streamMsgs returns how many messages EVENTS holds: on a work-queue
// stream, those not yet acknowledged.
func (n *natsServer) streamMsgs(ctx context.Context) (uint64, error) {
	s, err := n.js.Stream(ctx, stream.Events)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func (n *natsServer) purge(ctx context.Context) error {
	s, err := n.js.Stream(ctx, stream.Events)
	if err != nil {
		return err
	}
	return s.Purge(ctx)
}

func (n *natsServer) stop() {
	n.nc.Close()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	_ = os.RemoveAll(n.dir)
}

// postgres starts the private PostgreSQL on first use.
func (e *env) postgres(ctx context.Context) error {
	if e.pg != nil {
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(e.logDir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	e.pgDir = filepath.Join(e.dir, "postgres")
	pg, err := pgserver.Start(ctx, pgserver.Options{
		DataDir:  e.pgDir,
		Port:     port,
		Database: "bench",
		Fast:     e.pgFast,
		Log:      logFile,
	})
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	e.pg, e.pgPort = pg, port
	return nil
}

func (e *env) dbURL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", e.pgPort, name)
}

// newDatabase creates a fresh, migrated database and returns its URL and a
// function dropping it.
func (e *env) newDatabase(ctx context.Context, name string) (string, func(), error) {
	if err := e.postgres(ctx); err != nil {
		return "", nil, err
	}
	e.dbSeq++
	name = fmt.Sprintf("%s_%d", name, e.dbSeq)
	admin := e.dbURL("postgres")
	if err := execSQL(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, err
	}
	drop := func() {
		_ = execSQL(context.Background(), admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	url := e.dbURL(name)
	if _, err := schema.Up(url); err != nil {
		drop()
		return "", nil, err
	}
	return url, drop, nil
}

// postmasterPID returns the server's main process id, from its pid file.
func (e *env) postmasterPID() int {
	if e.pg == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(e.pgDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	var pid int
	_, _ = fmt.Sscan(string(b), &pid)
	return pid
}

func (e *env) close() error {
	if e.pg != nil {
		return e.pg.Stop()
	}
	return nil
}

// execSQL runs statements on a connection of their own.
func execSQL(ctx context.Context, url string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
