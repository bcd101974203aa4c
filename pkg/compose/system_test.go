package compose_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
	"github.com/eventpipe/eventpipe/pkg/pgserver"
	"github.com/eventpipe/eventpipe/pkg/pgtest"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/stack"
)

// TestSystemAsComposeWiresIt runs the whole system with the environment
// compose gives each service, as local processes: the same variables and
// values, only every compose address (nats:4222, postgres:5432,
// gateway:3000, ...) pointing at a local stand-in on a free port. NATS is
// JetStream embedded by pkg/stack, PostgreSQL a private server set up as
// the postgres image sets itself up from its compose environment (user,
// password, database, password authentication). migrate must succeed and
// make the reporter's and the collectors' roles, every service become
// ready logged in as its own role, each compose healthcheck command pass, and
// one event posted through the gateway's load balancer (a real HAProxy
// running manifests/compose/haproxy.cfg) be counted by the reporter.
func TestSystemAsComposeWiresIt(t *testing.T) {
	needBinaries(t)
	if !pgserver.Available() && os.Getenv("CI") == "" {
		t.Skipf("skipping: %v", pgserver.ErrNoBinaries)
	}
	for _, env := range []environment{development, staging, production} {
		t.Run(env.name, func(t *testing.T) {
			runAsCompose(t, env, env.name == development.name)
		})
	}
}

func runAsCompose(t *testing.T, env environment, withPublisher bool) {
	p := env.load(t, "local-publisher")
	dir, err := os.MkdirTemp("", "eventpipe-compose-")
	if err != nil {
		t.Fatal(err)
	}
	// The private PostgreSQL may run as the postgres user: let it through.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	// Every address a compose service answers on, and its local stand-in.
	local := map[string]int{}
	for addr := range listeners(t, p) {
		if name, _, _ := strings.Cut(addr, ":"); name != "prometheus" && name != "grafana" {
			local[addr] = freePort(t)
		}
	}
	pgURL := startPostgresLike(t, dir, local["postgres:5432"], p.Services["postgres"])

	opts := stack.Options{
		Dir:             dir,
		BinDir:          binDir,
		NATSPort:        local["nats:4222"],
		NATSMonitorPort: local["nats:8222"],
		Ports:           map[string]int{},
		ServiceEnv:      map[string][]string{},
	}
	for _, name := range []string{"migrate", "gateway", "fb-collector", "ttk-collector", "reporter", "local-publisher"} {
		s := p.Services[name]
		if port := envValue(s, "PORT"); port != "" {
			opts.Ports[name] = local[name+":"+port]
		}
		opts.ServiceEnv[name] = localEnv(t, p, s, local)
	}
	opts.DatabaseURL = envOf(opts.ServiceEnv["migrate"], "DATABASE_URL")
	if opts.DatabaseURL != pgURL {
		t.Fatalf("migrate's DATABASE_URL, made local, is %s; want %s", opts.DatabaseURL, pgURL)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, opts, slog.New(slog.DiscardHandler))
	if err != nil {
		dumpLogs(t, dir)
		t.Fatalf("start the system with compose's settings: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			dumpLogs(t, dir)
		}
	})

	// Docker runs a healthcheck inside the container: the container's
	// environment, nothing else.
	for _, name := range probed {
		test := p.Services[name].HealthCheck.Test
		cmd := exec.Command(filepath.Join(binDir, filepath.Base(test[1])), test[2:]...)
		cmd.Env = opts.ServiceEnv[name]
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: compose's healthcheck %q failed: %v: %s", name, test[1:], err, out)
		}
	}

	// The event goes in as from the host: through gateway-lb, once its
	// compose healthcheck passes and a gateway has passed HAProxy's check.
	webhook := s.URL("gateway") + "/webhook"
	if haproxy := findHAProxy(t); haproxy != "" {
		startLoadBalancer(t, haproxy, dir, local)
		lb := fmt.Sprintf("http://127.0.0.1:%d", local[fmt.Sprintf("gateway-lb:%d", p.Services["gateway-lb"].Ports[0].Target)])
		check := p.Services["gateway-lb"].HealthCheck.Test
		health, err := url.Parse(check[len(check)-1])
		if err != nil {
			t.Fatalf("gateway-lb healthcheck %q: %v", check, err)
		}
		monitor := fmt.Sprintf("http://127.0.0.1:%d", local["gateway-lb:"+health.Port()])
		waitHTTP(t, monitor+health.Path, time.Minute)
		waitCheckPassed(t, monitor+"/stats", "gateway")
		webhook = lb + "/webhook"
	} else {
		t.Log("haproxy not installed (Debian: apt-get install haproxy): posting to the gateway itself, not through gateway-lb")
	}
	e := eventgen.New(7).Next(time.Date(2025, 6, 10, 12, 0, 0, 0, time.UTC))
	body := append(append([]byte{'['}, e.AppendJSON(nil)...), ']')
	resp, err := http.Post(webhook, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !bytes.Contains(answer, []byte(`"accepted":1,`)) {
		t.Fatalf("POST /webhook: got %d %s; want 202 with one event accepted", resp.StatusCode, answer)
	}
	waitForTotal(t, s.URL("reporter"), func(n int) bool { return n == 1 }, "the one event posted")
	checkRoles(t, pgURL, opts.ServiceEnv)

	if !withPublisher {
		return
	}
	// The local-publisher profile's publisher, wired the same way, feeds
	// the same gateway.
	if _, err := s.StartPublisher(opts.ServiceEnv["local-publisher"]...); err != nil {
		t.Fatal(err)
	}
	waitForTotal(t, s.URL("reporter"), func(n int) bool { return n > 1 }, "the local publisher's events")
}

