package main

// The subset of Grafana's dashboard JSON model (schemaVersion 39) these
// dashboards use. Field order is the order of the generated JSON.

// datasourceUID is the Prometheus datasource every query runs on: compose
// provisions it under this uid, and kube-prometheus-stack's Grafana names
// its default Prometheus datasource the same.
const datasourceUID = "prometheus"

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func prometheusDS() *datasource { return &datasource{Type: "prometheus", UID: datasourceUID} }

type dashboard struct {
	file string // name of the JSON file, not part of the model

	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	Description   string     `json:"description"`
	Tags          []string   `json:"tags"`
	Timezone      string     `json:"timezone"`
	Editable      bool       `json:"editable"`
	GraphTooltip  int        `json:"graphTooltip"`
	Refresh       string     `json:"refresh"`
	SchemaVersion int        `json:"schemaVersion"`
	Version       int        `json:"version"`
	Time          timeRange  `json:"time"`
	Links         []link     `json:"links"`
	Templating    templating `json:"templating"`
	Annotations   templating `json:"annotations"`
	Panels        []panel    `json:"panels"`
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type link struct {
	Title      string   `json:"title"`
	Type       string   `json:"type"`
	Tags       []string `json:"tags"`
	AsDropdown bool     `json:"asDropdown"`
	KeepTime   bool     `json:"keepTime"`
}

// templating holds no variables: every query names its metrics and
// windows outright, so it runs as is in Prometheus too.
type templating struct {
	List []struct{} `json:"list"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type panel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description,omitempty"`
	GridPos     gridPos      `json:"gridPos"`
	Collapsed   *bool        `json:"collapsed,omitempty"`
	Datasource  *datasource  `json:"datasource,omitempty"`
	Targets     []target     `json:"targets,omitempty"`
	FieldConfig *fieldConfig `json:"fieldConfig,omitempty"`
	Options     any          `json:"options,omitempty"`
	// Panels is a row's content: empty, the row is expanded.
	Panels *[]panel `json:"panels,omitempty"`
}

type target struct {
	RefID        string     `json:"refId"`
	Datasource   datasource `json:"datasource"`
	EditorMode   string     `json:"editorMode"`
	Expr         string     `json:"expr"`
	LegendFormat string     `json:"legendFormat"`
	Range        bool       `json:"range"`
	Instant      bool       `json:"instant"`
}

type fieldConfig struct {
	Defaults  fieldDefaults `json:"defaults"`
	Overrides []struct{}    `json:"overrides"`
}

type fieldDefaults struct {
	Unit       string      `json:"unit"`
	Decimals   *int        `json:"decimals,omitempty"`
	Min        *float64    `json:"min,omitempty"`
	Color      colorMode   `json:"color"`
	Thresholds thresholds  `json:"thresholds"`
	Custom     *seriesLook `json:"custom,omitempty"`
}

type colorMode struct {
	Mode string `json:"mode"`
}

type thresholds struct {
	Mode  string `json:"mode"`
	Steps []step `json:"steps"`
}

type step struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// seriesLook is a time series panel's drawing style.
type seriesLook struct {
	DrawStyle   string   `json:"drawStyle"`
	LineWidth   int      `json:"lineWidth"`
	FillOpacity int      `json:"fillOpacity"`
	ShowPoints  string   `json:"showPoints"`
	SpanNulls   bool     `json:"spanNulls"`
	Stacking    stacking `json:"stacking"`
}

type stacking struct {
	Mode  string `json:"mode"`
	Group string `json:"group"`
}

type timeSeriesOptions struct {
	Legend  legend  `json:"legend"`
	Tooltip tooltip `json:"tooltip"`
}

type legend struct {
	DisplayMode string   `json:"displayMode"`
	Placement   string   `json:"placement"`
	ShowLegend  bool     `json:"showLegend"`
	Calcs       []string `json:"calcs"`
	SortBy      string   `json:"sortBy,omitempty"`
	SortDesc    bool     `json:"sortDesc,omitempty"`
}

type tooltip struct {
	Mode string `json:"mode"`
	Sort string `json:"sort"`
}

type statOptions struct {
	ReduceOptions reduceOptions `json:"reduceOptions"`
	ColorMode     string        `json:"colorMode"`
	GraphMode     string        `json:"graphMode"`
	JustifyMode   string        `json:"justifyMode"`
	Orientation   string        `json:"orientation"`
	TextMode      string        `json:"textMode"`
}

type reduceOptions struct {
	Calcs  []string `json:"calcs"`
	Fields string   `json:"fields"`
	Values bool     `json:"values"`
}

// q is one query of a panel; its legend uses Prometheus label names in
// {{ }}.
type q struct {
	expr, legend string
}

func targets(qs []q, instant bool) []target {
	ts := make([]target, len(qs))
	for i, x := range qs {
		ts[i] = target{
			RefID:        string(rune('A' + i)),
			Datasource:   *prometheusDS(),
			EditorMode:   "code",
			Expr:         x.expr,
			LegendFormat: x.legend,
			Range:        !instant,
			Instant:      instant,
		}
	}
	return ts
}

func ptr[T any](v T) *T { return &v }

// level is a threshold: from value up, the color is color.
type level struct {
	value float64
	color string
}

// steps builds thresholds: green from the bottom, then each level.
func steps(levels ...level) thresholds {
	t := thresholds{Mode: "absolute", Steps: []step{{Color: "green"}}}
	for _, l := range levels {
		t.Steps = append(t.Steps, step{Color: l.color, Value: ptr(l.value)})
	}
	return t
}

// series is a time series panel: lines, or areas stacked on each other
// when stacked (parts that add up to a whole, like event types). With
// legendTable the legend is a table beside the graph, largest total first:
// for queries with many series, most of them usually zero.
type series struct {
	title, description, unit string
	stacked, legendTable     bool
	queries                  []q
}

func (s series) panel() panel {
	look := &seriesLook{DrawStyle: "line", LineWidth: 1, FillOpacity: 10, ShowPoints: "never",
		Stacking: stacking{Mode: "none", Group: "A"}}
	if s.stacked {
		look.FillOpacity = 60
		look.Stacking.Mode = "normal"
	}
	lg := legend{DisplayMode: "list", Placement: "bottom", ShowLegend: true, Calcs: []string{}}
	if s.legendTable {
		lg = legend{DisplayMode: "table", Placement: "right", ShowLegend: true, Calcs: []string{"sum"},
			SortBy: "Total", SortDesc: true}
	}
	return panel{
		Type:        "timeseries",
		Title:       s.title,
		Description: s.description,
		Datasource:  prometheusDS(),
		Targets:     targets(s.queries, false),
		FieldConfig: &fieldConfig{
			Defaults: fieldDefaults{
				Unit:       s.unit,
				Min:        ptr(0.0),
				Color:      colorMode{Mode: "palette-classic"},
				Thresholds: steps(),
				Custom:     look,
			},
			Overrides: []struct{}{},
		},
		Options: timeSeriesOptions{
			Legend:  lg,
			Tooltip: tooltip{Mode: "multi", Sort: "desc"},
		},
	}
}

// single is a stat panel showing one number: the last value of a range
// query (with a sparkline), or an instant query over the dashboard's range.
type single struct {
	title, description, unit string
	decimals                 int
	thresholds               thresholds
	instant                  bool
	query                    q
}

func (s single) panel() panel {
	graph := "area"
	if s.instant {
		graph = "none"
	}
	return panel{
		Type:        "stat",
		Title:       s.title,
		Description: s.description,
		Datasource:  prometheusDS(),
		Targets:     targets([]q{s.query}, s.instant),
		FieldConfig: &fieldConfig{
			Defaults: fieldDefaults{
				Unit:       s.unit,
				Decimals:   ptr(s.decimals),
				Color:      colorMode{Mode: "thresholds"},
				Thresholds: s.thresholds,
			},
			Overrides: []struct{}{},
		},
		Options: statOptions{
			ReduceOptions: reduceOptions{Calcs: []string{"lastNotNull"}, Fields: ""},
			ColorMode:     "value",
			GraphMode:     graph,
			JustifyMode:   "auto",
			Orientation:   "auto",
			TextMode:      "auto",
		},
	}
}

// grid places panels left to right in rows of 24 columns, numbering them.
type grid struct {
	panels []panel
	x, y   int
	rowH   int // height of the tallest panel on the current line
	nextID int
}

// row starts a row titled title on a new line.
func (g *grid) row(title string) {
	g.newline()
	g.nextID++
	g.panels = append(g.panels, panel{
		ID: g.nextID, Type: "row", Title: title,
		GridPos:   gridPos{H: 1, W: 24, X: 0, Y: g.y},
		Collapsed: ptr(false),
		Panels:    &[]panel{},
	})
	g.y++
}

// add places p, w columns wide and h high, wrapping to a new line when
// the current one is full.
func (g *grid) add(w, h int, p panel) {
	if g.x+w > 24 {
		g.newline()
	}
	g.nextID++
	p.ID = g.nextID
	p.GridPos = gridPos{H: h, W: w, X: g.x, Y: g.y}
	g.panels = append(g.panels, p)
	g.x += w
	g.rowH = max(g.rowH, h)
}

func (g *grid) newline() {
	g.y += g.rowH
	g.x, g.rowH = 0, 0
}

// newDashboard fills in what every eventpipe dashboard shares.
func newDashboard(file, uid, title, description string, g *grid) dashboard {
	return dashboard{
		file:          file,
		UID:           uid,
		Title:         title,
		Description:   description,
		Tags:          []string{"eventpipe"},
		Timezone:      "browser",
		Editable:      true,
		GraphTooltip:  1,
		Refresh:       "10s",
		SchemaVersion: 39,
		Version:       1,
		Time:          timeRange{From: "now-1h", To: "now"},
		Links: []link{{
			Title: "eventpipe", Type: "dashboards", Tags: []string{"eventpipe"},
			AsDropdown: true, KeepTime: true,
		}},
		Templating:  templating{List: []struct{}{}},
		Annotations: templating{List: []struct{}{}},
		Panels:      g.panels,
	}
}
