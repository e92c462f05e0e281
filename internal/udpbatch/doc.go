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
//
// A Writer may also join runs of datagrams with UDP GSO (EnableGSO; the
// TURN relay's writers do, the Conn does not): consecutive datagrams of
// one size to one destination, the last of a run possibly shorter, up to
// 64 of them and 65,000 bytes, go as one message with a UDP_SEGMENT
// control message, so the stack builds, routes and hands on one large
// datagram that is split only at the device (on loopback, at the
// receiving socket). Only consecutive datagrams are joined, so the order
// of the datagrams never changes. If the kernel refuses a run's GSO, the
// run goes one datagram at a time and GSO stays off for that Writer.
//
// Both calls are made with RawSyscall, not Syscall: with MSG_DONTWAIT
// they never block (a full or empty socket answers EAGAIN at once and
// the caller waits in the netpoller, as before), so the scheduler need not
// be told. Told, it hands the P away when a call outlasts one tick of its
// monitor thread, which a sendmmsg of tens of datagrams over loopback
// often does, and the monitor then keeps waking every 20 µs: on a server
// pinned to one CPU that thread preempts the relay itself (19 % of the
// SFU's CPU went to it; see docs/performance.md).
package udpbatch
