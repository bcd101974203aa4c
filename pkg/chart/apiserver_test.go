package chart

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// TestAPIServerAcceptsRenderedObjects sends every object of every value set
// to a real kube-apiserver, backed by a real etcd, as helm install would
// create it, but with dryRun=All (every stage up to the write to etcd) and
// fieldValidation=Strict. That catches what strict decoding with the Go
// types cannot: the CRD schemas as a cluster serves them, Kubernetes' own
// validation (selectors, names, ports), defaulting and admission.
func TestAPIServerAcceptsRenderedObjects(t *testing.T) {
	api := startAPIServer(t)
	api.installCRDs(t, crdFiles(t, api.binDir)...)

	for _, set := range sortedKeys(valueSets) {
		t.Run(set, func(t *testing.T) {
			objs := renderChart(t, valueSets[set])
			if len(objs) == 0 {
				t.Fatal("rendered no objects")
			}
			for _, u := range objs {
				source := u.GetAnnotations()[sourceAnnotation]
				warnings, err := api.dryRunCreate(t, sendable(u))
				if err != nil {
					t.Errorf("%s %s (%s): %v", u.GetKind(), u.GetName(), source, err)
				}
				// A warning is a deprecated API or field, or a value the
				// server accepts today but will not tomorrow.
				for _, w := range warnings {
					t.Errorf("%s %s (%s): warning: %s", u.GetKind(), u.GetName(), source, w)
				}
			}
			t.Logf("%d objects sent", len(objs))
		})
	}

	// Objects that decode but are wrong must fail, or the tier would prove
	// nothing. Each case first sends its valid base, so the rejection is
	// the defect's doing.
	for _, tc := range []struct {
		name    string
		base    string
		breakIt func(obj map[string]any)
		wantErr string
	}{
		{
			name:    "deployment-unknown-field",
			base:    validDeployment,
			breakIt: func(o map[string]any) { at(o, "spec")["replicaz"] = int64(2) },
			wantErr: `unknown field "spec.replicaz"`,
		},
		{
			// Strict decoding takes this; only the server's validation sees it.
			name: "deployment-selector-misses-pods",
			base: validDeployment,
			breakIt: func(o map[string]any) {
				at(o, "spec", "template", "metadata", "labels")["app"] = "other"
			},
			wantErr: "`selector` does not match template `labels`",
		},
		{
			// A trigger setting one level too high, beside metadata.
			name: "scaledobject-setting-outside-metadata",
			base: validScaledObject,
			breakIt: func(o map[string]any) {
				trigger := at(o, "spec", "triggers", 0)
				trigger["lagThreshold"] = at(trigger, "metadata")["lagThreshold"]
				delete(at(trigger, "metadata"), "lagThreshold")
			},
			wantErr: `unknown field "spec.triggers[0].lagThreshold"`,
		},
		{
			// What a template that forgets to quote a number renders;
			// KEDA's trigger metadata takes strings only.
			name: "scaledobject-number-in-metadata",
			base: validScaledObject,
			breakIt: func(o map[string]any) {
				at(o, "spec", "triggers", 0, "metadata")["lagThreshold"] = int64(10)
			},
			wantErr: "spec.triggers[0].metadata.lagThreshold in body must be of type string",
		},
		{
			name:    "servicemonitor-unknown-field",
			base:    validServiceMonitor,
			breakIt: func(o map[string]any) { at(o, "spec", "endpoints", 0)["intervall"] = "30s" },
			wantErr: `unknown field "spec.endpoints[0].intervall"`,
		},
	} {
		t.Run("rejects/"+tc.name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tc.base), &obj.Object); err != nil {
				t.Fatal(err)
			}
			if _, err := api.dryRunCreate(t, obj.DeepCopy()); err != nil {
				t.Fatalf("valid base rejected: %v", err)
			}
			tc.breakIt(obj.Object)
			_, err := api.dryRunCreate(t, obj)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v; want one containing %q", err, tc.wantErr)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

const validDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  replicas: 1
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers: [{name: app, image: registry.example/app:1}]
`

const validScaledObject = `
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: broken}
spec:
  scaleTargetRef: {name: broken}
  triggers:
  - type: nats-jetstream
    metadata:
      natsServerMonitoringEndpoint: nats.eventpipe.svc:8222
      account: $G
      stream: events
      consumer: broken
      lagThreshold: "100"
`

const validServiceMonitor = `
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: broken}}
  endpoints: [{port: metrics, interval: 30s}]
