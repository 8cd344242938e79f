package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	tollgatev1 "github.com/tollgate/tollgate/proto/tollgate/v1"
)

// maxDescriptorSet bounds the descriptor set file read into memory.
const maxDescriptorSet = 64 << 20

// optionTypes resolves tollgate's extensions while descriptors are decoded.
// Without it the options would stay unknown fields and every method would
// look as if it had no rule.
var optionTypes = func() *protoregistry.Types {
	t := new(protoregistry.Types)
	for _, x := range []protoreflect.ExtensionType{tollgatev1.E_Method, tollgatev1.E_Service, tollgatev1.E_Field} {
		if err := t.RegisterExtension(x); err != nil {
			panic(err) // three distinct extensions: cannot happen
		}
	}
	return t
}()

// unmarshalOptions decodes descriptors with tollgate's options as known
// extensions.
var unmarshalOptions = proto.UnmarshalOptions{Resolver: optionTypes}

// readDescriptorSet reads a binary FileDescriptorSet, as `buf build -o
// FILE.binpb` and `protoc --descriptor_set_out=FILE` write it.
func readDescriptorSet(path string) ([]*descriptorpb.FileDescriptorProto, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxDescriptorSet {
		return nil, fmt.Errorf("larger than %d MiB", maxDescriptorSet>>20)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, err
	}
	if len(data) > 0 && (data[0] == '{' || data[0] == '[') {
		return nil, errors.New("looks like JSON; want the binary form (buf build -o FILE.binpb, or protoc --descriptor_set_out)")
	}
	var set descriptorpb.FileDescriptorSet
	if err := unmarshalOptions.Unmarshal(data, &set); err != nil {
		return nil, errors.New("not a binary FileDescriptorSet")
	}
	if len(set.GetFile()) == 0 {
		return nil, errors.New("holds no file")
	}
	return set.GetFile(), nil
}

// buildFiles links the file descriptors into a registry of their own. An
// import absent from them is taken from what this binary links (the
// well-known google/protobuf files and tollgate/v1/options.proto), so a
// protoc descriptor set made without --include_imports still works for a
// service that imports only those; any other missing import is an error
// naming it.
func buildFiles(fdps []*descriptorpb.FileDescriptorProto) (*protoregistry.Files, error) {
	byPath := make(map[string]*descriptorpb.FileDescriptorProto, len(fdps))
	var order []string
	for _, fdp := range fdps {
		name := fdp.GetName()
		if _, dup := byPath[name]; dup {
			continue
		}
		byPath[name] = fdp
		order = append(order, name)
	}
	files := new(protoregistry.Files)
	res := &fallbackResolver{local: files}
	state := make(map[string]int) // 1: being built, 2: built
	var build func(path string, importer string) error
	build = func(path, importer string) error {
		switch state[path] {
		case 1:
			return fmt.Errorf("import cycle through %s", path)
		case 2:
			return nil
		}
		fdp, ok := byPath[path]
		if !ok {
			if _, err := protoregistry.GlobalFiles.FindFileByPath(path); err == nil {
				return nil
			}
			return fmt.Errorf("%s imports %s, which is not in the descriptor set: build it with its imports (protoc --include_imports; buf build includes them unless --exclude-imports)", importer, path)
		}
		state[path] = 1
		for _, dep := range fdp.GetDependency() {
			if err := build(dep, path); err != nil {
				return err
			}
		}
		fd, err := protodesc.NewFile(fdp, res)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if err := files.RegisterFile(fd); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		state[path] = 2
		return nil
	}
	for _, p := range order {
		if err := build(p, ""); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// fallbackResolver finds files and descriptors in local first, then in what
// this binary links.
type fallbackResolver struct{ local *protoregistry.Files }

func (r *fallbackResolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.local.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (r *fallbackResolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.local.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

// serviceInfos lists the services of files (all of them, or those named in
// only) as a gRPC server would report them once registered: what
// interceptors.CompileRules compiles.
func serviceInfos(files *protoregistry.Files, only []string) (map[string]grpc.ServiceInfo, error) {
	infos := make(map[string]grpc.ServiceInfo)
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := 0; i < svcs.Len(); i++ {
			sd := svcs.Get(i)
			infos[string(sd.FullName())] = serviceInfo(sd)
		}
		return true
	})
	if len(only) == 0 {
		return infos, nil
	}
	var unknown []string
	for _, name := range only {
		if _, ok := infos[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("-services: no service %s in the descriptors", strings.Join(unknown, ", "))
	}
	for name := range infos {
		if !slices.Contains(only, name) {
			delete(infos, name)
		}
	}
	return infos, nil
}

func serviceInfo(sd protoreflect.ServiceDescriptor) grpc.ServiceInfo {
	var info grpc.ServiceInfo
	ms := sd.Methods()
	for j := 0; j < ms.Len(); j++ {
		md := ms.Get(j)
		info.Methods = append(info.Methods, grpc.MethodInfo{
			Name:           string(md.Name()),
			IsClientStream: md.IsStreamingClient(),
			IsServerStream: md.IsStreamingServer(),
		})
	}
	return info
}

func protoreflectName(s string) protoreflect.FullName { return protoreflect.FullName(s) }

func asService(d protoreflect.Descriptor) (protoreflect.ServiceDescriptor, bool) {
	sd, ok := d.(protoreflect.ServiceDescriptor)
	return sd, ok
}
