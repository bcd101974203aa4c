package chart

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/eventpipe/eventpipe/pkg/collector"
	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/gateway"
	"github.com/eventpipe/eventpipe/pkg/httpserver"
	"github.com/eventpipe/eventpipe/pkg/report"
	"github.com/eventpipe/eventpipe/pkg/schema"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// services are the long-running components, each a Deployment and a
// Service named <release>-<component>.
var services = []string{"gateway", "fb-collector", "ttk-collector", "reporter"}

func TestEveryValueSetDecodesStrictly(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := typed(t, values)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[fmt.Sprintf("%T", o)]++
			}
			if got := kinds["*v1.Deployment"]; got < len(services) {
				t.Errorf("got %d Deployments; want at least %d (%v)", got, len(services), kinds)
			}
		})
	}
}

// deployment returns the Deployment of component.
func deployment(t *testing.T, objs []runtime.Object, component string) *appsv1.Deployment {
	t.Helper()
	for _, d := range ofType[*appsv1.Deployment](objs) {
		if d.Name == releaseName+"-"+component {
			return d
		}
	}
	t.Fatalf("no Deployment %s-%s", releaseName, component)
	return nil
}

// envOf returns a container's environment as a map; values from Secrets
// read as "secret:<name>/<key>".
func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

func TestScaledObjectsReadTheCollectorsConsumers(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := typed(t, values)
			sos := ofType[*kedav1alpha1.ScaledObject](objs)
			if name == "keda-off" {
				if len(sos) != 0 {
					t.Fatalf("got %d ScaledObjects with KEDA off; want 0", len(sos))
				}
				for _, c := range []string{"fb-collector", "ttk-collector"} {
					if d := deployment(t, objs, c); d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
						t.Errorf("%s replicas = %v with KEDA off; want 1", c, d.Spec.Replicas)
					}
				}
				return
			}
			if len(sos) != 2 {
				t.Fatalf("got %d ScaledObjects; want 2", len(sos))
			}
			for _, so := range sos {
				d := deployment(t, objs, strings.TrimPrefix(so.Spec.ScaleTargetRef.Name, releaseName+"-"))
				if d.Spec.Replicas != nil {
					t.Errorf("%s: Deployment sets replicas %d while KEDA owns them", d.Name, *d.Spec.Replicas)
				}
				if len(so.Spec.Triggers) != 1 {
					t.Fatalf("%s: got %d triggers; want 1", so.Name, len(so.Spec.Triggers))
				}
				tr := so.Spec.Triggers[0]
				if tr.Type != "nats-jetstream" {
					t.Errorf("%s: trigger type %q; want nats-jetstream", so.Name, tr.Type)
				}
				env := envOf(d.Spec.Template.Spec.Containers[0])
				if got, want := tr.Metadata["consumer"], env["CONSUMER_NAME"]; got != want || got == "" {
					t.Errorf("%s: trigger consumer %q; the collector's CONSUMER_NAME is %q", so.Name, got, want)
				}
				if got := tr.Metadata["stream"]; got != stream.Events {
					t.Errorf("%s: trigger stream %q; the collectors read %q", so.Name, got, stream.Events)
				}
				if got := tr.Metadata["account"]; got != "$G" {
					t.Errorf("%s: trigger account %q; want $G", so.Name, got)
				}
				wantEndpoint := releaseName + "-nats-headless." + namespace + ".svc.cluster.local:8222"
				if got := tr.Metadata["natsServerMonitoringEndpoint"]; got != wantEndpoint {
					t.Errorf("%s: monitoring endpoint %q; want %q", so.Name, got, wantEndpoint)
				}
				if lt, err := strconv.Atoi(tr.Metadata["lagThreshold"]); err != nil || lt <= 0 {
					t.Errorf("%s: lagThreshold %q; want a positive integer", so.Name, tr.Metadata["lagThreshold"])
				}
				if so.Spec.Fallback == nil || so.Spec.Fallback.Replicas < 1 || so.Spec.Fallback.FailureThreshold < 1 {
					t.Errorf("%s: fallback %+v; want replicas and failureThreshold set", so.Name, so.Spec.Fallback)
				}
				if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil || *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
					t.Errorf("%s: replicas %v..%v", so.Name, so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
				}
			}
		})
	}
}

func TestConsumerNameIsOneValue(t *testing.T) {
	objs := typed(t, map[string]any{"fbCollector": map[string]any{"consumerName": "fb-v2"}})
	d := deployment(t, objs, "fb-collector")
	if got := envOf(d.Spec.Template.Spec.Containers[0])["CONSUMER_NAME"]; got != "fb-v2" {
		t.Errorf("CONSUMER_NAME = %q; want fb-v2", got)
	}
	for _, so := range ofType[*kedav1alpha1.ScaledObject](objs) {
		if so.Spec.ScaleTargetRef.Name == d.Name {
			if got := so.Spec.Triggers[0].Metadata["consumer"]; got != "fb-v2" {
				t.Errorf("trigger consumer = %q; want fb-v2", got)
			}
			return
		}
	}
	t.Errorf("no ScaledObject targets %s", d.Name)
}

