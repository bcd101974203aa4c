package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventpipe/eventpipe/pkg/event"
	"github.com/eventpipe/eventpipe/pkg/natstest"
	"github.com/eventpipe/eventpipe/pkg/stream"
)

// jetStreamTrigger is the nats-jetstream scaler's metadata, with the tags
// KEDA's scaler parses it by (pkg/scalers/nats_jetstream_scaler.go), so
// the rendered metadata goes through KEDA's own parser.
type jetStreamTrigger struct {
	Account                string `keda:"name=account, order=authParams;triggerMetadata, optional"`
	AccountID              string `keda:"name=accountID, order=authParams;triggerMetadata, optional"`
	Stream                 string `keda:"name=stream, order=triggerMetadata"`
	Consumer               string `keda:"name=consumer, order=triggerMetadata"`
	LagThreshold           int64  `keda:"name=lagThreshold, order=triggerMetadata, default=10"`
	ActivationLagThreshold int64  `keda:"name=activationLagThreshold, order=triggerMetadata, default=0"`
	UseHTTPS               bool   `keda:"name=useHttps, optional, order=triggerMetadata, default=false"`
	NatsServerEndpoint     string `keda:"name=natsServerMonitoringEndpoint, order=authParams;triggerMetadata"`
	TriggerIndex           int
}

