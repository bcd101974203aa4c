package chart

// The kind tier: the chart installed on a real cluster, next to the
// operators it expects, running our images with the publisher posting.
// TestKind needs a Docker engine, helm (3.x) and the network (the node
// image, the operator charts and images, the chart's dependencies), and
// takes 10 to 20 minutes, so it runs only when asked:
//
//	EVENTPIPE_KIND=1 go test -run TestKind -v -timeout 30m ./pkg/chart
//
// It creates its own cluster, eventpipe-e2e, from manifests/kind/cluster.yaml
// (hack/kind-up.sh's cluster is eventpipe, left alone) and deletes it at the
// end; EVENTPIPE_KIND_KEEP=1 keeps it for a look (kind export kubeconfig
// --name eventpipe-e2e). KEDA and the CloudNativePG operator are installed
// at the versions hack/kind-up.sh pins, from the same values files.
//
// Helm runs as its CLI, and the reporter is reached through the API
// server's service proxy: Helm's action package and client-go's
// port-forward (SPDY, websockets) would bring some forty modules into
// go.mod for this one test, while helm is a prerequisite of the kind setup
// anyway and the proxy is the same client-go connection as everything else.
//
// The other tests here run everywhere, in a fraction of a second: the kind
// and ctlptl configurations decoded with kind's own v1alpha4 types, Tilt's
// Dockerfile against the release one, and the values Tilt and TestKind
// deploy against the chart's schema.

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	"sigs.k8s.io/yaml"
)

const (
	kindClusterFile = "manifests/kind/cluster.yaml"
	kindCtlptlFile  = "manifests/kind/ctlptl.yaml"
	kindUpScript    = "hack/kind-up.sh"
	kindDockerfile  = "manifests/docker/Dockerfile"
	kindTiltValues  = "manifests/tilt/values.yaml"
	// The Dockerfile Tilt builds from binaries compiled on the host.
	kindTiltDockerfile = "manifests/tilt/Dockerfile"

	// kindTestCluster is apart from hack/kind-up.sh's cluster (eventpipe).
	kindTestCluster = "eventpipe-e2e"
	kindImageTag    = "e2e"
	// The registry hack/kind-up.sh runs and ctlptl.yaml declares.
	kindRegistry     = "kind-registry"
	kindRegistryPort = 5001
)

// kindImages are the Dockerfile's targets, each image eventpipe-<target>.
var kindImages = []string{"gateway", "fb-collector", "ttk-collector", "reporter", "migrate", "publisher"}

// kindOverrides go over manifests/tilt/values.yaml (the sizes Tilt runs):
// the migrations as the Helm hook every `helm install` gets, the login
// roles' Secrets made by the chart (helm install reads them back), the images
// loaded into the nodes, and no monitoring objects (kube-prometheus-stack,
// the heaviest of the operators, is not installed here).
const kindOverrides = `image:
  tag: ` + kindImageTag + `
logFormat: json
migrations:
  mode: hook
bundledDatabase:
  createRoleSecrets: true
monitoring:
  serviceMonitor: {enabled: false}
  prometheusRule: {enabled: false}
  dashboards: {enabled: false}
`