// migrateJob returns the one migration Job.
func migrateJob(t *testing.T, objs []runtime.Object) *batchv1.Job {
	t.Helper()
	jobs := ofType[*batchv1.Job](objs)
	if len(jobs) != 1 {
		t.Fatalf("got %d Jobs; want 1", len(jobs))
	}
	return jobs[0]
}

func TestMigrationJobPerMode(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		hooks  string // "" for a plain Job
	}{
		{"bundled database", valueSets["defaults"], "post-install,post-upgrade"},
		{"external database", valueSets["external-db"], "pre-install,pre-upgrade"},
		{"external database URL", valueSets["external-db-url"], "pre-install,pre-upgrade"},
		{"plain job", map[string]any{"migrations": map[string]any{"mode": "job"}}, ""},
		{"plain job, external database", valueSets["production"], ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := typed(t, tt.values)
			job := migrateJob(t, objs)
			if got := job.Annotations["helm.sh/hook"]; got != tt.hooks {
				t.Errorf("helm.sh/hook = %q; want %q", got, tt.hooks)
			}
			c := job.Spec.Template.Spec.Containers[0]
			if !strings.Contains(c.Image, "migrate") {
				t.Errorf("image %q; want the migrate image", c.Image)
			}
			// The Job uses the same database as the services: each service
			// the owner's URL migrate has, or its own, whose role migrate
			// makes, or, with the bundled database, the same database as a
			// role CloudNativePG makes.
			migrate := envOf(c)
			if migrate["DATABASE_URL"] == "" {
				t.Errorf("migrate has no DATABASE_URL")
			}
			for component, own := range map[string]string{"reporter": "REPORTER_DATABASE_URL", "fb-collector": "COLLECTOR_DATABASE_URL", "ttk-collector": "COLLECTOR_DATABASE_URL"} {
				env := envOf(deployment(t, objs, component).Spec.Template.Spec.Containers[0])
				got := env["DATABASE_URL"]
				bundled := got == bundledURL && migrate["DATABASE_URL"] == bundledOwner && env["PGUSER"] != ""
				if got != migrate["DATABASE_URL"] && got != migrate[own] && !bundled {
					t.Errorf("%s DATABASE_URL %q; want migrate's DATABASE_URL %q or %s %q", component, got, migrate["DATABASE_URL"], own, migrate[own])
				}
			}
			if strings.Contains(tt.hooks, "pre-install") {
				mustExistBeforeInstall(t, objs, job)
			}
			if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy %q; want Never", job.Spec.Template.Spec.RestartPolicy)
			}
			if tt.hooks == "" {
				if job.Spec.TTLSecondsAfterFinished == nil {
					t.Errorf("a plain Job without ttlSecondsAfterFinished piles up")
				}
				if !strings.HasPrefix(job.Name, releaseName+"-migrate-") || len(job.Name) != len(releaseName+"-migrate-")+8 {
					t.Errorf("plain Job name %q; want %s-migrate-<8 hex>", job.Name, releaseName)
				}
			}
		})
	}
}

// mustExistBeforeInstall fails when a pre-install hook's pod refers to an
// object the release creates as an ordinary resource: Helm creates those
// only after the pre-install hooks have finished, so the pod could never
// start.
func mustExistBeforeInstall(t *testing.T, objs []runtime.Object, hook *batchv1.Job) {
	t.Helper()
	ordinary := map[string]bool{}
	for _, o := range objs {
		m, err := meta.Accessor(o)
		if err != nil || m.GetAnnotations()["helm.sh/hook"] != "" {
			continue
		}
		ordinary[fmt.Sprintf("%T/%s", o, m.GetName())] = true
	}
	pod := hook.Spec.Template.Spec
	if sa := pod.ServiceAccountName; sa != "" && ordinary["*v1.ServiceAccount/"+sa] {
		t.Errorf("pre-install Job runs as ServiceAccount %s, created only after the hook", sa)
	}
	for _, c := range pod.Containers {
		for _, e := range c.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ordinary["*v1.Secret/"+ref.SecretKeyRef.Name] {
				t.Errorf("pre-install Job reads Secret %s, created only after the hook", ref.SecretKeyRef.Name)
			}
		}
	}
}

func TestPlainMigrationJobNameFollowsImage(t *testing.T) {
	name := func(tag string) string {
		return migrateJob(t, typed(t, map[string]any{
			"migrations": map[string]any{"mode": "job"},
			"image":      map[string]any{"tag": tag},
		})).Name
	}
	if a, b := name("1.0.0"), name("1.0.0"); a != b {
		t.Errorf("the same image gave two Job names %q and %q; a GitOps sync would churn", a, b)
	}
	if a, b := name("1.0.0"), name("1.0.1"); a == b {
		t.Errorf("a new image kept Job name %q; the immutable Job would not run again", a)
	}
}

