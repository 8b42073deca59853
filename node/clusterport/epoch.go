package clusterport

// The Raft epoch handshake. Right after the protocol byte, both ends of a
// Raft connection exchange their cluster epoch as 8 bytes, big-endian: the
// dialer first, then the acceptor. Raft traffic flows only between equal
// epochs; the side with the older one learns from the answer that it is
// fenced (a --force-new-cluster happened without it), whichever side
// dialled. What a verdict means for the node is the agent's (its fence).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/shoal-org/shoal/consensus"
)

// ErrEpochMismatch: a raft connection was refused because the two ends run
// at different epochs.
var ErrEpochMismatch = errors.New("raft epoch mismatch")

// SendEpoch and RecvEpoch are the two halves of the raft epoch handshake.
func SendEpoch(w io.Writer, epoch uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], epoch)
	_, err := w.Write(b[:])
	return err
}

// RecvEpoch reads the epoch SendEpoch wrote.
func RecvEpoch(r io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// localEpoch is f's epoch; a nil Fence is epoch 0.
func localEpoch(f Fence) uint64 {
	if f == nil {
		return 0
	}
	return f.Local()
}

// checkEpoch judges a peer's epoch with f; a nil Fence only compares.
func checkEpoch(f Fence, peer string, theirs uint64) consensus.EpochVerdict {
	if f == nil {
		return consensus.CompareEpochs(0, theirs)
	}
	return f.Check(peer, theirs)
}

// DialEpoch runs the dialer's half of the handshake on a fresh raft
// connection: it presents our epoch and refuses a peer of another one
// (ErrEpochMismatch).
func DialEpoch(conn net.Conn, f Fence, peer string, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := SendEpoch(conn, localEpoch(f)); err != nil {
		return fmt.Errorf("raft epoch handshake with %s: %w", peer, err)
	}
	theirs, err := RecvEpoch(conn)
	if err != nil {
		// An acceptor of an older binary, or one that refused us before
		// answering.
		return fmt.Errorf("raft epoch handshake with %s: %w", peer, err)
	}
	if v := checkEpoch(f, peer, theirs); v != consensus.EpochSame {
		return fmt.Errorf("raft to %s: %w: ours %d, theirs %d (%s)", peer, ErrEpochMismatch, localEpoch(f), theirs, v)
	}
	_ = conn.SetDeadline(time.Time{})
	return nil
}

// acceptEpoch runs the acceptor's half: it reads the dialer's epoch,
// answers with ours (so a stale dialer learns it is fenced) and reports
// whether the connection may go to raft.
func acceptEpoch(conn net.Conn, f Fence, peer string) (uint64, consensus.EpochVerdict, error) {
	theirs, err := RecvEpoch(conn)
	if err != nil {
		return 0, 0, err
	}
	if err := SendEpoch(conn, localEpoch(f)); err != nil {
		return theirs, 0, err
	}
	return theirs, checkEpoch(f, peer, theirs), nil
}
