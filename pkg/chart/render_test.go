package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// The release every test renders.
const (
	releaseName = "eventpipe"
	namespace   = "eventpipe"
)

// kubeVersion is the oldest Kubernetes the chart supports (Chart.yaml's
// kubeVersion), so the templates cannot lean on anything newer.
var kubeVersion = chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

// chartDir is the chart, relative to this package.
var chartDir = filepath.Join("..", "..", "charts", "eventpipe")

// valueSets are the configurations the chart must render correctly, each
// as values over the chart's defaults.
var valueSets = map[string]map[string]any{
	"defaults": {},
	// A database that exists before the release, its URL in a Secret.
	"external-db": {
		"postgresql":       map[string]any{"enabled": false},
		"externalDatabase": map[string]any{"existingSecret": "eventpipe-db", "secretKey": "url"},
	},
	// A database URL given inline: the chart keeps it in a Secret.
	"external-db-url": {
		"postgresql":       map[string]any{"enabled": false},
		"externalDatabase": map[string]any{"url": "postgres://eventpipe:secret@db.example:5432/eventpipe?sslmode=require"},
	},
	"keda-off": {
		"keda": map[string]any{"enabled": false},
	},
	"monitoring-off": {
		"monitoring": map[string]any{
			"serviceMonitor": map[string]any{"enabled": false},
			"prometheusRule": map[string]any{"enabled": false},
			"dashboards":     map[string]any{"enabled": false},
		},
	},
	"monitoring-on": {
		"monitoring": map[string]any{
			"release":        "kps",
			"serviceMonitor": map[string]any{"enabled": true},
			"natsPodMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
			"dashboards":     map[string]any{"enabled": true},
		},
	},
	// What a production install looks like: a NATS cluster with a
	// replicated stream, an external database, webhook authentication,
	// a role of its own for the reporter and for the collectors, the
	// gateway on an HPA, network policies, everything monitored and the
	// migrations as a plain Job for a GitOps tool.
	"production": {
		"image": map[string]any{"registry": "registry.example/eventpipe", "tag": "1.2.3"},
		"nats": map[string]any{
			"config":       map[string]any{"cluster": map[string]any{"enabled": true, "replicas": 3}},
			"promExporter": map[string]any{"enabled": true, "podMonitor": map[string]any{"enabled": false}},
		},
		"jetstream":  map[string]any{"replicas": 3},
		"postgresql": map[string]any{"enabled": false},
		"externalDatabase": map[string]any{
			"existingSecret":  "eventpipe-db",
			"reporterSecret":  "eventpipe-db-reporter",
			"collectorSecret": "eventpipe-db-collector",
		},
		"migrations": map[string]any{"mode": "job"},
		"gateway": map[string]any{
			"autoscaling": map[string]any{"enabled": true, "minReplicas": 3, "maxReplicas": 12},
			"auth":        map[string]any{"existingSecret": "eventpipe-webhook", "tokenKey": "token", "hmacSecretKey": "hmac"},
			"env":         map[string]any{"MAX_BODY_BYTES": "32MiB", "PUBLISH_MAX_PENDING": 8192},
		},
		"fbCollector":   map[string]any{"keda": map[string]any{"minReplicaCount": 2, "maxReplicaCount": 16}},
		"ttkCollector":  map[string]any{"keda": map[string]any{"minReplicaCount": 2, "maxReplicaCount": 16}},
		"networkPolicy": map[string]any{"enabled": true},
		"monitoring": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true},
			"natsPodMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
			"dashboards":     map[string]any{"enabled": true},
		},
	},
	// Our load generator in the cluster, as Tilt and the kind test run it.
	"publisher": {
		"publisher":     map[string]any{"enabled": true},
		"networkPolicy": map[string]any{"enabled": true},
	},
}

// loadChart loads the chart from its directory, as helm does.
func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// render renders the chart's templates for an install of release
// "eventpipe" with values over the defaults, and returns each file's
// output. The subcharts are not in the repository (helm dependency build
// fetches them), so only this chart's own templates render; the values
// are checked against values.schema.json as helm install checks them.
func render(c *chart.Chart, values map[string]any) (map[string]string, error) {
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	if c.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(c.Metadata.KubeVersion, kubeVersion.Version) {
		return nil, fmt.Errorf("chart requires kubeVersion %s; rendering for %s", c.Metadata.KubeVersion, kubeVersion.Version)
	}
	vals, err := chartutil.ToRenderValues(c, values, opts, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, vals)
}

// renderChart returns every object the chart renders for values, hooks
// included, in a stable order.
func renderChart(t testing.TB, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	files, err := render(loadChart(t), values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var objs []*unstructured.Unstructured
	for _, name := range sortedKeys(files) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		docs, err := splitYAML(files[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, doc := range docs {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			if len(u.Object) == 0 {
				continue
			}
			u.SetAnnotations(mergeAnnotations(u.GetAnnotations(), map[string]string{sourceAnnotation: name}))
			objs = append(objs, u)
		}
	}
	return objs
}

// sourceAnnotation records which template an object came from, for
// failure messages; stripped before an object goes to an API server.
const sourceAnnotation = "test.eventpipe/source"

func mergeAnnotations(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, b)
	return out
}

// splitYAML splits a multi-document YAML stream.
func splitYAML(s string) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(s)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// scheme knows every kind the chart may render: Kubernetes' own, KEDA's
// and prometheus-operator's.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, kedav1alpha1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictDecoder fails on unknown and duplicated fields.
var strictDecoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// decode decodes one rendered object strictly into its typed form.
func decode(u *unstructured.Unstructured) (runtime.Object, error) {
	clean := u.DeepCopy()
	ann := clean.GetAnnotations()
	delete(ann, sourceAnnotation)
	if len(ann) == 0 {
		ann = nil
	}
	clean.SetAnnotations(ann)
	data, err := clean.MarshalJSON()
	if err != nil {
		return nil, err
	}
	obj, _, err := strictDecoder.Decode(data, nil, nil)
	return obj, err
}

// typed renders values and decodes every object, failing the test on any
// object that does not decode strictly.
func typed(t testing.TB, values map[string]any) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	for _, u := range renderChart(t, values) {
		obj, err := decode(u)
		if err != nil {
			t.Fatalf("%s %s (%s): %v", u.GetKind(), u.GetName(), u.GetAnnotations()[sourceAnnotation], err)
		}
		out = append(out, obj)
	}
	return out
}

// ofType returns the objects of type T.
func ofType[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// repoRoot is the repository root.
func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// readRepoFile reads a file by its path in the repository.
func readRepoFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
