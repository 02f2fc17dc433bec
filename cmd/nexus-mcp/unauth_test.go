package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-mcp/nexus-mcp/cmd/nexus-mcp/internal/httpserver"
	"github.com/nexus-mcp/nexus-mcp/memory"
	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (127.0.0.0/8 is all loopback on Linux), so a test can play
// several sources.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}}
}

// postFrom posts a ping with hdr through c and returns the status and the
// Retry-After header.
func postFrom(t *testing.T, c *http.Client, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("POST: %v", err)
		return 0, ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// dbBytes is the size of the test database: SQLite pages in use (WAL
// included, as a reader sees them), or on PostgreSQL the tables, indexes
// and TOAST of the test's schema.
func dbBytes(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var n int64
	var err error
	if memtest.Postgres() {
		err = db.QueryRow(`SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'`).Scan(&n)
	} else {
		var pages, size int64
		if err = db.QueryRow(`PRAGMA page_count`).Scan(&pages); err == nil {
			err = db.QueryRow(`PRAGMA page_size`).Scan(&size)
		}
		n = pages * size
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// unauthRefusals sums the refusals recorded in the unauthenticated audit
// chain: an aggregated row counts its "count", any other row one.
func unauthRefusals(t *testing.T, db *sql.DB) (rows, refusals int64) {
	t.Helper()
	rs, err := db.Query(`SELECT detail FROM audit_log WHERE tenant_id = $1`, memory.UnauthenticatedTenant)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var detail string
		if err := rs.Scan(&detail); err != nil {
			t.Fatal(err)
		}
		var d struct {
			Count int64 `json:"count"`
		}
		_ = json.Unmarshal([]byte(detail), &d)
		rows++
		refusals += max(d.Count, 1)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, refusals
}

// TestHTTPUnauthenticatedFloodBounded: 10,000 requests with a wrong API
// key, from one source (127.0.0.2) and spread over 300 sources
// (127.0.1.x-127.0.2.x), must not grow the database by more than 100 KB,
// yet every refusal is still counted in the unauthenticated audit chain,
// which still verifies. Positive controls: a valid key from another source
// works during the flood, a key that authenticated before works from the
// flooding source too, and a new key from it once its refusals drained.
func TestHTTPUnauthenticatedFloodBounded(t *testing.T) {
	// Always the full 10,000 (also under -race, about 30 s): the growth
	// is bounded per interval, not per request, so a smaller flood scaled
	// up would misstate the figure.
	const flood = 10000
	worst := int64(0)
	for _, nSources := range []int{1, 300} {
		t.Run(fmt.Sprintf("%d sources", nSources), func(t *testing.T) {
			clock := &fakeClock{t: time.Now()}
			e := startHTTP(t, httpTestOpts{setup: func(c *httpserver.Config) { c.Now = clock.now }})
			key := e.newKey(t, memory.NewKey{TenantID: "flood-a", UserID: "alice"})
			bad := key[:len(key)-4] + "AAAA"
			if bad == key {
				bad = key[:len(key)-4] + "BBBB"
			}
			legit := clientFrom("127.0.0.1")
			// Warm-up, so that the figure is the flood's growth, not the
			// first page of each table (PostgreSQL allocates 8 KB pages):
			// one session of the valid key, one refused request.
			if status, _ := postFrom(t, legit, e.url, bearer(key), rawInitialize); status != http.StatusOK {
				t.Fatalf("valid key before the flood = %d, want 200", status)
			}
			if status, _ := postFrom(t, legit, e.url, bearer(bad), rawInitialize); status != http.StatusUnauthorized {
				t.Fatalf("wrong key before the flood = %d, want 401", status)
			}
			flushDenials(t, e)
			db := openRO(t, e.db)
			before := dbBytes(t, db)
			rowsBefore, recordedBefore := unauthRefusals(t, db)

			const ping = `{"jsonrpc":"2.0","id":1,"method":"ping"}`
			attackers := make([]*http.Client, nSources)
			for i := range attackers {
				ip := "127.0.0.2"
				if nSources > 1 {
					ip = fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
				}
				attackers[i] = clientFrom(ip)
			}
			var refused, limited, other, retryAfterMissing, next atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > flood {
							return
						}
						status, retry := postFrom(t, attackers[int(i)%nSources], e.url, bearer(bad), ping)
						switch status {
						case http.StatusUnauthorized:
							refused.Add(1)
						case http.StatusTooManyRequests:
							limited.Add(1)
							if retry == "" {
								retryAfterMissing.Add(1)
							}
						default:
							other.Add(1)
						}
					}
				})
			}
			// during the flood: a valid key from another source works
			legitOK := 0
			for range 5 {
				if status, _ := postFrom(t, legit, e.url, bearer(key), rawInitialize); status == http.StatusOK {
					legitOK++
				}
			}
			wg.Wait()
			if legitOK != 5 {
				t.Errorf("valid key from another source during the flood: %d/5 initialize = 200", legitOK)
			}
			if n := other.Load(); n != 0 {
				t.Errorf("%d flood requests got neither 401 nor 429", n)
			}
			if n := retryAfterMissing.Load(); n != 0 {
				t.Errorf("%d 429s without Retry-After", n)
			}

			flushDenials(t, e)
			growth := dbBytes(t, db) - before
			rowsAfter, recorded := unauthRefusals(t, db)
			t.Logf("flood: %d requests from %d sources, %d x 401, %d x 429; unauthenticated chain +%d rows recording %d refusals; db +%d bytes",
				flood, nSources, refused.Load(), limited.Load(), rowsAfter-rowsBefore, recorded-recordedBefore, growth)
			worst = max(worst, growth*10000/flood)
			if growth > 100<<10 {
				t.Errorf("database grew by %d bytes for %d refused requests, want <= 100 KB", growth, flood)
			}
			if want := refused.Load() + limited.Load(); recorded-recordedBefore != want {
				t.Errorf("unauthenticated chain records %d refusals of the flood, want %d (every 401 and 429)", recorded-recordedBefore, want)
			}
			chk, err := e.store.VerifyAudit(context.Background(), memory.UnauthenticatedTenant)
			if err != nil || !chk.OK || chk.Rows == 0 {
				t.Errorf("VerifyAudit(%s) = %+v, %v; want an intact, non-empty chain", memory.UnauthenticatedTenant, chk, err)
			}

			// A key that authenticated before works even from the flooding
			// source; a key never seen there waits for the refusals to
			// drain (when the source was limited), then works.
			if status, _ := postFrom(t, attackers[0], e.url, bearer(key), rawInitialize); status != http.StatusOK {
				t.Errorf("known valid key from a flooding source = %d, want 200", status)
			}
			key2 := e.newKey(t, memory.NewKey{TenantID: "flood-a", UserID: "bob"})
			status, _ := postFrom(t, attackers[0], e.url, bearer(key2), rawInitialize)
			if limited.Load() > 0 && status != http.StatusTooManyRequests {
				t.Errorf("new valid key from the limited source = %d, want 429 until its refusals drain", status)
			}
			clock.advance(time.Hour)
			if status, _ := postFrom(t, attackers[0], e.url, bearer(key2), rawInitialize); status != http.StatusOK {
				t.Errorf("new valid key from a flooding source after its refusals drained = %d, want 200", status)
			}
		})
	}
	t.Logf("metric unauth_db_growth_bytes_per_10k=%d", worst)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// flushDenials writes the server's pending unauthenticated tallies now.
func flushDenials(t *testing.T, e *httpEnv) {
	t.Helper()
	e.app.FlushDenials(context.Background())
}