func TestExternalDatabaseURLSecretExistsBeforeMigrations(t *testing.T) {
	objs := typed(t, valueSets["external-db-url"])
	var secret *corev1.Secret
	for _, s := range ofType[*corev1.Secret](objs) {
		secret = s
	}
	if secret == nil {
		t.Fatal("no Secret for externalDatabase.url")
	}
	if got := secret.StringData["DATABASE_URL"]; !strings.HasPrefix(got, "postgres://") {
		t.Errorf("Secret holds %q; want the URL", got)
	}
	if got, want := secret.Annotations["helm.sh/hook"], "pre-install,pre-upgrade"; got != want {
		t.Errorf("Secret hook %q; want %q, so the pre-install migration can read it", got, want)
	}
	job := migrateJob(t, objs)
	if got, want := envOf(job.Spec.Template.Spec.Containers[0])["DATABASE_URL"], "secret:"+secret.Name+"/DATABASE_URL"; got != want {
		t.Errorf("migrate DATABASE_URL %q; want %q", got, want)
	}
	if w, _ := strconv.Atoi(secret.Annotations["helm.sh/hook-weight"]); w >= hookWeight(job) {
		t.Errorf("Secret hook weight %d not below the Job's %d", w, hookWeight(job))
	}
}

func hookWeight(j *batchv1.Job) int {
	w, _ := strconv.Atoi(j.Annotations["helm.sh/hook-weight"])
	return w
}

// TestDatabaseURLSources: each service's DATABASE_URL, and the login
// role URLs migrate gets: the owner's URL everywhere unless the reporter
// and the collectors have their own (external databases only).
// The bundled database: the owner's URL from CloudNativePG's app Secret,
// and the URL of its read-write service, for the login roles CloudNativePG
// makes from postgresql.cluster.roles.
const (
	bundledOwner = "secret:" + releaseName + "-postgresql-app/uri"
	bundledURL   = "postgresql://" + releaseName + "-postgresql-rw." + namespace + ".svc:5432/eventpipe"
)

func TestDatabaseURLSources(t *testing.T) {
	external := func(db map[string]any) map[string]any {
		return map[string]any{"postgresql": map[string]any{"enabled": false}, "externalDatabase": db}
	}
	tests := []struct {
		name   string
		values map[string]any
		// owner is migrate's DATABASE_URL; reporter and collector the
		// services' ("" for the owner's); reporterRole and collectorRole
		// migrate's REPORTER_ and COLLECTOR_DATABASE_URL ("" unset).
		owner, reporter, collector, reporterRole, collectorRole string
		// reporterUser and collectorUser are the services' PGUSER ("" for
		// none); roles is migrate's DATABASE_ROLES.
		reporterUser, collectorUser, roles string
	}{
		{
			name: "defaults", values: valueSets["defaults"], owner: bundledOwner,
			reporter: bundledURL, collector: bundledURL,
			reporterUser: "secret:eventpipe-db-reporter/username", collectorUser: "secret:eventpipe-db-collector/username",
			roles: "required",
		},
		{
			name:   "bundled, no login roles",
			values: map[string]any{"postgresql": map[string]any{"cluster": map[string]any{"roles": []any{}}}},
			owner:  bundledOwner,
		},
		{
			name: "bundled, groups without the reporter's login role",
			values: map[string]any{"postgresql": map[string]any{"cluster": map[string]any{"roles": []any{
				map[string]any{"name": "eventpipe_reader"}, map[string]any{"name": "eventpipe_writer"},
				map[string]any{"name": "eventpipe_reporter", "login": true, "inRoles": []any{"eventpipe_reader"}, "ensure": "absent",
					"passwordSecret": map[string]any{"name": "gone"}},
				map[string]any{"name": "ingest", "login": true, "inRoles": []any{"eventpipe_writer"}, "passwordSecret": map[string]any{"name": "ingest-pw"}},
			}}}},
			owner: bundledOwner, collector: bundledURL, collectorUser: "secret:ingest-pw/username", roles: "required",
		},
		{name: "external-db", values: valueSets["external-db"], owner: "secret:eventpipe-db/url"},
		{name: "external-db-url", values: valueSets["external-db-url"], owner: "secret:" + releaseName + "-database/DATABASE_URL"},
		{
			name: "production", values: valueSets["production"], owner: "secret:eventpipe-db/DATABASE_URL",
			reporter: "secret:eventpipe-db-reporter/DATABASE_URL", collector: "secret:eventpipe-db-collector/DATABASE_URL",
			reporterRole: "secret:eventpipe-db-reporter/DATABASE_URL", collectorRole: "secret:eventpipe-db-collector/DATABASE_URL",
		},
		{
			name: "own keys, roles made by an administrator",
			values: external(map[string]any{
				"url":            "postgres://eventpipe:secret@db.example:5432/eventpipe",
				"reporterSecret": "reports", "reporterSecretKey": "uri",
				"collectorSecret": "ingest", "collectorSecretKey": "url",
				"manageRoles": false,
			}),
			owner: "secret:" + releaseName + "-database/DATABASE_URL", reporter: "secret:reports/uri", collector: "secret:ingest/url",
		},
		{
			name:   "a role for the reporter only",
			values: external(map[string]any{"existingSecret": "db", "reporterSecret": "reports"}),
			owner:  "secret:db/DATABASE_URL", reporter: "secret:reports/DATABASE_URL", reporterRole: "secret:reports/DATABASE_URL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := typed(t, tt.values)
			or := func(v string) string {
				if v == "" {
					return tt.owner
				}
				return v
			}
			want := map[string]string{"reporter": or(tt.reporter), "fb-collector": or(tt.collector), "ttk-collector": or(tt.collector)}
			for c, w := range want {
				if got := envOf(deployment(t, objs, c).Spec.Template.Spec.Containers[0])["DATABASE_URL"]; got != w {
					t.Errorf("%s DATABASE_URL %q; want %q", c, got, w)
				}
			}
			if _, ok := envOf(deployment(t, objs, "gateway").Spec.Template.Spec.Containers[0])["DATABASE_URL"]; ok {
				t.Errorf("the gateway got DATABASE_URL; it never touches the database")
			}
			for c, w := range map[string]string{"reporter": tt.reporterUser, "fb-collector": tt.collectorUser, "ttk-collector": tt.collectorUser} {
				env := envOf(deployment(t, objs, c).Spec.Template.Spec.Containers[0])
				wantPassword := ""
				if w != "" {
					wantPassword = strings.TrimSuffix(w, "/username") + "/password"
				}
				if env["PGUSER"] != w || env["PGPASSWORD"] != wantPassword {
					t.Errorf("%s PGUSER %q, PGPASSWORD %q; want %q, %q", c, env["PGUSER"], env["PGPASSWORD"], w, wantPassword)
				}
			}
			migrate := envOf(migrateJob(t, objs).Spec.Template.Spec.Containers[0])
			got := [4]string{migrate["DATABASE_URL"], migrate["REPORTER_DATABASE_URL"], migrate["COLLECTOR_DATABASE_URL"], migrate["DATABASE_ROLES"]}
			if w := [4]string{tt.owner, tt.reporterRole, tt.collectorRole, tt.roles}; got != w {
				t.Errorf("migrate DATABASE_URL, REPORTER_DATABASE_URL, COLLECTOR_DATABASE_URL, DATABASE_ROLES %q; want %q", got, w)
			}
		})
	}
}

