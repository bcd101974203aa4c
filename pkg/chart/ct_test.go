package chart

import (
	"maps"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestChartTestingConfigs keeps hack/ct/offline.yaml, which CI lints with
// since it cannot reach the chart repositories, equal to ct.yaml but for
// those repositories.
func TestChartTestingConfigs(t *testing.T) {
	read := func(path string) map[string]any {
		var m map[string]any
		if err := yaml.UnmarshalStrict(readRepoFile(t, path), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return m
	}
	full, offline := read("ct.yaml"), read("hack/ct/offline.yaml")
	repos, ok := full["chart-repos"].([]any)
	if !ok || len(repos) != 2 {
		t.Errorf("ct.yaml chart-repos = %v; want the NATS and CloudNativePG repositories", full["chart-repos"])
	}
	delete(full, "chart-repos")
	if !maps.EqualFunc(full, offline, func(a, b any) bool { return mustJSON(t, a) == mustJSON(t, b) }) {
		t.Errorf("hack/ct/offline.yaml = %v; want ct.yaml without chart-repos: %v", offline, full)
	}
	// Every repository a dependency names is one ct adds.
	for _, dep := range loadChart(t).Metadata.Dependencies {
		found := false
		for _, r := range repos {
			if s, _ := r.(string); len(s) > len(dep.Repository) && s[len(s)-len(dep.Repository):] == dep.Repository {
				found = true
			}
		}
		if !found {
			t.Errorf("dependency %s comes from %s, which ct.yaml does not add", dep.Name, dep.Repository)
		}
	}
}
