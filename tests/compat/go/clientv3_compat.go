// clientv3_compat checks etcd's own Go client (clientv3 and clientv3/concurrency, etcd 3.4.23
// from Debian's golang-etcd-server-dev) against an etcd-compatible server.
//
// Usage: clientv3_compat -endpoints 127.0.0.1:2479[,127.0.0.1:12479,...]
//
// Build offline in GOPATH mode (ETCD-API.md §0), as tests/compat/test_compat.py does:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(mktemp -d) GOFLAGS= GOPROXY=off \
//	    go build -o clientv3_compat clientv3_compat.go
//
// Prints one "ok - ..." or "FAIL - ..." line per check (details indented below a failure) and
// exits 1 if any check failed. Every call is bounded by a context deadline. Keys live under
// a prefix unique to this run, so runs against the same server do not interfere.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

const (
	callTimeout = 15 * time.Second // one unary call (clientv3 retries Unavailable inside it)
	lockRounds  = 20               // lock/unlock per goroutine
)

var failures int

func ok(name string) { fmt.Printf("ok - %s\n", name) }

func fail(name string, detail string, args ...interface{}) {
	failures++
	fmt.Printf("FAIL - %s\n", name)
	if detail != "" {
		for _, l := range strings.Split(strings.TrimRight(fmt.Sprintf(detail, args...), "\n"), "\n") {
			fmt.Printf("    %s\n", l)
		}
	}
}

func check(name string, cond bool, detail string, args ...interface{}) bool {
	if cond {
		ok(name)
	} else {
		fail(name, detail, args...)
	}
	return cond
}

// noErr reports a failed call as a failed check; true when err is nil.
func noErr(name string, err error) bool {
	if err != nil {
		fail(name, "error: %v", err)
		return false
	}
	return true
}

func tctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func eq(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
	})
}

// ---- KV ------------------------------------------------------------------------------------

