package tollgatev1

import (
	"bytes"
	_ "embed"
)

// OptionsProtoPath is the import path of the options' .proto file, the path
// under a proto root where a user's build must find it: their .proto files
// say `import "tollgate/v1/options.proto";`.
const OptionsProtoPath = "tollgate/v1/options.proto"

// This file is written by hand, not by protoc-gen-go: buf generate writes
// only the .pb.go files and leaves it alone.

//go:embed options.proto
var optionsProto []byte

// OptionsProto returns a copy of options.proto, byte for byte the file this
// package was generated from, so that a user's build can compile against
// exactly the options tollgate reads (`tollgate proto export DIR` writes it).
func OptionsProto() []byte { return bytes.Clone(optionsProto) }
