package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Tunnel wire format, see the package documentation.
const (
	headerMagic   = "SWMT"
	headerVersion = 2
	// MaxTaskIDLen is the longest task ID a tunnel header may carry.
	MaxTaskIDLen = 128
	// fixed part: magic, version, protocol, port, id length
	headerFixedLen = len(headerMagic) + 1 + 1 + 2 + 1

	protoByteTCP = 1
	protoByteUDP = 2

	// maxDatagram is the largest UDP payload the mesh forwards.
	maxDatagram = 65535
)

// tunnel status codes, the one-byte answer of the server.
const (
	statusOK          byte = 0
	statusBadHeader   byte = 1
	statusUnknownTask byte = 2 // not local, unknown, or not in the table
	statusDialFailed  byte = 3
	statusBusy        byte = 4
)

func statusError(s byte) error {
	switch s {
	case statusOK:
		return nil
	case statusBadHeader:
		return errors.New("tunnel refused: bad header")
	case statusUnknownTask:
		return errors.New("tunnel refused: unknown task")
	case statusDialFailed:
		return errors.New("tunnel refused: task unreachable")
	case statusBusy:
		return errors.New("tunnel refused: too many connections")
	default:
		return fmt.Errorf("tunnel refused: status %d", s)
	}
}

// tunnelHeader is what the client node asks of the remote node.
type tunnelHeader struct {
	Protocol Protocol
	Target   uint32
	TaskID   string
}

var errBadHeader = errors.New("bad tunnel header")

func (h tunnelHeader) marshal() ([]byte, error) {
	var pb byte
	switch h.Protocol {
	case TCP:
		pb = protoByteTCP
	case UDP:
		pb = protoByteUDP
	default:
		return nil, fmt.Errorf("%w: protocol %q", errBadHeader, h.Protocol)
	}
	if h.Target == 0 || h.Target > 65535 {
		return nil, fmt.Errorf("%w: target port %d", errBadHeader, h.Target)
	}
	if err := checkTaskID(h.TaskID); err != nil {
		return nil, err
	}
	b := make([]byte, 0, headerFixedLen+len(h.TaskID))
	b = append(b, headerMagic...)
	b = append(b, headerVersion, pb)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Target))
	b = append(b, byte(len(h.TaskID)))
	b = append(b, h.TaskID...)
	return b, nil
}

func checkTaskID(id string) error {
	if len(id) == 0 || len(id) > MaxTaskIDLen {
		return fmt.Errorf("%w: task id length %d", errBadHeader, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: task id has byte 0x%02x", errBadHeader, c)
		}
	}
	return nil
}

// readHeader reads exactly one header from r, never more bytes than it
// needs, so the rest of the stream is left for the splice.
func readHeader(r io.Reader) (tunnelHeader, error) {
	var fixed [headerFixedLen]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return tunnelHeader{}, fmt.Errorf("%w: %w", errBadHeader, err)
	}
	if string(fixed[:4]) != headerMagic {
		return tunnelHeader{}, fmt.Errorf("%w: bad magic %q", errBadHeader, fixed[:4])
	}
	if fixed[4] != headerVersion {
		return tunnelHeader{}, fmt.Errorf("%w: unsupported version %d", errBadHeader, fixed[4])
	}
	var h tunnelHeader
	switch fixed[5] {
	case protoByteTCP:
		h.Protocol = TCP
	case protoByteUDP:
		h.Protocol = UDP
	default:
		return tunnelHeader{}, fmt.Errorf("%w: unknown protocol %d", errBadHeader, fixed[5])
	}
	h.Target = uint32(binary.BigEndian.Uint16(fixed[6:8]))
	if h.Target == 0 {
		return tunnelHeader{}, fmt.Errorf("%w: target port 0", errBadHeader)
	}
	n := int(fixed[8])
	if n == 0 || n > MaxTaskIDLen {
		return tunnelHeader{}, fmt.Errorf("%w: task id length %d", errBadHeader, n)
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return tunnelHeader{}, fmt.Errorf("%w: %w", errBadHeader, err)
	}
	h.TaskID = string(id)
	if err := checkTaskID(h.TaskID); err != nil {
		return tunnelHeader{}, err
	}
	return h, nil
}

// writeFrame writes one length-prefixed datagram in one Write (one TLS
// record). *buf is scratch space, grown as needed and kept for reuse.
func writeFrame(w io.Writer, buf *[]byte, p []byte) error {
	if len(p) > maxDatagram {
		return fmt.Errorf("datagram of %d bytes too large", len(p))
	}
	b := binary.BigEndian.AppendUint16((*buf)[:0], uint16(len(p)))
	b = append(b, p...)
	*buf = b
	_, err := w.Write(b)
	return err
}

// readFrame reads one length-prefixed datagram and returns it, in *buf
// (grown as needed and kept for reuse).
func readFrame(r io.Reader, buf *[]byte) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	p := (*buf)[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}
