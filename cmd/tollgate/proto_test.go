package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The exported file is the repository's options.proto, byte for byte.
func TestProtoExportByteIdentical(t *testing.T) {
	repo, err := os.ReadFile(filepath.Join("..", "..", "proto", "tollgate", "v1", "options.proto"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "third_party", "proto") // created as needed
	r := runCLI(t, "proto", "export", dir)
	mustSucceed(t, r)
	want := filepath.Join(dir, "tollgate", "v1", "options.proto")
	if r.stdout != want+"\n" {
		t.Errorf("printed %q, want the path written, %q", r.stdout, want)
	}
	got, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, repo) {
		t.Fatalf("exported options.proto (%d bytes) differs from proto/tollgate/v1/options.proto (%d bytes)", len(got), len(repo))
	}
	if st, _ := os.Stat(want); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	// Again over the identical file: fine, nothing to refuse.
	mustSucceed(t, runCLI(t, "proto", "export", dir))
}

// A different file in the way is kept unless -force.
func TestProtoExportRefusesDifferentFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate", "v1", "options.proto")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("// an older copy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustFailUsage(t, runCLI(t, "proto", "export", dir), "-force")
	if got, _ := os.ReadFile(path); string(got) != "// an older copy\n" {
		t.Fatalf("the file was changed without -force: %q", got)
	}
	r := runCLI(t, "proto", "export", "-force", dir)
	mustSucceed(t, r)
	got, _ := os.ReadFile(path)
	if !strings.Contains(string(got), "package tollgate.v1;") {
		t.Fatalf("-force did not replace the file: %q", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestProtoExportUsage(t *testing.T) {
	mustFailUsage(t, runCLI(t, "proto"), "subcommand")
	mustFailUsage(t, runCLI(t, "proto", "import", "x"), "subcommand")
	mustFailUsage(t, runCLI(t, "proto", "export"), "DIR")
	mustFailUsage(t, runCLI(t, "proto", "export", "a", "b"), "DIR")
}