// TestKindClusterConfig checks what hack/kind-up.sh, ctlptl and TestKind
// feed kind: both files decode strictly into kind's v1alpha4 Cluster,
// describe the same nodes, let containerd read the registry hosts
// directory, and name the registry kind-up.sh runs.
func TestKindClusterConfig(t *testing.T) {
	var c v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(readRepoFile(t, kindClusterFile), &c); err != nil {
		t.Fatalf("%s: %v", kindClusterFile, err)
	}
	if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Errorf("%s: kind %q, apiVersion %q; want Cluster, kind.x-k8s.io/v1alpha4", kindClusterFile, c.Kind, c.APIVersion)
	}
	if c.Name != "eventpipe" {
		t.Errorf("%s: name %q; want eventpipe (context kind-eventpipe, which the Tiltfile allows)", kindClusterFile, c.Name)
	}
	roles := kindRoles(c.Nodes)
	if !slices.Contains(roles, string(v1alpha4.ControlPlaneRole)) {
		t.Errorf("%s: nodes %v; want a control-plane", kindClusterFile, roles)
	}
	// One patch per containerd config version: kind applies a patch only
	// where its version matches the node's config.
	for _, version := range []string{"version = 2", "version = 3"} {
		found := false
		for _, p := range c.ContainerdConfigPatches {
			if strings.Contains(p, version) && strings.Contains(p, `config_path = "/etc/containerd/certs.d"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no containerd patch with %q setting config_path to /etc/containerd/certs.d", kindClusterFile, version)
		}
	}

	docs, err := splitYAML(string(readRepoFile(t, kindCtlptlFile)))
	if err != nil {
		t.Fatalf("%s: %v", kindCtlptlFile, err)
	}
	type ctlptlObject struct {
		APIVersion          string            `json:"apiVersion"`
		Kind                string            `json:"kind"`
		Name                string            `json:"name"`
		Port                int               `json:"port"`
		Product             string            `json:"product"`
		Registry            string            `json:"registry"`
		KindV1Alpha4Cluster *v1alpha4.Cluster `json:"kindV1Alpha4Cluster"`
	}
	var registry, ctlptlCluster *ctlptlObject
	for _, doc := range docs {
		o := &ctlptlObject{}
		if err := yaml.UnmarshalStrict(doc, o); err != nil {
			t.Fatalf("%s: %v\n%s", kindCtlptlFile, err, doc)
		}
		if o.APIVersion != "ctlptl.dev/v1alpha1" {
			t.Errorf("%s: apiVersion %q; want ctlptl.dev/v1alpha1", kindCtlptlFile, o.APIVersion)
		}
		switch o.Kind {
		case "Registry":
			registry = o
		case "Cluster":
			ctlptlCluster = o
		default:
			t.Errorf("%s: unexpected kind %q", kindCtlptlFile, o.Kind)
		}
	}
	if registry == nil || ctlptlCluster == nil || ctlptlCluster.KindV1Alpha4Cluster == nil {
		t.Fatalf("%s: want a Registry and a Cluster with kindV1Alpha4Cluster", kindCtlptlFile)
	}
	if registry.Name != kindRegistry || registry.Port != kindRegistryPort {
		t.Errorf("%s: registry %s on %d; want %s on %d, as hack/kind-up.sh runs it", kindCtlptlFile, registry.Name, registry.Port, kindRegistry, kindRegistryPort)
	}
	if ctlptlCluster.Product != "kind" || ctlptlCluster.Registry != registry.Name || ctlptlCluster.Name != "kind-"+c.Name {
		t.Errorf("%s: cluster %q (product %q, registry %q); want kind-%s on kind with %s", kindCtlptlFile,
			ctlptlCluster.Name, ctlptlCluster.Product, ctlptlCluster.Registry, c.Name, registry.Name)
	}
	if got := kindRoles(ctlptlCluster.KindV1Alpha4Cluster.Nodes); !slices.Equal(got, roles) {
		t.Errorf("%s: nodes %v; want %v, as in %s", kindCtlptlFile, got, roles, kindClusterFile)
	}

	script := string(readRepoFile(t, kindUpScript))
	for _, want := range []string{kindRegistry, fmt.Sprint(kindRegistryPort), kindClusterFile} {
		if !strings.Contains(script, want) {
			t.Errorf("%s does not mention %s", kindUpScript, want)
		}
	}
	kindChartVersions(t)
}

// TestTiltImagesMatchRelease checks that manifests/tilt/Dockerfile, which
// wraps binaries built on the host, has exactly the release Dockerfile's
// targets, each running its binary from the same path.
func TestTiltImagesMatchRelease(t *testing.T) {
	release := kindDockerfileEntrypoints(t, kindDockerfile)
	tilt := kindDockerfileEntrypoints(t, kindTiltDockerfile)
	for _, target := range kindImages {
		want := fmt.Sprintf(`["/usr/local/bin/%s"]`, target)
		if release[target] != want {
			t.Errorf("%s: target %s entrypoint %q; want %s", kindDockerfile, target, release[target], want)
		}
		if tilt[target] != release[target] {
			t.Errorf("%s: target %s entrypoint %q; want %q, as %s", kindTiltDockerfile, target, tilt[target], release[target], kindDockerfile)
		}
	}
	if len(release) != len(kindImages) || len(tilt) != len(kindImages) {
		t.Errorf("targets with an entrypoint: %s %v, %s %v; want %v", kindDockerfile, sortedKeys(release), kindTiltDockerfile, sortedKeys(tilt), kindImages)
	}
}

// kindDockerfileEntrypoints maps each build stage of a Dockerfile to its
// ENTRYPOINT, for the stages that have one.
func kindDockerfileEntrypoints(t *testing.T, path string) map[string]string {
	t.Helper()
	stage := regexp.MustCompile(`(?i)^FROM\s+\S+(?:\s+AS\s+(\S+))?`)
	entrypoint := regexp.MustCompile(`(?i)^ENTRYPOINT\s+(.+)$`)
	out := map[string]string{}
	current := ""
	for _, line := range strings.Split(string(readRepoFile(t, path)), "\n") {
		line = strings.TrimSpace(line)
		if m := stage.FindStringSubmatch(line); m != nil {
			current = m[1]
		} else if m := entrypoint.FindStringSubmatch(line); m != nil && current != "" {
			out[current] = m[1]
		}
	}
	return out
}

// TestKindValuesRender renders the chart with the values Tilt deploys and,
// over them, those TestKind installs: both must pass values.schema.json,
// Tilt's migrations must be a plain Job (Tilt runs no hooks), the test's
// the Helm hook, and both must run the publisher.
func TestKindValuesRender(t *testing.T) {
	tiltValues, err := chartutil.ReadValuesFile(filepath.Join(repoRoot(t), kindTiltValues))
	if err != nil {
		t.Fatal(err)
	}
	overrides, err := chartutil.ReadValues([]byte(kindOverrides))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		values map[string]any
		hook   bool
	}{
		{"tilt", tiltValues.AsMap(), false},
		{"kind", chartutil.CoalesceTables(overrides.AsMap(), tiltValues.AsMap()), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := render(loadChart(t), tc.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			var job, publisher string
			for name, content := range files {
				switch {
				case strings.HasSuffix(name, "/migrate-job.yaml"):
					job = content
				case strings.HasSuffix(name, "/publisher.yaml"):
					publisher = content
				}
			}
			if hook := strings.Contains(job, "helm.sh/hook:"); hook != tc.hook {
				t.Errorf("migration Job is a Helm hook: %t; want %t\n%s", hook, tc.hook, job)
			}
			if !strings.Contains(publisher, "kind: Deployment") {
				t.Errorf("no publisher Deployment rendered")
			}
		})
	}
}

// TestTiltRoleSecrets checks the Secrets the Tiltfile applies for the
// bundled database's login roles, since the Tilt values turn the chart's
// own off: one per login role of the chart's roles, in its release
// namespace, shaped as CloudNativePG reads them.
func TestTiltRoleSecrets(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests/tilt/database-roles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := render(loadChart(t), map[string]any{"bundledDatabase": map[string]any{"createRoleSecrets": true}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // Secret → username, as the chart makes them
	for name, content := range files {
		if !strings.HasSuffix(name, "/database-roles-secrets.yaml") {
			continue
		}
		for _, doc := range strings.Split(content, "\n---") {
			var s corev1.Secret
			if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
				t.Fatal(err)
			}
			if s.Name != "" {
				want[s.Name] = string(s.Data["username"])
			}
		}
	}
	got := map[string]string{}
	for _, doc := range strings.Split(string(raw), "\n---") {
		var s corev1.Secret
		if err := yaml.UnmarshalStrict([]byte(doc), &s); err != nil {
			t.Fatal(err)
		}
		if s.Namespace != namespace || s.Type != corev1.SecretTypeBasicAuth || s.Labels["cnpg.io/reload"] != "true" || s.StringData["password"] == "" {
			t.Errorf("Secret %s: namespace %q, type %q, cnpg.io/reload %q, password set %t; want %q, %q, \"true\", true",
				s.Name, s.Namespace, s.Type, s.Labels["cnpg.io/reload"], s.StringData["password"] != "", namespace, corev1.SecretTypeBasicAuth)
		}
		got[s.Name] = s.StringData["username"]
	}
	if len(want) != 2 || !maps.Equal(got, want) {
		t.Errorf("Tilt's Secrets (name: username) %v; want the chart's %v", got, want)
	}
}

func kindRoles(nodes []v1alpha4.Node) []string {
	roles := make([]string, 0, len(nodes))
	for _, n := range nodes {
		roles = append(roles, string(n.Role))
	}
	return roles
}

// kindChartVersions are the operator chart versions hack/kind-up.sh pins
// (NAME_VERSION=${NAME_VERSION:-x.y.z}), so the test and a developer's
// cluster run the same ones.
func kindChartVersions(t *testing.T) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^([A-Z_]+_VERSION)=\$\{[A-Z_]+:-([^}]+)\}$`)
	versions := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(readRepoFile(t, kindUpScript)), -1) {
		versions[m[1]] = m[2]
	}
	for _, name := range []string{"KEDA_VERSION", "CNPG_VERSION", "KUBE_PROMETHEUS_STACK_VERSION"} {
		if versions[name] == "" {
			t.Fatalf("%s pins no %s", kindUpScript, name)
		}
	}
	return versions
}