// testKV returns the key prefix it used (for later sections) and whether it could go on.
func testKV(cli *clientv3.Client, pfx string) {
	p := pfx + "kv/"
	ctx, cancel := tctx()
	defer cancel()

	r1, err := cli.Put(ctx, p+"a", "1")
	if !noErr("kv: put a", err) {
		return
	}
	revA1 := r1.Header.Revision
	check("kv: put header has a positive revision, cluster and member ids", revA1 > 0 &&
		r1.Header.ClusterId != 0 && r1.Header.MemberId != 0, "header %+v", r1.Header)
	_, err = cli.Put(ctx, p+"b", "2")
	noErr("kv: put b", err)
	_, err = cli.Put(ctx, p+"c", "3")
	noErr("kv: put c", err)

	r2, err := cli.Put(ctx, p+"a", "1b", clientv3.WithPrevKV())
	if noErr("kv: put a again WithPrevKV", err) {
		check("kv: put WithPrevKV returns the previous value and revisions",
			r2.PrevKv != nil && string(r2.PrevKv.Value) == "1" && r2.PrevKv.ModRevision == revA1 &&
				r2.PrevKv.CreateRevision == revA1 && r2.PrevKv.Version == 1,
			"prev_kv %+v (want value 1, mod/create rev %d, version 1)", r2.PrevKv, revA1)
		check("kv: put increments the revision by 1 per write", r2.Header.Revision == revA1+3,
			"rev %d after 4 puts from %d", r2.Header.Revision, revA1)
	}

	g, err := cli.Get(ctx, p+"a")
	if noErr("kv: get a", err) {
		check("kv: get returns the latest value, version 2, create_revision of the first put",
			g.Count == 1 && len(g.Kvs) == 1 && string(g.Kvs[0].Value) == "1b" && g.Kvs[0].Version == 2 &&
				g.Kvs[0].CreateRevision == revA1,
			"%+v", g.Kvs)
	}

	g, err = cli.Get(ctx, p, clientv3.WithPrefix())
	if noErr("kv: get WithPrefix", err) {
		check("kv: get WithPrefix returns a,b,c in key order", g.Count == 3 &&
			eq(keysOf(g.Kvs), []string{p + "a", p + "b", p + "c"}) && !g.More,
			"count %d keys %v more %v", g.Count, keysOf(g.Kvs), g.More)
	}

	g, err = cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithLimit(2))
	if noErr("kv: get WithPrefix WithLimit(2)", err) {
		check("kv: WithLimit(2) returns 2 keys, more=true, count=3", len(g.Kvs) == 2 && g.More &&
			g.Count == 3 && eq(keysOf(g.Kvs), []string{p + "a", p + "b"}),
			"count %d keys %v more %v", g.Count, keysOf(g.Kvs), g.More)
	}

	g, err = cli.Get(ctx, p, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if noErr("kv: get WithSort(key, descend)", err) {
		check("kv: WithSort(key, descend) returns c,b,a",
			eq(keysOf(g.Kvs), []string{p + "c", p + "b", p + "a"}), "keys %v", keysOf(g.Kvs))
	}

	g, err = cli.Get(ctx, p, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if noErr("kv: get WithSort(mod, descend) WithLimit(1)", err) {
		check("kv: WithSort(mod revision, descend) + WithLimit(1) returns the last modified (a)",
			eq(keysOf(g.Kvs), []string{p + "a"}) && g.More && g.Count == 3,
			"keys %v more %v count %d", keysOf(g.Kvs), g.More, g.Count)
	}

	g, err = cli.Get(ctx, p, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))
	if noErr("kv: get WithSort(value, ascend)", err) {
		check("kv: WithSort(value, ascend) orders by value bytes (1b < 2 < 3: a,b,c)",
			eq(keysOf(g.Kvs), []string{p + "a", p + "b", p + "c"}), "keys %v", keysOf(g.Kvs))
	}

	g, err = cli.Get(ctx, p+"a", clientv3.WithRev(revA1))
	if noErr("kv: get WithRev(first put)", err) {
		check("kv: get WithRev returns the old value; header revision is the current one",
			len(g.Kvs) == 1 && string(g.Kvs[0].Value) == "1" && g.Kvs[0].ModRevision == revA1 &&
				g.Header.Revision == r2.Header.Revision,
			"kvs %+v header rev %d (want current %d)", g.Kvs, g.Header.Revision, r2.Header.Revision)
	}

	g, err = cli.Get(ctx, p+"missing")
	if noErr("kv: get a missing key", err) {
		check("kv: a missing key gives count 0, no kvs", g.Count == 0 && len(g.Kvs) == 0, "%+v", g)
	}

	d, err := cli.Delete(ctx, p+"c", clientv3.WithPrevKV())
	if noErr("kv: delete c WithPrevKV", err) {
		check("kv: delete WithPrevKV returns deleted=1 and the old kv", d.Deleted == 1 &&
			len(d.PrevKvs) == 1 && string(d.PrevKvs[0].Value) == "3",
			"deleted %d prev %+v", d.Deleted, d.PrevKvs)
	}
	d, err = cli.Delete(ctx, p+"c")
	if noErr("kv: delete c again", err) {
		check("kv: deleting a missing key gives deleted=0 and no new revision",
			d.Deleted == 0 && d.Header.Revision == r2.Header.Revision+1,
			"deleted %d rev %d (want %d)", d.Deleted, d.Header.Revision, r2.Header.Revision+1)
	}
	d, err = cli.Delete(ctx, p, clientv3.WithPrefix())
	if noErr("kv: delete WithPrefix", err) {
		check("kv: delete WithPrefix deletes the 2 remaining keys", d.Deleted == 2, "deleted %d", d.Deleted)
	}
	g, err = cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if noErr("kv: get WithCountOnly after the delete", err) {
		check("kv: nothing left under the prefix", g.Count == 0, "count %d", g.Count)
	}
}

// ---- Txn -----------------------------------------------------------------------------------