// checkRoles: the reporter and the collectors are connected as the roles
// of their DATABASE_URLs, each in its group only: the reporter's may read,
// the collectors' insert.
func checkRoles(t *testing.T, ownerURL string, env map[string][]string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for name, group := range map[string]string{"reporter": schema.ReaderRole, "fb-collector": schema.WriterRole, "ttk-collector": schema.WriterRole} {
		u, err := url.Parse(envOf(env[name], "DATABASE_URL"))
		if err != nil {
			t.Fatal(err)
		}
		user := u.User.Username()
		var connected int
		var reader, writer bool
		err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE usename = $1),
			pg_has_role($1, $2, 'MEMBER'), pg_has_role($1, $3, 'MEMBER')`, user, schema.ReaderRole, schema.WriterRole).Scan(&connected, &reader, &writer)
		if err != nil {
			t.Fatalf("%s: role %s: %v", name, user, err)
		}
		if got, want := [2]bool{reader, writer}, [2]bool{group == schema.ReaderRole, group == schema.WriterRole}; connected == 0 || got != want {
			t.Errorf("%s: role %s has %d connections, is in %s, %s: %v; want connections, in %s only", name, user, connected, schema.ReaderRole, schema.WriterRole, got, group)
		}
	}
}

// localEnv returns a service's compose environment as KEY=VALUE, with
// every compose address made local and nothing else changed. It fails the
// test when an address of a compose service is left.
func localEnv(t *testing.T, p *types.Project, s types.ServiceConfig, local map[string]int) []string {
	t.Helper()
	addr := regexp.MustCompile(`(//|@)([a-z0-9][a-z0-9_.-]*):([0-9]+)`)
	var env []string
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		v := envValue(s, k)
		if k == "PORT" {
			v = strconv.Itoa(local[s.Name+":"+v])
		}
		v = addr.ReplaceAllStringFunc(v, func(m string) string {
			sub := addr.FindStringSubmatch(m)
			if port, ok := local[sub[2]+":"+sub[3]]; ok {
				return sub[1] + "127.0.0.1:" + strconv.Itoa(port)
			}
			return m
		})
		for name := range p.Services {
			if strings.Contains(v, "//"+name+":") || strings.Contains(v, "@"+name+":") {
				t.Fatalf("%s: %s=%s still names compose service %s", s.Name, k, v, name)
			}
		}
		env = append(env, k+"="+v)
	}
	return env
}

func envOf(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// startPostgresLike starts a private PostgreSQL on port and sets it up as
// the postgres image does from the compose service's environment: the
// POSTGRES_USER role, a superuser as the image's, with POSTGRES_PASSWORD,
// owning POSTGRES_DB, and password authentication for every role. It
// returns that database's local URL.
func startPostgresLike(t *testing.T, dir string, port int, svc types.ServiceConfig) string {
	t.Helper()
	user, password, db := envValue(svc, "POSTGRES_USER"), envValue(svc, "POSTGRES_PASSWORD"), envValue(svc, "POSTGRES_DB")
	ctx := context.Background()
	data := filepath.Join(dir, "postgres")
	pg, err := pgserver.Start(ctx, pgserver.Options{DataDir: data, Port: port, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Error(err)
		}
	})
	conn, err := pgx.Connect(ctx, pg.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		fmt.Sprintf("CREATE ROLE %s SUPERUSER LOGIN PASSWORD '%s'", pgx.Identifier{user}.Sanitize(), strings.ReplaceAll(password, "'", "''")),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{db}.Sanitize(), pgx.Identifier{user}.Sanitize()),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	// The superuser keeps trust (the test's own access); everyone else
	// must give the password, as in the image.
	hba := "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	url := func(pw string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, pw, port, db)
	}
	// The configuration reloads asynchronously: wait until a wrong
	// password is refused, so the services' success below means theirs is
	// right.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, url("wrong-"+password))
		if err != nil && strings.Contains(err.Error(), "password authentication failed") {
			break
		}
		if err == nil {
			c.Close(ctx)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a wrong password is still accepted after reloading pg_hba.conf (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url(password)
}

// waitForTotal polls the reporter's event total until ok accepts it.
func waitForTotal(t *testing.T, reporter string, ok func(int) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := -1
	for {
		resp, err := http.Get(reporter + "/reports/events")
		if err == nil {
			var body struct {
				Total int `json:"total"`
			}
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&body) == nil {
				last = body.Total
			}
			resp.Body.Close()
		}
		if ok(last) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reporter counts %d events; %s never arrived", last, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("--- %s (tail)\n%s", filepath.Base(f), b)
	}
}
