package compose_test

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/goccy/go-yaml"

	"github.com/eventpipe/eventpipe/pkg/collector"
	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/gateway"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/publisher"
	"github.com/eventpipe/eventpipe/pkg/report"
)

// settings is what a service's configuration code says about it.
type settings struct {
	// port it serves HTTP on, 0 for none.
	port int
	// drain bounds its graceful stop.
	drain time.Duration
}

// configCode maps a compose service to its configuration code: the very
// function its main calls on the environment. migrate reads its few
// settings in its own main, out of reach here; the system test runs it
// with its compose environment instead.
var configCode = map[string]func(config.Lookup) (settings, error){
	"gateway": func(l config.Lookup) (settings, error) {
		o, err := gateway.LoadOptions(l)
		return settings{o.Port, o.ShutdownTimeout}, err
	},
	"fb-collector":  collectorCode(event.Facebook),
	"ttk-collector": collectorCode(event.TikTok),
	"reporter": func(l config.Lookup) (settings, error) {
		o, err := report.LoadOptions(l)
		return settings{o.Port, o.ShutdownTimeout}, err
	},
	"local-publisher": publisherCode,
	// The upstream publisher reads what ours mirrors: EVENT_ENDPOINT.
	"publisher": publisherCode,
}

func collectorCode(source event.Source) func(config.Lookup) (settings, error) {
	return func(l config.Lookup) (settings, error) {
		o, err := collector.LoadOptions(source, l)
		if err != nil {
			return settings{}, err
		}
		_, port, _ := net.SplitHostPort(o.Addr)
		p, err := strconv.Atoi(port)
		return settings{p, o.ShutdownTimeout}, err
	}
}

func publisherCode(l config.Lookup) (settings, error) {
	c, err := publisher.LoadConfig(nil, l)
	return settings{0, c.Options.ShutdownGrace}, err
}

// binaries maps each service built from the Dockerfile to the program its
// image runs.
var binaries = map[string]string{
	"migrate":         "migrate",
	"gateway":         "gateway",
	"fb-collector":    "fb-collector",
	"ttk-collector":   "ttk-collector",
	"reporter":        "reporter",
	"local-publisher": "publisher",
}

// probed are the services whose images carry the healthcheck subcommand.
var probed = []string{"gateway", "fb-collector", "ttk-collector", "reporter"}

// scalable are the services `--scale` is for.
var scalable = []string{"gateway", "fb-collector", "ttk-collector"}

// listeners returns every "service:port" that answers inside the compose
// network: ours on the PORT their configuration code reads, gateway-lb on
// its frontends' ports, the others on their images' ports.
func listeners(t *testing.T, p *types.Project) map[string]bool {
	t.Helper()
	l := map[string]bool{"postgres:5432": true, "prometheus:9090": true, "grafana:3000": true}
	for name, load := range configCode {
		s, ok := p.Services[name]
		if !ok {
			continue
		}
		st, err := load(lookup(s, map[string]bool{}))
		if err == nil && st.port != 0 {
			l[name+":"+strconv.Itoa(st.port)] = true
		}
	}
	cmd := p.Services["nats"].Command
	if slices.Contains(cmd, "-p") || slices.Contains(cmd, "--port") {
		t.Errorf("nats sets its client port; this test assumes the default 4222")
	}
	l["nats:4222"] = true
	if i := slices.Index(cmd, "-m"); i >= 0 && i+1 < len(cmd) {
		l["nats:"+cmd[i+1]] = true
	}
	for _, port := range haproxyPorts(t) {
		l["gateway-lb:"+strconv.Itoa(port)] = true
	}
	return l
}

// urlTargets returns the host:port of every URL in a comma-separated list.
func urlTargets(value string) ([]string, error) {
	var targets []string
	for _, raw := range strings.Split(value, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, err
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443", "nats": "4222", "postgres": "5432"}[u.Scheme]
		}
		targets = append(targets, u.Hostname()+":"+port)
	}
	return targets, nil
}

// addressSettings are the settings naming another service: left unset,
// each defaults to 127.0.0.1, which in a container is the container itself.
var addressSettings = []string{"NATS_URL", "DATABASE_URL", "REPORTER_DATABASE_URL", "COLLECTOR_DATABASE_URL", "EVENT_ENDPOINT"}