func TestKind(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: -short (the kind end-to-end test takes 10 to 20 minutes)")
	}
	if os.Getenv("EVENTPIPE_KIND") != "1" {
		t.Skip("skipping: the kind end-to-end test is slow (10 to 20 minutes) and needs the network and a Docker engine; " +
			"run it with EVENTPIPE_KIND=1 go test -run TestKind -v -timeout 30m ./pkg/chart")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("skipping: the kind end-to-end test needs a Docker engine (`docker info`: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	root := repoRoot(t)
	helm := kindHelmBinary(t, root)
	versions := kindChartVersions(t)
	ctx := t.Context()

	// The images first: the longest step, and nothing to clean up if it fails.
	refs := make([]string, 0, len(kindImages))
	for _, target := range kindImages {
		ref := "eventpipe-" + target + ":" + kindImageTag
		kindRun(t, root, nil, "docker", "build", "-f", kindDockerfile, "--target", target, "-t", ref, ".")
		refs = append(refs, ref)
	}
	archive := filepath.Join(t.TempDir(), "images.tar")
	kindRun(t, root, nil, "docker", append([]string{"save", "-o", archive}, refs...)...)

	provider := cluster.NewProvider(cluster.ProviderWithDocker())
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if names, err := provider.List(); err == nil && slices.Contains(names, kindTestCluster) {
		t.Logf("deleting cluster %s left by an earlier run", kindTestCluster)
		if err := provider.Delete(kindTestCluster, kubeconfig); err != nil {
			t.Fatalf("delete cluster %s: %v", kindTestCluster, err)
		}
	}
	start := time.Now()
	err := provider.Create(kindTestCluster,
		cluster.CreateWithConfigFile(filepath.Join(root, kindClusterFile)),
		cluster.CreateWithKubeconfigPath(kubeconfig),
		cluster.CreateWithWaitForReady(5*time.Minute),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		t.Fatalf("create kind cluster %s: %v", kindTestCluster, err)
	}
	t.Logf("cluster %s ready in %s", kindTestCluster, time.Since(start).Round(time.Second))
	t.Cleanup(func() {
		if os.Getenv("EVENTPIPE_KIND_KEEP") == "1" {
			t.Logf("keeping cluster %s (EVENTPIPE_KIND_KEEP=1): kind export kubeconfig --name %s; kind delete cluster --name %s",
				kindTestCluster, kindTestCluster, kindTestCluster)
			return
		}
		if err := provider.Delete(kindTestCluster, kubeconfig); err != nil {
			t.Errorf("delete cluster %s: %v", kindTestCluster, err)
		}
	})

	// What `kind load image-archive` does: every node imports the archive.
	nodes, err := provider.ListInternalNodes(kindTestCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			t.Fatalf("load images into node %s: %v", n.String(), err)
		}
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(httpClient.CloseIdleConnections)
	cs, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the cluster's deletion, so it runs before it.
	t.Cleanup(func() {
		if t.Failed() {
			kindDumpState(t, cs, namespace, "keda", "cnpg-system")
		}
	})

	// helm with a kubeconfig and repositories of its own, so the test
	// touches neither the developer's contexts nor their helm setup.
	helmHome := t.TempDir()
	env := []string{
		"KUBECONFIG=" + kubeconfig,
		"HELM_CONFIG_HOME=" + filepath.Join(helmHome, "config"),
		"HELM_CACHE_HOME=" + filepath.Join(helmHome, "cache"),
		"HELM_DATA_HOME=" + filepath.Join(helmHome, "data"),
	}
	for name, url := range map[string]string{
		"kedacore": "https://kedacore.github.io/charts",
		"cnpg":     "https://cloudnative-pg.github.io/charts",
		"nats":     "https://nats-io.github.io/k8s/helm/charts/",
	} {
		kindRun(t, root, env, helm, "repo", "add", name, url, "--force-update")
	}
	for _, op := range []struct{ release, chart, version, namespace, values string }{
		{"keda", "kedacore/keda", versions["KEDA_VERSION"], "keda", "manifests/addons/keda.values.yaml"},
		{"cnpg", "cnpg/cloudnative-pg", versions["CNPG_VERSION"], "cnpg-system", "manifests/addons/cloudnative-pg.values.yaml"},
	} {
		kindRun(t, root, env, helm, "upgrade", "--install", op.release, op.chart, "--version", op.version,
			"--namespace", op.namespace, "--create-namespace", "--values", op.values, "--wait", "--timeout", "10m")
	}

	// The chart, with its dependencies fetched into a copy rather than
	// into the working tree.
	chartCopy := filepath.Join(t.TempDir(), "eventpipe")
	kindCopyChart(t, filepath.Join(root, "charts", "eventpipe"), chartCopy)
	kindRun(t, root, env, helm, "dependency", "build", chartCopy)
	overrides := filepath.Join(t.TempDir(), "kind.values.yaml")
	if err := os.WriteFile(overrides, []byte(kindOverrides), 0o644); err != nil {
		t.Fatal(err)
	}
	// No --wait: the services are not ready before the schema exists, and
	// with the bundled database the migrations run after install, so helm
	// would wait for itself. helm still waits for the migration hook.
	kindRun(t, root, env, helm, "install", releaseName, chartCopy, "--namespace", namespace, "--create-namespace",
		"--values", kindTiltValues, "--values", overrides, "--timeout", "15m")

	kindWaitDeployments(ctx, t, cs, 10*time.Minute)

	// The publisher posts once a second: the reporter must count events,
	// and keep counting.
	reporter := kindService(ctx, t, cs, "reporter")
	first := kindEventsTotal(ctx, t, cs, reporter, 0, 5*time.Minute)
	t.Logf("reporter: %d events", first)
	later := kindEventsTotal(ctx, t, cs, reporter, first, 2*time.Minute)
	t.Logf("reporter: %d events", later)

	kindCheckScaledObjects(ctx, t, cs, dyn, 5*time.Minute)
}

// kindHelmBinary is helm from PATH, or the one the repository's tools build
// puts in .bin/tools.
func kindHelmBinary(t *testing.T, root string) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	p := filepath.Join(root, ".bin", "tools", "helm")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatal("EVENTPIPE_KIND=1 but no helm on PATH (nor in .bin/tools): install Helm 3")
	return ""
}

