package compose_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Paths inside the repository.
const (
	composeFile    = "docker-compose.yml"
	productionFile = "manifests/compose/production.yml"
	dockerfilePath = "manifests/docker/Dockerfile"
	dockerignore   = "manifests/docker/Dockerfile.dockerignore"
)

var (
	// root is the repository root, the compose project directory and the
	// image build context.
	root string
	// binDir holds the binaries built once, by the Dockerfile's own go
	// build line, for the whole package; buildErr says why it failed.
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		os.Exit(1)
	}
	root = filepath.Dir(strings.TrimSpace(string(out)))
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "eventpipe-compose-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binDir = dir
		buildErr = buildAsImage(dir)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// needBinaries skips in -short mode and fails when the build failed.
func needBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: -short builds no binaries")
	}
	if buildErr != nil {
		t.Fatalf("the Dockerfile's build command failed: %v", buildErr)
	}
}

// buildAsImage runs the Dockerfile's go build line as its build stage
// would for this machine's platform, writing the binaries to out instead
// of /out/.
func buildAsImage(out string) error {
	df, err := readDockerfile()
	if err != nil {
		return err
	}
	env, args := splitAssignments(df.goBuild)
	// The build stage's ARGs, as BuildKit sets them for a native build.
	platform := map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH}
	var unknown []string
	for i, kv := range env {
		env[i] = os.Expand(kv, func(name string) string {
			v, ok := platform[name]
			if !ok {
				unknown = append(unknown, name)
			}
			return v
		})
	}
	if len(unknown) > 0 {
		return fmt.Errorf("the go build line uses %v, which this test does not know how to set", unknown)
	}
	i := slices.Index(args, "-o")
	if len(args) < 2 || args[0] != "go" || args[1] != "build" || i < 0 || i+1 >= len(args) {
		return fmt.Errorf("the Dockerfile's build line is not `go build ... -o <dir>/ ...`: %q", df.goBuild)
	}
	args = slices.Clone(args)
	args[i+1] = out + "/"
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", strings.Join(env, " "), strings.Join(args, " "), err, b)
	}
	return nil
}

// dockerfile is what the tests need of manifests/docker/Dockerfile.
type dockerfile struct {
	stages []stage
	// goBuild is the words of the RUN line that runs go build, without
	// RUN's own flags (--mount=...).
	goBuild []string
}

type stage struct {
	name, image string
	// instructions in order, keyword upper-cased: {"COPY", "--from=build ..."}.
	instructions [][2]string
}

func (d *dockerfile) stage(name string) (stage, bool) {
	for _, s := range d.stages {
		if s.name == name {
			return s, true
		}
	}
	return stage{}, false
}

// last returns the arguments of a stage's last instruction of kind, or "".
func (s stage) last(kind string) string {
	for i := len(s.instructions) - 1; i >= 0; i-- {
		if s.instructions[i][0] == kind {
			return s.instructions[i][1]
		}
	}
	return ""
}

func (s stage) all(kind string) []string {
	var args []string
	for _, in := range s.instructions {
		if in[0] == kind {
			args = append(args, in[1])
		}
	}
	return args
}

var fromLine = regexp.MustCompile(`^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$`)

// readDockerfile reads the Dockerfile's instructions: continuation lines
// joined, comments dropped, as BuildKit reads them.
func readDockerfile() (*dockerfile, error) {
	f, err := os.Open(filepath.Join(root, dockerfilePath))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	d := &dockerfile{}
	for _, line := range lines {
		kind, args, _ := strings.Cut(line, " ")
		kind, args = strings.ToUpper(kind), strings.TrimSpace(args)
		if kind == "FROM" {
			m := fromLine.FindStringSubmatch(args)
			if m == nil {
				return nil, fmt.Errorf("cannot read FROM %s", args)
			}
			d.stages = append(d.stages, stage{name: m[2], image: m[1]})
			continue
		}
		if len(d.stages) == 0 {
			continue // ARGs before the first FROM
		}
		s := &d.stages[len(d.stages)-1]
		s.instructions = append(s.instructions, [2]string{kind, args})
		if kind == "RUN" && strings.Contains(args, "go build") {
			words, err := shellWords(args)
			if err != nil {
				return nil, fmt.Errorf("RUN %s: %w", args, err)
			}
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				words = words[1:]
			}
			if d.goBuild != nil {
				return nil, errors.New("more than one RUN line runs go build")
			}
			d.goBuild = words
		}
	}
	if d.goBuild == nil {
		return nil, errors.New("no RUN line runs go build")
	}
	return d, nil
}

