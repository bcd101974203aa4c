// Command chartdoc writes charts/eventpipe/README.md: the chart's usage
// and a table of every value, its type, default and meaning. The meanings
// come from values.schema.json, the same file that rejects bad values, and
// the defaults from values.yaml, so the three cannot disagree. Run from
// the repository root:
//
//	go run ./hack/chartdoc
//
// The test next to it fails while the committed README differs from what
// this program writes, or while a value has no description.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() { os.Exit(run()) }

func run() int {
	chart := flag.String("chart", filepath.Join("charts", "eventpipe"), "chart directory")
	flag.Parse()
	doc, err := generate(*chart)
	if err == nil {
		err = os.WriteFile(filepath.Join(*chart, "README.md"), doc, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		return 1
	}
	return 0
}

// schema is the part of a JSON schema the table needs.
type schema struct {
	Type        any                `json:"type"`
	Description string             `json:"description"`
	Enum        []any              `json:"enum"`
	Properties  map[string]*schema `json:"properties"`
	Minimum     *float64           `json:"minimum"`
	Maximum     *float64           `json:"maximum"`
}

// row is one value of the table.
type row struct {
	key, typ, def, desc string
}

// generate returns the README for the chart in dir.
func generate(dir string) ([]byte, error) {
	var s schema
	if err := readJSON(filepath.Join(dir, "values.schema.json"), &s); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	rows, err := walk("", &s, values)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.key, r.typ, r.def, escape(r.desc))
	}
	return b.Bytes(), nil
}

// walk lists the values under s: a row for each leaf of values.yaml (and
// each described key it leaves out), recursing into objects. Keys that
// values.yaml sets but the schema does not describe belong to a subchart
// (nats, postgresql): they keep the row with the nearest description.
func walk(prefix string, s *schema, v any) ([]row, error) {
	m, isMap := v.(map[string]any)
	if s == nil || (!isMap && len(s.Properties) == 0) || (isMap && len(m) == 0 && len(s.Properties) == 0) {
		return []row{leaf(prefix, s, v)}, nil
	}
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	if s != nil {
		for k := range s.Properties {
			keys[k] = true
		}
	}
	var rows []row
	if s.Description != "" && prefix != "" {
		rows = append(rows, row{key: prefix, typ: "object", def: "", desc: s.Description})
	}
	for _, k := range sortedKeys(keys) {
		key := strings.TrimPrefix(prefix+"."+k, ".")
		child := s.Properties[k]
		val, set := m[k]
		if child == nil && prefix == "" {
			return nil, fmt.Errorf("value %s has no description in values.schema.json", key)
		}
		if child == nil {
			// A subchart's own value, set by our defaults.
			rows = append(rows, flatten(key, val)...)
			continue
		}
		if !set && len(child.Properties) == 0 {
			rows = append(rows, leaf(key, child, nil))
			continue
		}
		sub, err := walk(key, child, val)
		if err != nil {
			return nil, err
		}
		rows = append(rows, sub...)
	}
	return rows, nil
}

// flatten lists a subchart's values as set in values.yaml.
func flatten(key string, v any) []row {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return []row{{key: key, typ: typeOf(nil, v), def: defaultOf(v), desc: "Passed to the subchart."}}
	}
	var rows []row
	for _, k := range sortedKeys(m) {
		rows = append(rows, flatten(key+"."+k, m[k])...)
	}
	return rows
}

func leaf(key string, s *schema, v any) row {
	r := row{key: key, typ: typeOf(s, v), def: defaultOf(v)}
	if s != nil {
		r.desc = s.Description
		if len(s.Enum) > 0 {
			var opts []string
			for _, e := range s.Enum {
				opts = append(opts, fmt.Sprintf("`%v`", e))
			}
			r.desc += " One of " + strings.Join(opts, ", ") + "."
		}
	}
	return r
}

