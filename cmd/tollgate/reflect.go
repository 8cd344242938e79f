package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/descriptorpb"
)

// maxReflectedFiles bounds how many files one run takes from a server.
const maxReflectedFiles = 10_000

// reflected is what a server's reflection service says it serves.
type reflected struct {
	services []string // full service names, as ListServices gives them
	files    []*descriptorpb.FileDescriptorProto
}

// fetchReflection asks the server behind conn, on one stream of
// grpc.reflection.v1.ServerReflection, for the services it serves, the file
// declaring each, and the files those import, transitively. Descriptors are
// decoded with tollgate's options as known extensions.
func fetchReflection(ctx context.Context, conn grpc.ClientConnInterface) (*reflected, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream: its status says why.
				_, err = stream.Recv()
			}
			return nil, rpcError(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, rpcError(err)
		}
		return resp, nil
	}

	resp, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err != nil {
		return nil, err
	}
	list := resp.GetListServicesResponse()
	if list == nil {
		return nil, fmt.Errorf("reflection: ListServices: %s", responseProblem(resp))
	}
	out := &reflected{}
	for _, s := range list.GetService() {
		out.services = append(out.services, s.GetName())
	}
	slices.Sort(out.services)
	out.services = slices.Compact(out.services)

	have := make(map[string]bool)
	var pending []string // imports not yet fetched
	add := func(resp *rpb.ServerReflectionResponse) error {
		fdr := resp.GetFileDescriptorResponse()
		if fdr == nil {
			return errors.New(responseProblem(resp))
		}
		for _, raw := range fdr.GetFileDescriptorProto() {
			fdp := new(descriptorpb.FileDescriptorProto)
			if err := unmarshalOptions.Unmarshal(raw, fdp); err != nil {
				return errors.New("the server sent a file descriptor that does not decode")
			}
			if have[fdp.GetName()] {
				continue
			}
			if len(out.files) >= maxReflectedFiles {
				return fmt.Errorf("the server sends more than %d files", maxReflectedFiles)
			}
			have[fdp.GetName()] = true
			out.files = append(out.files, fdp)
			pending = append(pending, fdp.GetDependency()...)
		}
		return nil
	}
	for _, svc := range out.services {
		resp, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: svc}})
		if err != nil {
			return nil, err
		}
		if err := add(resp); err != nil {
			return nil, fmt.Errorf("reflection: the file declaring %s: %v", svc, err)
		}
	}
	// grpc-go sends a file's imports with it; other servers may not, so
	// follow them by name.
	for len(pending) > 0 {
		dep := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		if have[dep] {
			continue
		}
		resp, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep}})
		if err != nil {
			return nil, err
		}
		if resp.GetErrorResponse() != nil {
			// Left to buildFiles: it takes the file from this binary when
			// it links it, and names it otherwise.
			have[dep] = true
			continue
		}
		if err := add(resp); err != nil {
			return nil, fmt.Errorf("reflection: %s: %v", dep, err)
		}
		have[dep] = true
	}
	if err := stream.CloseSend(); err != nil {
		return nil, rpcError(err)
	}
	return out, nil
}

// responseProblem describes a reflection response that is not the one asked
// for.
func responseProblem(resp *rpb.ServerReflectionResponse) string {
	if e := resp.GetErrorResponse(); e != nil {
		return fmt.Sprintf("the server answers %s: %s", codeName(e.GetErrorCode()), e.GetErrorMessage())
	}
	return "the server answers with another kind of response"
}

func codeName(c int32) string { return codes.Code(uint32(c)).String() }

// rpcError describes a failed call by its status code and message.
func rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return fmt.Errorf("reflection: the server answers %s: %s", st.Code(), st.Message())
}