func testTxn(cli *clientv3.Client, pfx string) {
	k := pfx + "txn/k"
	ctx, cancel := tctx()
	defer cancel()
	if _, err := cli.Put(ctx, k, "v0"); !noErr("txn: put", err) {
		return
	}
	t, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", "v0"),
			clientv3.Compare(clientv3.CreateRevision(pfx+"txn/missing"), "=", 0)).
		Then(clientv3.OpPut(k, "then"), clientv3.OpGet(k)).
		Else(clientv3.OpPut(k, "else")).
		Commit()
	if noErr("txn: If(value==v0, create(missing)==0) Then(put, get)", err) {
		okResp := t.Succeeded && len(t.Responses) == 2 && t.Responses[0].GetResponsePut() != nil &&
			t.Responses[1].GetResponseRange() != nil
		check("txn: succeeded, responses are put then range", okResp, "%+v", t)
		if okResp {
			kvs := t.Responses[1].GetResponseRange().Kvs
			check("txn: the get inside the txn sees the put before it", len(kvs) == 1 &&
				string(kvs[0].Value) == "then" && kvs[0].ModRevision == t.Header.Revision,
				"kvs %+v header rev %d", kvs, t.Header.Revision)
		}
	}
	t, err = cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", "v0")).
		Then(clientv3.OpPut(k, "then2")).
		Else(clientv3.OpPut(k, "else"), clientv3.OpGet(k)).
		Commit()
	if noErr("txn: If(value==v0) false → Else(put, get)", err) {
		okResp := !t.Succeeded && len(t.Responses) == 2 && t.Responses[1].GetResponseRange() != nil
		check("txn: not succeeded, else branch ran", okResp, "%+v", t)
		if okResp {
			kvs := t.Responses[1].GetResponseRange().Kvs
			check("txn: else branch wrote 'else'", len(kvs) == 1 && string(kvs[0].Value) == "else",
				"kvs %+v", kvs)
		}
	}
	t, err = cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(k), ">", 2), clientv3.Compare(clientv3.ModRevision(k), "<", 1)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if noErr("txn: If(version>2, mod<1) (second false)", err) {
		check("txn: compares are ANDed: not succeeded, nothing ran", !t.Succeeded && len(t.Responses) == 0,
			"%+v", t)
	}
	t, err = cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(k), "=", 3)).
		Then(clientv3.OpDelete(k, clientv3.WithPrevKV())).
		Commit()
	if noErr("txn: If(version==3) Then(delete WithPrevKV)", err) {
		ok := t.Succeeded && len(t.Responses) == 1 && t.Responses[0].GetResponseDeleteRange() != nil &&
			t.Responses[0].GetResponseDeleteRange().Deleted == 1
		check("txn: delete inside a txn", ok, "%+v", t)
	}
}

// ---- Watch ---------------------------------------------------------------------------------

type evSummary struct {
	typ  mvccpb.Event_EventType
	key  string
	val  string
	rev  int64
	prev string
}

func (e evSummary) String() string {
	return fmt.Sprintf("%s %s=%q@%d prev=%q", e.typ, e.key, e.val, e.rev, e.prev)
}

// collect reads events from wch until n arrived or the deadline passes.
func collect(wch clientv3.WatchChan, n int, d time.Duration) ([]evSummary, error) {
	var out []evSummary
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(out) < n {
		select {
		case wr, open := <-wch:
			if !open {
				return out, fmt.Errorf("watch channel closed after %d events", len(out))
			}
			if err := wr.Err(); err != nil {
				return out, err
			}
			for _, ev := range wr.Events {
				s := evSummary{typ: ev.Type, key: string(ev.Kv.Key), val: string(ev.Kv.Value),
					rev: ev.Kv.ModRevision}
				if ev.PrevKv != nil {
					s.prev = string(ev.PrevKv.Value)
				}
				out = append(out, s)
			}
		case <-timer.C:
			return out, fmt.Errorf("timed out after %d of %d events", len(out), n)
		}
	}
	return out, nil
}

