// etcd_mutex_bench measures etcd's client-side lock recipe — clientv3/concurrency Mutex from
// etcd 3.4 (Debian's golang-etcd-server-dev) — against any etcd-compatible server, with the
// same figures as `latch-bench lock` (clients/bench/lb_locks.c), so that latch's native lock,
// the recipe on latch's etcd API and the recipe on a real etcd can be compared in one run
// (scripts/compare-locks.sh).
//
// Usage: etcd_mutex_bench -endpoints H:P[,H:P...] [-clients N] [-conns N] [-total N]
//
//	[-ttl S] [-prefix P] [-timeout D]
//
// -clients goroutines, each with its own session (concurrency.NewSession, TTL -ttl) on one of
// -conns clientv3 clients (goroutine i on client i mod conns), all contend for one Mutex
// under -prefix: one operation is Lock -> Unlock. Recorded: Lock latency (called -> returned;
// the main figures), the cycle (Lock called -> Unlock returned) and the hand-off (the previous
// holder's Unlock called -> a waiting Lock returns). A Lock that returns while another
// holder has not yet called Unlock is an error. Prints one JSON line like latch-bench -o
// json; exits 1 on any error or when no cycle completed.
//
// Build offline in GOPATH mode (as tests/compat/test_compat.py builds its programs):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(mktemp -d) GOFLAGS= GOPROXY=off \
//	    go build -o etcd_mutex_bench etcd_mutex_bench.go
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

type result struct {
	Workload   string   `json:"workload"`
	Endpoints  []string `json:"endpoints"`
	Conns      int      `json:"conns"`
	Clients    int      `json:"clients"`
	Ops        int      `json:"ops"`
	Errors     int      `json:"errors"`
	Seconds    float64  `json:"seconds"`
	OpsPerS    float64  `json:"ops_per_s"`
	MeanMs     float64  `json:"mean_ms"`
	P50Ms      float64  `json:"p50_ms"`
	P90Ms      float64  `json:"p90_ms"`
	P99Ms      float64  `json:"p99_ms"`
	P999Ms     float64  `json:"p999_ms"`
	MaxMs      float64  `json:"max_ms"`
	Lock       string   `json:"lock"`
	SessionTTL int      `json:"session_ttl_s"`
	Handoffs   int      `json:"handoffs"`
	CycleP50   float64  `json:"cycle_p50_ms"`
	CycleP99   float64  `json:"cycle_p99_ms"`
	HandoffP50 float64  `json:"handoff_p50_ms"`
	HandoffP99 float64  `json:"handoff_p99_ms"`
	FirstError string   `json:"first_error"`
}

type state struct {
	mu          sync.Mutex
	held        bool
	lastRelease time.Time
	started     int
	total       int
	acquire     []time.Duration
	cycle       []time.Duration
	handoff     []time.Duration
	errors      int
	firstError  string
	last        time.Time
}

func (s *state) fail(format string, a ...interface{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors++
	if s.firstError == "" {
		s.firstError = fmt.Sprintf(format, a...)
	}
}

// next reserves one operation; false when the total is reached or errors stopped the run.
func (s *state) next() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started >= s.total || s.errors > 0 {
		return false
	}
	s.started++
	return true
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func pct(v []time.Duration, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(v)))
	if i >= len(v) {
		i = len(v) - 1
	}
	return ms(v[i])
}

func sorted(v []time.Duration) []time.Duration {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v
}

