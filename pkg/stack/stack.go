// Package stack runs the whole system on one machine: a NATS JetStream
// server (embedded, or a nats-server process that can be restarted), a
// private PostgreSQL (or an existing DATABASE_URL), the migrations, and
// every service as its own process, collectors optionally as several
// replicas. The local stack (cmd/devstack) and the process-level tests use
// it, so both exercise the binaries exactly as they ship.
package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/natsembed"
	"github.com/eventpipe/eventpipe/pkg/pgserver"
)

// The services, in start order. Stop goes in reverse, so the gateway stops
// taking requests before the collectors stop storing.
var services = []struct {
	Name string
	Port int
}{
	{"reporter", 3003},
	{"fb-collector", 3001},
	{"ttk-collector", 3002},
	{"gateway", 3000},
}

// Options configures a stack. Zero ports take the api.md defaults.
type Options struct {
	// Dir keeps the NATS store, the PostgreSQL cluster and the logs.
	Dir string
	// BinDir holds the built binaries (gateway, fb-collector, ...).
	BinDir string
	// DatabaseURL, when set, is used instead of a private PostgreSQL.
	DatabaseURL string
	// Ports of NATS, its monitoring endpoint and the private PostgreSQL.
	NATSPort, NATSMonitorPort, PostgresPort int
	// Ports maps a service name to its PORT; missing ones take defaults.
	Ports map[string]int
	// Env is added to every service's environment (e.g. LOG_FORMAT).
	Env []string
	// ServiceEnv adds settings to one service.
	ServiceEnv map[string][]string
	// Output receives every process's output, each line prefixed with its
	// name; nil keeps only the log files under Dir/logs.
	Output io.Writer
	// FastPostgres turns fsync off in a private PostgreSQL (tests).
	FastPostgres bool
	// NATSBinary, when set, is a nats-server binary run as a process of
	// its own, with its file store under Dir/nats, so that it can be
	// stopped and started again on the same store and ports (StopNATS,
	// StartNATS). Empty runs NATS embedded in this process.
	NATSBinary string
	// Replicas maps a service to how many instances of it run; missing
	// ones run one. The first instance is named after the service, the
	// n-th "<service>-<n>" (fb-collector-2), which needs its port in Ports.
	Replicas map[string]int
}

// natsProcName names the nats-server process and its log.
const natsProcName = "nats-server"

// instance is one process of a service.
type instance struct {
	name, service string
}

// Stack is a running system.
type Stack struct {
	opts      Options
	logger    *slog.Logger
	nats      *server.Server // embedded; nil when NATSBinary is set
	natsProc  *Proc          // the nats-server process, when NATSBinary is set
	pg        *pgserver.Server
	pgOpts    pgserver.Options
	dbURL     string
	natsURL   string
	mu        sync.Mutex
	procs     map[string]*Proc
	instances []instance
	outputMu  sync.Mutex
	publisher *Proc
}