func testWatch(cli *clientv3.Client, pfx string) {
	p := pfx + "watch/"
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	wch := cli.Watch(clientv3.WithRequireLeader(wctx), p, clientv3.WithPrefix(), clientv3.WithPrevKV(),
		clientv3.WithCreatedNotify())
	select {
	case wr, open := <-wch:
		if !check("watch: created notification", open && wr.Created && wr.Err() == nil,
			"open %v resp %+v err %v", open, wr, wr.Err()) {
			return
		}
	case <-time.After(callTimeout):
		fail("watch: created notification", "none within %v", callTimeout)
		return
	}

	ctx, cancel := tctx()
	defer cancel()
	r1, err := cli.Put(ctx, p+"x", "1")
	if !noErr("watch: put x", err) {
		return
	}
	r2, err := cli.Put(ctx, p+"y", "2")
	if !noErr("watch: put y", err) {
		return
	}
	r3, err := cli.Delete(ctx, p+"x")
	if !noErr("watch: delete x", err) {
		return
	}
	want := []evSummary{
		{mvccpb.PUT, p + "x", "1", r1.Header.Revision, ""},
		{mvccpb.PUT, p + "y", "2", r2.Header.Revision, ""},
		{mvccpb.DELETE, p + "x", "", r3.Header.Revision, "1"},
	}
	got, err := collect(wch, 3, callTimeout)
	check("watch: receives put x, put y, delete x (prev_kv x=1) in order with their revisions",
		err == nil && len(got) == 3 && got[0] == want[0] && got[1] == want[1] && got[2] == want[2],
		"err %v\ngot  %v\nwant %v", err, got, want)

	// A watch from a past revision replays the same history.
	hctx, hcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer hcancel()
	hch := cli.Watch(hctx, p, clientv3.WithPrefix(), clientv3.WithRev(r1.Header.Revision))
	got, err = collect(hch, 3, callTimeout)
	want[2].prev = ""
	check("watch: WithRev(past revision) replays put x, put y, delete x in order",
		err == nil && len(got) == 3 && got[0] == want[0] && got[1] == want[1] && got[2] == want[2],
		"err %v\ngot  %v\nwant %v", err, got, want)
	hcancel()

	// A single-key watch from the past sees only that key.
	kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer kcancel()
	kch := cli.Watch(kctx, p+"y", clientv3.WithRev(r1.Header.Revision))
	got, err = collect(kch, 1, callTimeout)
	check("watch: single-key watch from the past sees only its key",
		err == nil && len(got) == 1 && got[0] == want[1], "err %v got %v", err, got)
	kcancel()
}

// ---- Compact -------------------------------------------------------------------------------

func testCompact(cli *clientv3.Client, pfx string) {
	k := pfx + "compact/k"
	ctx, cancel := tctx()
	defer cancel()
	var revs []int64
	for i := 0; i < 3; i++ {
		r, err := cli.Put(ctx, k, fmt.Sprintf("v%d", i))
		if !noErr("compact: put", err) {
			return
		}
		revs = append(revs, r.Header.Revision)
	}
	at := revs[2]
	_, err := cli.Compact(ctx, at, clientv3.WithCompactPhysical())
	if !noErr(fmt.Sprintf("compact: Compact(%d) physical", at), err) {
		return
	}
	ok("compact: Compact succeeds")
	_, err = cli.Get(ctx, k, clientv3.WithRev(revs[0]))
	check("compact: Get WithRev(below compaction) fails with rpctypes.ErrCompacted",
		err == rpctypes.ErrCompacted, "err %v (%T)", err, err)
	g, err := cli.Get(ctx, k, clientv3.WithRev(at))
	check("compact: Get WithRev(compaction revision) still works", err == nil && len(g.Kvs) == 1 &&
		string(g.Kvs[0].Value) == "v2", "err %v kvs %+v", err, g)
	_, err = cli.Compact(ctx, at)
	check("compact: compacting the same revision again fails with rpctypes.ErrCompacted",
		err == rpctypes.ErrCompacted, "err %v (%T)", err, err)
	_, err = cli.Compact(ctx, at+1000000)
	check("compact: compacting a future revision fails with rpctypes.ErrFutureRev",
		err == rpctypes.ErrFutureRev, "err %v (%T)", err, err)

	wctx, wcancel := context.WithTimeout(context.Background(), callTimeout)
	defer wcancel()
	wch := cli.Watch(wctx, k, clientv3.WithRev(revs[0]))
	select {
	case wr, open := <-wch:
		check("compact: Watch from a compacted revision is canceled with ErrCompacted and compact_revision",
			open && wr.Err() == rpctypes.ErrCompacted && wr.CompactRevision == at,
			"open %v err %v compact_revision %d (want %d)", open, wr.Err(), wr.CompactRevision, at)
	case <-wctx.Done():
		fail("compact: Watch from a compacted revision is canceled", "no response in %v", callTimeout)
	}
}