// TestSettingsMatchConfigCode feeds every service's compose environment to
// its own configuration code: everything it requires is set and valid,
// nothing is set that it does not read (a misspelt name would be ignored
// silently), and every address names a service listening there.
func TestSettingsMatchConfigCode(t *testing.T) {
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			listening := listeners(t, p)
			for _, name := range p.ServiceNames() {
				s := p.Services[name]
				read := map[string]bool{}
				if load, ok := configCode[name]; ok {
					if _, err := load(lookup(s, read)); err != nil {
						t.Errorf("%s: its configuration code rejects the compose environment: %v", name, err)
					}
					for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
						if !read[k] {
							t.Errorf("%s: sets %s, which its configuration code never reads", name, k)
						}
					}
				}
				if name == "migrate" {
					for _, k := range migrateSettings {
						read[k] = true
					}
				}
				for _, k := range addressSettings {
					if !read[k] {
						continue
					}
					v := envValue(s, k)
					if v == "" {
						t.Errorf("%s: reads %s, which compose leaves unset", name, k)
						continue
					}
					targets, err := urlTargets(v)
					if err != nil {
						t.Errorf("%s: %s: %v", name, k, err)
					}
					for _, target := range targets {
						if !listening[target] {
							t.Errorf("%s: %s points at %s, where no compose service listens (listening: %v)", name, k, target, slices.Sorted(maps.Keys(listening)))
						}
					}
				}
			}
		})
	}
}

// migrateSettings are the address settings migrate reads (in its main,
// out of configCode's reach): the owner's URL, and the two services' URLs
// whose login roles it makes.
var migrateSettings = []string{"DATABASE_URL", "REPORTER_DATABASE_URL", "COLLECTOR_DATABASE_URL"}

// databaseRoles maps each service that uses the database to the migrate
// setting holding its URL: migrate logs in as the owner the postgres image
// creates; the reporter and the collectors each as the role migrate makes
// from that URL (read-only, insert-only), never as the owner.
var databaseRoles = map[string]string{
	"migrate":       "DATABASE_URL",
	"reporter":      "REPORTER_DATABASE_URL",
	"fb-collector":  "COLLECTOR_DATABASE_URL",
	"ttk-collector": "COLLECTOR_DATABASE_URL",
}

// TestDatabaseCredentials: migrate logs in as the user, with the password,
// to the database the postgres image creates; every other DATABASE_URL is
// exactly the URL migrate makes that service's role from: a user of its
// own, with a password, on the same database.
func TestDatabaseCredentials(t *testing.T) {
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			pg, migrate := p.Services["postgres"], p.Services["migrate"]
			owner := [3]string{envValue(pg, "POSTGRES_USER"), envValue(pg, "POSTGRES_PASSWORD"), envValue(pg, "POSTGRES_DB")}
			if owner[1] == "" {
				t.Fatal("postgres: POSTGRES_PASSWORD is empty")
			}
			users := map[string]string{}
			for _, name := range p.ServiceNames() {
				v := envValue(p.Services[name], "DATABASE_URL")
				if v == "" {
					continue
				}
				setting, ok := databaseRoles[name]
				if !ok {
					t.Errorf("%s: sets DATABASE_URL, but has no database role", name)
					continue
				}
				if want := envValue(migrate, setting); v != want {
					t.Errorf("%s: DATABASE_URL is %q; want migrate's %s, %q", name, v, setting, want)
				}
				u, err := url.Parse(v)
				if err != nil {
					t.Errorf("%s: DATABASE_URL: %v", name, err)
					continue
				}
				password, _ := u.User.Password()
				got := [3]string{u.User.Username(), password, strings.TrimPrefix(u.Path, "/")}
				switch {
				case name == "migrate" && got != owner:
					t.Errorf("migrate: DATABASE_URL has user, password, database %q; postgres creates %q", got, owner)
				case name != "migrate" && (got[0] == owner[0] || got[1] == "" || got[2] != owner[2]):
					t.Errorf("%s: DATABASE_URL has user, password, database %q; want a user other than %s, with a password, on %s", name, got, owner[0], owner[2])
				}
				if other, ok := users[got[0]]; ok && databaseRoles[other] != setting {
					t.Errorf("%s and %s both log in as %s", name, other, got[0])
				}
				users[got[0]] = name
			}
			for _, setting := range migrateSettings[1:] {
				if envValue(migrate, setting) == "" {
					t.Errorf("migrate: %s is unset: that role would not exist", setting)
				}
			}
		})
	}
}

