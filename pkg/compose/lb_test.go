package compose_test

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const haproxyFile = "manifests/compose/haproxy.cfg"

var (
	haproxyBind       = regexp.MustCompile(`(?m)^\s*bind :([0-9]+)$`)
	haproxyServers    = regexp.MustCompile(`(?m)^\s*server-template \S+ [0-9]+ ([a-z0-9.-]+):([0-9]+)$`)
	haproxyNameserver = regexp.MustCompile(`(?m)^\s*nameserver \S+ ([0-9.]+:[0-9]+)$`)
)

func readHAProxy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, haproxyFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// haproxyPorts returns the ports the load balancer's frontends bind.
func haproxyPorts(t *testing.T) []int {
	t.Helper()
	var ports []int
	for _, m := range haproxyBind.FindAllStringSubmatch(readHAProxy(t), -1) {
		p, _ := strconv.Atoi(m[1])
		ports = append(ports, p)
	}
	return ports
}

// findHAProxy returns the haproxy binary, or "" when it is missing outside
// CI; CI installs it.
func findHAProxy(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err != nil && os.Getenv("CI") != "" {
		t.Fatalf("haproxy not installed (Debian: apt-get install haproxy): %v", err)
	}
	return path
}

// TestGatewayLoadBalancer: gateway-lb sends to every gateway replica where
// the gateway listens, by readiness, found through Docker's DNS.
func TestGatewayLoadBalancer(t *testing.T) {
	cfg := readHAProxy(t)
	for _, env := range environments {
		t.Run(env.name, func(t *testing.T) {
			p := env.load(t, "*")
			listening := listeners(t, p)
			servers := haproxyServers.FindAllStringSubmatch(cfg, -1)
			if len(servers) != 1 || servers[0][1] != "gateway" || !listening[servers[0][1]+":"+servers[0][2]] {
				t.Errorf("server-template targets %q; want the gateway service where it listens", servers)
			}
			lb := p.Services["gateway-lb"]
			if len(lb.Ports) != 1 || !slices.Contains(haproxyPorts(t), int(lb.Ports[0].Target)) {
				t.Errorf("gateway-lb publishes %+v; want one port its frontend binds (%v)", lb.Ports, haproxyPorts(t))
			}
			if !strings.Contains(cfg, "http-check send meth GET uri /readyz") || !strings.Contains(cfg, "resolvers docker") {
				t.Error("gateway-lb must check /readyz and resolve replicas through Docker's DNS")
			}
			if got := haproxyNameserver.FindStringSubmatch(cfg); got == nil || got[1] != "127.0.0.11:53" {
				t.Errorf("nameserver %q; want Docker's embedded DNS, 127.0.0.11:53", got)
			}
		})
	}
}

// TestHAProxyAcceptsConfig: HAProxy itself reads haproxy.cfg without error.
func TestHAProxyAcceptsConfig(t *testing.T) {
	haproxy := findHAProxy(t)
	if haproxy == "" {
		t.Skip("skipping: needs haproxy (Debian: apt-get install haproxy)")
	}
	if out, err := exec.Command(haproxy, "-c", "-f", filepath.Join(root, haproxyFile)).CombinedOutput(); err != nil {
		t.Errorf("haproxy -c: %v\n%s", err, out)
	}
}

// startLoadBalancer runs haproxy.cfg with a real HAProxy, its addresses
// made local like the services' (local maps a compose address, such as
// gateway-lb:3000 or gateway:3000, to its local port): frontends on their
// local ports, Docker's DNS replaced by a stub answering every name with
// 127.0.0.1.
func startLoadBalancer(t *testing.T, haproxy, dir string, local map[string]int) {
	t.Helper()
	localPort := func(addr string) string {
		port, ok := local[addr]
		if !ok {
			t.Fatalf("haproxy.cfg uses %s, which has no local stand-in", addr)
		}
		return strconv.Itoa(port)
	}
	cfg := haproxyBind.ReplaceAllStringFunc(readHAProxy(t), func(m string) string {
		port := haproxyBind.FindStringSubmatch(m)[1]
		return strings.Replace(m, ":"+port, "127.0.0.1:"+localPort("gateway-lb:"+port), 1)
	})
	cfg = haproxyNameserver.ReplaceAllStringFunc(cfg, func(m string) string {
		return strings.Replace(m, haproxyNameserver.FindStringSubmatch(m)[1], dnsStub(t), 1)
	})
	cfg = haproxyServers.ReplaceAllStringFunc(cfg, func(m string) string {
		sub := haproxyServers.FindStringSubmatch(m)
		return strings.Replace(m, ":"+sub[2], ":"+localPort(sub[1]+":"+sub[2]), 1)
	})
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "logs", "gateway-lb.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
}

// dnsStub answers every A query with 127.0.0.1 and every other one with
// no record, as Docker's DNS answers a service name on one host; it
// returns its address.
func dnsStub(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5},
					dnsmessage.AResource{A: netip.MustParseAddr("127.0.0.1").As4()})
			}
			if msg, err := b.Finish(); err == nil {
				_, _ = conn.WriteTo(msg, from)
			}
		}
	}()
	return conn.LocalAddr().String()
}

// waitCheckPassed polls HAProxy's statistics until a server of backend
// has passed its health check: HAProxy counts a server up from the start,
// so only the check's own status shows the gateway answered it.
func waitCheckPassed(t *testing.T, statsURL, backend string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last []string
	for {
		resp, err := http.Get(statsURL + ";csv")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# "))).ReadAll()
			if err == nil && len(rows) > 1 {
				col := map[string]int{}
				for i, name := range rows[0] {
					col[name] = i
				}
				last = last[:0]
				for _, row := range rows[1:] {
					if row[col["pxname"]] != backend {
						continue
					}
					if row[col["status"]] == "UP" && row[col["check_status"]] == "L7OK" {
						return
					}
					last = append(last, fmt.Sprintf("%s %s %s %s", row[col["svname"]], row[col["addr"]], row[col["status"]], row[col["check_status"]]))
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s server passed its health check within a minute: %q", backend, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering 200 after %s (last: %v)", url, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