// ---- Lease ---------------------------------------------------------------------------------

func testLease(cli *clientv3.Client, pfx string) {
	k := pfx + "lease/k"
	ctx, cancel := context.WithTimeout(context.Background(), 4*callTimeout)
	defer cancel()
	gr, err := cli.Grant(ctx, 30)
	if !noErr("lease: Grant(30)", err) {
		return
	}
	check("lease: Grant returns an ID and TTL 30", gr.ID > 0 && gr.TTL == 30, "%+v", gr)
	if _, err = cli.Put(ctx, k, "leased", clientv3.WithLease(gr.ID)); !noErr("lease: Put WithLease", err) {
		return
	}
	g, err := cli.Get(ctx, k)
	if noErr("lease: get the leased key", err) {
		check("lease: the key carries the lease ID", len(g.Kvs) == 1 && clientv3.LeaseID(g.Kvs[0].Lease) == gr.ID,
			"kvs %+v lease %x", g.Kvs, gr.ID)
	}
	ka, err := cli.KeepAliveOnce(ctx, gr.ID)
	if noErr("lease: KeepAliveOnce", err) {
		check("lease: KeepAliveOnce returns the ID and TTL 30", ka.ID == gr.ID && ka.TTL == 30, "%+v", ka)
	}
	tl, err := cli.TimeToLive(ctx, gr.ID, clientv3.WithAttachedKeys())
	if noErr("lease: TimeToLive WithAttachedKeys", err) {
		keys := []string{}
		for _, kk := range tl.Keys {
			keys = append(keys, string(kk))
		}
		check("lease: TimeToLive: granted 30, 0 < TTL <= 30, keys = [the leased key]",
			tl.ID == gr.ID && tl.GrantedTTL == 30 && tl.TTL > 0 && tl.TTL <= 30 && eq(keys, []string{k}),
			"%+v keys %v", tl, keys)
	}
	ll, err := cli.Leases(ctx)
	if noErr("lease: Leases", err) {
		found := false
		for _, l := range ll.Leases {
			found = found || l.ID == gr.ID
		}
		check("lease: Leases lists the lease", found, "%+v", ll.Leases)
	}
	if _, err = cli.Revoke(ctx, gr.ID); !noErr("lease: Revoke", err) {
		return
	}
	ok("lease: Revoke succeeds")
	g, err = cli.Get(ctx, k)
	if noErr("lease: get after revoke", err) {
		check("lease: the attached key is gone after Revoke", g.Count == 0 && len(g.Kvs) == 0, "%+v", g.Kvs)
	}
	tl, err = cli.TimeToLive(ctx, gr.ID)
	check("lease: TimeToLive of a revoked lease gives TTL -1", err == nil && tl.TTL == -1,
		"err %v resp %+v", err, tl)
	ka, err = cli.KeepAliveOnce(ctx, gr.ID)
	check("lease: KeepAliveOnce of a revoked lease gives rpctypes.ErrLeaseNotFound (reply TTL 0)",
		err == rpctypes.ErrLeaseNotFound, "err %v (%T) reply %s", err, err, kaString(ka))
	_, err = cli.Revoke(ctx, gr.ID)
	check("lease: revoking it again gives rpctypes.ErrLeaseNotFound",
		err == rpctypes.ErrLeaseNotFound, "err %v (%T)", err, err)
}

