package httpserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// SessionStore keeps the MCP sessions that the replicas of one database
// share, in the tenant of ctx (the presenting principal's).
type SessionStore interface {
	// BindMCPSession records a new session id of principal (a hash).
	BindMCPSession(ctx context.Context, id, principal string) error
	// MCPSession returns the principal and the last use of session id, or
	// ErrNoSession.
	MCPSession(ctx context.Context, id string) (principal string, lastUsed time.Time, err error)
	// TouchMCPSession records a use of session id of principal; it returns
	// ErrNoSession when the store no longer holds it for principal
	// (deleted, or idle for longer than idle).
	TouchMCPSession(ctx context.Context, id, principal string, idle time.Duration) error
	// DeleteMCPSession forgets session id.
	DeleteMCPSession(ctx context.Context, id string) error
	// DeleteIdleMCPSessions forgets the sessions of every tenant unused for
	// longer than idle, and reports how many.
	DeleteIdleMCPSessions(ctx context.Context, idle time.Duration) (int, error)
}

// ErrNoSession is a SessionStore's answer for a session it does not hold.
var ErrNoSession = errors.New("no such MCP session")

// principal is who created an MCP session: a session id is usable only by
// the same principal. Every field of the verified identity takes part, so
// another key, user, tenant or dev override of the same tenant is another
// principal.
type principal struct {
	tenant, user, keyID, agent, env, home, issuer string
	method                                        tenancy.AuthMethod
	dev                                           bool
}

func principalOf(rc tenancy.RequestContext) principal {
	return principal{tenant: rc.TenantID, user: rc.UserID, keyID: rc.APIKeyID, agent: rc.AgentID,
		env: rc.Env, home: rc.HomeTenant, issuer: rc.Issuer, method: rc.AuthMethod, dev: rc.DevOverride}
}

// hash is what the store keeps of p: every field, unambiguously encoded,
// hashed (the store needs equality only).
func (p principal) hash() string {
	b, _ := json.Marshal([]any{p.tenant, p.user, p.keyID, p.agent, p.env, p.home, p.issuer, string(p.method), p.dev}) // strings and a bool always marshal
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sessionGuard sits between the middleware and mcp-go. mcp-go accepts any
// well-formed Mcp-Session-Id (and a GET with another client's id would
// receive that client's notifications), so the guard:
//   - binds each session id mcp-go mints on initialize to the principal
//     that asked for it, and answers 404 to any other principal, to unknown
//     ids and to ids idle for longer than the idle timeout (expired
//     sessions are also terminated in mcp-go, freeing their state);
//   - confines notifications/cancelled to the sender's own requests
//     (inflightRequests): mcp-go keys 2026-07-28 requests by JSON-RPC id
//     alone, so a cancel reaching it could end another tenant's call;
//   - reads the body once (413 past Config.MaxBody, even when chunked), lifts
//     the request read deadline, and renews a write deadline on every
//     write.
//
// Bindings are shared through the store (table mcp_sessions, keyed by the
// presenting principal's tenant), so that replicas on one database behave
// as one server: a client whose requests alternate between replicas keeps
// its session. The in-process map is a cache in front of the store: a
// local miss reads the store, and each session's stored last use is
// written at most every idle/4 (touchEvery), not on every request. The
// costs of that: a session expires between idle-idle/4 and idle after its
// last use when that use was served by another replica, and a DELETE
// through one replica takes up to idle/4 to be noticed by a replica that
// still holds the session (it only ever served the same principal).
// Expiry is by the later of the local and the stored last use; the sweep
// deletes the stored rows idle for longer than idle.
type sessionGuard struct {
	next     http.Handler
	store    SessionStore
	idle     time.Duration
	log      *slog.Logger
	now      func() time.Time
	inflight *inflightRequests

	mu       sync.Mutex
	sessions map[string]*boundSession
}

type boundSession struct {
	owner    principal
	lastUsed time.Time // the last use through this replica
	stored   time.Time // the last use recorded in the store (or being recorded)
	inflight int
}

// seen is the later of the local and the stored last use.
func (s *boundSession) seen() time.Time {
	if s.stored.After(s.lastUsed) {
		return s.stored
	}
	return s.lastUsed
}

func newSessionGuard(store SessionStore, idle time.Duration, log *slog.Logger, now func() time.Time) *sessionGuard {
	return &sessionGuard{store: store, idle: idle, log: log, now: now, sessions: make(map[string]*boundSession),
		inflight: newInflightRequests()}
}

// touchEvery is how often a session's last use is written to the store.
func (g *sessionGuard) touchEvery() time.Duration { return g.idle / 4 }

func (g *sessionGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc, ok := tenancy.FromContext(r.Context())
	if !ok || rc.TenantID == "" {
		g.log.Error("MCP request without a RequestContext; check the middleware order")
		writeJSON(w, http.StatusInternalServerError, `{"error":"internal error"}`)
		return
	}
	p := principalOf(rc)

	var body []byte
	if r.Method == http.MethodPost && r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				tenancy.NoteRefusal(r.Context(), tenancy.ReasonBodyTooLarge)
				w.Header().Set("Connection", "close")
				writeJSON(w, http.StatusRequestEntityTooLarge, `{"error":"request body too large"}`)
				return
			}
			tenancy.NoteRefusal(r.Context(), "unreadable_body")
			writeJSON(w, http.StatusBadRequest, `{"error":"cannot read request body"}`)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rctl := http.NewResponseController(w)
	_ = rctl.SetReadDeadline(time.Time{}) // the request is read; streams and long calls go on
	mw := &mcpWriter{ResponseWriter: w, rc: rctl}

	var env rpcEnvelope
	isRPC := false
	if r.Method == http.MethodPost {
		env, isRPC = parseEnvelope(body)
		noteRPC(r.Context(), string(env.Method))
	}

	ids := r.Header.Values(server.HeaderKeySessionID)
	switch {
	case len(ids) > 1:
		tenancy.NoteRefusal(r.Context(), "several_session_ids")
		writeJSON(w, http.StatusBadRequest, `{"error":"several session ids"}`)
		return
	case len(ids) == 0:
		if isRPC && env.Method != mcp.MethodInitialize {
			g.serveRPC(mw, r, p, "", env)
			return
		}
		if r.Method == http.MethodPost {
			// initialize: bind the id mcp-go mints to p before the client sees it
			mw.onHeader = func(h http.Header) {
				if id := h.Get(server.HeaderKeySessionID); id != "" {
					g.bind(r.Context(), id, p)
				}
			}
		}
		g.next.ServeHTTP(mw, r)
		return
	}

	id := ids[0]
	if !g.acquire(r.Context(), id, p) {
		tenancy.NoteRefusal(r.Context(), "session_not_found")
		writeJSON(w, http.StatusNotFound, `{"error":"session not found"}`)
		return
	}
	defer g.release(id)
	if isRPC {
		g.serveRPC(mw, r, p, id, env)
	} else {
		g.next.ServeHTTP(mw, r)
	}
	if r.Method == http.MethodDelete && mw.status >= 200 && mw.status < 300 {
		g.forget(r.Context(), id)
	}
}