// cnpgRole is a role of CloudNativePG's spec.managed.roles, the fields
// this chart's values may use; the cluster chart copies
// postgresql.cluster.roles there as it is.
type cnpgRole struct {
	Name           string   `json:"name"`
	Ensure         string   `json:"ensure"`
	Comment        string   `json:"comment"`
	Login          bool     `json:"login"`
	InRoles        []string `json:"inRoles"`
	PasswordSecret struct {
		Name string `json:"name"`
	} `json:"passwordSecret"`
	Superuser   bool `json:"superuser"`
	CreateDB    bool `json:"createdb"`
	CreateRole  bool `json:"createrole"`
	Replication bool `json:"replication"`
	BypassRLS   bool `json:"bypassrls"`
}

// TestBundledRoles checks the roles CloudNativePG makes for the bundled
// database by default and the Secrets holding their passwords: the groups
// are the ones migrate grants to, each login role is in one group and has
// no power of its own, and each service logs in with the Secret its role
// names, which the chart creates unless told not to.
func TestBundledRoles(t *testing.T) {
	raw, err := yaml.Marshal(loadChart(t).Values["postgresql"].(map[string]any)["cluster"].(map[string]any)["roles"])
	if err != nil {
		t.Fatal(err)
	}
	var roles []cnpgRole
	if err := yaml.UnmarshalStrict(raw, &roles); err != nil {
		t.Fatalf("postgresql.cluster.roles: %v", err)
	}
	var groups []string
	secretOf := map[string]string{} // group → its login role's Secret
	userOf := map[string]string{}   // Secret → login role
	for _, r := range roles {
		if r.Superuser || r.CreateDB || r.CreateRole || r.Replication || r.BypassRLS {
			t.Errorf("role %s has powers of its own", r.Name)
		}
		if r.Ensure != "present" {
			t.Errorf("role %s: ensure %q; want present", r.Name, r.Ensure)
		}
		if !r.Login {
			groups = append(groups, r.Name)
			if len(r.InRoles) != 0 || r.PasswordSecret.Name != "" {
				t.Errorf("group %s has groups or a password", r.Name)
			}
			continue
		}
		if len(r.InRoles) != 1 || r.PasswordSecret.Name == "" {
			t.Errorf("login role %s: groups %v, password Secret %q; want one group and a Secret", r.Name, r.InRoles, r.PasswordSecret.Name)
			continue
		}
		secretOf[r.InRoles[0]], userOf[r.PasswordSecret.Name] = r.PasswordSecret.Name, r.Name
	}
	if want := []string{schema.ReaderRole, schema.WriterRole}; !slices.Equal(groups, want) {
		t.Errorf("groups %v; want %v, the ones migrate grants to", groups, want)
	}
	if len(secretOf) != 2 || len(userOf) != 2 {
		t.Fatalf("login roles by group %v; want one in each group, each with its own Secret", secretOf)
	}

	for _, create := range []bool{true, false} {
		objs := typed(t, map[string]any{"bundledDatabase": map[string]any{"createRoleSecrets": create}})
		secrets := map[string]*corev1.Secret{}
		for _, s := range ofType[*corev1.Secret](objs) {
			secrets[s.Name] = s
		}
		for group, name := range secretOf {
			s, ok := secrets[name]
			if ok != create {
				t.Errorf("createRoleSecrets %t: Secret %s rendered %t", create, name, ok)
			}
			if ok {
				if s.Type != corev1.SecretTypeBasicAuth || s.Labels["cnpg.io/reload"] != "true" {
					t.Errorf("Secret %s: type %q, cnpg.io/reload %q; want %q, \"true\"", name, s.Type, s.Labels["cnpg.io/reload"], corev1.SecretTypeBasicAuth)
				}
				if user, password := string(s.Data["username"]), string(s.Data["password"]); user != userOf[name] || len(password) != 32 {
					t.Errorf("Secret %s: username %q, a password of %d characters; want %q, 32", name, user, len(password), userOf[name])
				}
			}
			components := []string{"fb-collector", "ttk-collector"}
			if group == schema.ReaderRole {
				components = []string{"reporter"}
			}
			for _, c := range components {
				if got := envOf(deployment(t, objs, c).Spec.Template.Spec.Containers[0])["PGPASSWORD"]; got != "secret:"+name+"/password" {
					t.Errorf("createRoleSecrets %t: %s PGPASSWORD %q; want Secret %s", create, c, got, name)
				}
			}
		}
	}
}

