package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// serveDebug serves Go's profiles on --debug-addr, apart from the public
// HTTP server so they are never exposed by accident.
func (n *node) serveDebug() error {
	ln, err := net.Listen("tcp", n.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("debug: listen %s: %w", n.cfg.DebugAddr, err)
	}
	n.debugAddr = ln.Addr()
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("debug server", "err", err)
		}
	}()
	n.closers = append(n.closers, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		<-done
		return err
	})
	n.log.Info("pprof profiles served", "addr", ln.Addr().String())
	return nil
}
