package compose_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventpipe/eventpipe/pkg/eventgen"
)

// smokeOverride keeps a test stack off the host ports a developer's own
// stack uses: the gateway and the reporter on ports Docker picks, nothing
// else published.
const smokeOverride = `services:
  gateway-lb:
    ports: !override ["127.0.0.1::3000"]
  reporter:
    ports: !override ["127.0.0.1::3003"]
  nats:
    ports: !reset []
  postgres:
    ports: !reset []
  prometheus:
    ports: !reset []
  grafana:
    ports: !reset []
`

func writeSmokeOverride(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "smoke.yml")
	if err := os.WriteFile(path, []byte(smokeOverride), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSmokeOverride checks, here, the override the Docker test below
// relies on: it loads, and leaves no fixed host port to collide with.
func TestSmokeOverride(t *testing.T) {
	env := environment{name: "smoke", files: []string{composeFile, writeSmokeOverride(t)}}
	p := env.load(t, "*")
	published := 0
	for _, name := range p.ServiceNames() {
		for _, pc := range p.Services[name].Ports {
			published++
			if pc.Published != "" || pc.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s:%s->%d; want a port Docker picks, on 127.0.0.1", name, pc.HostIP, pc.Published, pc.Target)
			}
		}
	}
	if published != 2 {
		t.Errorf("%d ports published; want the gateway load balancer's and the reporter's", published)
	}
}

// TestDockerCompose runs what needs a Docker engine: `docker compose
// config` for every environment, then the development stack built from
// the Dockerfile with one event through it, still reported after `down`
// and `up` (the named volumes keep it).
func TestDockerCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: -short")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("skipping: needs a Docker engine (`docker info`: %v: %s); the README lists the commands to run where there is one",
			err, firstLine(out))
	}
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("skipping: needs the Docker Compose v2 plugin (`docker compose version`: %v: %s)", err, firstLine(out))
	}

	for _, env := range environments {
		t.Run("config/"+env.name, func(t *testing.T) {
			cmd := exec.Command("docker", append(env.composeArgs(), "config", "--quiet")...)
			cmd.Dir = root
			cmd.Env = os.Environ()
			for k, v := range env.secrets {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("docker %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
			}
		})
	}

	project := fmt.Sprintf("eventpipe-test-%d", os.Getpid())
	override := writeSmokeOverride(t)
	compose := func(args ...string) (string, error) {
		args = append([]string{"compose", "-p", project, "-f", filepath.Join(root, composeFile), "-f", override}, args...)
		cmd := exec.Command("docker", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	must := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := compose(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := compose("logs", "--no-color", "--tail", "100")
			t.Logf("logs:\n%s", out)
		}
		if _, err := compose("down", "-v", "--remove-orphans"); err != nil {
			t.Error(err)
		}
	})
	// Two gateways behind gateway-lb. The upstream publisher stays out: its
	// events would blur the count, and it needs arm64 emulation on amd64.
	up := func(t *testing.T, build ...string) (gateway, reporter string) {
		must(t, append(append([]string{"up", "-d"}, build...), "--scale", "gateway=2", "--scale", "publisher=0")...)
		gateway = "http://" + strings.TrimSpace(must(t, "port", "gateway-lb", "3000"))
		reporter = "http://" + strings.TrimSpace(must(t, "port", "reporter", "3003"))
		waitHTTP(t, reporter+"/readyz", 5*time.Minute)
		waitHTTP(t, gateway+"/readyz", 5*time.Minute)
		return gateway, reporter
	}

	gateway, reporter := up(t, "--build")
	e := eventgen.New(11).Next(time.Date(2025, 6, 10, 12, 0, 0, 0, time.UTC))
	body := append(append([]byte{'['}, e.AppendJSON(nil)...), ']')
	resp, err := http.Post(gateway+"/webhook", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /webhook: got %d %s; want 202", resp.StatusCode, answer)
	}
	waitForTotal(t, reporter, func(n int) bool { return n == 1 }, "the event posted")

	must(t, "down")
	_, reporter = up(t)
	waitForTotal(t, reporter, func(n int) bool { return n == 1 }, "the event stored before down and up")
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