// jszResponse holds the /jsz fields KEDA reads, under its JSON names.
type jszResponse struct {
	Accounts []struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Streams []struct {
			Name      string `json:"name"`
			Consumers []struct {
				Name          string `json:"name"`
				NumAckPending int    `json:"num_ack_pending"`
				NumPending    int    `json:"num_pending"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// parseTrigger parses a rendered trigger as KEDA does, and fails on any
// metadata key KEDA's scaler does not read (KEDA itself only logs those).
func parseTrigger(t *testing.T, tr kedav1alpha1.ScaleTriggers) jetStreamTrigger {
	t.Helper()
	known := map[string]bool{}
	typ := reflect.TypeFor[jetStreamTrigger]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if name, ok := strings.CutPrefix(f.Tag.Get("keda"), "name="); ok {
			known[strings.TrimSpace(strings.Split(name, ",")[0])] = true
		}
	}
	for k := range tr.Metadata {
		if !known[k] {
			t.Errorf("trigger metadata %q is not read by KEDA's nats-jetstream scaler", k)
		}
	}
	var m jetStreamTrigger
	sc := scalersconfig.ScalerConfig{TriggerMetadata: tr.Metadata, TriggerType: tr.Type}
	if err := sc.TypedConfig(&m); err != nil {
		t.Fatalf("KEDA's parser refuses the trigger: %v", err)
	}
	if m.AccountID == "" {
		m.AccountID = m.Account
	}
	return m
}

// kedaLag asks NATS's monitoring endpoint what KEDA asks, and computes the
// lag as KEDA does: num_pending + num_ack_pending of the consumer.
func kedaLag(ctx context.Context, endpoint string, m jetStreamTrigger) (int64, error) {
	scheme := "http"
	if m.UseHTTPS {
		scheme = "https"
	}
	q := url.Values{}
	q.Set("acc", m.AccountID)
	q.Set("consumers", "true")
	q.Set("config", "true")
	u := url.URL{Scheme: scheme, Host: endpoint, Path: "/jsz", RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", u.String(), resp.Status)
	}
	var body jszResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	for _, a := range body.Accounts {
		if a.ID != m.AccountID && a.Name != m.Account {
			continue
		}
		for _, s := range a.Streams {
			if s.Name != m.Stream {
				continue
			}
			for _, c := range s.Consumers {
				if c.Name == m.Consumer {
					return int64(c.NumPending + c.NumAckPending), nil
				}
			}
		}
	}
	return 0, fmt.Errorf("consumer %q of stream %q in account %q not in /jsz", m.Consumer, m.Stream, m.Account)
}

// desiredReplicas is what the HPA KEDA feeds asks for: the lag is an
// external metric with an AverageValue target of lagThreshold, so
// ceil(lag / lagThreshold), within the ScaledObject's bounds; below the
// activation threshold a ScaledObject with minReplicaCount 0 stays at 0.
func desiredReplicas(lag int64, m jetStreamTrigger, so *kedav1alpha1.ScaledObject) int32 {
	lo, hi := *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount
	if lo == 0 && lag <= m.ActivationLagThreshold {
		return 0
	}
	n := int32(math.Ceil(float64(lag) / float64(m.LagThreshold)))
	return min(max(n, lo, 1), hi)
}

// TestKEDAReadsCollectorLag makes a backlog on each collector's durable
// consumer, with some of it delivered and unacknowledged, and reads it
// through NATS's monitoring endpoint exactly as the rendered triggers
// make KEDA read it.
func TestKEDAReadsCollectorLag(t *testing.T) {
	values := map[string]any{
		"keda": map[string]any{"lagThreshold": 1000},
		"fbCollector": map[string]any{
			"keda": map[string]any{"minReplicaCount": 1, "maxReplicaCount": 4},
		},
		"ttkCollector": map[string]any{
			"keda": map[string]any{"minReplicaCount": 0, "maxReplicaCount": 8},
		},
	}
	objs := typed(t, values)
	sos := ofType[*kedav1alpha1.ScaledObject](objs)
	if len(sos) != 2 {
		t.Fatalf("got %d ScaledObjects; want 2", len(sos))
	}

	s := natstest.StartMonitored(t)
	js := natstest.Client(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	monitor := s.MonitorAddr().String()

	tests := []struct {
		component string
		source    event.Source
		eventType string
		published int
		// delivered and not acknowledged: still lag for KEDA
		inFlight int
		acked    int
	}{
		{"fb-collector", event.Facebook, "ad.view", 4500, 300, 200},
		{"ttk-collector", event.TikTok, "video.view", 1200, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			var so *kedav1alpha1.ScaledObject
			for _, o := range sos {
				if o.Spec.ScaleTargetRef.Name == releaseName+"-"+tt.component {
					so = o
				}
			}
			if so == nil {
				t.Fatalf("no ScaledObject for %s", tt.component)
			}
			m := parseTrigger(t, so.Spec.Triggers[0])
			if m.Stream != stream.Events || m.Account != "$G" {
				t.Fatalf("trigger reads stream %q in account %q; want %s in $G", m.Stream, m.Account, stream.Events)
			}

			// The consumer as the collector creates it, under the name its
			// Deployment configures.
			env := envOf(deployment(t, objs, tt.component).Spec.Template.Spec.Containers[0])
			if err := stream.Ensure(ctx, js, stream.Options{MaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute, Replicas: 1, DeadLetterAge: time.Hour, DeadLetterBytes: -1}, false); err != nil {
				t.Fatal(err)
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, stream.Events, jetstream.ConsumerConfig{
				Durable:       env["CONSUMER_NAME"],
				FilterSubject: event.SourceFilter(tt.source),
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			subject := "events." + string(tt.source) + "." + tt.eventType
			for i := range tt.published {
				if _, err := js.Publish(ctx, subject, []byte(`{}`), jetstream.WithMsgID(fmt.Sprintf("%s-%d", tt.component, i))); err != nil {
					t.Fatal(err)
				}
			}
			if n := tt.inFlight + tt.acked; n > 0 {
				batch, err := cons.FetchNoWait(n)
				if err != nil {
					t.Fatal(err)
				}
				i := 0
				for msg := range batch.Messages() {
					if i < tt.acked {
						if err := msg.DoubleAck(ctx); err != nil {
							t.Fatal(err)
						}
					}
					i++
				}
				if i != n {
					t.Fatalf("fetched %d; want %d", i, n)
				}
			}

			got, err := kedaLag(ctx, monitor, m)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(tt.published - tt.acked)
			if got != want {
				t.Errorf("KEDA's lag = %d; want %d (%d pending + %d delivered unacknowledged)", got, want, tt.published-tt.acked-tt.inFlight, tt.inFlight)
			}
			// The collector's own gauges read the same numbers.
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if sum := int64(info.NumPending) + int64(info.NumAckPending); sum != got {
				t.Errorf("consumer info says %d; /jsz said %d", sum, got)
			}

			wantReplicas := map[string]int32{
				"fb-collector":  4, // ceil(4300/1000) = 5, capped at maxReplicaCount 4
				"ttk-collector": 2, // ceil(1200/1000), woken from minReplicaCount 0
			}[tt.component]
			if r := desiredReplicas(got, m, so); r != wantReplicas {
				t.Errorf("KEDA would run %d replicas for lag %d; want %d", r, got, wantReplicas)
			}
		})
	}

	t.Run("wrong consumer is an error, not zero lag", func(t *testing.T) {
		m := parseTrigger(t, sos[0].Spec.Triggers[0])
		m.Consumer = "no-such-consumer"
		if lag, err := kedaLag(ctx, monitor, m); err == nil {
			t.Errorf("lag %d for a consumer that does not exist; KEDA would fall back, this must fail", lag)
		}
	})
}

func TestDesiredReplicas(t *testing.T) {
	so := func(lo, hi int32) *kedav1alpha1.ScaledObject {
		return &kedav1alpha1.ScaledObject{Spec: kedav1alpha1.ScaledObjectSpec{MinReplicaCount: &lo, MaxReplicaCount: &hi}}
	}
	m := jetStreamTrigger{LagThreshold: 1000, ActivationLagThreshold: 10}
	tests := []struct {
		lag    int64
		lo, hi int32
		want   int32
	}{
		{0, 1, 8, 1},
		{1, 1, 8, 1},
		{1000, 1, 8, 1},
		{1001, 1, 8, 2},
		{7999, 1, 8, 8},
		{1_000_000, 1, 8, 8},
		{10, 0, 8, 0},
		{11, 0, 8, 1},
		{2500, 2, 8, 3},
	}
	for _, tt := range tests {
		if got := desiredReplicas(tt.lag, m, so(tt.lo, tt.hi)); got != tt.want {
			t.Errorf("desiredReplicas(%d, %d..%d) = %d; want %d", tt.lag, tt.lo, tt.hi, got, tt.want)
		}
	}
}