// ---- concurrency: Session, Mutex -----------------------------------------------------------

func testSession(cli *clientv3.Client, pfx string) {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if !noErr("session: NewSession(TTL 10)", err) {
		return
	}
	ok("session: NewSession(TTL 10) grants a lease and starts its keep-alives")
	ctx, cancel := tctx()
	defer cancel()
	tl, err := cli.TimeToLive(ctx, s.Lease())
	if noErr("session: TimeToLive of the session lease", err) {
		check("session: its lease exists with granted TTL 10", tl.GrantedTTL == 10 && tl.TTL > 0,
			"%+v", tl)
	}
	// Survive past one keep-alive period (TTL/3) and past the TTL itself.
	select {
	case <-s.Done():
		fail("session: stays alive for 11 s (keep-alives reach the leader)", "Done() closed")
	case <-time.After(11 * time.Second):
		ok("session: stays alive for 11 s (keep-alives reach the leader)")
	}
	lease := s.Lease()
	if noErr("session: Close", s.Close()) {
		ctx2, cancel2 := tctx()
		defer cancel2()
		tl, err = cli.TimeToLive(ctx2, lease)
		check("session: Close revokes its lease (TTL -1)", err == nil && tl.TTL == -1, "err %v %+v", err, tl)
	}
}

type acquisition struct {
	who       int
	createRev int64
	hdrRev    int64
	key       string
}

func testMutex(endpoints []string, pfx string) {
	name := pfx + "mutex"
	var (
		inside   int32
		counter  int // deliberately unsynchronised apart from the lock under test
		overlaps int32
		recMu    sync.Mutex
		acqs     []acquisition
		wg       sync.WaitGroup
		errsMu   sync.Mutex
		errs     []string
	)
	addErr := func(f string, a ...interface{}) {
		errsMu.Lock()
		errs = append(errs, fmt.Sprintf(f, a...))
		errsMu.Unlock()
	}
	worker := func(id int) {
		defer wg.Done()
		cli, err := newClient(endpoints)
		if err != nil {
			addErr("worker %d: client: %v", id, err)
			return
		}
		defer cli.Close()
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			addErr("worker %d: session: %v", id, err)
			return
		}
		defer s.Close()
		m := concurrency.NewMutex(s, name)
		for i := 0; i < lockRounds; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := m.Lock(ctx); err != nil {
				cancel()
				addErr("worker %d round %d: Lock: %v", id, i, err)
				return
			}
			if atomic.AddInt32(&inside, 1) != 1 {
				atomic.AddInt32(&overlaps, 1)
			}
			g, err := cli.Get(ctx, m.Key())
			a := acquisition{who: id, key: m.Key()}
			if m.Header() != nil {
				a.hdrRev = m.Header().Revision
			}
			if err != nil || len(g.Kvs) != 1 {
				addErr("worker %d round %d: get own lock key %s: err %v kvs %v", id, i, m.Key(), err, g)
			} else {
				a.createRev = g.Kvs[0].CreateRevision
			}
			recMu.Lock()
			acqs = append(acqs, a)
			recMu.Unlock()
			c := counter
			time.Sleep(2 * time.Millisecond) // widen the window for a lost update
			counter = c + 1
			atomic.AddInt32(&inside, -1)
			if err := m.Unlock(ctx); err != nil {
				cancel()
				addErr("worker %d round %d: Unlock: %v", id, i, err)
				return
			}
			cancel()
		}
	}
	wg.Add(2)
	go worker(1)
	go worker(2)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(180 * time.Second):
		fail("mutex: two goroutines lock/unlock 20 times each", "did not finish in 180 s")
		return
	}
	check("mutex: two goroutines lock/unlock 20 times each without error", len(errs) == 0,
		"%s", strings.Join(errs, "\n"))
	check("mutex: mutual exclusion (never two holders; shared counter == 40)",
		overlaps == 0 && counter == 2*lockRounds, "overlaps %d counter %d", overlaps, counter)
	mono := len(acqs) == 2*lockRounds
	var detail []string
	who := map[int]int{}
	for i, a := range acqs {
		who[a.who]++
		if a.createRev <= 0 || a.hdrRev < a.createRev {
			mono = false
			detail = append(detail, fmt.Sprintf("#%d %+v: header revision below the key's create revision", i, a))
		}
		if i > 0 && a.createRev <= acqs[i-1].createRev {
			mono = false
			detail = append(detail, fmt.Sprintf("#%d %+v after %+v: create revision did not increase", i, a, acqs[i-1]))
		}
		if i > 0 && a.hdrRev < acqs[i-1].hdrRev {
			mono = false
			detail = append(detail, fmt.Sprintf("#%d %+v after %+v: header revision went back", i, a, acqs[i-1]))
		}
	}
	check("mutex: every acquisition's lock key create revision increases (header revision ≥ it, non-decreasing)",
		mono, "%d acquisitions\n%s", len(acqs), strings.Join(detail, "\n"))
	check("mutex: both goroutines acquired 20 times", who[1] == lockRounds && who[2] == lockRounds, "%v", who)
	ctx, cancel := tctx()
	defer cancel()
	g, err := func() (*clientv3.GetResponse, error) {
		cli, err := newClient(endpoints)
		if err != nil {
			return nil, err
		}
		defer cli.Close()
		return cli.Get(ctx, name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	}()
	check("mutex: no lock keys left after the sessions closed", err == nil && g.Count == 0, "err %v resp %+v", err, g)
}