// bind records a new session of p, here and in the store. When the store
// fails the binding is kept here only: the session works on this replica
// and is unknown (404) on the others.
func (g *sessionGuard) bind(ctx context.Context, id string, p principal) {
	g.mu.Lock()
	_, ok := g.sessions[id]
	if !ok {
		now := g.now()
		g.sessions[id] = &boundSession{owner: p, lastUsed: now, stored: now}
	}
	g.mu.Unlock()
	if ok {
		return
	}
	if err := g.store.BindMCPSession(ctx, id, p.hash()); err != nil {
		g.log.Error("MCP session not shared with other replicas", "tenant", p.tenant, "err", err)
	}
}

// acquire reports whether p may use session id, and marks it in use.
// Another principal's session, an unknown one (here and in the store, in
// p's tenant) and an expired one are all refused the same way.
func (g *sessionGuard) acquire(ctx context.Context, id string, p principal) bool {
	g.mu.Lock()
	s, ok := g.sessions[id]
	if ok && s.owner != p {
		g.mu.Unlock()
		g.log.Warn("MCP session used by another principal; refused", "owner_tenant", s.owner.tenant, "tenant", p.tenant, "user", p.user)
		return false
	}
	now := g.now()
	if ok && (s.inflight > 0 || now.Sub(s.seen()) <= g.idle) {
		s.inflight++
		s.lastUsed = now
		touch := now.Sub(s.stored) >= g.touchEvery()
		if touch {
			s.stored = now // one request records the use; the others do not wait for it
		}
		g.mu.Unlock()
		if touch && !g.touch(ctx, id, p) {
			g.release(id)
			g.expire(ctx, id, p, "deleted or expired on another replica")
			return false
		}
		return true
	}
	g.mu.Unlock()

	// Unknown here, or idle here: the store knows whether another replica
	// created or used it since.
	if ok {
		if !g.touch(ctx, id, p) {
			g.expire(ctx, id, p, "expired")
			return false
		}
		return g.adopt(id, p, now, now)
	}
	owner, lastUsed, err := g.store.MCPSession(ctx, id)
	switch {
	case errors.Is(err, ErrNoSession):
		return false
	case err != nil:
		g.log.Error("read MCP session", "tenant", p.tenant, "err", err)
		return false
	case owner != p.hash():
		g.log.Warn("MCP session used by another principal; refused", "tenant", p.tenant, "user", p.user)
		return false
	case now.Sub(lastUsed) > g.idle:
		if err := g.store.DeleteMCPSession(ctx, id); err != nil {
			g.log.Error("delete expired MCP session", "tenant", p.tenant, "err", err)
		}
		return false
	}
	stored := lastUsed
	if now.Sub(stored) >= g.touchEvery() {
		if !g.touch(ctx, id, p) {
			return false
		}
		stored = now
	}
	return g.adopt(id, p, now, stored)
}

