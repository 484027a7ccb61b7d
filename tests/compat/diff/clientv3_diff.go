// clientv3_diff is the Go clientv3 session of the differential runs (run_diff.py): etcd 3.4's
// own client (clientv3 and clientv3/concurrency from Debian's golang-etcd-server-dev) runs
// the same steps against real etcd and against latch, and prints one line per step,
// "<step> <result>", holding revisions, values, counts and error texts but no ids, ports or
// timings.
//
// Usage: clientv3_diff -endpoints 127.0.0.1:2479,127.0.0.1:12479,...
//
// The session talks to ONE member, a follower when there is one (found with Status), so
// lease keep-alives and time-to-live queries are forwarded by the server to its leader.
// Build offline in GOPATH mode (run_diff.py does):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(mktemp -d) GOFLAGS= GOPROXY=off \
//	    go build -o clientv3_diff clientv3_diff.go
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

const callTimeout = 10 * time.Second

func out(step string, format string, args ...interface{}) {
	fmt.Printf("%s %s\n", step, fmt.Sprintf(format, args...))
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

func kvText(kv *mvccpb.KeyValue) string {
	lease := "0"
	if kv.Lease != 0 {
		lease = "yes"
	}
	return fmt.Sprintf("%s=%s(c%d,m%d,v%d,l%s)", kv.Key, kv.Value, kv.CreateRevision,
		kv.ModRevision, kv.Version, lease)
}

func kvsText(kvs []*mvccpb.KeyValue) string {
	parts := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		parts = append(parts, kvText(kv))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func get(c *clientv3.Client, step, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	cx, cancel := ctx()
	defer cancel()
	r, err := c.Get(cx, key, opts...)
	if err != nil {
		out(step, "error %v", err)
		return nil
	}
	out(step, "rev=%d count=%d more=%v kvs=%s", r.Header.Revision, r.Count, r.More, kvsText(r.Kvs))
	return r
}

// put prints the outcome and returns the new revision (0 on error).
func put(c *clientv3.Client, step, key, val string, opts ...clientv3.OpOption) int64 {
	cx, cancel := ctx()
	defer cancel()
	r, err := c.Put(cx, key, val, opts...)
	if err != nil {
		out(step, "error %v", err)
		return 0
	}
	prev := "-"
	if r.PrevKv != nil {
		prev = kvText(r.PrevKv)
	}
	out(step, "rev=%d prev=%s", r.Header.Revision, prev)
	return r.Header.Revision
}

func del(c *clientv3.Client, step, key string, opts ...clientv3.OpOption) {
	cx, cancel := ctx()
	defer cancel()
	r, err := c.Delete(cx, key, opts...)
	if err != nil {
		out(step, "error %v", err)
		return
	}
	out(step, "rev=%d deleted=%d prev=%s", r.Header.Revision, r.Deleted, kvsText(r.PrevKvs))
}

func txn(c *clientv3.Client, step string, cmps []clientv3.Cmp, then, els []clientv3.Op) {
	cx, cancel := ctx()
	defer cancel()
	r, err := c.Txn(cx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		out(step, "error %v", err)
		return
	}
	parts := []string{}
	for _, rp := range r.Responses {
		switch {
		case rp.GetResponseRange() != nil:
			rr := rp.GetResponseRange()
			parts = append(parts, fmt.Sprintf("range(rev=%d,%s)", rr.Header.Revision, kvsText(rr.Kvs)))
		case rp.GetResponsePut() != nil:
			parts = append(parts, fmt.Sprintf("put(rev=%d)", rp.GetResponsePut().Header.Revision))
		case rp.GetResponseDeleteRange() != nil:
			d := rp.GetResponseDeleteRange()
			parts = append(parts, fmt.Sprintf("del(rev=%d,%d)", d.Header.Revision, d.Deleted))
		case rp.GetResponseTxn() != nil:
			t := rp.GetResponseTxn()
			parts = append(parts, fmt.Sprintf("txn(rev=%d,%v,%d)", t.Header.Revision, t.Succeeded,
				len(t.Responses)))
		}
	}
	out(step, "rev=%d succeeded=%v responses=%s", r.Header.Revision, r.Succeeded,
		strings.Join(parts, " "))
}

// pickFollower returns an endpoint whose member is not the leader (the first one if none).
func pickFollower(c *clientv3.Client, eps []string) string {
	for _, ep := range eps {
		cx, cancel := ctx()
		st, err := c.Status(cx, ep)
		cancel()
		if err == nil && st.Leader != 0 && st.Leader != st.Header.MemberId {
			return ep
		}
	}
	return eps[0]
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	flag.Parse()
	eps := strings.Split(*endpoints, ",")
	all, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(2)
	}
	ep := pickFollower(all, eps)
	all.Close()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(2)
	}
	defer c.Close()

	// KV. Revisions are relative to the first put (base): the session may follow others.
	base := put(c, "put-a", "/go/a", "1")
	put(c, "put-b", "/go/b", "2")
	put(c, "put-c", "/go/c", "3")
	put(c, "put-a2", "/go/a", "11", clientv3.WithPrevKV())
	put(c, "put-empty-key", "", "x")
	put(c, "put-ignore-value", "/go/a", "", clientv3.WithIgnoreValue())
	put(c, "put-ignore-value-missing", "/go/none", "", clientv3.WithIgnoreValue())
	get(c, "get-a", "/go/a")
	get(c, "get-prefix", "/go/", clientv3.WithPrefix())
	get(c, "get-from-key", "/go/b", clientv3.WithFromKey())
	get(c, "get-limit", "/go/", clientv3.WithPrefix(), clientv3.WithLimit(2))
	get(c, "get-sort-create-desc", "/go/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(2))
	get(c, "get-sort-value", "/go/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))
	get(c, "get-sort-version", "/go/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend))
	get(c, "get-rev", "/go/a", clientv3.WithRev(base+1))
	get(c, "get-future-rev", "/go/a", clientv3.WithRev(100000))
	get(c, "get-count-only", "/go/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	get(c, "get-keys-only", "/go/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	get(c, "get-serializable", "/go/a", clientv3.WithSerializable())
	get(c, "get-min-mod", "/go/", clientv3.WithPrefix(), clientv3.WithMinModRev(base+3))
	get(c, "get-max-mod", "/go/", clientv3.WithPrefix(), clientv3.WithMaxModRev(base+2))
	get(c, "get-min-create", "/go/", clientv3.WithPrefix(), clientv3.WithMinCreateRev(base+2))
	get(c, "get-max-create", "/go/", clientv3.WithPrefix(), clientv3.WithMaxCreateRev(base+1))
	get(c, "get-range", "/go/a", clientv3.WithRange("/go/c"))

	// Txn, nested included
	txn(c, "txn-value", []clientv3.Cmp{clientv3.Compare(clientv3.Value("/go/a"), "=", "11")},
		[]clientv3.Op{clientv3.OpPut("/go/t", "t"), clientv3.OpGet("/go/a")},
		[]clientv3.Op{clientv3.OpPut("/go/t", "f")})
	txn(c, "txn-version", []clientv3.Cmp{clientv3.Compare(clientv3.Version("/go/a"), ">", 5)},
		[]clientv3.Op{clientv3.OpDelete("/go/t")},
		[]clientv3.Op{clientv3.OpGet("/go/t"), clientv3.OpDelete("/go/t", clientv3.WithPrevKV())})
	txn(c, "txn-create-mod", []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision("/go/missing"), "=", 0),
		clientv3.Compare(clientv3.ModRevision("/go/b"), "<", 1000)},
		[]clientv3.Op{clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value("/go/b"), "=", "2")},
			[]clientv3.Op{clientv3.OpPut("/go/nested", "yes"), clientv3.OpGet("/go/nested")},
			[]clientv3.Op{clientv3.OpPut("/go/nested", "no")})}, nil)
	txn(c, "txn-lease-cmp", []clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue("/go/a"), "=", 0)},
		[]clientv3.Op{clientv3.OpGet("/go/", clientv3.WithPrefix(), clientv3.WithKeysOnly())}, nil)
	txn(c, "txn-multi-key", []clientv3.Cmp{
		clientv3.Compare(clientv3.Version("/go/").WithPrefix(), ">", 0)},
		[]clientv3.Op{clientv3.OpPut("/go/m", "m")}, nil)
	txn(c, "txn-duplicate", nil, []clientv3.Op{clientv3.OpPut("/go/d", "1"),
		clientv3.OpPut("/go/d", "2")}, nil)
	txn(c, "txn-missing-value", []clientv3.Cmp{
		clientv3.Compare(clientv3.Value("/go/missing"), "!=", "x")},
		[]clientv3.Op{clientv3.OpPut("/go/never", "1")}, nil)

	// Delete
	del(c, "del-one", "/go/c", clientv3.WithPrevKV())
	del(c, "del-none", "/go/none")
	del(c, "del-prefix", "/go/n", clientv3.WithPrefix())

	// Watch: history from revision 2, bounded
	{
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		events := []string{}
		for wr := range c.Watch(wctx, "/go/", clientv3.WithPrefix(), clientv3.WithRev(base+1),
			clientv3.WithPrevKV()) {
			if err := wr.Err(); err != nil {
				events = append(events, "error "+err.Error())
				break
			}
			for _, ev := range wr.Events {
				prev := "-"
				if ev.PrevKv != nil {
					prev = string(ev.PrevKv.Value)
				}
				events = append(events, fmt.Sprintf("%s:%s@%d(prev=%s)", ev.Type, ev.Kv.Key,
					ev.Kv.ModRevision, prev))
			}
			if len(events) >= 10 {
				break
			}
		}
		cancel()
		out("watch-history", "%s", strings.Join(events, " "))
	}

	// Lease (renew and time-to-live go through a follower: forwarded to the leader)
	{
		cx, cancel := ctx()
		g, err := c.Grant(cx, 60)
		cancel()
		if err != nil {
			out("lease-grant", "error %v", err)
		} else {
			out("lease-grant", "ttl=%d", g.TTL)
			put(c, "put-leased", "/go/leased", "v", clientv3.WithLease(g.ID))
			cx, cancel = ctx()
			ka, err := c.KeepAliveOnce(cx, g.ID)
			cancel()
			if err != nil {
				out("lease-keepalive-once", "error %v", err)
			} else {
				out("lease-keepalive-once", "ttl=%d", ka.TTL)
			}
			cx, cancel = ctx()
			tl, err := c.TimeToLive(cx, g.ID, clientv3.WithAttachedKeys())
			cancel()
			if err != nil {
				out("lease-ttl", "error %v", err)
			} else {
				keys := []string{}
				for _, k := range tl.Keys {
					keys = append(keys, string(k))
				}
				sort.Strings(keys) // etcd lists them in no fixed order
				out("lease-ttl", "granted=%d remaining-ok=%v keys=%v", tl.GrantedTTL,
					tl.TTL > 0 && tl.TTL <= 60, keys)
			}
			cx, cancel = ctx()
			ls, err := c.Leases(cx)
			cancel()
			if err != nil {
				out("lease-list", "error %v", err)
			} else {
				found := false // other sessions' leases may come and go: only ours
				for _, l := range ls.Leases {
					found = found || l.ID == g.ID
				}
				out("lease-list", "found=%v", found)
			}
			// a KeepAlive stream kept open across several renewals
			kctx, kcancel := context.WithCancel(context.Background())
			ch, err := c.KeepAlive(kctx, g.ID)
			if err != nil {
				out("lease-keepalive-stream", "error %v", err)
			} else {
				r, okr := <-ch
				out("lease-keepalive-stream", "first=%v ttl=%d", okr, r.TTL)
			}
			kcancel()
			cx, cancel = ctx()
			_, err = c.Revoke(cx, g.ID)
			cancel()
			out("lease-revoke", "err=%v", err)
			get(c, "get-after-revoke", "/go/leased")
			cx, cancel = ctx()
			tl, err = c.TimeToLive(cx, g.ID)
			cancel()
			if err != nil {
				out("lease-ttl-gone", "error %v", err)
			} else {
				out("lease-ttl-gone", "ttl=%d granted=%d", tl.TTL, tl.GrantedTTL)
			}
			cx, cancel = ctx()
			_, err = c.KeepAliveOnce(cx, g.ID)
			cancel()
			out("lease-keepalive-gone", "error %v", err)
			cx, cancel = ctx()
			_, err = c.Revoke(cx, g.ID)
			cancel()
			out("lease-revoke-again", "error %v", err)
		}
		put(c, "put-unknown-lease", "/go/x", "v", clientv3.WithLease(0x1234abcd))
		cx, cancel = ctx()
		_, err = c.Grant(cx, 9000000001)
		cancel()
		out("lease-grant-too-big", "error %v", err)
	}

	// Mutex and Election (clientv3/concurrency)
	{
		s, err := concurrency.NewSession(c, concurrency.WithTTL(10))
		if err != nil {
			out("session", "error %v", err)
		} else {
			m := concurrency.NewMutex(s, "/go/lock")
			cx, cancel := ctx()
			err = m.Lock(cx)
			cancel()
			out("mutex-lock", "err=%v", err)
			get(c, "mutex-keys", "/go/lock/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			cx, cancel = ctx()
			err = m.Unlock(cx)
			cancel()
			out("mutex-unlock", "err=%v", err)
			e := concurrency.NewElection(s, "/go/elect")
			cx, cancel = ctx()
			err = e.Campaign(cx, "p1")
			cancel()
			out("elect-campaign", "err=%v", err)
			cx, cancel = ctx()
			err = e.Proclaim(cx, "p2")
			cancel()
			out("elect-proclaim", "err=%v", err)
			cx, cancel = ctx()
			l, err := e.Leader(cx)
			cancel()
			if err != nil {
				out("elect-leader", "error %v", err)
			} else {
				out("elect-leader", "value=%s", l.Kvs[0].Value)
			}
			cx, cancel = ctx()
			err = e.Resign(cx)
			cancel()
			out("elect-resign", "err=%v", err)
			cx, cancel = ctx()
			_, err = e.Leader(cx)
			cancel()
			out("elect-leader-none", "err=%v", err)
			s.Close()
		}
	}

	// Compaction
	{
		cx, cancel := ctx()
		_, err := c.Compact(cx, base+5)
		cancel()
		out("compact", "err=%v", err)
		cx, cancel = ctx()
		_, err = c.Compact(cx, base+2)
		cancel()
		out("compact-again", "err=%v", err)
		get(c, "get-compacted", "/go/a", clientv3.WithRev(base+1))
		get(c, "get-at-compact", "/go/", clientv3.WithPrefix(), clientv3.WithRev(base+5))
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		wr := <-c.Watch(wctx, "/go/a", clientv3.WithRev(base+1))
		wcancel()
		out("watch-compacted", "canceled=%v compact=%d err=%v", wr.Canceled, wr.CompactRevision,
			wr.Err())
	}

	// Cluster and maintenance (shapes only: ids, versions and sizes are the servers' own)
	{
		cx, cancel := ctx()
		ml, err := c.MemberList(cx)
		cancel()
		if err != nil {
			out("member-list", "error %v", err)
		} else {
			names := []string{}
			for _, m := range ml.Members {
				names = append(names, fmt.Sprintf("%s(peers=%d,clients=%d,learner=%v)", m.Name,
					len(m.PeerURLs), len(m.ClientURLs), m.IsLearner))
			}
			sort.Strings(names)
			out("member-list", "%v", names)
		}
		cx, cancel = ctx()
		st, err := c.Status(cx, ep)
		cancel()
		if err != nil {
			out("status", "error %v", err)
		} else {
			out("status", "rev=%d has-leader=%v version-3.4=%v errors=%v", st.Header.Revision,
				st.Leader != 0, strings.HasPrefix(st.Version, "3.4"), st.Errors)
		}
		cx, cancel = ctx()
		al, err := c.AlarmList(cx)
		cancel()
		if err != nil {
			out("alarm-list", "error %v", err)
		} else {
			out("alarm-list", "alarms=%d", len(al.Alarms))
		}
		cx, cancel = ctx()
		_, err = c.Defragment(cx, ep)
		cancel()
		out("defragment", "err=%v", err)
	}
	get(c, "final", "/go/", clientv3.WithPrefix())
}
