// Package pgtest gives each test its own freshly migrated PostgreSQL
// database on a real server: TEST_DATABASE_URL's server when set, else one
// private server per test binary started from the machine's binaries.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/eventpipe/eventpipe/pkg/pgserver"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

var (
	mu       sync.Mutex
	started  *pgserver.Server
	adminURL string
	startErr error
	dataDir  string
	seq      atomic.Int64
)

// Run runs the package's tests, stops the server they shared, and fails
// the run when the tests left goroutines behind (a pool or server not
// closed); call it from TestMain: os.Exit(pgtest.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	if started != nil {
		_ = started.Stop()
	}
	if dataDir != "" {
		_ = os.RemoveAll(dataDir)
	}
	mu.Unlock()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

func admin(t testing.TB) string {
	mu.Lock()
	defer mu.Unlock()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	if adminURL != "" || startErr != nil {
		if startErr != nil {
			t.Fatalf("postgres: %v", startErr)
		}
		return adminURL
	}
	needBinaries(t)
	s, dir, err := startServer()
	dataDir = dir
	if err != nil {
		startErr = err
		t.Fatalf("postgres: %v", err)
	}
	started, adminURL = s, s.AdminURL()
	return adminURL
}

// needBinaries skips the test on a machine without the PostgreSQL server
// binaries, and fails it under CI, which installs them.
func needBinaries(t testing.TB) {
	t.Helper()
	if pgserver.Available() {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("postgres: %v", pgserver.ErrNoBinaries)
	}
	t.Skipf("skipping: needs PostgreSQL: %v", pgserver.ErrNoBinaries)
}

// startServer starts a server with its data in a new directory, returned
// for removal once the server has stopped.
func startServer() (*pgserver.Server, string, error) {
	// Not t.TempDir: its parent is private, and the server may run as the
	// postgres user, which must get through.
	dir, err := os.MkdirTemp("", "eventpipe-pgtest-")
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, dir, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, dir, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgserver.Start(ctx, pgserver.Options{DataDir: dir + "/data", Port: port, Fast: true})
	return s, dir, err
}

// PrivateServer starts a PostgreSQL server for the test alone, stopped
// when the test ends: for tests of what belongs to a whole server, such as
// roles, which a shared server's other tests would see.
func PrivateServer(t testing.TB) *pgserver.Server {
	t.Helper()
	needBinaries(t)
	s, dir, err := startServer()
	if dir != "" {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Connect opens a connection to dbURL, closed when the test ends.
func Connect(t testing.TB, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call,
// and never one it has returned before in this process: the caller binds
// it later, and the kernel may hand a just-closed port out again, so two
// services of one test could otherwise be given the same port.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no port not handed out before in 100 tries")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// NewDatabase creates an empty database for the test, dropped when the test
// ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := admin(t)
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("parse admin url: %v", err)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), seq.Add(1))
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse admin url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Migrated creates a database for the test, applies every migration and
// returns its URL.
func Migrated(t testing.TB) string {
	t.Helper()
	dbURL := NewDatabase(t)
	if _, err := schema.Up(dbURL); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return dbURL
}
