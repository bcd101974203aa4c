package main

import (
	"strings"
	"testing"

	"github.com/eventpipe/eventpipe/pkg/config"
	"github.com/eventpipe/eventpipe/pkg/schema"
)

func TestReadLogins(t *testing.T) {
	const owner = "postgres://eventpipe:pw@db:5432/eventpipe"
	tests := []struct {
		name     string
		settings map[string]string
		want     []login
		// wantErr is the start of the one-line error, naming the setting.
		wantErr string
	}{
		{name: "none", settings: map[string]string{}},
		{
			name: "both",
			settings: map[string]string{
				"REPORTER_DATABASE_URL":  "postgres://rep:a@db:5432/eventpipe",
				"COLLECTOR_DATABASE_URL": "postgresql://col:b@db:5432/eventpipe?sslmode=disable",
			},
			want: []login{
				{"REPORTER_DATABASE_URL", schema.ReaderRole, "rep", "a"},
				{"COLLECTOR_DATABASE_URL", schema.WriterRole, "col", "b"},
			},
		},
		{name: "not a URL", settings: map[string]string{"REPORTER_DATABASE_URL": "rep:a"}, wantErr: "REPORTER_DATABASE_URL: must be a URL"},
		{name: "no password", settings: map[string]string{"COLLECTOR_DATABASE_URL": "postgres://col@db/eventpipe"}, wantErr: "COLLECTOR_DATABASE_URL: must name a user and its password"},
		{name: "the owner", settings: map[string]string{"REPORTER_DATABASE_URL": "postgres://eventpipe:x@db/eventpipe"}, wantErr: "REPORTER_DATABASE_URL: logs in as eventpipe, DATABASE_URL's owner"},
		{
			name: "one role for both",
			settings: map[string]string{
				"REPORTER_DATABASE_URL":  "postgres://svc:a@db/eventpipe",
				"COLLECTOR_DATABASE_URL": "postgres://svc:a@db/eventpipe",
			},
			wantErr: "COLLECTOR_DATABASE_URL: logs in as svc, as REPORTER_DATABASE_URL does",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := config.NewReader(config.MapLookup(tt.settings))
			got := readLogins(r, owner)
			err := r.Err()
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Errorf("got error %v; want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v; want none", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v; want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("login %d: got %+v; want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
