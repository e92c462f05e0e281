// Package udpbatch moves many UDP datagrams per system call: a Reader and
// a Writer over recvmmsg and sendmmsg (one datagram per call off Linux),
// and a Conn, a net.PacketConn whose writes made during a fan-out are
// copied into a fixed batch and sent together when the fan-out ends, and
// whose reads take every datagram waiting (up to a batch) at once.
//
// Nothing here allocates per datagram once a Reader, Writer or Conn is
// made. A Conn never holds a datagram past the End of the last fan-out
// in progress (or maxDelay, whichever is first), and never queues one
// written outside a fan-out.
package udpbatch