`

// at returns the object at path in obj; a path element is a map key or a
// slice index.
func at(obj map[string]any, path ...any) map[string]any {
	var cur any = obj
	for _, p := range path {
		switch p := p.(type) {
		case string:
			cur = cur.(map[string]any)[p]
		case int:
			cur = cur.([]any)[p]
		}
	}
	return cur.(map[string]any)
}

// sendable returns u as helm would send it: without the annotation that
// records its template.
func sendable(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := u.DeepCopy()
	ann := out.GetAnnotations()
	delete(ann, sourceAnnotation)
	if len(ann) == 0 {
		ann = nil
	}
	out.SetAnnotations(ann)
	return out
}

// apiServer is a kube-apiserver with its etcd, each a process of this test.
type apiServer struct {
	binDir     string
	dynamic    dynamic.Interface
	mapper     *restmapper.DeferredDiscoveryRESTMapper
	namespaces map[string]bool
}

// startAPIServer starts etcd and kube-apiserver on free loopback ports,
// with state and credentials in the test's temporary directory, and
// returns once the API server is ready. Both processes end with the test.
func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping API-server tests in -short mode")
	}
	bin := apiServerBinaries(t)
	dir := t.TempDir()

	// Registered first, so cleanup stops etcd last: a kube-apiserver whose
	// etcd is gone hangs in its shutdown.
	etcdURL := "http://" + freeAddr(t)
	peerURL := "http://" + freeAddr(t)
	etcd := startProcess(t, filepath.Join(bin, "etcd"),
		"--name=test",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL,
	)
	// No keep-alive: an idle connection's goroutines would outlive the test.
	health := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	etcd.waitUntil(t, 30*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, etcdURL+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := health.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /health: %s", resp.Status)
		}
		return nil
	})

	certFile, keyFile, roots := servingCert(t, dir)
	saKey := writeKey(t, dir, "service-account.key", newKey(t))
	token := randomHex(t)
	tokens := filepath.Join(dir, "tokens.csv")
	// The admin is in system:masters, which RBAC lets do anything.
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	apiserver := startProcess(t, filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port="+port,
		"--tls-cert-file="+certFile,
		"--tls-private-key-file="+keyFile,
		// Its default is under /var/run; nothing should go there.
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
	)

	// A transport of our own rather than client-go's, which caches
	// transports process-wide: this one's idle connections can be closed.
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	t.Cleanup(transport.CloseIdleConnections)
	cfg := &rest.Config{
		Host:        "https://" + addr,
		BearerToken: token,
		Transport:   transport,
		// The server is ours alone: no client-side throttling.
		QPS:                       -1,
		WarningHandlerWithContext: warningCollector{},
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	apiserver.waitUntil(t, 90*time.Second, func(ctx context.Context) error {
		return dc.RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
	t.Logf("kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))

	return &apiServer{
		binDir:     bin,
		dynamic:    dyn,
		mapper:     restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		namespaces: map[string]bool{},
	}
}

// dryRunCreate creates obj as helm install would, but with dryRun=All and
// fieldValidation=Strict, and returns the server's warnings.
func (a *apiServer) dryRunCreate(t *testing.T, obj *unstructured.Unstructured) ([]string, error) {
	t.Helper()
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the API server serves no %s; is its CRD in crdFiles? %w", gvk, err)
	}
	var r dynamic.ResourceInterface = a.dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		// helm puts objects that name no namespace in the release's.
		if obj.GetNamespace() == "" {
			obj.SetNamespace(namespace)
		}
		a.ensureNamespace(t, obj.GetNamespace())
		r = a.dynamic.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	var warnings []string
	ctx := context.WithValue(t.Context(), warningsKey{}, &warnings)
	_, err = r.Create(ctx, obj, metav1.CreateOptions{
		DryRun:          []string{metav1.DryRunAll},
		FieldValidation: metav1.FieldValidationStrict,
	})
	return warnings, err
}

// ensureNamespace creates a namespace for real: a dry run into a namespace
// that does not exist fails before any validation.
func (a *apiServer) ensureNamespace(t *testing.T, name string) {
	t.Helper()
	if a.namespaces[name] {
		return
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	_, err := a.dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
		Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	a.namespaces[name] = true
}

// installCRDs creates the CustomResourceDefinitions in files and waits
// until the API server serves each kind: a CRD is usable only once it is
// Established and its kind is in discovery.
func (a *apiServer) installCRDs(t *testing.T, files ...string) {
	t.Helper()
	crds := a.dynamic.Resource(schema.GroupVersionResource{
		Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions",
	})
	var names []string
	var kinds []schema.GroupKind
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitYAML(string(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, doc := range docs {
			crd := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &crd.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if _, err := crds.Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create CRD %s (%s): %v", crd.GetName(), f, err)
			}
			group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
			names = append(names, crd.GetName())
			kinds = append(kinds, schema.GroupKind{Group: group, Kind: kind})
		}
	}

	poll(t, 60*time.Second, func() error {
		for _, name := range names {
			crd, err := crds.Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !established(crd) {
				return fmt.Errorf("CRD %s not established", name)
			}
		}
		return nil
	})
	poll(t, 60*time.Second, func() error {
		a.mapper.Reset()
		for _, gk := range kinds {
			if _, err := a.mapper.RESTMapping(gk); err != nil {
				return err
			}
		}
		return nil
	})
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		c, _ := c.(map[string]any)
		if c["type"] == "Established" && c["status"] == "True" {
			return true
		}
	}
	return false
}

// crdFiles returns the CRDs of the kinds the chart renders beyond
// Kubernetes' own, at the versions go.mod pins for the typed tests. KEDA's
// module ships its CRDs. prometheus-operator's API module does not, and no
// module the proxy serves does, so controller-gen generates them from that
// module's types, exactly as prometheus-operator's `make generate-crds`
// generates the ones it publishes.
func crdFiles(t *testing.T, binDir string) []string {
	t.Helper()
	keda := moduleDir(t, "github.com/kedacore/keda/v2")
	files, err := filepath.Glob(filepath.Join(keda, "config", "crd", "bases", "keda.sh_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no KEDA CRDs in %s: %v", keda, err)
	}

	out := t.TempDir()
	cmd := exec.Command(filepath.Join(binDir, "controller-gen"),
		"crd:crdVersions=v1", "paths=./v1/.", "output:crd:dir="+out)
	cmd.Dir = moduleDir(t, "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring")
	// The module cache is read-only: the go command controller-gen runs
	// there must not try to change that module's go.mod, nor use a
	// workspace of the caller's.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, b)
	}
	// Only the kinds the chart uses: Prometheus, Alertmanager and
	// ThanosRuler are megabytes each and slow the API server down.
	for _, plural := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		files = append(files, filepath.Join(out, "monitoring.coreos.com_"+plural+".yaml"))
	}
	return files
}

// moduleDir returns the module cache directory of a module in the build
// list; building this package's tests downloaded it.
func moduleDir(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path).Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m %s: no module directory (%v); go mod download %s fetches it", path, err, path)
	}
	return dir
}

// apiServerBinaries returns the directory with the etcd, kube-apiserver
// and controller-gen that hack/kube-apiserver.sh provides. Without them the
// test skips, except in a CI that asks for this tier with
// EVENTPIPE_APISERVER=required, where a tier that silently skipped would
// prove nothing.
func apiServerBinaries(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBE_APISERVER_DIR")
	if dir == "" {
		dir = defaultBinDir(t)
	}
	var missing []string
	for _, name := range []string{"etcd", "kube-apiserver", "controller-gen"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("no %s in %s; hack/kube-apiserver.sh builds them there (KUBE_APISERVER_DIR overrides the directory)",
			strings.Join(missing, ", "), dir)
		if os.Getenv("CI") != "" && os.Getenv("EVENTPIPE_APISERVER") == "required" {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
	return dir
}

// defaultBinDir is where hack/kube-apiserver.sh puts the binaries by
// default: a directory per Kubernetes version in the user's cache.
func defaultBinDir(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)`).
		FindSubmatch(readRepoFile(t, filepath.Join("hack", "kube-apiserver", "go.mod")))
	if m == nil {
		t.Fatal("hack/kube-apiserver/go.mod requires no k8s.io/kubernetes")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("skipping: no cache directory to find the API server binaries in (%v); set KUBE_APISERVER_DIR", err)
	}
	return filepath.Join(cache, "eventpipe", "kube-apiserver", string(m[1]))
}

