package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one service binary running as its own process, so that its
// memory and CPU are its own and it runs exactly as it ships.
type proc struct {
	name string
	port int
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc runs bin/name with the harness's environment plus env, its
// output going to logDir/<logName>.log (stdout to .out when apart is set,
// for the publisher's summary).
func startProc(binDir, logDir, logName, name string, port int, apart bool, env ...string) (*proc, error) {
	p := &proc{name: name, port: port, log: filepath.Join(logDir, logName+".log"), done: make(chan struct{})}
	logFile, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	out := logFile
	if apart {
		out, err = os.Create(filepath.Join(logDir, logName+".out"))
		if err != nil {
			logFile.Close()
			return nil, err
		}
	}
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append(os.Environ(), env...)
	if port != 0 {
		cmd.Env = append(cmd.Env, "PORT="+strconv.Itoa(port))
	}
	cmd.Stdout, cmd.Stderr = out, logFile
	// Own process group, so a terminal's Ctrl-C reaches only the harness,
	// which stops its services in order; Pdeathsig ends them if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cpuSeconds is the CPU time (user + system) of a process that exited.
func (p *proc) cpuSeconds() float64 {
	<-p.done
	st := p.cmd.ProcessState
	return (st.UserTime() + st.SystemTime()).Seconds()
}

func (p *proc) url() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// outPath is where the process's stdout went when started apart.
func (p *proc) outPath() string { return strings.TrimSuffix(p.log, ".log") + ".out" }

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url()+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); see %s", p.name, p.err, p.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; see %s", p.name, limit, p.log)
		}
	}
}

// wait waits for the process to exit by itself, at most limit.
func (p *proc) wait(ctx context.Context, limit time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	case <-ctx.Done():
		p.stop()
		return ctx.Err()
	case <-time.After(limit):
		p.stop()
		return fmt.Errorf("%s still running after %s; stopped it", p.name, limit)
	}
}

// stop ends the process gracefully (SIGTERM), killing it after 30 s.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 30s after SIGTERM; killed", p.name)
	}
}

func (p *proc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w (see %s)", p.name, p.err, p.log)
	}
	return nil
}

// stopAll stops procs in reverse order and joins their errors.
func stopAll(procs ...*proc) error {
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if procs[i] != nil {
			errs = append(errs, procs[i].stop())
		}
	}
	return errors.Join(errs...)
}

// freePort returns a loopback TCP port free at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
