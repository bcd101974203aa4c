package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// committed is where the generated dashboards are checked in, from this
// package's directory.
const committed = "../../charts/eventpipe/dashboards"

// TestCommittedDashboardsAreGenerated fails while a committed dashboard
// differs from what the generator writes, or while the directory holds a
// dashboard the generator does not write: the JSON must never be edited
// by hand, or the next generation would silently undo the edit.
func TestCommittedDashboardsAreGenerated(t *testing.T) {
	want := map[string]bool{}
	for _, d := range dashboards() {
		want[d.file] = true
		t.Run(d.file, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(committed, d.file))
			if err != nil {
				t.Fatalf("%v; run `go run ./hack/dashboards` from the repository root", err)
			}
			gen, err := render(d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, gen) {
				t.Errorf("%s differs from the generator's output; run `go run ./hack/dashboards` from the repository root", d.file)
			}
		})
	}
	files, err := filepath.Glob(filepath.Join(committed, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("%s is not written by the generator; add it to hack/dashboards or delete it", f)
		}
	}
}

// TestDashboardsHaveStableDistinctUIDs guards the uids links and
// bookmarks rely on, and the file names the chart and compose expect.
func TestDashboardsHaveStableDistinctUIDs(t *testing.T) {
	want := map[string]string{
		"overview.json":   "eventpipe-overview",
		"gateway.json":    "eventpipe-gateway",
		"collectors.json": "eventpipe-collectors",
		"reporter.json":   "eventpipe-reporter",
	}
	ds := dashboards()
	if len(ds) != len(want) {
		t.Errorf("got %d dashboards; want %d", len(ds), len(want))
	}
	for _, d := range ds {
		if uid, ok := want[d.file]; !ok || d.UID != uid {
			t.Errorf("%s: got uid %q; want %q", d.file, d.UID, want[d.file])
		}
	}
}