// adopt holds session id of p here, in use, after the store vouched for
// it; stored is its last use as the store now records it.
func (g *sessionGuard) adopt(id string, p principal, now, stored time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.sessions[id]
	if !ok {
		s = &boundSession{owner: p}
		g.sessions[id] = s
	}
	if s.owner != p {
		return false
	}
	s.inflight++
	s.lastUsed = now
	if stored.After(s.stored) {
		s.stored = stored
	}
	return true
}

// touch records a use of session id in the store. It reports false when
// the store no longer holds the session for p (deleted, or expired by its
// stored last use); a storage error keeps the session (logged).
func (g *sessionGuard) touch(ctx context.Context, id string, p principal) bool {
	err := g.store.TouchMCPSession(ctx, id, p.hash(), g.idle)
	switch {
	case errors.Is(err, ErrNoSession):
		return false
	case err != nil:
		g.log.Error("record MCP session use", "tenant", p.tenant, "err", err)
	}
	return true
}

// expire drops session id here and in mcp-go, unless a request is using it.
func (g *sessionGuard) expire(ctx context.Context, id string, p principal, why string) {
	g.mu.Lock()
	s, ok := g.sessions[id]
	if !ok || s.inflight > 0 {
		g.mu.Unlock()
		return
	}
	delete(g.sessions, id)
	g.mu.Unlock()
	g.log.Info("MCP session "+why, "session", id, "tenant", p.tenant)
	g.terminate(ctx, id)
}

// release ends one use of session id.
func (g *sessionGuard) release(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.sessions[id]; ok {
		s.inflight--
		s.lastUsed = g.now()
	}
}

// forget drops a session the client deleted, here and in the store.
func (g *sessionGuard) forget(ctx context.Context, id string) {
	g.mu.Lock()
	delete(g.sessions, id)
	g.mu.Unlock()
	if err := g.store.DeleteMCPSession(ctx, id); err != nil {
		g.log.Error("delete MCP session", "err", err)
	}
}

func (g *sessionGuard) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// sweepInterval is how often sweepOnce runs: a quarter of the idle
// timeout, between one second and one minute.
func (g *sessionGuard) sweepInterval() time.Duration {
	return min(max(g.idle/4, time.Second), time.Minute)
}

// sweepOnce expires idle sessions: the ones held here (by the
// later of the local and the stored last use), and the stored ones of
// every replica (by the stored last use). It also records the use of the
// sessions held in use here, so a long SSE stream or call does not let
// the session expire on the other replicas.
func (g *sessionGuard) sweepOnce(ctx context.Context) {
	var expired []string
	busy := map[string]principal{}
	g.mu.Lock()
	now := g.now()
	for id, s := range g.sessions {
		switch {
		case s.inflight == 0 && now.Sub(s.seen()) > g.idle:
			expired = append(expired, id)
			delete(g.sessions, id)
		case s.inflight > 0 && now.Sub(s.stored) >= g.touchEvery():
			// in use for a long time (an SSE stream, a long call):
			// keep it alive for the other replicas too
			s.stored = now
			busy[id] = s.owner
		}
	}
	g.mu.Unlock()
	for _, id := range expired {
		g.terminate(ctx, id)
	}
	for id, p := range busy {
		g.touch(tenancy.NewContext(ctx, tenancy.RequestContext{TenantID: p.tenant}), id, p)
	}
	if len(expired) > 0 {
		g.log.Info("expired idle MCP sessions", "count", len(expired))
	}
	if n, err := g.store.DeleteIdleMCPSessions(ctx, g.idle); err != nil && ctx.Err() == nil {
		g.log.Error("MCP session sweep failed", "err", err)
	} else if n > 0 {
		g.log.Info("deleted idle MCP sessions from the store", "count", n)
	}
}

// terminate ends session id inside mcp-go, as the client's DELETE would,
// so that its per-session state is freed.
func (g *sessionGuard) terminate(ctx context.Context, id string) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodDelete, "/mcp", nil)
	if err != nil {
		return
	}
	req.Header.Set(server.HeaderKeySessionID, id)
	g.next.ServeHTTP(&discardWriter{header: http.Header{}}, req)
}

// mcpWriter is the response writer mcp-go gets: it renews the write
// deadline on every write, records the status, and calls onHeader once
// just before the header is sent. It keeps Flush (SSE) and Unwrap.
type mcpWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	status   int
	onHeader func(http.Header)
}

func (w *mcpWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if w.onHeader != nil {
			w.onHeader(w.Header())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *mcpWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeStallTimeout))
	return w.ResponseWriter.Write(p)
}

func (w *mcpWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeStallTimeout))
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *mcpWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// discardWriter is the response writer of internal requests.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
