package interceptors

import (
	"log/slog"
	"strings"

	"google.golang.org/protobuf/reflect/protoregistry"
)

// Defaults of a [Guard].
const (
	// DefaultMaxMetadataTokenSize caps a token read from metadata: 8 KiB, as
	// C-core, Java and nginx cap a header. Larger tokens belong in a body
	// field.
	DefaultMaxMetadataTokenSize = 8 << 10
	// DefaultMaxBodyTokenSize caps a token read from a request field.
	DefaultMaxBodyTokenSize = 64 << 10
	// DefaultMaxHeaderListSize is what [Guard.ServerOptions] sets as the
	// server's grpc.MaxHeaderListSize, instead of grpc-go's 16 MiB.
	DefaultMaxHeaderListSize = 64 << 10
)

// defaultPublicServices are answered without a token unless their methods
// carry rules of their own: health checks and reflection.
var defaultPublicServices = []string{
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
}

type options struct {
	tokenHeader      string
	maxMetadataToken int
	maxBodyToken     int
	maxHeaderList    uint32
	strict           bool
	publicServices   []string
	publicMethods    []string
	files            *protoregistry.Files
	types            *protoregistry.Types
	logger           *slog.Logger
}

// Option configures a [Guard].
type Option func(*options)

// WithTokenHeader also accepts the raw token (no scheme) in metadata key
// name, such as "x-prc-token". Exactly one value is allowed.
func WithTokenHeader(name string) Option {
	return func(o *options) { o.tokenHeader = strings.ToLower(name) }
}

// WithMaxMetadataTokenSize caps tokens read from metadata (default 8 KiB).
func WithMaxMetadataTokenSize(n int) Option {
	return func(o *options) { o.maxMetadataToken = n }
}

// WithMaxBodyTokenSize caps tokens read from a request field (default 64
// KiB). The verifier's own cap (session.WithMaxTokenSize) still applies.
func WithMaxBodyTokenSize(n int) Option {
	return func(o *options) { o.maxBodyToken = n }
}

// WithMaxHeaderListSize sets the grpc.MaxHeaderListSize that
// [Guard.ServerOptions] adds (default 64 KiB); 0 leaves grpc-go's default.
func WithMaxHeaderListSize(n uint32) Option {
	return func(o *options) { o.maxHeaderList = n }
}

// WithStrict makes [Guard.Init] fail when any registered method has no rule,
// instead of denying it at call time.
func WithStrict() Option {
	return func(o *options) { o.strict = true }
}

// WithPublicServices replaces the services whose methods are public when they
// carry no rule (default: gRPC health and reflection). Pass none to make
// them need rules like everything else.
func WithPublicServices(names ...string) Option {
	return func(o *options) { o.publicServices = append([]string{}, names...) }
}

// WithPublicMethods makes these full method names ("/pkg.Svc/Method")
// public when they carry no rule. Matching is exact.
func WithPublicMethods(fullMethods ...string) Option {
	return func(o *options) { o.publicMethods = append(o.publicMethods, fullMethods...) }
}

// WithRegistry sets where service descriptors and request types are looked
// up (default protoregistry.GlobalFiles and GlobalTypes).
func WithRegistry(files *protoregistry.Files, types *protoregistry.Types) Option {
	return func(o *options) { o.files, o.types = files, types }
}

// WithLogger logs every denial at Warn level: reason, method, peer,
// consumer and a fingerprint of the jti when known, and the verifier's fixed
// cause. Never a token.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
