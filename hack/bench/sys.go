package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// Machine describes where the figures were measured.
type Machine struct {
	CPUModel     string  `json:"cpuModel"`
	Cores        int     `json:"cores"`
	MemoryGiB    float64 `json:"memoryGiB"`
	LoadAvgStart string  `json:"loadAvgAtStart"`
	Kernel       string  `json:"kernel"`
	GoVersion    string  `json:"goVersion"`
	Postgres     string  `json:"postgres,omitempty"`
	Commit       string  `json:"commit"`
}

func describeMachine(ctx context.Context, root string) Machine {
	m := Machine{
		CPUModel:     cpuModel(),
		Cores:        runtime.NumCPU(),
		LoadAvgStart: loadAvg(),
		GoVersion:    runtime.Version(),
	}
	if kb := meminfo("MemTotal"); kb > 0 {
		m.MemoryGiB = float64(kb) / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Commit = gitCommit(ctx, root)
	return m
}

func (m Machine) String() string {
	s := fmt.Sprintf("%s, %d cores, %.1f GiB; load average at start %s; %s", m.CPUModel, m.Cores, m.MemoryGiB, m.LoadAvgStart, m.GoVersion)
	if m.Postgres != "" {
		s += "; PostgreSQL " + m.Postgres
	}
	return s + "; commit " + m.Commit
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// meminfo returns a /proc/meminfo field in KiB.
func meminfo(field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func gitCommit(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// procStatus returns a field of /proc/<pid>/status in KiB (VmHWM, VmRSS).
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procStat returns a process's parent and its CPU time (user + system) in
// clock ticks.
func procStat(pid int) (ppid int, ticks uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return ppid, utime + stime, nil
}

// children returns the processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStat(p); err == nil && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// machineTicks returns the busy and total CPU ticks of the whole machine.
func machineTicks() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		// idle and iowait are the 4th and 5th values.
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total
}

// cpuGroup names a set of processes whose CPU time is summed.
type cpuGroup struct {
	name string
	pids func() []int
}

// cpuMeter measures, over a window, how many cores each group of
// processes used and how many the rest of the machine used: on a shared
// machine that is what tells a figure bounded by our code from one
// bounded by a neighbour.
type cpuMeter struct {
	groups    []cpuGroup
	start     time.Time
	ticks     []map[int]uint64
	busy0     uint64
	machTotal uint64
}

func startCPU(groups ...cpuGroup) *cpuMeter {
	m := &cpuMeter{groups: groups, start: time.Now()}
	for _, g := range groups {
		m.ticks = append(m.ticks, groupTicks(g))
	}
	m.busy0, m.machTotal = machineTicks()
	return m
}

func groupTicks(g cpuGroup) map[int]uint64 {
	out := map[int]uint64{}
	for _, pid := range g.pids() {
		if _, t, err := procStat(pid); err == nil {
			out[pid] = t
		}
	}
	return out
}

// CPU is the cores each group used over a window, "other" being the rest
// of the machine (other users' work included).
type CPU map[string]float64

// stop returns the cores used per group since start; nil for a window too
// short for /proc's 10-ms ticks to tell.
func (m *cpuMeter) stop() CPU {
	secs := time.Since(m.start).Seconds()
	if secs < 0.5 {
		return nil
	}
	out := CPU{}
	var ours float64
	for i, g := range m.groups {
		var d uint64
		for pid, t := range groupTicks(g) {
			if t0, ok := m.ticks[i][pid]; ok {
				d += t - t0
			} else {
				d += t
			}
		}
		cores := float64(d) / clockTicks / secs
		out[g.name] += cores
		ours += cores
	}
	busy, _ := machineTicks()
	out["other"] = max(0, float64(busy-m.busy0)/clockTicks/secs-ours)
	return out
}

func (c CPU) String() string {
	order := []string{"gateway", "collectors", "postgres", "reporter", "publisher", "harness", "other"}
	var parts []string
	for _, k := range order {
		if v, ok := c[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// Groups of processes, for the CPU meter.

func pidsOf(procs ...*proc) func() []int {
	return func() []int {
		var out []int
		for _, p := range procs {
			if p != nil {
				out = append(out, p.pid())
			}
		}
		return out
	}
}

func (e *env) postgresGroup() cpuGroup {
	return cpuGroup{"postgres", func() []int {
		pm := e.postmasterPID()
		if pm == 0 {
			return nil
		}
		return append(children(pm), pm)
	}}
}

// harnessGroup is this process: the embedded NATS server and the load
// client.
func harnessGroup() cpuGroup {
	return cpuGroup{"harness", func() []int { return []int{os.Getpid()} }}
}