// TestDependencies: start order is the issue's: infrastructure healthy,
// migrate completed, then the services, then the publishers once the
// gateway is healthy.
func TestDependencies(t *testing.T) {
	const healthy, completed = types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully
	collectorDeps := map[string]string{"nats": healthy, "postgres": healthy, "migrate": completed}
	want := map[string]map[string]string{
		"nats":            {},
		"postgres":        {},
		"migrate":         {"postgres": healthy},
		"gateway":         {"nats": healthy},
		"gateway-lb":      {"gateway": healthy},
		"fb-collector":    collectorDeps,
		"ttk-collector":   collectorDeps,
		"reporter":        {"postgres": healthy, "migrate": completed},
		"publisher":       {"gateway-lb": healthy},
		"local-publisher": {"gateway-lb": healthy},
		"prometheus":      {},
		"grafana":         {"prometheus": healthy},
	}
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			if got := p.ServiceNames(); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
				t.Fatalf("services: got %v; want %v", got, slices.Sorted(maps.Keys(want)))
			}
			for name, s := range p.Services {
				got := map[string]string{}
				for dep, d := range s.DependsOn {
					got[dep] = d.Condition
					target := p.Services[dep]
					switch d.Condition {
					case healthy:
						if hc := target.HealthCheck; hc == nil || hc.Disable || len(hc.Test) < 2 {
							t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
						}
					case completed:
						if target.Restart != types.RestartPolicyNo {
							t.Errorf("%s waits for one-shot %s to complete, whose restart policy is %q; want %q", name, dep, target.Restart, types.RestartPolicyNo)
						}
					}
				}
				if !maps.Equal(got, want[name]) {
					t.Errorf("%s depends on %v; want %v", name, got, want[name])
				}
			}
		})
	}
}

// TestHealthchecks: each service's healthcheck is its image's own (the
// binary's healthcheck subcommand, probing /readyz), and docker waits
// long enough for the probe to report why it failed.
func TestHealthchecks(t *testing.T) {
	df, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			for _, name := range probed {
				hc := p.Services[name].HealthCheck
				want := []string{"CMD", "/usr/local/bin/" + binaries[name], "healthcheck"}
				if hc == nil || !slices.Equal(hc.Test, want) {
					t.Errorf("%s healthcheck: got %+v; want test %q", name, hc, want)
					continue
				}
				if hc.Timeout == nil || time.Duration(*hc.Timeout) <= httpserver.ProbeTimeout {
					t.Errorf("%s healthcheck timeout: got %v; want more than the probe's own %s", name, hc.Timeout, httpserver.ProbeTimeout)
				}
				st, _ := df.stage(name)
				_, image, _ := strings.Cut(st.last("HEALTHCHECK"), "CMD ")
				var imageTest []string
				if err := json.Unmarshal([]byte(image), &imageTest); err != nil || !slices.Equal(append([]string{"CMD"}, imageTest...), want) {
					t.Errorf("%s: the image's HEALTHCHECK is %q; want the compose one, %q", name, st.last("HEALTHCHECK"), want[1:])
				}
			}
			monitor := p.Services["nats"].HealthCheck
			if monitor == nil || !slices.Contains(monitor.Test, "http://127.0.0.1:8222/healthz?js-enabled-only=true") || !slices.Contains(p.Services["nats"].Command, "8222") {
				t.Errorf("nats healthcheck: got %+v; want JetStream's health on the monitoring port 8222", monitor)
			}
		})
	}
}

type binding struct {
	service, ip, proto string
	lo, hi             int
}

func (b binding) overlaps(o binding) bool {
	anyIP := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return b.proto == o.proto && (b.ip == o.ip || anyIP(b.ip) || anyIP(o.ip)) && b.lo <= o.hi && o.lo <= b.hi
}