// loadOptions runs a service's own configuration code on an environment,
// as its main does, and returns its port and drain budget.
func loadOptions(component string, env map[string]string) (port int, drainSeconds float64, err error) {
	l := config.MapLookup(env)
	switch component {
	case "gateway":
		o, err := gateway.LoadOptions(l)
		return o.Port, o.ShutdownTimeout.Seconds(), err
	case "reporter":
		o, err := report.LoadOptions(l)
		return o.Port, o.ShutdownTimeout.Seconds(), err
	case "fb-collector", "ttk-collector":
		source := event.Facebook
		if component == "ttk-collector" {
			source = event.TikTok
		}
		o, err := collector.LoadOptions(source, l)
		if err != nil {
			return 0, 0, err
		}
		_, p, _ := strings.Cut(o.Addr, ":")
		port, err := strconv.Atoi(p)
		return port, o.ShutdownTimeout.Seconds(), err
	}
	return 0, 0, fmt.Errorf("unknown component %q", component)
}

// resolved replaces values read from Secrets by plausible ones, so the
// configuration code can judge the rest.
func resolved(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if strings.HasPrefix(v, "secret:") {
			switch k {
			case "DATABASE_URL":
				v = "postgres://eventpipe:secret@db:5432/eventpipe"
			default:
				v = "0123456789abcdef0123456789abcdef"
			}
		}
		out[k] = v
	}
	return out
}

func TestServicesAcceptTheirSettings(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := typed(t, values)
			for _, component := range services {
				d := deployment(t, objs, component)
				pod := d.Spec.Template.Spec
				c := pod.Containers[0]
				port, drain, err := loadOptions(component, resolved(envOf(c)))
				if err != nil {
					t.Errorf("%s refuses its settings: %v", component, err)
					continue
				}
				if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port {
					t.Errorf("%s listens on %d; container ports %+v", component, port, c.Ports)
				}
				// The pod outlives the drain: preStop pause, then the drain,
				// then the margin before SIGKILL.
				grace := float64(*pod.TerminationGracePeriodSeconds)
				pause := 0.0
				if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
					pause = float64(c.Lifecycle.PreStop.Sleep.Seconds)
				}
				if pause < 1 {
					t.Errorf("%s has no preStop pause; endpoints would still route to a draining pod", component)
				}
				if grace <= pause+drain {
					t.Errorf("%s: terminationGracePeriodSeconds %v <= preStop %v + drain %v", component, grace, pause, drain)
				}
			}
		})
	}
}

func TestProbesHitRealEndpoints(t *testing.T) {
	// The routes every service serves, from the very engine they use.
	engine := httpserver.NewEngine(slog.New(slog.DiscardHandler), httpserver.NewReadiness(), httpserver.NewRegistry())
	served := func(path string) bool {
		rec := httptest.NewRecorder()
		engine.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code == http.StatusOK
	}
	objs := typed(t, valueSets["production"])
	for _, component := range services {
		c := deployment(t, objs, component).Spec.Template.Spec.Containers[0]
		probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
		for kind, p := range probes {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", component, kind)
				continue
			}
			if !served(p.HTTPGet.Path) {
				t.Errorf("%s: %s probe path %q is not served", component, kind, p.HTTPGet.Path)
			}
			if !portNamed(c, p.HTTPGet.Port) {
				t.Errorf("%s: %s probe port %v is no container port", component, kind, p.HTTPGet.Port.String())
			}
		}
		if got := c.ReadinessProbe.HTTPGet.Path; got != "/readyz" {
			t.Errorf("%s: readiness on %q; want /readyz (dependencies and schema)", component, got)
		}
		if got := c.LivenessProbe.HTTPGet.Path; got != "/healthz" {
			t.Errorf("%s: liveness on %q; want /healthz (a database outage must not restart it)", component, got)
		}
	}
	if served("/nope") {
		t.Fatal("the engine answers 200 to any path; this test proves nothing")
	}
}

