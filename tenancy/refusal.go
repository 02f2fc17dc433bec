package tenancy

import "context"

// Reasons of refusals made outside the Authenticator, passed to the
// refusal recorder (see WithRefusalRecorder).
const (
	ReasonHostNotAllowed   = "host_not_allowed"
	ReasonOriginNotAllowed = "origin_not_allowed"
	ReasonRateLimited      = "rate_limited"
	// ReasonSourceRateLimited: too many failed authentications from one
	// source address (SourceLimiter).
	ReasonSourceRateLimited = "source_rate_limited"
	ReasonBodyTooLarge      = "body_too_large"
)

type refusalKey struct{}

// WithRefusalRecorder returns ctx carrying fn, which every middleware of
// this package (and NoteRefusal) calls with the reason of a request it
// refuses, so that the transport can log one reason per refused request.
// Reasons go to logs only: response bodies stay fixed.
func WithRefusalRecorder(ctx context.Context, fn func(reason string)) context.Context {
	return context.WithValue(ctx, refusalKey{}, fn)
}

// NoteRefusal reports the reason a request is refused to the recorder in
// ctx, if any.
func NoteRefusal(ctx context.Context, reason string) {
	if fn, ok := ctx.Value(refusalKey{}).(func(string)); ok && fn != nil {
		fn(reason)
	}
}
