package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/delegation"
	"github.com/nexus-mcp/nexus-mcp/memory"
)

// fakeTarget is a target agent's MCP server on loopback with three tools:
// ok answers, fail answers with isError, hang blocks until its caller goes
// away (and reports on started that the call arrived).
type fakeTarget struct {
	url     string
	started chan string
}

func newFakeTarget(t *testing.T) *fakeTarget {
	t.Helper()
	ft := &fakeTarget{started: make(chan string, 16)}
	s := server.NewMCPServer("target", "0")
	s.AddTool(mcp.NewTool("ok"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("done"), nil
	})
	s.AddTool(mcp.NewTool("fail"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultError("the target refuses"), nil
	})
	s.AddTool(mcp.NewTool("hang"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ft.started <- "hang"
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Minute):
		}
		return mcp.NewToolResultText("too late"), nil
	})
	hs := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(hs.Close)
	ft.url = hs.URL + "/mcp"
	return ft
}

// TestCallAgentToolEndsItsDelegation checks that every outcome of
// call_agent_tool — the caller cancelling mid-relay, the relay timing out,
// the target answering with an error, the target being unreachable — ends
// the delegation in a terminal state (failed) with one audit row naming
// the outcome, written with the status change, and that the successful
// call (control) ends completed. Each case runs through a real nexus-mcp
// HTTP server against a real MCP target on loopback.
func TestCallAgentToolEndsItsDelegation(t *testing.T) {
	target := newFakeTarget(t)
	dead := listenLoopback(t)
	deadURL := "http://" + dead.Addr().String() + "/mcp"
	dead.Close() // nothing listens there: connection refused

	store := newRelayStore(t, "t1")
	for _, reg := range []memory.AgentRegistration{
		{ID: "agent-a", Name: "caller"},
		{ID: "agent-t", Name: "target", Endpoint: target.url},
		{ID: "agent-dead", Name: "gone", Endpoint: deadURL},
	} {
		if _, _, err := store.RegisterAgent(actAs("t1"), reg); err != nil {
			t.Fatal(err)
		}
	}
	key, _, err := store.CreateAPIKey(context.Background(), memory.NewKey{TenantID: "t1", UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	// Two servers over the same database: one with a long relay timeout
	// (so only the caller can end the hanging call), one with a short one.
	long := startRelayServer(t, store, listenLoopback(t), "--a2a-allow-hosts=127.0.0.1", "--a2a-timeout=2m")
	short := startRelayServer(t, store, listenLoopback(t), "--a2a-allow-hosts=127.0.0.1", "--a2a-timeout=300ms")
	auth := map[string]string{"Authorization": "Bearer " + key}
	cLong, err := relayClient(t, long.url, auth)
	if err != nil {
		t.Fatal(err)
	}
	cShort, err := relayClient(t, short.url, auth)
	if err != nil {
		t.Fatal(err)
	}

	// call sends call_agent_tool; cancelOnStart cancels it once the target
	// has received it.
	call := func(c interface {
		CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
	}, targetAgent, tool string, cancelOnStart bool) (*mcp.CallToolResult, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for len(target.started) > 0 { // arrivals of earlier cases
			<-target.started
		}
		if cancelOnStart {
			go func() {
				select {
				case <-target.started:
					cancel()
				case <-ctx.Done():
				}
			}()
		}
		req := mcp.CallToolRequest{}
		req.Params.Name = "call_agent_tool"
		req.Params.Arguments = map[string]any{"calling_agent": "agent-a", "target_agent": targetAgent, "tool_name": tool, "arguments": map[string]any{}}
		return c.CallTool(ctx, req)
	}

	// ended waits (bounded) until the delegation of tool leaves prepared
	// and returns it.
	ended := func(t *testing.T, targetAgent, tool string) memory.DelegationRecord {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ds, _, err := store.DelegationHistory(actAs("t1"), memory.DelegationFilter{TargetAgent: targetAgent, ToolName: tool})
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 {
				t.Fatalf("%d delegations of %s/%s, want 1", len(ds), targetAgent, tool)
			}
			if ds[0].Status != delegation.StatusPrepared || time.Now().After(deadline) {
				return ds[0]
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	tests := []struct {
		name string
		c    interface {
			CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
		}
		targetAgent string
		tool        string
		cancel      bool
		wantStatus  string
		wantOutcome string
		wantReason  string // in the end row's detail
		wantIsError bool   // call_agent_tool's own result
	}{
		{name: "target answers (control)", c: cLong, targetAgent: "agent-t", tool: "ok", wantStatus: delegation.StatusCompleted, wantOutcome: memory.OutcomeOK},
		// The target's error result is relayed as it came, with valid false.
		{name: "target answers with an error", c: cLong, targetAgent: "agent-t", tool: "fail", wantStatus: delegation.StatusFailed, wantOutcome: memory.OutcomeError, wantReason: "target error"},
		{name: "target unreachable", c: cLong, targetAgent: "agent-dead", tool: "ok", wantStatus: delegation.StatusFailed, wantOutcome: memory.OutcomeError, wantReason: "unreachable", wantIsError: true},
		{name: "relay times out", c: cShort, targetAgent: "agent-t", tool: "hang", wantStatus: delegation.StatusFailed, wantOutcome: memory.OutcomeError, wantReason: "timeout", wantIsError: true},
		{name: "caller cancels mid-relay", c: cLong, targetAgent: "agent-t", tool: "hang", cancel: true, wantStatus: delegation.StatusFailed, wantOutcome: memory.OutcomeError, wantReason: "cancelled"},
	}
	// The timeout case and the cancel case both call hang: give them
	// distinct delegations by running the cancel case as tool "hang" on a
	// second target id.
	if _, _, err := store.RegisterAgent(actAs("t1"), memory.AgentRegistration{ID: "agent-t2", Name: "target 2", Endpoint: target.url}); err != nil {
		t.Fatal(err)
	}
	tests[4].targetAgent = "agent-t2"

	prepared := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := call(tt.c, tt.targetAgent, tt.tool, tt.cancel)
			switch {
			case tt.cancel:
				if err == nil {
					t.Errorf("cancelled call_agent_tool returned %+v, want the client's cancellation error", res)
				}
			case err != nil:
				t.Fatalf("call_agent_tool: %v", err)
			case res.IsError != tt.wantIsError:
				t.Errorf("call_agent_tool isError = %v, want %v (%+v)", res.IsError, tt.wantIsError, res.Content)
			}
			d := ended(t, tt.targetAgent, tt.tool)
			if d.Status != tt.wantStatus || d.CompletedAt.IsZero() {
				t.Errorf("delegation status = %q (completed at %v), want %q with a completion time", d.Status, d.CompletedAt, tt.wantStatus)
			}
			var rows []string
			for _, e := range auditOf(t, store, "t1") {
				if e.Event.TraceID != d.TraceID {
					continue
				}
				rows = append(rows, e.Event.Action+"/"+e.Event.Outcome)
				if e.Event.Action != "delegation.prepare" {
					if e.Event.Outcome != tt.wantOutcome || !strings.Contains(e.Event.Detail, `"status":"`+tt.wantStatus+`"`) ||
						(tt.wantReason != "" && !strings.Contains(e.Event.Detail, `"reason":"`+tt.wantReason+`"`)) {
						t.Errorf("end row = %+v, want outcome %s, status %s, reason %q", e.Event, tt.wantOutcome, tt.wantStatus, tt.wantReason)
					}
				} else {
					prepared++
				}
			}
			if len(rows) != 2 {
				t.Errorf("audit rows of trace %s = %v, want the prepare row and one end row", d.TraceID, rows)
			}
		})
	}
	if res, err := store.VerifyAudit(context.Background(), "t1"); err != nil || !res.OK {
		t.Errorf("VerifyAudit(t1) = %+v, %v", res, err)
	}
	left := 0
	ds, _, _ := store.DelegationHistory(actAs("t1"), memory.DelegationFilter{})
	for _, d := range ds {
		if d.Status == delegation.StatusPrepared {
			left++
		}
	}
	t.Logf("metric call_agent_tool_delegations_left_prepared=%d", left)
	if prepared != len(tests) {
		t.Errorf("%d prepare rows, want %d", prepared, len(tests))
	}
}
