package tools

import "github.com/nexus-mcp/nexus-mcp/delegation"

// checkID applies delegation.CheckID, the one id syntax, to the argument
// field; an optional argument may be empty.
func checkID(field, v string, required bool) error {
	if v == "" && !required {
		return nil
	}
	if reason := delegation.IDReason(v); reason != "" {
		return argErrorf("%s %s", field, reason)
	}
	return nil
}

// idArg is an argument name and its value.
type idArg struct{ name, v string }

// checkOptionalIDs applies checkID to optional id arguments (filters).
func checkOptionalIDs(args ...idArg) error {
	for _, a := range args {
		if err := checkID(a.name, a.v, false); err != nil {
			return err
		}
	}
	return nil
}