func portNamed(c corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

// podSpecs returns every pod template the chart renders, by owner name.
func podSpecs(objs []runtime.Object) map[string]corev1.PodTemplateSpec {
	pods := map[string]corev1.PodTemplateSpec{}
	for _, d := range ofType[*appsv1.Deployment](objs) {
		pods["Deployment "+d.Name] = d.Spec.Template
	}
	for _, j := range ofType[*batchv1.Job](objs) {
		pods["Job "+j.Name] = j.Spec.Template
	}
	return pods
}

func TestContainersLockedDown(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			for owner, pod := range podSpecs(typed(t, values)) {
				ps := pod.Spec.SecurityContext
				if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: seccomp profile not RuntimeDefault", owner)
				}
				if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
					t.Errorf("%s mounts a service account token it never uses", owner)
				}
				for _, c := range pod.Spec.Containers {
					sc := c.SecurityContext
					switch {
					case sc == nil:
						t.Errorf("%s/%s: no securityContext", owner, c.Name)
						continue
					case !isTrue(sc.RunAsNonRoot) && !(ps != nil && isTrue(ps.RunAsNonRoot)):
						t.Errorf("%s/%s: may run as root", owner, c.Name)
					case !isTrue(sc.ReadOnlyRootFilesystem):
						t.Errorf("%s/%s: writable root filesystem", owner, c.Name)
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("%s/%s: privilege escalation allowed", owner, c.Name)
					case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
						t.Errorf("%s/%s: capabilities not dropped", owner, c.Name)
					}
					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						if _, ok := c.Resources.Limits[r]; !ok {
							t.Errorf("%s/%s: no %s limit", owner, c.Name, r)
						}
						if _, ok := c.Resources.Requests[r]; !ok {
							t.Errorf("%s/%s: no %s request", owner, c.Name, r)
						}
					}
				}
			}
		})
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func TestSelectorsSelect(t *testing.T) {
	for name, values := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := typed(t, values)
			pods := podSpecs(objs)
			// matching returns the pod templates a selector selects.
			matching := func(sel labels.Selector) []string {
				var out []string
				for owner, p := range pods {
					if sel.Matches(labels.Set(p.Labels)) {
						out = append(out, owner)
					}
				}
				return out
			}
			for _, d := range ofType[*appsv1.Deployment](objs) {
				sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
				if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("Deployment %s: selector %v does not match its pods %v", d.Name, sel, d.Spec.Template.Labels)
				}
				if got := matching(sel); len(got) != 1 {
					t.Errorf("Deployment %s: selector matches %v; want only its own pods", d.Name, got)
				}
			}
			svcs := ofType[*corev1.Service](objs)
			for _, s := range svcs {
				got := matching(labels.SelectorFromSet(s.Spec.Selector))
				if len(got) != 1 || got[0] != "Deployment "+s.Name {
					t.Errorf("Service %s selects %v; want Deployment %s", s.Name, got, s.Name)
					continue
				}
				c := pods[got[0]].Spec.Containers[0]
				for _, p := range s.Spec.Ports {
					if !portNamed(c, p.TargetPort) {
						t.Errorf("Service %s targets port %s, which the pods do not have", s.Name, p.TargetPort.String())
					}
				}
			}
			for _, pdb := range ofType[*policyv1.PodDisruptionBudget](objs) {
				if got := matching(labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels)); len(got) != 1 {
					t.Errorf("PodDisruptionBudget %s selects %v; want one Deployment", pdb.Name, got)
				}
			}
			for _, np := range ofType[*networkingv1.NetworkPolicy](objs) {
				if got := matching(labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels)); len(got) != 1 {
					t.Errorf("NetworkPolicy %s selects %v; want one workload", np.Name, got)
				}
			}
			for _, sm := range ofType[*monitoringv1.ServiceMonitor](objs) {
				var hit []string
				for _, s := range svcs {
					if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
						hit = append(hit, s.Name)
					}
				}
				if len(hit) != 1 {
					t.Errorf("ServiceMonitor %s selects Services %v; want one", sm.Name, hit)
				}
			}
			for _, h := range ofType[*autoscalingv2.HorizontalPodAutoscaler](objs) {
				d := deployment(t, objs, strings.TrimPrefix(h.Spec.ScaleTargetRef.Name, releaseName+"-"))
				if d.Spec.Replicas != nil {
					t.Errorf("HPA %s: Deployment sets replicas %d while the HPA owns them", h.Name, *d.Spec.Replicas)
				}
			}
		})
	}
}

