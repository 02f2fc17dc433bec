package memory

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers check with errors.Is. Another tenant's data is
// ErrNotFound, never a permission error.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)

// Error is a failure the caller can act on. Kind is one of the sentinels;
// Code says which failure and the other fields what it concerns, in this
// package's terms. Its Error text is for logs and the admin CLI: the words
// an MCP client reads are written by the tools package from these fields,
// because only it knows the tool and argument names (they never appear
// here).
type Error struct {
	Kind    error    // ErrNotFound, ErrConflict or ErrInvalid
	Code    Code     // which failure
	Field   Field    // the input or record concerned
	ID      string   // the caller's id or name concerned, when any
	Other   string   // a second id: the current id of a refused rename, a membership's tenant
	Limit   int      // the bound exceeded (bytes, items or agents)
	Allowed []string // the accepted values (CodeNotOneOf)
	Detail  string   // why, in this package's terms (CodeBadValue, CodeBadID)
}

// Code says which failure an Error is.
type Code int

// The failures of an Error.
const (
	CodeBadValue       Code = iota // Field (or the input, when Field is "") is wrong: Detail says how
	CodeEmpty                      // Field is empty
	CodeTooLong                    // Field is over Limit bytes
	CodeTooMany                    // more than Limit values of Field
	CodeNotOneOf                   // Field is none of Allowed
	CodeBadID                      // Field is not a valid id: Detail says why
	CodeBadPage                    // a page limit is not positive or its offset negative
	CodeTooBroad                   // the recipient selection matches more than Limit agents
	CodeNoEmbedder                 // semantic search without an embedder
	CodeNotFound                   // no Field ID (unknown, or another tenant's)
	CodeNotRegistered              // agent ID, given as Field, is not registered (or not visible)
	CodeOwnedElsewhere             // agent id ID belongs to another tenant
	CodeRenameTaken                // agent id ID is registered: Other cannot be renamed to it
	CodeExists                     // Field ID exists already
	CodeNotMember                  // principal ID is not a member of tenant Other
)

// Field names the input or record an Error concerns, in this package's
// terms; the tools package maps it to the argument a client sent.
type Field string

// The fields of an Error.
const (
	FieldAgent        Field = "agent"             // the agent acting or asked about
	FieldNewAgent     Field = "new agent id"      // the id an identity change sets
	FieldProject      Field = "project"           // a handoff's project
	FieldSender       Field = "sender"            // a message's sender
	FieldRecipient    Field = "recipient"         // a message's one recipient
	FieldAgentName    Field = "agent name"        // a registration's name
	FieldNewAgentName Field = "new agent name"    // an identity change's name
	FieldCapabilities Field = "capabilities"      // an agent's capabilities
	FieldSummary      Field = "handoff summary"   // a handoff's summary
	FieldOpenItems    Field = "open items"        // a handoff's open items
	FieldHandoffLearn Field = "handoff learnings" // a handoff's learnings
	FieldContext      Field = "learning context"  // a learning's context
	FieldLesson       Field = "lesson"            // a learning's lesson
	FieldLearningText Field = "learning text"     // a learning's context and lesson together
	FieldConfidence   Field = "confidence"        // a learning's confidence
	FieldPreferences  Field = "preferences"       // an agent's preferences
	FieldMetadata     Field = "metadata"          // a JSON value to store
	FieldContent      Field = "message content"   // a message's text
	FieldMessageType  Field = "message type"      // a message's type
	FieldPriority     Field = "priority"          // a message's priority
	FieldSearchMode   Field = "search mode"       // lexical, semantic or hybrid
	FieldQuery        Field = "search query"      // a search's text
	FieldEntity       Field = "entity"            // a graph entity, by name
	FieldDelegation   Field = "delegation"        // a delegation record, by id
	FieldTrustSession Field = "trust session"     // a trust session, by id
	FieldMCPSession   Field = "MCP session"       // a bound MCP session
	FieldTenant       Field = "tenant"            // a tenant, by id
	FieldKey          Field = "key"               // an API key, by id
)

func (e *Error) Error() string {
	switch e.Code {
	case CodeEmpty:
		return fmt.Sprintf("%s must not be empty", e.Field)
	case CodeTooLong:
		return fmt.Sprintf("%s is limited to %d bytes", e.Field, e.Limit)
	case CodeTooMany:
		return fmt.Sprintf("at most %d %s", e.Limit, e.Field)
	case CodeNotOneOf:
		return fmt.Sprintf("%s must be one of %s", e.Field, strings.Join(e.Allowed, ", "))
	case CodeBadID:
		return fmt.Sprintf("%s %s", e.Field, e.Detail)
	case CodeBadPage:
		return "page size must be positive and offset not negative"
	case CodeTooBroad:
		return fmt.Sprintf("the recipient selection matches more than %d agents", e.Limit)
	case CodeNoEmbedder:
		return "semantic search needs an embedder"
	case CodeNotFound:
		if e.ID == "" {
			return fmt.Sprintf("%s not found", e.Field)
		}
		return fmt.Sprintf("%s %q not found", e.Field, e.ID)
	case CodeNotRegistered:
		return fmt.Sprintf("agent %q is not registered", e.ID)
	case CodeOwnedElsewhere:
		return fmt.Sprintf("agent id %q belongs to another tenant (registered there or bound to its API key); choose another agent id", e.ID)
	case CodeRenameTaken:
		return fmt.Sprintf("agent id %q is already registered; cannot rename %q to it", e.ID, e.Other)
	case CodeExists:
		if e.ID == "" {
			return fmt.Sprintf("%s already exists", e.Field)
		}
		return fmt.Sprintf("%s %q already exists", e.Field, e.ID)
	case CodeNotMember:
		return fmt.Sprintf("%s is not a member of %q", e.ID, e.Other)
	}
	if e.Field == "" {
		return e.Detail
	}
	return fmt.Sprintf("%s %s", e.Field, e.Detail)
}

// Unwrap returns the sentinel, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error { return e.Kind }

// invalidf is an ErrInvalid CodeBadValue whose whole text is the format;
// for inputs no tool sends (configuration, the admin CLI).
func invalidf(format string, a ...any) error {
	return &Error{Kind: ErrInvalid, Code: CodeBadValue, Detail: fmt.Sprintf(format, a...)}
}

func invalid(code Code, f Field) *Error { return &Error{Kind: ErrInvalid, Code: code, Field: f} }

func errEmpty(f Field) error { return invalid(CodeEmpty, f) }

func errTooLong(f Field, limit int) error {
	e := invalid(CodeTooLong, f)
	e.Limit = limit
	return e
}

func errTooMany(f Field, limit int) error {
	e := invalid(CodeTooMany, f)
	e.Limit = limit
	return e
}

func errNotOneOf(f Field, allowed []string) error {
	e := invalid(CodeNotOneOf, f)
	e.Allowed = allowed
	return e
}

func errBadValue(f Field, detail string) error {
	e := invalid(CodeBadValue, f)
	e.Detail = detail
	return e
}

func errNotFound(f Field, id string) error {
	return &Error{Kind: ErrNotFound, Code: CodeNotFound, Field: f, ID: id}
}

func errNotRegistered(id string) error {
	return &Error{Kind: ErrNotFound, Code: CodeNotRegistered, Field: FieldAgent, ID: id}
}

func errExists(f Field, id string) error {
	return &Error{Kind: ErrConflict, Code: CodeExists, Field: f, ID: id}
}