// Start brings the system up and returns once every service is ready.
func Start(ctx context.Context, o Options, logger *slog.Logger) (_ *Stack, err error) {
	if o.NATSPort == 0 {
		o.NATSPort = 4222
	}
	if o.PostgresPort == 0 {
		o.PostgresPort = 5432
	}
	s := &Stack{opts: o, logger: logger, procs: map[string]*Proc{}}
	// Whatever came up before a failure is stopped again.
	defer func() {
		if err != nil {
			_ = s.Stop(context.Background())
		}
	}()
	for _, name := range []string{"migrate", "gateway", "fb-collector", "ttk-collector", "reporter"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, name)); err != nil {
			return nil, fmt.Errorf("binary %s not built in %s (run make build): %w", name, o.BinDir, err)
		}
	}
	for _, svc := range services {
		s.instances = append(s.instances, instance{svc.Name, svc.Name})
		for n := 2; n <= o.Replicas[svc.Name]; n++ {
			name := svc.Name + "-" + strconv.Itoa(n)
			if o.Ports[name] == 0 {
				return nil, fmt.Errorf("replica %s needs its port in Options.Ports", name)
			}
			s.instances = append(s.instances, instance{name, svc.Name})
		}
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}

	if o.NATSBinary != "" {
		s.natsURL = "nats://127.0.0.1:" + strconv.Itoa(o.NATSPort)
		if err := s.StartNATS(ctx); err != nil {
			return nil, err
		}
	} else {
		s.nats, err = natsembed.Start(natsembed.Options{
			Port:        o.NATSPort,
			MonitorPort: o.NATSMonitorPort,
			StoreDir:    filepath.Join(o.Dir, "nats"),
		})
		if err != nil {
			return nil, fmt.Errorf("start nats on port %d: %w", o.NATSPort, err)
		}
		s.natsURL = s.nats.ClientURL()
	}
	logger.Info("nats jetstream up", "url", s.natsURL)

	s.dbURL = o.DatabaseURL
	if s.dbURL == "" {
		pgLog, err := os.OpenFile(filepath.Join(o.Dir, "logs", "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		s.pgOpts = pgserver.Options{
			DataDir:  filepath.Join(o.Dir, "postgres"),
			Port:     o.PostgresPort,
			Database: "eventpipe",
			Fast:     o.FastPostgres,
			Log:      pgLog,
		}
		s.pg, err = pgserver.Start(ctx, s.pgOpts)
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		s.dbURL = s.pg.URL()
		logger.Info("postgres up", "url", s.dbURL)
	}

	migrate := s.newProc("migrate", s.binary("migrate"), nil, nil)
	if err := migrate.Start(); err != nil {
		return nil, err
	}
	if code := migrate.Wait(); code != 0 {
		return nil, fmt.Errorf("migrate exited with %d (see %s)", code, migrate.LogPath())
	}

	for _, in := range s.instances {
		p := s.newProc(in.name, s.binary(in.service), nil, []string{"PORT=" + strconv.Itoa(s.Port(in.name))})
		if err := p.Start(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.procs[in.name] = p
		s.mu.Unlock()
	}
	for _, in := range s.instances {
		if err := s.WaitReady(ctx, in.name, 60*time.Second); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) binary(name string) string { return filepath.Join(s.opts.BinDir, name) }

// StartNATS starts the nats-server process on the stack's store and ports
// (first at Start, again after StopNATS) and returns once JetStream
// answers.
func (s *Stack) StartNATS(ctx context.Context) error {
	if s.opts.NATSBinary == "" {
		return errors.New("NATS runs embedded in this process; set Options.NATSBinary to run it as a process")
	}
	args := []string{
		"-js", "-sd", filepath.Join(s.opts.Dir, "nats"),
		"-a", "127.0.0.1", "-p", strconv.Itoa(s.opts.NATSPort),
		"-n", "eventpipe-nats",
	}
	if s.opts.NATSMonitorPort != 0 {
		args = append(args, "-m", strconv.Itoa(s.opts.NATSMonitorPort))
	}
	p := s.newProc(natsProcName, s.opts.NATSBinary, args, nil)
	if err := p.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.natsProc = p
	s.mu.Unlock()
	return waitJetStream(ctx, s.natsURL, p, 60*time.Second)
}

// StopNATS stops the nats-server process gracefully (SIGTERM: JetStream
// flushes its store), as an operator's restart would; the services keep
// running and reconnect once StartNATS brings it back. Past ctx it is
// killed.
func (s *Stack) StopNATS(ctx context.Context) error {
	s.mu.Lock()
	p := s.natsProc
	s.mu.Unlock()
	if p == nil {
		return errors.New("the stack runs no nats-server process")
	}
	if p.Exited() {
		return nil
	}
	if code := p.Terminate(ctx); code != 0 {
		return fmt.Errorf("nats-server exited with %d (see %s)", code, p.LogPath())
	}
	return nil
}

// KillNATS SIGKILLs the nats-server process, as a crash would: what
// JetStream acknowledged was already written to its files, but nothing is
// flushed or closed cleanly.
func (s *Stack) KillNATS() error {
	s.mu.Lock()
	p := s.natsProc
	s.mu.Unlock()
	if p == nil {
		return errors.New("the stack runs no nats-server process")
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !p.Exited() {
		return err
	}
	p.Wait()
	return nil
}

// waitJetStream polls the server until JetStream answers on it.
func waitJetStream(ctx context.Context, url string, p *Proc, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		last = jetStreamUp(ctx, url)
		if last == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("nats-server exited with %d at start (see %s)", p.Wait(), p.LogPath())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats-server not serving JetStream after %s: %w (see %s)", limit, last, p.LogPath())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func jetStreamUp(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// StopPostgres stops the private PostgreSQL, as an outage would; the
// services keep running.
func (s *Stack) StopPostgres() error {
	s.mu.Lock()
	pg := s.pg
	s.mu.Unlock()
	if pg == nil {
		return errors.New("the stack runs no private PostgreSQL")
	}
	return pg.Stop()
}

// StartPostgres starts the private PostgreSQL again, on the same data and
// port, after StopPostgres.
func (s *Stack) StartPostgres(ctx context.Context) error {
	if s.pgOpts.DataDir == "" {
		return errors.New("the stack runs no private PostgreSQL")
	}
	pg, err := pgserver.Start(ctx, s.pgOpts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pg = pg
	s.mu.Unlock()
	return nil
}

// Port returns the port a service (or a replica, by its instance name)
// listens on.
func (s *Stack) Port(name string) int {
	if p, ok := s.opts.Ports[name]; ok {
		return p
	}
	for _, svc := range services {
		if svc.Name == name {
			return svc.Port
		}
	}
	return 0
}

// URL returns http://127.0.0.1:<port> of a service.
func (s *Stack) URL(name string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.Port(name))
}

// DatabaseURL returns the database the services use.
func (s *Stack) DatabaseURL() string { return s.dbURL }

// NATSURL returns the NATS client URL.
func (s *Stack) NATSURL() string { return s.natsURL }

// NATSMonitorURL returns the NATS monitoring URL, or "" when off.
func (s *Stack) NATSMonitorURL() string {
	if s.opts.NATSMonitorPort == 0 {
		return ""
	}
	return "http://127.0.0.1:" + strconv.Itoa(s.opts.NATSMonitorPort)
}

// Instances returns the names of a service's instances, the service's
// own name first.
func (s *Stack) Instances(service string) []string {
	var names []string
	for _, in := range s.instances {
		if in.service == service {
			names = append(names, in.name)
		}
	}
	return names
}

// Proc returns a running instance's process.
func (s *Stack) Proc(name string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// Restart starts a service instance again (after it exited or was
// killed) and waits until it is ready.
func (s *Stack) Restart(ctx context.Context, name string) error {
	old := s.Proc(name)
	if old == nil {
		return fmt.Errorf("no service %s", name)
	}
	p := s.newProc(name, old.path, old.args, old.extraEnv)
	if err := p.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return s.WaitReady(ctx, name, 60*time.Second)
}

// WaitReady polls a service's /readyz until it answers 200.
func (s *Stack) WaitReady(ctx context.Context, name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	url := s.URL(name) + "/readyz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p := s.Proc(name); p != nil && p.Exited() {
			return fmt.Errorf("%s exited with %d before it was ready (see %s)", name, p.Wait(), p.LogPath())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (see %s)", name, limit, s.Proc(name).LogPath())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartPublisher runs the publisher against the gateway with extra
// settings (MIN_BATCH=10, ...), writing its summary to its log.
func (s *Stack) StartPublisher(env ...string) (*Proc, error) {
	env = append([]string{"EVENT_ENDPOINT=" + s.URL("gateway") + "/webhook"}, env...)
	p := s.newProc("publisher", s.binary("publisher"), nil, env)
	if err := p.Start(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.publisher = p
	s.mu.Unlock()
	return p, nil
}

// Stop stops the publisher, then the service instances in reverse start
// order (each with SIGTERM, waiting for its graceful exit), then NATS and
// PostgreSQL.
func (s *Stack) Stop(ctx context.Context) error {
	var errs []error
	s.mu.Lock()
	pub := s.publisher
	s.mu.Unlock()
	if pub != nil && !pub.Exited() {
		if code := pub.Terminate(ctx); code != 0 {
			errs = append(errs, fmt.Errorf("publisher exited with %d", code))
		}
	}
	for i := len(s.instances) - 1; i >= 0; i-- {
		p := s.Proc(s.instances[i].name)
		if p == nil || p.Exited() {
			continue
		}
		if code := p.Terminate(ctx); code != 0 {
			errs = append(errs, fmt.Errorf("%s exited with %d", p.Name, code))
		}
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
	s.mu.Lock()
	np := s.natsProc
	s.mu.Unlock()
	if np != nil && !np.Exited() {
		if code := np.Terminate(ctx); code != 0 {
			errs = append(errs, fmt.Errorf("nats-server exited with %d", code))
		}
	}
	s.mu.Lock()
	pg := s.pg
	s.mu.Unlock()
	if pg != nil {
		if err := pg.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newProc prepares the process of instance name: the binary at path run
// with args. Its environment adds, in order, the stack's settings, its
// service's (ServiceEnv of the binary's name), the instance's own
// (ServiceEnv of name, for a replica) and extra.
func (s *Stack) newProc(name, path string, args, extra []string) *Proc {
	env := append(os.Environ(),
		"NATS_URL="+s.natsURL,
		"DATABASE_URL="+s.dbURL,
	)
	env = append(env, s.opts.Env...)
	service := filepath.Base(path)
	env = append(env, s.opts.ServiceEnv[service]...)
	if name != service {
		env = append(env, s.opts.ServiceEnv[name]...)
	}
	env = append(env, extra...)
	cmd := exec.Command(path, args...)
	cmd.Env = env
	// Own process group: a terminal's Ctrl-C reaches only the stack, which
	// then stops the services in order; Pdeathsig ends them if the stack dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return &Proc{Name: name, cmd: cmd, stack: s, path: path, args: args, extraEnv: extra, done: make(chan struct{})}
}

// Proc is one service process.
type Proc struct {
	Name     string
	cmd      *exec.Cmd
	stack    *Stack
	path     string
	args     []string
	extraEnv []string
	logPath  string
	done     chan struct{}
	code     int
}

// Start starts the process, sending its output to its log file (and the
// stack's Output).
func (p *Proc) Start() error {
	p.logPath = filepath.Join(p.stack.opts.Dir, "logs", p.Name+".log")
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = f.Write(append(line, '\n'))
			if out := p.stack.opts.Output; out != nil {
				p.stack.outputMu.Lock()
				fmt.Fprintf(out, "%-13s | %s\n", p.Name, line)
				p.stack.outputMu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		<-copied
		f.Close()
		p.code = 0
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				p.code = ee.ExitCode()
			} else {
				p.code = -1
			}
		}
		close(p.done)
	}()
	return nil
}

// LogPath is the file holding the process's output.
func (p *Proc) LogPath() string { return p.logPath }

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process ends.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process and returns its exit code (-1 when killed
// by a signal).
func (p *Proc) Wait() int {
	<-p.done
	return p.code
}

// Terminate sends SIGTERM and waits for the exit; when ctx ends first the
// process is killed.
func (p *Proc) Terminate(ctx context.Context) int {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.code
}