// TestPorts: no two services claim one host port, every replica gets a
// host port of its own, `--scale` works for the gateway and the
// collectors (they publish none), and each published port is one the
// service listens on.
func TestPorts(t *testing.T) {
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			listening := listeners(t, p)
			var all []binding
			for _, name := range p.ServiceNames() {
				s := p.Services[name]
				for _, pc := range s.Ports {
					from, to, isRange := strings.Cut(pc.Published, "-")
					if !isRange {
						to = from
					}
					lo, errLo := strconv.Atoi(from)
					hi, errHi := strconv.Atoi(to)
					b := binding{service: name, ip: pc.HostIP, proto: pc.Protocol, lo: lo, hi: hi}
					if errLo != nil || errHi != nil || hi < lo {
						t.Errorf("%s publishes %d on %q; want a fixed host port or range", name, pc.Target, pc.Published)
						continue
					}
					if !listening[fmt.Sprintf("%s:%d", name, pc.Target)] {
						t.Errorf("%s publishes container port %d, where it does not listen", name, pc.Target)
					}
					if n := b.hi - b.lo + 1; n < s.GetScale() {
						t.Errorf("%s runs %d replicas on %d host port(s) %s", name, s.GetScale(), n, pc.Published)
					}
					all = append(all, b)
				}
			}
			for i, a := range all {
				for _, b := range all[i+1:] {
					if a.overlaps(b) {
						t.Errorf("host ports collide: %+v and %+v", a, b)
					}
				}
			}
			for _, name := range scalable {
				if ports := p.Services[name].Ports; len(ports) != 0 {
					t.Errorf("%s publishes %+v; want no host port, so replicas scale freely", name, ports)
				}
			}
		})
	}
}

// TestDevelopmentPorts: the README's URLs, on this machine only.
func TestDevelopmentPorts(t *testing.T) {
	p := development.load(t, "*")
	want := map[string]string{
		"gateway-lb": "127.0.0.1:3000->3000",
		"reporter":   "127.0.0.1:3003->3003",
		"nats":       "127.0.0.1:4222->4222 127.0.0.1:8222->8222",
		"postgres":   "127.0.0.1:15432->5432",
		"prometheus": "127.0.0.1:9090->9090",
		"grafana":    "127.0.0.1:3030->3000",
	}
	for _, name := range p.ServiceNames() {
		var got []string
		for _, pc := range p.Services[name].Ports {
			got = append(got, fmt.Sprintf("%s:%s->%d", pc.HostIP, pc.Published, pc.Target))
		}
		if strings.Join(got, " ") != want[name] {
			t.Errorf("%s publishes %q; want %q", name, strings.Join(got, " "), want[name])
		}
	}
}

// TestStopGracePeriods: docker waits longer than each service's own
// graceful stop before it sends SIGKILL.
func TestStopGracePeriods(t *testing.T) {
	const margin = 5 * time.Second
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			for name, load := range configCode {
				s, ok := p.Services[name]
				if !ok || s.Build == nil {
					continue
				}
				st, err := load(lookup(s, map[string]bool{}))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if st.drain == 0 || s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < st.drain+margin {
					t.Errorf("%s: stop_grace_period %v; want at least its drain %s + %s", name, s.StopGracePeriod, st.drain, margin)
				}
			}
			for name, least := range map[string]time.Duration{"nats": 30 * time.Second, "postgres": 60 * time.Second} {
				if g := p.Services[name].StopGracePeriod; g == nil || time.Duration(*g) < least {
					t.Errorf("%s: stop_grace_period %v; want at least %s", name, g, least)
				}
			}
		})
	}
}

// TestContainersHardened: our containers run as the image's non-root
// user on a read-only root filesystem, without capabilities.
func TestContainersHardened(t *testing.T) {
	df, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	base, _ := df.stage("base")
	user := base.last("USER")
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Fatalf("the images run as %q; want a non-root user", user)
	}
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			for name := range binaries {
				s := p.Services[name]
				if s.User != user || !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
					t.Errorf("%s: user %q, read_only %v, cap_drop %v, security_opt %v; want user %q, read-only, cap_drop ALL, no-new-privileges",
						name, s.User, s.ReadOnly, s.CapDrop, s.SecurityOpt, user)
				}
				want := types.RestartPolicyUnlessStopped
				if name == "migrate" {
					want = types.RestartPolicyNo
				}
				if s.Restart != want {
					t.Errorf("%s: restart %q; want %q", name, s.Restart, want)
				}
			}
		})
	}
}

