package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const chartDir = "../../charts/eventpipe"

// TestCommittedREADMEIsGenerated fails while the chart's README differs
// from what the generator writes: the README must never be edited by hand.
func TestCommittedREADMEIsGenerated(t *testing.T) {
	got, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("charts/eventpipe/README.md differs from the generator's output; run `go run ./hack/chartdoc` from the repository root")
	}
}

// TestEveryValueIsDescribed fails on a row without a description: a value
// added to values.yaml must be described in values.schema.json.
func TestEveryValueIsDescribed(t *testing.T) {
	doc, err := generate(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		rows++
		cells := strings.Split(line, " | ")
		if strings.TrimSpace(strings.TrimSuffix(cells[len(cells)-1], "|")) == "" {
			t.Errorf("no description: %s", line)
		}
	}
	if rows < 80 {
		t.Errorf("got %d value rows; the chart has far more values", rows)
	}
}

// TestUndescribedValueIsAnError shows a new top-level value without a
// description stops the generator.
func TestUndescribedValueIsAnError(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"values.yaml", "values.schema.json"} {
		b, err := os.ReadFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "values.yaml" {
			b = append(b, []byte("\nnewThing: 1\n")...)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := generate(dir); err == nil || !strings.Contains(err.Error(), "newThing") {
		t.Errorf("generate = %v; want an error naming newThing", err)
	}
}
