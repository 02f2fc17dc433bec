package main

import "github.com/nexus-mcp/nexus-mcp/tools"

// benchWriteLimits are the per-call limits of a write call.
func benchWriteLimits() (int, int) { return tools.MaxWriteBytes, tools.MaxWriteItems }