// warningsKey carries a request's *[]string for the server's warnings.
type warningsKey struct{}

// warningCollector appends the warnings of a response to the slice its
// request's context carries.
type warningCollector struct{}

func (warningCollector) HandleWarningHeaderWithContext(ctx context.Context, _ int, _ string, text string) {
	if w, ok := ctx.Value(warningsKey{}).(*[]string); ok {
		*w = append(*w, text)
	}
}

// process is a server binary run by a test, its output in a log file that
// a failing test shows the end of.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's, once done is closed
}

// startProcess starts bin and stops it when the test ends: SIGTERM, then
// SIGKILL if it has not exited within 20s.
func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	name := filepath.Base(bin)
	p := &process{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Should the test binary die (a go test timeout), take the server
	// along rather than leave it running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		// Before stopping: what follows is only its shutdown.
		if t.Failed() {
			t.Logf("%s log, last lines:\n%s", name, p.tail())
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Logf("%s ignored SIGTERM for 20s; killing it", name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitUntil polls ready until it returns nil, failing the test if the
// process exits or limit passes first.
func (p *process) waitUntil(t *testing.T, limit time.Duration, ready func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v\n%s", p.name, limit, err, p.tail())
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.err, p.tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tail returns the last lines of the process's log.
func (p *process) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// poll calls check until it returns nil, failing the test after limit.
func poll(t *testing.T, limit time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free at the time of the
// call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// servingCert writes a self-signed certificate for 127.0.0.1 and its key,
// and returns their files and a pool that trusts the certificate.
func servingCert(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	certFile = filepath.Join(dir, "serving.crt")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, writeKey(t, dir, "serving.key", key), roots
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeKey writes key as a PEM file in dir and returns its path.
func writeKey(t *testing.T, dir, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