// kindRun runs a command in dir with env added to the test's environment,
// and fails the test with its output if it fails.
func kindRun(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	t.Logf("%s %s (%s)", filepath.Base(name), strings.Join(args, " "), time.Since(start).Round(time.Second))
}

// kindCopyChart copies the chart without dependencies a developer's
// `helm dependency build` may have left in it.
func kindCopyChart(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() && (rel == "charts" || strings.HasPrefix(rel, "tmpcharts")) {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy chart: %v", err)
	}
}

// kindWaitDeployments waits until every Deployment of the release has all
// its replicas updated and available.
func kindWaitDeployments(ctx context.Context, t *testing.T, cs kubernetes.Interface, timeout time.Duration) {
	t.Helper()
	selector := "app.kubernetes.io/instance=" + releaseName + ",app.kubernetes.io/part-of=eventpipe"
	want := []string{"fb-collector", "gateway", "publisher", "reporter", "ttk-collector"}
	var pending []string
	err := wait.PollUntilContextTimeout(ctx, 5*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Logf("list deployments: %v", err)
			return false, nil
		}
		pending = pending[:0]
		var found []string
		for _, d := range list.Items {
			found = append(found, d.Labels["app.kubernetes.io/component"])
			if !kindDeploymentReady(&d) {
				pending = append(pending, fmt.Sprintf("%s (%d/%d available)", d.Name, d.Status.AvailableReplicas, kindReplicas(&d)))
			}
		}
		slices.Sort(found)
		if !slices.Equal(found, want) {
			pending = append(pending, fmt.Sprintf("components %v, want %v", found, want))
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		t.Fatalf("deployments not ready after %s: %s", timeout, strings.Join(pending, "; "))
	}
}

func kindReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func kindDeploymentReady(d *appsv1.Deployment) bool {
	n := kindReplicas(d)
	return d.Status.ObservedGeneration >= d.Generation &&
		d.Status.UpdatedReplicas == n && d.Status.AvailableReplicas >= n
}

// kindService is the release's Service of one component.
func kindService(ctx context.Context, t *testing.T, cs kubernetes.Interface, component string) *corev1.Service {
	t.Helper()
	list, err := cs.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + releaseName + ",app.kubernetes.io/component=" + component,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || len(list.Items[0].Spec.Ports) == 0 {
		t.Fatalf("%d Services for %s; want one, with a port", len(list.Items), component)
	}
	return &list.Items[0]
}

// kindEventsTotal polls GET /reports/events through the API server's
// service proxy until its total is above after, and returns it.
func kindEventsTotal(ctx context.Context, t *testing.T, cs kubernetes.Interface, svc *corev1.Service, after int64, timeout time.Duration) int64 {
	t.Helper()
	port := fmt.Sprint(svc.Spec.Ports[0].Port)
	var total int64
	var last string
	err := wait.PollUntilContextTimeout(ctx, 3*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		body, err := cs.CoreV1().Services(svc.Namespace).ProxyGet("http", svc.Name, port, "/reports/events", nil).DoRaw(ctx)
		if err != nil {
			last = fmt.Sprintf("%v: %s", err, body)
			return false, nil
		}
		var report struct {
			Total *int64 `json:"total"`
		}
		if err := json.Unmarshal(body, &report); err != nil || report.Total == nil {
			last = fmt.Sprintf("no total in %s", body)
			return false, nil
		}
		total = *report.Total
		last = fmt.Sprintf("total %d", total)
		return total > after, nil
	})
	if err != nil {
		t.Fatalf("GET %s/reports/events: want a total above %d within %s; last: %s", svc.Name, after, timeout, last)
	}
	return total
}

