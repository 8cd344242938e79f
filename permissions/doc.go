// Package permissions compiles the access rules declared as tollgate.v1
// options in .proto files into a [Table], once, and evaluates them against a
// [session.Session] and a request message.
//
// # Model
//
// A rule says what a caller must hold to call a method: every permission of
// `permissions`, at least one of `any_permissions` when set, and for each
// `ownership` entry, a request field equal to a claim of the caller's token
// (unless the caller holds one of its bypass permissions). A `public` rule
// needs no token at all. A method's own rule replaces its service's rule
// field by field; a method with neither is absent from the table and is
// denied: the default is deny.
//
// [Compile] reads the options once, checks them (unknown or non-scalar
// ownership paths, empty or wildcard permission strings, throttles that cannot
// work) and fails with every problem named by method. Nothing reads options
// on the request path.
//
// The same rules protect code that gRPC never reaches: [Require] checks
// permissions of the session in a context, and [Table.Check] runs a method's
// whole rule against a request, so a scheduled worker or a domain service
// enforces exactly what the RPC does.
//
// This package does not import gRPC; the interceptors package maps its
// errors to status codes.
package permissions
