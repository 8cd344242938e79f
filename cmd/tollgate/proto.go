package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
)

// protoCmd runs "tollgate proto SUBCOMMAND".
func protoCmd(e *env, args []string) int {
	if len(args) == 0 {
		return e.fail(exitUsage, "proto: missing subcommand (want export)")
	}
	switch args[0] {
	case "export":
		return protoExport(e, args[1:])
	}
	return e.fail(exitUsage, "proto: unknown subcommand (want export)")
}

// protoExport writes tollgate/v1/options.proto, as embedded in the binary,
// under DIR.
func protoExport(e *env, args []string) int {
	fset := newFlagSet("proto export")
	force := fset.Bool("force", false, "replace an existing options.proto that differs")
	if code, ok := e.parse(fset, args); !ok {
		return code
	}
	if fset.NArg() != 1 {
		return e.fail(exitUsage, "proto export: want one DIR after the flags, got %d arguments", fset.NArg())
	}
	dir := fset.Arg(0)
	if dir == "" {
		return e.fail(exitUsage, "proto export: DIR is empty")
	}
	path := filepath.Join(dir, filepath.FromSlash(tollgatev1.OptionsProtoPath))
	want := tollgatev1.OptionsProto()

	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, want):
		// Already there, byte for byte: nothing to write.
		fmt.Fprintln(e.stdout, path)
		return exitOK
	case err == nil && !*force:
		return e.fail(exitUsage, "proto export: %s exists and differs from the options this tollgate reads; -force replaces it", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return e.fail(exitFail, "proto export: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return e.fail(exitFail, "proto export: %v", err)
	}
	if err := writeReplace(path, want, 0o644); err != nil {
		return e.fail(exitFail, "proto export: %v", err)
	}
	fmt.Fprintln(e.stdout, path)
	return exitOK
}

// writeReplace writes data to path through a temporary file in the same
// directory and a rename, so that a reader (or a failure half way) never sees
// a partial file. (proto export and jwks write through it.)
func writeReplace(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tollgate-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if err := f.Chmod(mode); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}