// kindCheckScaledObjects waits until each collector's ScaledObject is
// Ready, targets that collector's Deployment and has its HPA.
func kindCheckScaledObjects(ctx context.Context, t *testing.T, cs kubernetes.Interface, dyn dynamic.Interface, timeout time.Duration) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	deployments, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + releaseName + ",app.kubernetes.io/part-of=eventpipe",
	})
	if err != nil {
		t.Fatal(err)
	}
	collectors := map[string]string{} // Deployment name -> component
	for _, d := range deployments.Items {
		if c := d.Labels["app.kubernetes.io/component"]; strings.HasSuffix(c, "-collector") {
			collectors[d.Name] = c
		}
	}
	if len(collectors) != 2 {
		t.Fatalf("collector Deployments %v; want fb-collector and ttk-collector", collectors)
	}
	var problems []string
	err = wait.PollUntilContextTimeout(ctx, 5*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			problems = []string{err.Error()}
			return false, nil
		}
		problems = problems[:0]
		targets := map[string]bool{}
		for _, u := range list.Items {
			var so kedav1alpha1.ScaledObject
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &so); err != nil {
				return false, fmt.Errorf("decode ScaledObject %s: %w", u.GetName(), err)
			}
			target := ""
			if so.Spec.ScaleTargetRef != nil {
				target = so.Spec.ScaleTargetRef.Name
			}
			if collectors[target] == "" {
				problems = append(problems, fmt.Sprintf("%s scales %q, not a collector", so.Name, target))
				continue
			}
			targets[target] = true
			if ready := so.Status.Conditions.GetReadyCondition(); !ready.IsTrue() {
				problems = append(problems, fmt.Sprintf("%s not Ready (%s: %s)", so.Name, ready.Reason, ready.Message))
				continue
			}
			if so.Status.HpaName == "" {
				problems = append(problems, so.Name+" has no HPA yet")
				continue
			}
			if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx, so.Status.HpaName, metav1.GetOptions{}); err != nil {
				problems = append(problems, fmt.Sprintf("%s: HPA %s: %v", so.Name, so.Status.HpaName, err))
			}
		}
		for name := range collectors {
			if !targets[name] {
				problems = append(problems, "no ScaledObject for "+name)
			}
		}
		return len(problems) == 0, nil
	})
	if err != nil {
		t.Fatalf("ScaledObjects after %s: %v: %s", timeout, err, strings.Join(problems, "; "))
	}
}

