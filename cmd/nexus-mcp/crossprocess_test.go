package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nexus-mcp/nexus-mcp/memory/memtest"
)

// TestResourceUpdatesAcrossProcesses: two stdio server processes on one
// database (two hosts open at once). A subscriber on process A is told
// about a write through process B of its tenant, and not about a write of
// another tenant through process C.
func TestResourceUpdatesAcrossProcesses(t *testing.T) {
	db := memtest.DSN(t)
	keyA := newTenantKey(t, db, "acme")
	keyOther := newTenantKey(t, db, "other")

	a := stdioClient(t, db, "NEXUS_API_KEY="+keyA)
	var updates atomic.Int32
	a.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationResourceUpdated) {
			updates.Add(1)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	//lint:ignore SA1019 the session negotiates 2025-06-18, where resources/subscribe is the way to subscribe
	if err := a.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: "memory://knowledge-graph"}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}

	// the other tenant writes first, through its own process
	c := stdioClient(t, db, "NEXUS_API_KEY="+keyOther)
	callTool(t, c, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "theirs", "entityType": "t", "observations": []string{}}}})
	// then acme, through process B
	b := stdioClient(t, db, "NEXUS_API_KEY="+keyA)
	callTool(t, b, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "ours", "entityType": "t", "observations": []string{}}}})

	// changes arrive in commit order: when acme's has arrived, the other
	// tenant's would have arrived before it
	deadline := time.Now().Add(20 * time.Second)
	for updates.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := updates.Load(); n != 1 {
		t.Fatalf("subscriber on process A got %d updates after writes through B (its tenant) and C (another tenant), want 1", n)
	}
	// control: a write through A itself is still notified
	callTool(t, a, "create_entities", map[string]any{"entities": []any{map[string]any{"name": "local", "entityType": "t", "observations": []string{}}}})
	for updates.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := updates.Load(); n != 2 {
		t.Errorf("after a local write: %d updates, want 2", n)
	}
}
