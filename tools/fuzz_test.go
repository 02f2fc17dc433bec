package tools

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nexus-mcp/nexus-mcp/tenancy"
)

// argDecoder binds a tool's arguments into its argument type, as handle
// does for that tool.
type argDecoder struct {
	typ    reflect.Type
	schema json.RawMessage // the input schema of typ, to check the table against the tool
	bind   func(req mcp.CallToolRequest) (any, error)
}

func decoderFor[A any]() argDecoder {
	return argDecoder{
		typ:    reflect.TypeFor[A](),
		schema: mustSchema[A](true),
		bind: func(req mcp.CallToolRequest) (any, error) {
			var a A
			err := req.BindArguments(&a)
			return a, err
		},
	}
}

// argDecoders names the argument type of every tool. handle's type
// parameter is not visible from a ServerTool, so the table is written out;
// TestToolArgumentDecoders fails when a tool is missing or its entry's
// schema is not the tool's.
var argDecoders = map[string]argDecoder{
	"create_entities":                decoderFor[createEntitiesArgs](),
	"create_relations":               decoderFor[createRelationsArgs](),
	"add_observations":               decoderFor[addObservationsArgs](),
	"delete_entities":                decoderFor[deleteEntitiesArgs](),
	"delete_observations":            decoderFor[deleteObservationsArgs](),
	"delete_relations":               decoderFor[deleteRelationsArgs](),
	"read_graph":                     decoderFor[readGraphArgs](),
	"search_nodes":                   decoderFor[searchNodesArgs](),
	"open_nodes":                     decoderFor[openNodesArgs](),
	"search_entities":                decoderFor[searchEntitiesArgs](),
	"send_ai_message":                decoderFor[sendMessageArgs](),
	"get_ai_messages":                decoderFor[getMessagesArgs](),
	"mark_messages_read":             decoderFor[markReadArgs](),
	"register_agent":                 decoderFor[registerAgentArgs](),
	"set_agent_identity":             decoderFor[setIdentityArgs](),
	"get_agent_status":               decoderFor[agentStatusArgs](),
	"record_learning":                decoderFor[recordLearningArgs](),
	"set_preferences":                decoderFor[setPreferencesArgs](),
	"get_individual_memory":          decoderFor[individualMemoryArgs](),
	"end_session":                    decoderFor[endSessionArgs](),
	"begin_session":                  decoderFor[beginSessionArgs](),
	"get_agent_context":              decoderFor[agentContextArgs](),
	"translate_path":                 decoderFor[translatePathArgs](),
	"prepare_agent_call":             decoderFor[prepareAgentCallArgs](),
	"verify_agent_response":          decoderFor[verifyAgentResponseArgs](),
	"get_delegation_history":         decoderFor[delegationHistoryArgs](),
	"revoke_delegation":              decoderFor[revokeDelegationArgs](),
	"call_agent_tool":                decoderFor[callAgentToolArgs](),
	"create_trust_session":           decoderFor[createTrustSessionArgs](),
	"get_trust_session":              decoderFor[trustSessionIDArgs](),
	"list_trust_sessions":            decoderFor[listTrustSessionsArgs](),
	"revoke_trust_session":           decoderFor[revokeTrustSessionArgs](),
	"revoke_trust_sessions_by_human": decoderFor[revokeByHumanArgs](),
	"get_audit_log":                  decoderFor[getAuditLogArgs](),
}

// identityFieldNames are argument names (compared without case, "_" and
// "-") that would let a caller name its own tenant, user or credential.
// No argument type may declare one: identity comes from the RequestContext.
var identityFieldNames = map[string]bool{
	"tenant": true, "tenantid": true, "org": true, "orgid": true, "organization": true, "organizationid": true,
	"user": true, "userid": true, "apikey": true, "apikeyid": true, "owner": true, "ownerid": true,
	"env": true, "environment": true, "role": true, "authmethod": true,
}

// identityFieldAllowed are the exceptions, each a subject of the call rather
// than the caller's identity.
var identityFieldAllowed = map[string]string{
	// The human whose sessions to revoke; requireUser refuses anyone but
	// the caller unless the caller is an admin of its tenant.
	"revoke_trust_sessions_by_human.user_id": "subject, checked by requireUser",
}

