// Command dashboards writes eventpipe's Grafana dashboards as JSON into
// charts/eventpipe/dashboards, the one copy that compose provisions from
// files and the Helm chart ships as ConfigMaps. Change a dashboard here,
// then run, from the repository root:
//
//	go run ./hack/dashboards
//
// The test next to it fails while the committed JSON differs from what
// this program writes.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() { os.Exit(run()) }

func run() int {
	out := flag.String("out", filepath.Join("charts", "eventpipe", "dashboards"), "directory the JSON files are written to")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "dashboards:", err)
		return 1
	}
	return 0
}

// write renders every dashboard into dir, one file each.
func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range dashboards() {
		b, err := render(d)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, d.file), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// render returns a dashboard's JSON: indented, without HTML escaping (so
// PromQL's < and > read as written), ending in a newline.
func render(d dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("render %s: %w", d.file, err)
	}
	return buf.Bytes(), nil
}