func typeOf(s *schema, v any) string {
	if s != nil && s.Type != nil {
		switch t := s.Type.(type) {
		case string:
			return t
		case []any:
			var parts []string
			for _, p := range t {
				parts = append(parts, fmt.Sprint(p))
			}
			return strings.Join(parts, " or ")
		}
	}
	switch v.(type) {
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return ""
}

func defaultOf(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return "`" + strings.ReplaceAll(string(b), "|", `\|`) + "`"
}

// escape keeps a description from breaking the table or reading as HTML.
func escape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

const header = "<!-- Generated by `go run ./hack/chartdoc` from values.yaml and values.schema.json; edit those, not this. -->\n" + `# eventpipe Helm chart

Marketing webhook events (Facebook and TikTok funnels) through NATS
JetStream into PostgreSQL, with reports over them. The gateway takes
` + "`POST /webhook`" + `, two collectors store the events exactly once, the
reporter serves ` + "`/reports/*`" + `. Collectors scale on their JetStream consumer
lag through KEDA.

## Prerequisites

- Kubernetes 1.30 or newer, Helm 3.
- KEDA (for ` + "`keda.enabled`" + `, the default) and, for the bundled database
  (` + "`postgresql.enabled`" + `, the default), the CloudNativePG operator, both
  installed beforehand. ` + "`hack/kind-up.sh`" + ` installs both on kind.
- kube-prometheus-stack for the optional ServiceMonitors, PrometheusRule and
  dashboards.
- The images, built from ` + "`manifests/docker/Dockerfile`" + ` (one target per
  binary) and pushed where the cluster can pull them (` + "`image.registry`" + `).

## Install

` + "```" + `
helm repo add nats https://nats-io.github.io/k8s/helm/charts/
helm repo add cnpg https://cloudnative-pg.github.io/charts
helm dependency build charts/eventpipe
helm install eventpipe charts/eventpipe -n eventpipe --create-namespace \
  --timeout 10m --set image.registry=registry.example/eventpipe
` + "```" + `

With the bundled database the migrations run right after install (the
database does not exist before), and the services report not ready until
they have: leave out ` + "`--wait`" + `, which would wait for readiness before
running that hook, and allow the hook time for the database to start
(` + "`--timeout 10m`" + `; Helm's default is 5m). With an external database (it exists before the
release) they run before install and every upgrade:

` + "```" + `
kubectl -n eventpipe create secret generic eventpipe-db \
  --from-literal=DATABASE_URL='postgres://user:pass@db.example:5432/eventpipe?sslmode=require'
helm install eventpipe charts/eventpipe -n eventpipe --create-namespace --wait \
  --set postgresql.enabled=false --set externalDatabase.existingSecret=eventpipe-db
` + "```" + `

GitOps tools that ignore Helm hooks: ` + "`--set migrations.mode=job`" + ` renders
the migrations as a plain Job named after the image, so each new version
runs them once.

Reports: ` + "`kubectl -n eventpipe port-forward svc/eventpipe-reporter 3003`" + `,
then ` + "`curl -s localhost:3003/reports/events`" + `.

## Autoscaling

Each collector has a KEDA ScaledObject with the ` + "`nats-jetstream`" + ` trigger on
NATS's monitoring endpoint (the headless service, port 8222), account
` + "`$G`" + `, stream ` + "`EVENTS`" + ` and the collector's durable consumer, the very
` + "`consumerName`" + ` the collector is configured with. KEDA's lag is
` + "`num_pending + num_ack_pending`" + ` and it asks for ceil(lag / ` + "`keda.lagThreshold`" + `)
replicas within each collector's ` + "`keda.minReplicaCount`" + `..` + "`keda.maxReplicaCount`" + `.
The gateway can scale on CPU with a plain HPA (` + "`gateway.autoscaling`" + `).

## Values

Values under ` + "`nats`" + ` and ` + "`postgresql`" + ` go to the official NATS chart and
CloudNativePG's ` + "`cluster`" + ` chart; only those this chart sets are listed.
` + "`values.schema.json`" + ` rejects unknown keys and bad values at install.

`
