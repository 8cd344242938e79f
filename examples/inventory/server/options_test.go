package server_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	inventoryv1 "github.com/tollgate/tollgate/examples/inventory/proto/inventory/v1"
	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
)

// The inventory's generated code must use tollgate's own options package:
// a second generated copy of tollgate/v1/options.proto would register the
// file twice (a panic at init, before any test runs) or, under a lenient
// conflict policy, give the guard an extension type other than the one it
// reads, so that no rule would be found.
func TestOptionsAreTollgates(t *testing.T) {
	fd, err := protoregistry.GlobalFiles.FindFileByPath("tollgate/v1/options.proto")
	if err != nil {
		t.Fatal(err)
	}
	if fd != tollgatev1.File_tollgate_v1_options_proto {
		t.Fatal("the registered tollgate/v1/options.proto is not tollgate's generated file")
	}
	imports := inventoryv1.File_inventory_v1_inventory_proto.Imports()
	var imported bool
	for i := range imports.Len() {
		if imp := imports.Get(i); imp.Path() == "tollgate/v1/options.proto" {
			imported = imp.FileDescriptor == tollgatev1.File_tollgate_v1_options_proto
		}
	}
	if !imported {
		t.Fatal("inventory.proto does not import tollgate's own options file descriptor")
	}
	xt, err := protoregistry.GlobalTypes.FindExtensionByName("tollgate.v1.method")
	if err != nil {
		t.Fatal(err)
	}
	if xt != tollgatev1.E_Method {
		t.Fatal("the registered tollgate.v1.method extension is not tollgate's")
	}

	md := inventoryv1.File_inventory_v1_inventory_proto.Services().ByName("InventoryService").Methods().ByName("AdjustStock")
	rule, ok := proto.GetExtension(md.Options(), tollgatev1.E_Method).(*tollgatev1.Rule)
	if !ok || rule == nil {
		t.Fatalf("AdjustStock's tollgate.v1.method option did not resolve to a *tollgatev1.Rule")
	}
	if want := []string{"inventory.read", "inventory.write"}; !slices.Equal(rule.GetPermissions(), want) {
		t.Fatalf("AdjustStock permissions = %v; want %v", rule.GetPermissions(), want)
	}
	if o := rule.GetOwnership(); len(o) != 1 || o[0].GetField() != "warehouse_id" || o[0].GetClaim() != "warehouse_id" {
		t.Fatalf("AdjustStock ownership = %v; want warehouse_id = claim warehouse_id", o)
	}
	if rule.GetThrottle().GetBucket() != "writes" {
		t.Fatalf("AdjustStock throttle = %v; want bucket writes", rule.GetThrottle())
	}
}

// Every method of the service carries its own rule (what `tollgate rules
// -require-all` checks from a descriptor set).
func TestEveryMethodHasARule(t *testing.T) {
	methods := inventoryv1.File_inventory_v1_inventory_proto.Services().ByName("InventoryService").Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		if !proto.HasExtension(md.Options(), tollgatev1.E_Method) {
			t.Errorf("%s has no tollgate.v1.method rule", md.FullName())
		}
	}
}

// No generated Go of tollgate's options may live in this module: only
// proto/inventory/v1 holds generated code (buf.gen.yaml's input is proto/).
func TestNoVendoredOptionsCode(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".pb.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if filepath.Dir(rel) != filepath.Join("proto", "inventory", "v1") {
			t.Errorf("generated code outside proto/inventory/v1: %s", rel)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "package tollgatev1") {
			t.Errorf("%s is a generated copy of tollgate's options", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
