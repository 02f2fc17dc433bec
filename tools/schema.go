package tools

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
)

// Limits applied to every input schema, so that no string or array a client
// sends is unbounded. A field overrides them with a `max:"N"` tag (maxLength
// for strings, maxItems for arrays).
const (
	defaultMaxString = 65536
	defaultMaxItems  = 1000
	maxNameLength    = 512
)

// inputSchema returns the tool option declaring T's JSON schema, with
// additionalProperties false and limits on every string and array.
func inputSchema[T any]() mcp.ToolOption {
	raw := mustSchema[T](true)
	return func(t *mcp.Tool) {
		t.InputSchema = mcp.ToolInputSchema{} // mcp.NewTool's default would conflict with the raw schema
		t.RawInputSchema = raw
	}
}

// outputSchema returns the tool option declaring T's JSON schema as the
// tool's output schema.
func outputSchema[T any]() mcp.ToolOption {
	raw := mustSchema[T](false)
	return func(t *mcp.Tool) {
		t.OutputSchema = mcp.ToolOutputSchema{}
		t.RawOutputSchema = raw
	}
}

// mustSchema builds T's schema; it panics, at start-up, on a type it cannot
// describe.
func mustSchema[T any](limits bool) json.RawMessage {
	s, err := jsonschema.For[T](&jsonschema.ForOptions{})
	if err != nil {
		panic(fmt.Sprintf("schema for %T: %v", *new(T), err))
	}
	normalize(s, reflect.TypeFor[T](), limits)
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("schema for %T: %v", *new(T), err))
	}
	return b
}

// normalize walks the schema next to the Go type: it drops the "null"
// alternative jsonschema-go gives slices and maps (clients send arrays and
// objects, never null) and, for input schemas, sets maxLength/maxItems.
func normalize(s *jsonschema.Schema, t reflect.Type, limits bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if len(s.Types) == 2 && s.Types[0] == "null" {
		s.Type, s.Types = s.Types[1], nil
	}
	switch t.Kind() {
	case reflect.String:
		if limits && s.MaxLength == nil {
			s.MaxLength = ptr(defaultMaxString)
		}
	case reflect.Slice:
		if limits && s.MaxItems == nil {
			s.MaxItems = ptr(defaultMaxItems)
		}
		if s.Items != nil {
			normalize(s.Items, t.Elem(), limits)
		}
	case reflect.Map:
		if s.AdditionalProperties != nil && t.Elem().Kind() != reflect.Interface {
			normalize(s.AdditionalProperties, t.Elem(), limits)
		}
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "" {
				name = f.Name
			}
			ps, ok := s.Properties[name]
			if !ok {
				continue
			}
			if m := f.Tag.Get("max"); m != "" && limits {
				n, err := strconv.Atoi(m)
				if err != nil {
					panic(fmt.Sprintf("field %s: bad max tag %q", f.Name, m))
				}
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Slice {
					ps.MaxItems = ptr(n)
				} else {
					ps.MaxLength = ptr(n)
				}
			}
			normalize(ps, f.Type, limits)
		}
	}
}

func ptr[T any](v T) *T { return &v }
