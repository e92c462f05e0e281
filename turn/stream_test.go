package turn

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// flakyListener fails its first Accept calls with errs, then accepts.
type flakyListener struct {
	net.Listener
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func TestTrackingListenerRidesOutAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := errors.New("accept: too many open files")
	tl := newTrackingListener(&flakyListener{Listener: ln, errs: []error{emfile, emfile}},
		time.Minute, time.Minute, slog.New(slog.DiscardHandler))
	defer tl.Close()

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := tl.Accept()
	if err != nil {
		t.Fatalf("Accept after transient errors: %v", err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("accepted %s, want %s", c.RemoteAddr(), client.LocalAddr())
	}

	// Closing the listener ends a retrying Accept too.
	tl2 := newTrackingListener(&flakyListener{Listener: ln, errs: []error{emfile, emfile, emfile, emfile, emfile, emfile, emfile, emfile}},
		time.Minute, time.Minute, slog.New(slog.DiscardHandler))
	result := make(chan error, 1)
	go func() {
		_, err := tl2.Accept()
		result <- err
	}()
	tl2.Close()
	select {
	case err := <-result:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept kept retrying after Close")
	}
}