// makeBuildRecipe returns the words of the Makefile's build target's go
// build line, make's variables GO and BIN replaced by go and <bin>.
func makeBuildRecipe() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return nil, err
	}
	inBuild := false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "\t") {
			inBuild = strings.HasPrefix(line, "build:")
			continue
		}
		if inBuild && strings.Contains(line, " build ") {
			line = strings.NewReplacer("$(GO)", "go", "$(BIN)", "<bin>", "$$", "$").Replace(strings.TrimSpace(line))
			return shellWords(line)
		}
	}
	return nil, errors.New("the Makefile's build target runs no go build")
}

// splitAssignments splits a simple command into its leading NAME=value
// assignments and the command itself.
func splitAssignments(words []string) (env, args []string) {
	assignment := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	i := 0
	for i < len(words) && assignment.MatchString(words[i]) {
		i++
	}
	return slices.Clone(words[:i]), slices.Clone(words[i:])
}

// shellWords splits s as a POSIX shell splits a simple command: quotes
// group and a backslash escapes; nothing is expanded.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// environment is one way of running the compose stack, as the README
// gives the command for it.
type environment struct {
	name string
	// files are the -f arguments; envFile the --env-file (none: the
	// compose file's own defaults).
	files   []string
	envFile string
	// profiles the README's command activates.
	profiles []string
	// secrets are what the deploying shell exports.
	secrets map[string]string
}

var (
	development = environment{name: "development", files: []string{composeFile}}
	staging     = environment{
		name:     "staging",
		files:    []string{composeFile, productionFile},
		envFile:  "manifests/compose/env/staging.env",
		profiles: []string{"upstream-publisher"},
		secrets: map[string]string{
			"POSTGRES_PASSWORD": "5c0d7e1f9a2b4c6d8e0f1a2b", "REPORTER_DB_PASSWORD": "staging-reporter-5c0d7e",
			"COLLECTOR_DB_PASSWORD": "staging-collector-8e0f1a", "GRAFANA_ADMIN_PASSWORD": "staging-admin-secret",
		},
	}
	production = environment{
		name:    "production",
		files:   []string{composeFile, productionFile},
		envFile: "manifests/compose/env/production.env",
		secrets: map[string]string{
			"POSTGRES_PASSWORD": "9f8e7d6c5b4a39281706f5e4", "REPORTER_DB_PASSWORD": "production-reporter-9f8e7d",
			"COLLECTOR_DB_PASSWORD": "production-collector-1706f5", "GRAFANA_ADMIN_PASSWORD": "production-admin-secret",
		},
	}
	environments = []environment{
		development,
		{name: "development.env", files: []string{composeFile}, envFile: "manifests/compose/env/development.env"},
		staging,
		production,
	}
)

// load loads the environment's project with the profiles it activates
// plus extra ones ("*" is every profile), as `docker compose` would.
func (e environment) load(t *testing.T, extra ...string) *types.Project {
	t.Helper()
	p, err := e.loadWith(e.secrets, extra...)
	if err != nil {
		t.Fatalf("%s: load the compose project: %v", e.name, err)
	}
	return p
}

// loadWith loads the project with env as the deploying shell's
// environment.
func (e environment) loadWith(env map[string]string, extra ...string) (*types.Project, error) {
	var files []string
	for _, f := range e.files {
		if !filepath.IsAbs(f) {
			f = filepath.Join(root, f)
		}
		files = append(files, f)
	}
	var envFiles []string
	if e.envFile != "" {
		envFiles = append(envFiles, filepath.Join(root, e.envFile))
	}
	var shell []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		shell = append(shell, k+"="+env[k])
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(root),
		cli.WithEnv(shell),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles(append(slices.Clone(e.profiles), extra...)),
	)
	if err != nil {
		return nil, err
	}
	return cli.ProjectFromOptions(context.Background(), opts)
}

// composeArgs are the docker compose arguments selecting the environment.
func (e environment) composeArgs() []string {
	args := []string{"compose"}
	for _, f := range e.files {
		args = append(args, "-f", filepath.Join(root, f))
	}
	if e.envFile != "" {
		args = append(args, "--env-file", filepath.Join(root, e.envFile))
	}
	for _, p := range e.profiles {
		args = append(args, "--profile", p)
	}
	return args
}

// envValue returns a service's variable, or "" when unset.
func envValue(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// lookup serves a service's compose environment to configuration code and
// records every variable the code reads.
func lookup(s types.ServiceConfig, read map[string]bool) func(string) (string, bool) {
	return func(name string) (string, bool) {
		read[name] = true
		v := s.Environment[name]
		if v == nil {
			return "", false
		}
		return *v, true
	}
}