func worker(s *state, cli *clientv3.Client, prefix string, ttl int, timeout time.Duration,
	wg *sync.WaitGroup, ready chan<- error, start <-chan struct{}) {
	defer wg.Done()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	ready <- err
	if err != nil {
		return
	}
	defer sess.Close()
	m := concurrency.NewMutex(sess, prefix)
	<-start
	for s.next() {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := m.Lock(ctx)
		cancel()
		now := time.Now()
		if err != nil {
			s.fail("Lock: %v", err)
			return
		}
		s.mu.Lock()
		if s.held {
			s.errors++
			if s.firstError == "" {
				s.firstError = "Lock returned while another holder had not called Unlock"
			}
		}
		s.held = true
		s.acquire = append(s.acquire, now.Sub(t0))
		if !s.lastRelease.IsZero() && t0.Before(s.lastRelease) {
			s.handoff = append(s.handoff, now.Sub(s.lastRelease))
		}
		s.mu.Unlock()
		s.mu.Lock() // the critical section is empty: the grant ends when Unlock is called
		s.held = false
		s.lastRelease = time.Now()
		s.mu.Unlock()
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
		err = m.Unlock(ctx)
		cancel()
		done := time.Now()
		if err != nil {
			s.fail("Unlock: %v", err)
			return
		}
		s.mu.Lock()
		s.cycle = append(s.cycle, done.Sub(t0))
		s.last = done
		s.mu.Unlock()
	}
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	clients := flag.Int("clients", 1, "goroutines, each with its own session, contending for one Mutex")
	conns := flag.Int("conns", 0, "clientv3 clients (connections); 0: one per goroutine")
	total := flag.Int("total", 1000, "Lock -> Unlock cycles in total")
	ttl := flag.Int("ttl", 60, "session TTL in seconds")
	prefix := flag.String("prefix", "", "the Mutex prefix (default: one per run)")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline of each Lock and Unlock")
	flag.Parse()
	if *clients < 1 || *total < 1 || *conns < 0 {
		fmt.Fprintln(os.Stderr, "etcd_mutex_bench: -clients and -total must be >= 1")
		os.Exit(2)
	}
	if *conns == 0 || *conns > *clients {
		*conns = *clients
	}
	if *prefix == "" {
		*prefix = fmt.Sprintf("bench-mutex-%d/", time.Now().UnixNano())
	}
	eps := strings.Split(*endpoints, ",")
	clis := make([]*clientv3.Client, *conns)
	for i := range clis {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd_mutex_bench: cannot connect to %s: %v\n", *endpoints, err)
			os.Exit(1)
		}
		defer c.Close()
		clis[i] = c
	}
	s := &state{total: *total}
	var wg sync.WaitGroup
	ready := make(chan error, *clients)
	start := make(chan struct{})
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go worker(s, clis[i%*conns], *prefix, *ttl, *timeout, &wg, ready, start)
	}
	for i := 0; i < *clients; i++ {
		if err := <-ready; err != nil {
			s.fail("NewSession: %v", err)
		}
	}
	t0 := time.Now()
	s.last = t0
	close(start)
	wg.Wait()
	secs := s.last.Sub(t0).Seconds()
	acq, cyc, hand := sorted(s.acquire), sorted(s.cycle), sorted(s.handoff)
	var sum time.Duration
	for _, d := range acq {
		sum += d
	}
	r := result{Workload: "etcd-mutex", Endpoints: eps, Conns: *conns, Clients: *clients,
		Ops: len(cyc), Errors: s.errors, Seconds: secs, Lock: *prefix, SessionTTL: *ttl,
		Handoffs: len(hand), FirstError: s.firstError}
	if secs > 0 {
		r.OpsPerS = float64(len(cyc)) / secs
	}
	if len(acq) > 0 {
		r.MeanMs = ms(sum) / float64(len(acq))
		r.MaxMs = ms(acq[len(acq)-1])
	}
	r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms = pct(acq, 50), pct(acq, 90), pct(acq, 99), pct(acq, 99.9)
	r.CycleP50, r.CycleP99 = pct(cyc, 50), pct(cyc, 99)
	r.HandoffP50, r.HandoffP99 = pct(hand, 50), pct(hand, 99)
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if s.errors > 0 || len(cyc) == 0 {
		fmt.Fprintf(os.Stderr, "etcd_mutex_bench: %d errors; the first: %s\n", s.errors, s.firstError)
		os.Exit(1)
	}
}