// TestVolumes: what must survive `docker compose down` lives in named
// volumes the project owns; the only host files mounted are the
// monitoring configuration, read-only, and they exist.
func TestVolumes(t *testing.T) {
	named := map[string]string{
		"nats":       "/data",
		"postgres":   "/var/lib/postgresql/data",
		"prometheus": "/prometheus",
		"grafana":    "/var/lib/grafana",
	}
	binds := map[string]map[string]string{
		"prometheus": {
			"/etc/prometheus/prometheus.yml": "manifests/compose/prometheus.yml",
			"/etc/prometheus/alerts.yml":     "charts/eventpipe/files/alerts.yml",
		},
		"gateway-lb": {
			"/usr/local/etc/haproxy/haproxy.cfg": haproxyFile,
		},
		"grafana": {
			"/etc/grafana/provisioning/datasources/eventpipe.yml": "manifests/compose/grafana/datasources.yml",
			"/etc/grafana/provisioning/dashboards/eventpipe.yml":  "manifests/compose/grafana/dashboards.yml",
			"/var/lib/grafana/dashboards":                         "charts/eventpipe/dashboards",
		},
	}
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			for _, name := range p.ServiceNames() {
				gotNamed, gotBinds := "", map[string]string{}
				for _, v := range p.Services[name].Volumes {
					switch v.Type {
					case types.VolumeTypeVolume:
						vol, ok := p.Volumes[v.Source]
						if !ok || bool(vol.External) {
							t.Errorf("%s mounts volume %q, which the project does not own", name, v.Source)
						}
						gotNamed = v.Target
					case types.VolumeTypeBind:
						rel, err := filepath.Rel(root, v.Source)
						if err != nil || strings.HasPrefix(rel, "..") || !v.ReadOnly {
							t.Errorf("%s: bind mount %s -> %s must be read-only, inside the repository", name, v.Source, v.Target)
						}
						gotBinds[v.Target] = rel
					default:
						t.Errorf("%s: unexpected %s mount at %s", name, v.Type, v.Target)
					}
				}
				if gotNamed != named[name] {
					t.Errorf("%s: named volume at %q; want %q", name, gotNamed, named[name])
				}
				if !maps.Equal(gotBinds, binds[name]) {
					t.Errorf("%s: bind mounts %v; want %v", name, gotBinds, binds[name])
				}
			}
			if cmd := p.Services["nats"].Command; !slices.Contains(cmd, "-js") || slices.Index(cmd, "-sd") < 0 || cmd[slices.Index(cmd, "-sd")+1] != named["nats"] {
				t.Errorf("nats command %q: want JetStream on (-js) storing in its volume (-sd %s)", cmd, named["nats"])
			}
		})
	}
	for _, b := range binds {
		for _, src := range b {
			fi, err := os.Stat(filepath.Join(root, src))
			if err != nil {
				t.Errorf("mounted %s: %v", src, err)
				continue
			}
			if fi.IsDir() {
				if dashboards, _ := filepath.Glob(filepath.Join(root, src, "*.json")); len(dashboards) == 0 {
					t.Errorf("%s holds no dashboard", src)
				}
			}
		}
	}
}