// TestMonitoringObjects checks that each monitoring object appears only
// when asked for, carries the release label kube-prometheus-stack selects
// on, and names Prometheus jobs as the dashboards and alerts expect.
func TestMonitoringObjects(t *testing.T) {
	off := typed(t, valueSets["monitoring-off"])
	if n := len(ofType[*monitoringv1.ServiceMonitor](off)) + len(ofType[*monitoringv1.PrometheusRule](off)) + len(ofType[*monitoringv1.PodMonitor](off)) + len(dashboardMaps(off)); n != 0 {
		t.Fatalf("monitoring off renders %d monitoring objects; want 0", n)
	}
	on := typed(t, valueSets["monitoring-on"])
	sms := ofType[*monitoringv1.ServiceMonitor](on)
	jobs := map[string]bool{}
	for _, sm := range sms {
		if sm.Labels["release"] != "kps" {
			t.Errorf("ServiceMonitor %s: release label %q; want kps", sm.Name, sm.Labels["release"])
		}
		// The job is the value of the jobLabel on the selected Service.
		for _, s := range ofType[*corev1.Service](on) {
			if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
				jobs[s.Labels[sm.Spec.JobLabel]] = true
			}
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Port != "http" {
			t.Errorf("ServiceMonitor %s endpoints %+v; want port http, /metrics", sm.Name, sm.Spec.Endpoints)
		}
	}
	for _, s := range services {
		if !jobs[s] {
			t.Errorf("no Prometheus job %q; the dashboards and alerts query it (jobs: %v)", s, jobs)
		}
	}
	if pms := ofType[*monitoringv1.PodMonitor](on); len(pms) != 1 || pms[0].Labels["release"] != "kps" {
		t.Errorf("got %d NATS PodMonitors; want 1 with release kps", len(pms))
	}

	rules := ofType[*monitoringv1.PrometheusRule](on)
	if len(rules) != 1 {
		t.Fatalf("got %d PrometheusRules; want 1", len(rules))
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(readRepoFile(t, "charts/eventpipe/files/alerts.yml"), &file); err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, rules[0].Spec.Groups), mustJSON(t, file.Groups); got != want {
		t.Errorf("PrometheusRule groups differ from files/alerts.yml")
	}
	if !strings.Contains(mustJSON(t, rules[0].Spec.Groups), "{{ $labels.job }}") {
		t.Errorf("alert annotations lost their {{ $labels }} templates")
	}

	maps := dashboardMaps(on)
	for _, f := range []string{"overview.json", "gateway.json", "collectors.json", "reporter.json"} {
		cm, ok := maps[f]
		if !ok {
			t.Errorf("no dashboard ConfigMap holds %s", f)
			continue
		}
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("ConfigMap %s lacks grafana_dashboard: \"1\"", cm.Name)
		}
		if got, want := cm.Data[f], string(readRepoFile(t, "charts/eventpipe/dashboards/"+f)); strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("ConfigMap %s: %s differs from the generated dashboard", cm.Name, f)
		}
	}
}