// fuzzCaller is the identity every fuzzed call runs as.
var fuzzCaller = tenancy.RequestContext{TenantID: "acme", UserID: "u1", APIKeyID: "k1", AuthMethod: tenancy.AuthAPIKey, Scopes: tenancy.AllScopes}

// identityFields returns the json names of identity fields declared
// anywhere in t (nested structs and slices included), as "path" strings.
func identityFields(t reflect.Type, path string, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return nil
	}
	seen[t] = true
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if identityFieldNames[strings.ToLower(keySeparators.Replace(name))] {
			out = append(out, path+"."+name)
		}
		out = append(out, identityFields(f.Type, path+"."+name, seen)...)
	}
	return out
}

// tenantNamed reports a tenant or env key anywhere in v whose value is not
// the caller's: the identity check must have refused such arguments.
func tenantNamed(rc tenancy.RequestContext, v any) string {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch strings.ToLower(keySeparators.Replace(k)) {
			case "tenant", "tenantid", "org", "orgid":
				if s, ok := val.(string); !ok || s != rc.TenantID {
					return k
				}
			case "env", "environment":
				if s, ok := val.(string); !ok || s != rc.Env {
					return k
				}
			}
			if k := tenantNamed(rc, val); k != "" {
				return k
			}
		}
	case []any:
		for _, e := range x {
			if k := tenantNamed(rc, e); k != "" {
				return k
			}
		}
	}
	return ""
}

// decodeArguments runs raw tools/call arguments through the path of a real
// call: mcp-go's CallToolParams decoding (which keeps the raw bytes for
// binding and a generic value for validation), then handle's identity and
// schema check, then binding. It returns parsed=false when the JSON-RPC
// layer would already refuse the message; checkErr is handle's refusal and
// bindErr a binding failure (which handle reports as "invalid arguments").
func decodeArguments(h *Handlers, tool string, raw []byte) (v any, parsed bool, checkErr, bindErr error) {
	name, _ := json.Marshal(tool)
	env := slices.Concat([]byte(`{"name":`), name, []byte(`}`))
	if len(raw) > 0 {
		if !json.Valid(raw) {
			return nil, false, nil, nil // -32700 before any tool code runs
		}
		env = slices.Concat([]byte(`{"name":`), name, []byte(`,"arguments":`), raw, []byte(`}`))
	}
	var params mcp.CallToolParams
	if err := json.Unmarshal(env, &params); err != nil {
		return nil, false, nil, nil // -32602: arguments mcp-go cannot decode (a number out of float64 range, ...)
	}
	req := mcp.CallToolRequest{Params: params}
	if _, err := h.checkArguments(fuzzCaller, tool, req.Params.Arguments); err != nil {
		return nil, true, err, nil
	}
	v, err := argDecoders[tool].bind(req)
	return v, true, nil, err
}

// minimalArguments builds the smallest arguments s accepts: its required
// properties, each with a small valid value.
func minimalArguments(s *jsonschema.Schema) any {
	if len(s.Enum) > 0 {
		return s.Enum[0]
	}
	typ := s.Type
	if typ == "" && len(s.Types) > 0 {
		typ = s.Types[0]
	}
	switch typ {
	case "string":
		return "x"
	case "integer":
		return 1
	case "number":
		return 0.5
	case "boolean":
		return true
	case "array":
		if s.MinItems != nil && *s.MinItems > 0 && s.Items != nil {
			return []any{minimalArguments(s.Items)}
		}
		return []any{}
	case "object":
		m := map[string]any{}
		for _, name := range s.Required {
			if p := s.Properties[name]; p != nil {
				m[name] = minimalArguments(p)
			}
		}
		return m
	}
	return map[string]any{}
}

