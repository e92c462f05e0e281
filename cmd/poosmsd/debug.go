package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// serveDebug serves Go's profiles on --debug-addr, apart from the public
// HTTP server so they are never exposed by accident.
func (n *node) serveDebug() error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	addr, err := n.serveAside("debug", n.cfg.DebugAddr, mux)
	if err != nil {
		return err
	}
	n.debugAddr = addr
	n.log.Info("pprof profiles served", "addr", addr.String())
	return nil
}

// serveAside serves h on its own listener at addr (the debug and metrics
// servers, kept off the public HTTP listener) until the node closes.
func (n *node) serveAside(what, addr string, h http.Handler) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", what, addr, err)
	}
	srv := n.httpServer(h, what != "debug")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error(what+" server", "err", err)
		}
	}()
	n.closers = append(n.closers, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		<-done
		return err
	})
	return ln.Addr(), nil
}