// ---- concurrency: Election -----------------------------------------------------------------

func testElection(endpoints []string, pfx string) {
	name := pfx + "election"
	var clis []*clientv3.Client
	var sess []*concurrency.Session
	defer func() {
		for _, s := range sess {
			s.Close()
		}
		for _, c := range clis {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ { // two candidates and an observer
		c, err := newClient(endpoints)
		if !noErr("election: client", err) {
			return
		}
		clis = append(clis, c)
		s, err := concurrency.NewSession(c, concurrency.WithTTL(10))
		if !noErr("election: session", err) {
			return
		}
		sess = append(sess, s)
	}
	e1 := concurrency.NewElection(sess[0], name)
	e2 := concurrency.NewElection(sess[1], name)
	obs := concurrency.NewElection(sess[2], name)

	octx, ocancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer ocancel()
	och := obs.Observe(octx)
	var observed []string
	obsDone := make(chan struct{})
	go func() {
		defer close(obsDone)
		for r := range och {
			if len(r.Kvs) == 0 {
				continue
			}
			v := string(r.Kvs[0].Value)
			if len(observed) == 0 || observed[len(observed)-1] != v {
				observed = append(observed, v)
			}
			if v == "c2" {
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e1.Campaign(ctx, "c1"); !noErr("election: candidate 1 Campaign", err) {
		return
	}
	ok("election: candidate 1 wins the uncontested Campaign")
	c2err := make(chan error, 1)
	go func() { c2err <- e2.Campaign(ctx, "c2") }()
	// Candidate 2 must block while 1 leads: give it time to reach its wait.
	select {
	case err := <-c2err:
		fail("election: candidate 2's Campaign blocks while candidate 1 leads", "returned %v", err)
		return
	case <-time.After(1500 * time.Millisecond):
		ok("election: candidate 2's Campaign blocks while candidate 1 leads")
	}
	lctx, lcancel := tctx()
	defer lcancel()
	l, err := e2.Leader(lctx)
	if noErr("election: Leader()", err) {
		check("election: Leader() returns candidate 1 (c1, its key)", len(l.Kvs) == 1 &&
			string(l.Kvs[0].Value) == "c1" && string(l.Kvs[0].Key) == e1.Key(),
			"kvs %+v e1 key %s", l.Kvs, e1.Key())
	}
	if err := e1.Resign(lctx); !noErr("election: candidate 1 Resign", err) {
		return
	}
	select {
	case err := <-c2err:
		check("election: Resign hands leadership to candidate 2 (its Campaign returns)", err == nil, "err %v", err)
	case <-time.After(30 * time.Second):
		fail("election: Resign hands leadership to candidate 2", "Campaign still blocked after 30 s")
		return
	}
	l, err = e1.Leader(lctx)
	if noErr("election: Leader() after Resign", err) {
		check("election: Leader() now returns candidate 2", len(l.Kvs) == 1 && string(l.Kvs[0].Value) == "c2" &&
			string(l.Kvs[0].Key) == e2.Key(), "kvs %+v e2 key %s", l.Kvs, e2.Key())
	}
	select {
	case <-obsDone:
	case <-time.After(30 * time.Second):
	}
	ocancel()
	<-obsDone
	check("election: Observe sees c1 then c2", eq(observed, []string{"c1", "c2"}), "observed %v", observed)
	if err := e2.Resign(lctx); noErr("election: candidate 2 Resign", err) {
		_, err = e2.Leader(lctx)
		check("election: no leader after both resigned (ErrElectionNoLeader)",
			err == concurrency.ErrElectionNoLeader, "err %v", err)
	}
}

// ---- Maintenance / Cluster (cheap, used by every client) ----------------------------------

func testCluster(cli *clientv3.Client, endpoints []string) {
	ctx, cancel := tctx()
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if noErr("cluster: MemberList", err) {
		check(fmt.Sprintf("cluster: MemberList has %d member(s) with client URLs", len(endpoints)),
			len(ml.Members) == len(endpoints) && func() bool {
				for _, m := range ml.Members {
					if len(m.ClientURLs) == 0 || m.ID == 0 {
						return false
					}
				}
				return true
			}(), "%+v", ml.Members)
	}
	for _, ep := range endpoints {
		st, err := cli.Status(ctx, ep)
		if noErr("maintenance: Status "+ep, err) {
			check("maintenance: Status "+ep+" names a leader and a 3.x version",
				st.Leader != 0 && strings.HasPrefix(st.Version, "3.") && st.DbSize > 0,
				"%+v", st)
		}
	}
}

func main() {
	eps := flag.String("endpoints", "127.0.0.1:2479", "comma-separated client endpoints")
	only := flag.String("only", "", "comma-separated sections to run (kv,txn,watch,compact,lease,cluster,session,mutex,election); default all")
	flag.Parse()
	endpoints := strings.Split(*eps, ",")
	sections := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s != "" {
			sections[s] = true
		}
	}
	want := func(s string) bool { return len(sections) == 0 || sections[s] }

	cli, err := newClient(endpoints)
	if err != nil {
		fail("client: clientv3.New", "error: %v", err)
		os.Exit(1)
	}
	defer cli.Close()
	pfx := fmt.Sprintf("compat-go/%d-%d/", os.Getpid(), time.Now().UnixNano())

	if want("cluster") {
		testCluster(cli, endpoints)
	}
	if want("kv") {
		testKV(cli, pfx)
	}
	if want("txn") {
		testTxn(cli, pfx)
	}
	if want("watch") {
		testWatch(cli, pfx)
	}
	if want("lease") {
		testLease(cli, pfx)
	}
	if want("compact") {
		testCompact(cli, pfx)
	}
	if want("session") {
		testSession(cli, pfx)
	}
	if want("mutex") {
		testMutex(endpoints, pfx)
	}
	if want("election") {
		testElection(endpoints, pfx)
	}
	if failures > 0 {
		fmt.Printf("# %d check(s) failed\n", failures)
		os.Exit(1)
	}
	fmt.Println("# all checks passed")
}

func kaString(r *clientv3.LeaseKeepAliveResponse) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{ID:%x TTL:%d member_id:%x revision:%d}", int64(r.ID), r.TTL, r.ResponseHeader.GetMemberId(), r.ResponseHeader.GetRevision())
}
