package httpserver

import (
	"context"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
	"github.com/nexus-mcp/nexus-mcp/tools"
)

// metrics are the Prometheus series of the HTTP transport, on a registry of
// their own (nothing registers globally). Tenant IDs appear as labels only
// with Config.MetricsTenantLabels: they are customer names and unbounded.
type metrics struct {
	reg          *prometheus.Registry
	tenantLabels bool

	httpRequests *prometheus.CounterVec   // path, method, code
	httpDuration *prometheus.HistogramVec // path, method
	toolCalls    *prometheus.CounterVec   // tool, outcome [, tenant]
	toolDuration *prometheus.HistogramVec // tool [, tenant]
	authFailures *prometheus.CounterVec   // reason, code [, tenant]
	rateLimited  *prometheus.CounterVec   // [tenant]
}

// newMetrics registers every series; version labels the build-info
// series, sessions reports the number of live MCP sessions.
func newMetrics(version string, tenantLabels bool, sessions func() int) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), tenantLabels: tenantLabels}
	withTenant := func(labels ...string) []string {
		if tenantLabels {
			return append(labels, "tenant")
		}
		return labels
	}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexus_mcp_http_requests_total",
		Help: "HTTP requests by path, method and status code.",
	}, []string{"path", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nexus_mcp_http_request_duration_seconds",
		Help:    "HTTP request latency by path and method (SSE streams count until they close).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. ~16 s
	}, []string{"path", "method"})
	m.toolCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexus_mcp_tool_calls_total",
		Help: "MCP tool calls by tool and outcome (ok, tool_error, error).",
	}, withTenant("tool", "outcome"))
	m.toolDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nexus_mcp_tool_call_duration_seconds",
		Help:    "MCP tool call latency by tool.",
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16), // 0.25 ms .. ~8 s
	}, withTenant("tool"))
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexus_mcp_auth_failures_total",
		Help: "Requests refused by authentication by reason and status code (401, 403, 503).",
	}, withTenant("reason", "code"))
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nexus_mcp_rate_limited_total",
		Help: "Requests answered 429 by the per-tenant rate limiter.",
	}, withTenant())
	m.reg.MustRegister(m.httpRequests, m.httpDuration, m.toolCalls, m.toolDuration, m.authFailures, m.rateLimited,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nexus_mcp_sessions",
			Help: "Live MCP sessions (protocol versions with sessions).",
		}, func() float64 { return float64(sessions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "nexus_mcp_build_info",
			Help:        "Always 1; the version label is the running build.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// labels appends the tenant to values when tenant labels are on.
func (m *metrics) labels(tenant string, values ...string) []string {
	if m.tenantLabels {
		return append(values, tenant)
	}
	return values
}

// handler serves /metrics.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// denied is tenancy.Authenticator.OnDenied.
func (m *metrics) denied(_ *http.Request, rc tenancy.RequestContext, reason string, status int) {
	m.authFailures.WithLabelValues(m.labels(rc.TenantID, reason, statusLabel(status))...).Inc()
}

// limited is tenancy.RateLimiter.OnLimited.
func (m *metrics) limited(_ *http.Request, rc tenancy.RequestContext) {
	m.rateLimited.WithLabelValues(m.labels(rc.TenantID)...).Inc()
}

// toolMiddleware counts and times every tool call. It is added after the
// handlers' recovery middleware, so it runs inside it and sees a panic as
// it unwinds: it records the call as an error and lets the panic go on.
func (m *metrics) toolMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		start := time.Now()
		outcome := tools.OutcomeError
		defer func() {
			rc, _ := tenancy.FromContext(ctx)
			tool := req.Params.Name
			m.toolCalls.WithLabelValues(m.labels(rc.TenantID, tool, outcome)...).Inc()
			m.toolDuration.WithLabelValues(m.labels(rc.TenantID, tool)...).Observe(time.Since(start).Seconds())
		}()
		res, err = next(ctx, req)
		outcome = tools.CallOutcome(res, err)
		return res, err
	}
}

// httpMiddleware counts and times every HTTP request, whatever answered it
// (host or origin check, authentication, rate limiter, MCP).
func (m *metrics) httpMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			path := pathLabel(r.URL.Path)
			m.httpRequests.WithLabelValues(path, methodLabel(r.Method), statusLabel(sw.code())).Inc()
			m.httpDuration.WithLabelValues(path, methodLabel(r.Method)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// pathLabel bounds the path label to the routes we serve.
func pathLabel(p string) string {
	switch p {
	case "/mcp", "/healthz", "/readyz", "/metrics":
		return p
	}
	return "other"
}

// methodLabel bounds the method label.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return m
	}
	return "other"
}

// statusLabel is the decimal status code (cached for the common ones).
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 202:
		return "202"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 413:
		return "413"
	case 429:
		return "429"
	}
	if code < 100 || code > 599 {
		return "other"
	}
	b := [3]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)}
	return string(b[:])
}

// statusWriter records the status code of a response. It keeps Flush (SSE
// needs it) and Unwrap (http.ResponseController needs it).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent, 200 when the handler wrote nothing.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
