package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tollgate/tollgate/token"
	"github.com/tollgate/tollgate/tokenservice"
)

// jwksServer publishes the public half of the server's key over HTTP
// (tokenservice.NewKeysHandler), so that other services verify the tokens
// this one renews without a copy of its key file.
type jwksServer struct {
	lis  net.Listener
	http *http.Server
	path string // where the JWKS is served
}

// newJWKSServer binds addr and builds the handler for ks. When issuer is a
// URL, the OIDC discovery document is served too (issuer must then be an
// https URL, or http on a loopback host); otherwise the JWKS alone.
func newJWKSServer(addr, issuer string, ks *token.KeySet) (*jwksServer, error) {
	published, path := "", tokenservice.JWKSPath
	if strings.Contains(issuer, "://") {
		u, err := url.Parse(issuer)
		if err != nil {
			return nil, errors.New("-issuer: not a URL")
		}
		published, path = issuer, strings.TrimSuffix(u.Path, "/")+tokenservice.JWKSPath
	}
	h, err := tokenservice.NewKeysHandler(published, ks)
	if err != nil {
		return nil, fmt.Errorf("-jwks-listen: %w", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-jwks-listen: %s", addressless(err))
	}
	return &jwksServer{
		lis:  lis,
		http: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
		path: path,
	}, nil
}

// url is where the JWKS is served, with the bound address.
func (j *jwksServer) url() string { return "http://" + j.lis.Addr().String() + j.path }

// serve answers until close. Should it fail, the gRPC server goes on:
// fetches fail, and verifiers keep their last good set.
func (j *jwksServer) serve() { _ = j.http.Serve(j.lis) }

// close stops the HTTP server; a fetch in flight gets a second.
func (j *jwksServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = j.http.Shutdown(ctx)
	_ = j.lis.Close()
}