// withoutExtras returns schema without the enum and default keywords
// inputSchemaWith adds to top-level properties, re-encoded.
func withoutExtras(t *testing.T, schema json.RawMessage) string {
	t.Helper()
	var s jsonschema.Schema
	if err := json.Unmarshal(schema, &s); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Properties {
		p.Enum, p.Default = nil, nil
	}
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestToolArgumentDecoders checks the fuzz table against the registered
// tools, and statically: no argument type declares an identity
// field. As a positive control, each tool's minimal arguments decode and
// re-validate.
func TestToolArgumentDecoders(t *testing.T) {
	h := New(Deps{})
	registered := map[string]bool{}
	for _, st := range h.all() {
		name := st.Tool.Name
		registered[name] = true
		d, ok := argDecoders[name]
		if !ok {
			t.Errorf("tool %s has no entry in argDecoders", name)
			continue
		}
		if withoutExtras(t, d.schema) != withoutExtras(t, st.Tool.RawInputSchema) {
			t.Errorf("argDecoders[%s] is %s, whose schema is not the tool's input schema", name, d.typ)
		}
		for _, f := range identityFields(d.typ, name, map[reflect.Type]bool{}) {
			if _, ok := identityFieldAllowed[f]; !ok {
				t.Errorf("tool %s: argument field %s names an identity; identity comes from the credential only", name, f)
			}
		}
		var s jsonschema.Schema
		if err := json.Unmarshal(st.Tool.RawInputSchema, &s); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(minimalArguments(&s))
		if _, parsed, checkErr, bindErr := decodeArguments(h, name, raw); !parsed || checkErr != nil || bindErr != nil {
			t.Errorf("tool %s: minimal arguments %s refused: parsed %v, %v, %v", name, raw, parsed, checkErr, bindErr)
		}
	}
	for name := range argDecoders {
		if !registered[name] {
			t.Errorf("argDecoders names %s, which is not a registered tool", name)
		}
	}
	t.Logf("metric fuzz_tool_decoders=%d", len(argDecoders))
}

// FuzzToolArguments: raw tools/call arguments for any tool go
// through decoding, handle's identity and schema check and binding.
// Properties: no argument type declares a tenant or user field (checked
// once, before fuzzing); no panic; a refusal is the identity refusal or an
// argument error (never anything the client would see as an internal
// error); an accepted value re-encodes to arguments that pass the same
// check; and no accepted value carries a tenant or env other than the
// caller's.
//
// The tool is chosen by name; a name that is not a tool picks one by its
// bytes, so mutations of the name still reach every tool.
func FuzzToolArguments(f *testing.F) {
	h := New(Deps{})
	var names []string
	for _, st := range h.all() {
		d, ok := argDecoders[st.Tool.Name]
		if !ok {
			f.Fatalf("tool %s has no entry in argDecoders", st.Tool.Name)
		}
		for _, field := range identityFields(d.typ, st.Tool.Name, map[reflect.Type]bool{}) {
			if _, ok := identityFieldAllowed[field]; !ok {
				f.Fatalf("tool %s: argument field %s names an identity", st.Tool.Name, field)
			}
		}
		names = append(names, st.Tool.Name)
		var s jsonschema.Schema
		if err := json.Unmarshal(st.Tool.RawInputSchema, &s); err != nil {
			f.Fatal(err)
		}
		raw, _ := json.Marshal(minimalArguments(&s))
		f.Add(st.Tool.Name, raw)
	}
	slices.Sort(names)
	f.Fuzz(func(t *testing.T, tool string, raw []byte) {
		if _, ok := argDecoders[tool]; !ok {
			sum := 0
			for _, b := range []byte(tool) {
				sum += int(b)
			}
			tool = names[sum%len(names)]
		}
		v, parsed, checkErr, bindErr := decodeArguments(h, tool, raw)
		if !parsed || bindErr != nil {
			return // handle answers a binding failure with an "invalid arguments" tool error
		}
		if checkErr != nil {
			var ae *argError
			if !errors.Is(checkErr, errForbiddenMismatch) && !errors.As(checkErr, &ae) {
				t.Fatalf("%s(%s): refused with %T %v, want the identity refusal or an argument error", tool, raw, checkErr, checkErr)
			}
			return
		}
		again, mErr := json.Marshal(v)
		if mErr != nil {
			t.Fatalf("%s(%s): bound value %+v does not encode: %v", tool, raw, v, mErr)
		}
		var generic any
		if err := json.Unmarshal(again, &generic); err != nil {
			t.Fatalf("%s(%s): re-encoded %s does not decode: %v", tool, raw, again, err)
		}
		if _, err := h.checkArguments(fuzzCaller, tool, generic); err != nil {
			t.Fatalf("%s(%s): accepted, but the bound value %s does not re-validate: %v", tool, raw, again, err)
		}
		if k := tenantNamed(fuzzCaller, generic); k != "" {
			t.Fatalf("%s(%s): bound value %s carries %q naming another tenant or env", tool, raw, again, k)
		}
	})
}