// kindDumpState logs what a failure needs: pods and their states, the
// recent events and the last lines of the release's containers.
func kindDumpState(t *testing.T, cs kubernetes.Interface, namespaces ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range namespaces {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Logf("pods in %s: %v", ns, err)
			continue
		}
		for _, p := range pods.Items {
			var states []string
			for _, c := range p.Status.ContainerStatuses {
				s := fmt.Sprintf("%s ready=%t restarts=%d", c.Name, c.Ready, c.RestartCount)
				if w := c.State.Waiting; w != nil {
					s += " waiting: " + w.Reason + " " + w.Message
				}
				if term := c.State.Terminated; term != nil {
					s += fmt.Sprintf(" terminated: %s (exit %d)", term.Reason, term.ExitCode)
				}
				states = append(states, s)
			}
			t.Logf("pod %s/%s %s: %s", ns, p.Name, p.Status.Phase, strings.Join(states, "; "))
			if ns != namespace {
				continue
			}
			for _, c := range p.Spec.Containers {
				tail := int64(30)
				logs, err := cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tail}).DoRaw(ctx)
				if err != nil {
					logs = []byte(err.Error())
				}
				t.Logf("logs %s/%s:\n%s", p.Name, c.Name, logs)
			}
		}
		events, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		items := events.Items
		slices.SortFunc(items, func(a, b corev1.Event) int { return a.LastTimestamp.Compare(b.LastTimestamp.Time) })
		if len(items) > 40 {
			items = items[len(items)-40:]
		}
		for _, e := range items {
			t.Logf("event %s %s/%s: %s %s", ns, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
}