// dashboardMaps returns the dashboard ConfigMaps by the file they hold.
func dashboardMaps(objs []runtime.Object) map[string]*corev1.ConfigMap {
	out := map[string]*corev1.ConfigMap{}
	for _, cm := range ofType[*corev1.ConfigMap](objs) {
		if cm.Labels["grafana_dashboard"] == "" {
			continue
		}
		for f := range cm.Data {
			out[f] = cm
		}
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGatewayAuthFromSecret(t *testing.T) {
	env := envOf(deployment(t, typed(t, valueSets["production"]), "gateway").Spec.Template.Spec.Containers[0])
	for k, want := range map[string]string{
		"WEBHOOK_TOKEN":       "secret:eventpipe-webhook/token",
		"WEBHOOK_HMAC_SECRET": "secret:eventpipe-webhook/hmac",
		"MAX_BODY_BYTES":      "32MiB",
		"PUBLISH_MAX_PENDING": "8192",
	} {
		if env[k] != want {
			t.Errorf("gateway %s = %q; want %q", k, env[k], want)
		}
	}
	defaults := envOf(deployment(t, typed(t, nil), "gateway").Spec.Template.Spec.Containers[0])
	for _, k := range []string{"WEBHOOK_TOKEN", "WEBHOOK_HMAC_SECRET"} {
		if _, ok := defaults[k]; ok {
			t.Errorf("%s set by default; the upstream publisher sends no credentials", k)
		}
	}
}

// TestNetworkPoliciesAllowWhatEachNeeds checks every workload may reach
// DNS and exactly the backends it uses, and no more.
func TestNetworkPoliciesAllowWhatEachNeeds(t *testing.T) {
	objs := typed(t, valueSets["publisher"])
	needs := map[string][]int32{
		"gateway":       {53, 4222},
		"fb-collector":  {53, 4222, 5432},
		"ttk-collector": {53, 4222, 5432},
		"reporter":      {53, 5432},
		"migrate":       {53, 5432},
		"publisher":     {53, 3000},
	}
	got := map[string][]int32{}
	for _, np := range ofType[*networkingv1.NetworkPolicy](objs) {
		component := np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"]
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("%s does not restrict egress", np.Name)
		}
		for _, rule := range np.Spec.Egress {
			for _, p := range rule.Ports {
				if !slices.Contains(got[component], p.Port.IntVal) {
					got[component] = append(got[component], p.Port.IntVal)
				}
			}
		}
	}
	for component, want := range needs {
		slices.Sort(got[component])
		if !slices.Equal(got[component], want) {
			t.Errorf("%s may reach ports %v; want %v", component, got[component], want)
		}
	}
}

// TestSchemaRejectsBadValues feeds values a user could plausibly get
// wrong; each must stop the install with a message naming the key.
func TestSchemaRejectsBadValues(t *testing.T) {
	c := loadChart(t)
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"misspelt key", map[string]any{"gatway": map[string]any{}}, "gatway"},
		{"misspelt nested key", map[string]any{"gateway": map[string]any{"replicas": 3}}, "replicas"},
		{"negative replicas", map[string]any{"gateway": map[string]any{"replicaCount": -1}}, "replicaCount"},
		{"unknown migrations mode", map[string]any{"migrations": map[string]any{"mode": "always"}}, "mode"},
		{"zero lag threshold", map[string]any{"keda": map[string]any{"lagThreshold": 0}}, "lagThreshold"},
		{"consumer name with a dot", map[string]any{"fbCollector": map[string]any{"consumerName": "fb.collector"}}, "consumerName"},
		{"bad log level", map[string]any{"logLevel": "verbose"}, "logLevel"},
		{"port out of range", map[string]any{"reporter": map[string]any{"port": 70000}}, "port"},
		{"env value not a scalar", map[string]any{"gateway": map[string]any{"env": map[string]any{"MAX_BODY_BYTES": map[string]any{}}}}, "MAX_BODY_BYTES"},
		{"stream replicas above 5", map[string]any{"jetstream": map[string]any{"replicas": 7}}, "replicas"},
		{"no replicas for the HPA", map[string]any{"gateway": map[string]any{"autoscaling": map[string]any{"minReplicas": 0}}}, "minReplicas"},
		{"HPA min above max", map[string]any{"gateway": map[string]any{"autoscaling": map[string]any{"enabled": true, "minReplicas": 5, "maxReplicas": 3}}}, "gateway.autoscaling.minReplicas"},
		{"KEDA min above max", map[string]any{"ttkCollector": map[string]any{"keda": map[string]any{"minReplicaCount": 9, "maxReplicaCount": 3}}}, "ttkCollector.keda.minReplicaCount"},
		{"replicated stream on one server", map[string]any{"jetstream": map[string]any{"replicas": 3}}, "nats.config.cluster.enabled"},
		{"both databases", map[string]any{"externalDatabase": map[string]any{"url": "postgres://x@db/x"}}, "postgresql.enabled"},
		{"a role's Secret with the bundled database", map[string]any{"externalDatabase": map[string]any{"collectorSecret": "ingest"}}, "postgresql.enabled"},
		{"empty role Secret key", map[string]any{"externalDatabase": map[string]any{"reporterSecretKey": ""}}, "reporterSecretKey"},
		{"chart-owned setting in env", map[string]any{"reporter": map[string]any{"env": map[string]any{"DATABASE_URL": "postgres://x@db/x"}}}, "DATABASE_URL"},
		{"no database", map[string]any{"postgresql": map[string]any{"enabled": false}}, "externalDatabase"},
		{"no nats", map[string]any{"nats": map[string]any{"enabled": false}}, "externalNats"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(c, tt.values)
			if err == nil {
				t.Fatalf("rendered; want an error naming %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

// TestNotesTellHowToReachTheReporter checks the post-install notes give
// a port-forward that names a Service the chart creates, on its port.
func TestNotesTellHowToReachTheReporter(t *testing.T) {
	files, err := render(loadChart(t), valueSets["defaults"])
	if err != nil {
		t.Fatal(err)
	}
	notes := files["eventpipe/templates/NOTES.txt"]
	want := "kubectl -n " + namespace + " port-forward svc/" + releaseName + "-reporter 3003:3003"
	if !strings.Contains(notes, want) {
		t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
	}
	if !strings.Contains(notes, "without") && !strings.Contains(notes, "migrations run right after") {
		t.Errorf("NOTES.txt does not explain the post-install migrations of the bundled database:\n%s", notes)
	}
	var found bool
	for _, s := range ofType[*corev1.Service](typed(t, valueSets["defaults"])) {
		found = found || (s.Name == releaseName+"-reporter" && s.Spec.Ports[0].Port == 3003)
	}
	if !found {
		t.Errorf("no Service %s-reporter on 3003, which the notes forward to", releaseName)
	}
}