var (
	goDirective = regexp.MustCompile(`(?m)^go (\S+)$`)
	goToolchain = regexp.MustCompile(`(?m)^toolchain go(\S+)$`)
	natsModule  = regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`)
	copyBinary  = regexp.MustCompile(`^--from=build /out/(\S+) /usr/local/bin/(\S+)$`)
)

// TestImagesAreDockerfileTargets: every service built here builds a
// target the Dockerfile defines, holding the program it is named after;
// the other images are pinned.
func TestImagesAreDockerfileTargets(t *testing.T) {
	df, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	build, _ := df.stage("build")
	// The images are built by the Go that `make build` uses: go.mod's
	// toolchain line, or its go directive when it has none.
	m := goToolchain.FindSubmatch(gomod)
	if m == nil {
		m = goDirective.FindSubmatch(gomod)
	}
	if m == nil || build.image != "golang:"+string(m[1]) {
		t.Errorf("build stage FROM %s; want the Go of go.mod's toolchain line", build.image)
	}
	stageNames := map[string]bool{}
	for _, s := range df.stages {
		stageNames[s.name] = true
		if !stageNames[s.image] && (!strings.Contains(s.image, ":") || strings.HasSuffix(s.image, ":latest")) {
			t.Errorf("stage %s: FROM %s; want a pinned tag", s.name, s.image)
		}
	}
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			images := map[string]string{}
			used := map[string]bool{}
			for _, name := range p.ServiceNames() {
				s := p.Services[name]
				if s.Build == nil {
					continue
				}
				b := s.Build
				if b.Context != root || b.Dockerfile != dockerfilePath {
					t.Errorf("%s builds %s in %s; want %s in the repository root", name, b.Dockerfile, b.Context, dockerfilePath)
				}
				st, ok := df.stage(b.Target)
				if !ok || b.Target == "build" || b.Target == "base" {
					t.Errorf("%s builds target %q, which is not one of the Dockerfile's service stages", name, b.Target)
					continue
				}
				used[b.Target] = true
				bin := binaries[name]
				m := copyBinary.FindStringSubmatch(st.last("COPY"))
				if m == nil || m[1] != bin || m[2] != bin || st.last("ENTRYPOINT") != fmt.Sprintf(`["/usr/local/bin/%s"]`, bin) || st.image != "base" {
					t.Errorf("%s: target %s copies %q and runs %s; want %s from the build stage, on base", name, b.Target, st.last("COPY"), st.last("ENTRYPOINT"), bin)
				}
				if _, err := os.Stat(filepath.Join(root, "cmd", bin, "main.go")); err != nil {
					t.Errorf("%s: no program cmd/%s: %v", name, bin, err)
				}
				if other, dup := images[s.Image]; dup || s.Image == "" {
					t.Errorf("%s and %s both name image %q", name, other, s.Image)
				}
				images[s.Image] = name
			}
			for _, s := range df.stages {
				if s.image == "base" && !used[s.name] {
					t.Errorf("the Dockerfile's target %s is built by no compose service", s.name)
				}
			}
		})
	}
	p := development.load(t, "*")
	if m := natsModule.FindSubmatch(gomod); m == nil || p.Services["nats"].Image != "nats:"+string(m[1])+"-alpine" {
		t.Errorf("nats image %s; want the nats-server the tests embed (go.mod)", p.Services["nats"].Image)
	}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		// The issue names the upstream publisher by repository only.
		if s.Build == nil && name != "publisher" && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("%s: image %s; want a pinned tag", name, s.Image)
		}
	}
	if pub := p.Services["publisher"]; pub.Image != "andriiuni/events:latest" || pub.Platform != "linux/arm64" || envValue(pub, "EVENT_ENDPOINT") != "http://gateway-lb:3000/webhook" {
		t.Errorf("publisher: image %s on %s posting to %s; want andriiuni/events on linux/arm64 posting to http://gateway-lb:3000/webhook",
			pub.Image, pub.Platform, envValue(pub, "EVENT_ENDPOINT"))
	}
}

// TestImagesHoldNoSecret: nothing secret or environment-specific is baked
// into an image: no ENV or ARG names one, and the build context holds the
// Go sources only.
func TestImagesHoldNoSecret(t *testing.T) {
	df, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`(?i)password|secret|token|database_url|\.env`)
	for _, s := range df.stages {
		for _, in := range s.instructions {
			if (in[0] == "ENV" || in[0] == "ARG" || in[0] == "COPY" || in[0] == "ADD") && secret.MatchString(in[1]) {
				t.Errorf("stage %s: %s %s bakes configuration into the image", s.name, in[0], in[1])
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(root, dockerignore))
	if err != nil {
		t.Fatal(err)
	}
	var patterns, included []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
			if rest, ok := strings.CutPrefix(line, "!"); ok {
				included = append(included, strings.TrimSuffix(rest, "/"))
			}
		}
	}
	if len(patterns) == 0 || patterns[0] != "*" {
		t.Fatalf("%s starts %q; want \"*\": everything out, then what the build reads", dockerignore, patterns)
	}
	if want := []string{"cmd", "go.mod", "go.sum", "migrations", "pkg"}; !slices.Equal(slices.Sorted(slices.Values(included)), want) {
		t.Errorf("the build context holds %v; want %v", included, want)
	}
	build, _ := df.stage("build")
	for _, args := range build.all("COPY") {
		words := strings.Fields(args)
		for _, src := range words[:len(words)-1] {
			if !slices.Contains(included, strings.TrimSuffix(src, "/")) {
				t.Errorf("the build stage copies %s, which %s leaves out of the context", src, dockerignore)
			}
		}
	}
}

// TestDockerfileBuildMatchesMakefile: the images are built by the command
// `make build` runs (CI builds with it), the output folder and the image
// platform aside.
func TestDockerfileBuildMatchesMakefile(t *testing.T) {
	df, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	recipe, err := makeBuildRecipe()
	if err != nil {
		t.Fatal(err)
	}
	normalize := func(words []string) []string {
		env, args := splitAssignments(words)
		env = slices.DeleteFunc(env, func(kv string) bool {
			return strings.HasPrefix(kv, "GOOS=") || strings.HasPrefix(kv, "GOARCH=")
		})
		slices.Sort(env)
		if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
			args[i+1] = "$(BIN)/"
		}
		return append(env, args...)
	}
	got, want := normalize(recipe), normalize(df.goBuild)
	if !slices.Equal(got, want) {
		want[slices.Index(want, "go")] = "$(GO)"
		t.Errorf("the Makefile builds with\n\t%s\nthe images with\n\t%s\nwant the Makefile's build line to read\n\t%s",
			shellLine(got), shellLine(df.goBuild), shellLine(want))
	}
}

// shellLine joins words back into a command line, quoting those that
// need it the way a Makefile would write them (-ldflags='-s -w').
func shellLine(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = w
		if strings.ContainsAny(w, " \t'\"") {
			name, value, ok := strings.Cut(w, "=")
			if !ok {
				name, value = "", w
			} else {
				name += "="
			}
			quoted[i] = name + "'" + strings.ReplaceAll(value, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

// TestDockerfileBuildRunsHere: the Dockerfile's build line, run by
// TestMain exactly as the build stage runs it, builds every binary an
// image copies, statically linked as distroless static needs.
func TestDockerfileBuildRunsHere(t *testing.T) {
	needBinaries(t)
	df, err := readDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	if env, _ := splitAssignments(df.goBuild); !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("the build line %q does not turn cgo off", df.goBuild)
	}
	for _, s := range df.stages {
		m := copyBinary.FindStringSubmatch(s.last("COPY"))
		if m == nil {
			continue
		}
		f, err := elf.Open(filepath.Join(binDir, m[1]))
		if err != nil {
			t.Errorf("target %s copies %s: %v", s.name, m[1], err)
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked; distroless static has no libc", m[1])
			}
		}
		f.Close()
	}
}

// TestPrometheusScrapesComposeServices: the scrape configuration compose
// mounts names services where they listen, covers every service with
// metrics, and loads the alert rules where compose mounts them.
func TestPrometheusScrapesComposeServices(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "manifests/compose/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.RuleFiles, "/etc/prometheus/alerts.yml") {
		t.Errorf("rule files %v; want /etc/prometheus/alerts.yml, where compose mounts the alerts", cfg.RuleFiles)
	}
	p := development.load(t, "*")
	listening := listeners(t, p)
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		var targets []string
		for _, static := range sc.StaticConfigs {
			targets = append(targets, static.Targets...)
		}
		for _, dns := range sc.DNSSDConfigs {
			for _, name := range dns.Names {
				targets = append(targets, fmt.Sprintf("%s:%d", name, dns.Port))
			}
		}
		for _, target := range targets {
			if !listening[target] {
				t.Errorf("job %s scrapes %s, where no compose service listens", sc.JobName, target)
			}
			scraped[target] = true
		}
	}
	for _, name := range probed {
		st, err := configCode[name](lookup(p.Services[name], map[string]bool{}))
		if addr := fmt.Sprintf("%s:%d", name, st.port); err != nil || !scraped[addr] {
			t.Errorf("no job scrapes %s's metrics (%s)", name, addr)
		}
	}
}

// interpolated returns the variables the compose files interpolate.
func interpolated(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	for _, f := range []string{composeFile, productionFile} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				vars[m[1]] = true
			}
		}
	}
	return vars
}

// TestEnvFiles: each env file sets only variables the compose files use
// (a misspelt one would be ignored), development's sets every one of them
// to the compose file's own defaults, and the others hold no secret.
func TestEnvFiles(t *testing.T) {
	vars := interpolated(t)
	secret := regexp.MustCompile(`PASSWORD|SECRET|TOKEN|KEY`)
	for _, env := range environments {
		if env.envFile == "" {
			continue
		}
		set, err := dotenv.Read(filepath.Join(root, env.envFile))
		if err != nil {
			t.Fatal(err)
		}
		for k := range set {
			if !vars[k] {
				t.Errorf("%s sets %s, which no compose file uses", env.envFile, k)
			}
			if env.secrets != nil && secret.MatchString(k) {
				t.Errorf("%s sets %s: secrets come from the environment, never from a file", env.envFile, k)
			}
		}
		if env.name == "development.env" {
			for k := range vars {
				if _, ok := set[k]; !ok {
					t.Errorf("%s does not list %s: it should show every setting", env.envFile, k)
				}
			}
		}
	}
	plain := development.load(t, "*")
	withFile := environments[1].load(t, "*")
	a, _ := json.Marshal(plain.Services)
	b, _ := json.Marshal(withFile.Services)
	if string(a) != string(b) {
		t.Errorf("development.env differs from docker-compose.yml's defaults:\n%s\n%s", a, b)
	}
}

// TestProductionNeedsSecrets: staging and production refuse to start
// without their secrets and use exactly the ones given; NATS and
// PostgreSQL stay inside the compose network; Grafana asks for a login;
// the upstream publisher runs only when its profile is asked for.
func TestProductionNeedsSecrets(t *testing.T) {
	for _, env := range []environment{staging, production} {
		t.Run(env.name, func(t *testing.T) {
			for name := range env.secrets {
				shell := maps.Clone(env.secrets)
				delete(shell, name)
				_, err := env.loadWith(shell)
				if err == nil || !strings.Contains(err.Error(), name+" must be set") {
					t.Errorf("without %s: got %v; want an error saying it must be set", name, err)
				}
			}
			p := env.load(t)
			passwords := map[string]string{
				"DATABASE_URL":           "POSTGRES_PASSWORD",
				"REPORTER_DATABASE_URL":  "REPORTER_DB_PASSWORD",
				"COLLECTOR_DATABASE_URL": "COLLECTOR_DB_PASSWORD",
			}
			for _, name := range p.ServiceNames() {
				s := p.Services[name]
				v := envValue(s, "DATABASE_URL")
				if v == "" {
					continue
				}
				secret := passwords[databaseRoles[name]]
				if !strings.Contains(v, ":"+env.secrets[secret]+"@") {
					t.Errorf("%s: DATABASE_URL %q does not use the %s given", name, v, secret)
				}
			}
			for setting, secret := range passwords {
				if v := envValue(p.Services["migrate"], setting); !strings.Contains(v, ":"+env.secrets[secret]+"@") {
					t.Errorf("migrate: %s %q does not use the %s given", setting, v, secret)
				}
			}
			got := [3]string{
				envValue(p.Services["postgres"], "POSTGRES_PASSWORD"),
				envValue(p.Services["grafana"], "GF_SECURITY_ADMIN_PASSWORD"),
				envValue(p.Services["grafana"], "GF_AUTH_ANONYMOUS_ENABLED"),
			}
			want := [3]string{env.secrets["POSTGRES_PASSWORD"], env.secrets["GRAFANA_ADMIN_PASSWORD"], "false"}
			if got != want {
				t.Errorf("postgres password, grafana admin password, anonymous: got %q; want %q", got, want)
			}
			for _, name := range []string{"nats", "postgres"} {
				if ports := p.Services[name].Ports; len(ports) != 0 {
					t.Errorf("%s publishes %+v; want it reachable inside the compose network only", name, ports)
				}
			}
			_, running := p.Services["publisher"]
			if want := slices.Contains(env.profiles, "upstream-publisher"); running != want {
				t.Errorf("upstream publisher running: got %v; want %v", running, want)
			}
		})
	}
	p := development.load(t)
	if _, ok := p.Services["publisher"]; !ok {
		t.Error("development: the upstream publisher does not run by default")
	}
	if _, ok := p.Services["local-publisher"]; ok {
		t.Error("development: local-publisher runs without its profile")
	}
	if got := envValue(p.Services["grafana"], "GF_AUTH_ANONYMOUS_ENABLED") + " " + envValue(p.Services["grafana"], "GF_AUTH_ANONYMOUS_ORG_ROLE"); got != "true Viewer" {
		t.Errorf("development grafana anonymous access: got %q; want \"true Viewer\"", got)
	}
}
