package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// AnnotationAgentAddr is set by each node's agent on its Node to the
// host:port of the agent's own HTTP API, where the CLI reads pod logs,
// execs into containers and imports images.
const AnnotationAgentAddr = "stead.io/agent-addr"

// The agent's HTTP API:
//
//	GET  /v1/logs/{namespace}/{pod}?container=&follow=&tail=&previous=
//	     the container's log, streamed (text/plain) while follow is true
//	POST /v1/exec/{namespace}/{pod}?container=&tty=&stdin=&command=...
//	     with "Connection: Upgrade" and "Upgrade: ExecProtocol": after
//	     "101 Switching Protocols" both sides speak exec frames
//	POST /v1/images   the body is an OCI or Docker archive; answers ImageList of what it imported
//	GET  /v1/images   answers ImageList
//
// Errors are Kubernetes Status objects, as the servers send them.

// ExecProtocol names the protocol an exec connection upgrades to.
const ExecProtocol = "stead-exec/1"

// ImageList names images in a node's store.
type ImageList struct {
	// Node is the node that answered.
	Node string `json:"node"`
	// Images are full image names ("docker.io/library/web:1").
	Images []string `json:"images"`
}

// FrameType says what an exec frame carries.
type FrameType byte

// Exec frames. A frame is its type (1 byte), the length of its payload
// (4 bytes, big endian) and the payload. The client sends FrameStdin
// (an empty one closes the process's standard input) and FrameResize; the
// agent sends FrameStdout, FrameStderr, and finally FrameExit or
// FrameError, after which it closes the connection.
const (
	FrameStdin  FrameType = 0
	FrameStdout FrameType = 1
	FrameStderr FrameType = 2
	// FrameExit carries the exit code as a 4-byte big-endian int32.
	FrameExit FrameType = 3
	// FrameError carries a message: the process could not run.
	FrameError FrameType = 4
	// FrameResize carries the terminal's width and height as two 2-byte
	// big-endian numbers.
	FrameResize FrameType = 5
)

// MaxFrame is the largest payload a frame may carry.
const MaxFrame = 1 << 20

// WriteFrame writes one frame to w.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("exec frame of %d bytes is larger than %d", len(payload), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = byte(t)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(append(hdr[:], payload...)); err != nil {
		return err
	}
	return nil
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (FrameType, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, errors.New("exec frame larger than the limit")
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return FrameType(hdr[0]), payload, nil
}

// ExitPayload encodes an exit code for FrameExit.
func ExitPayload(code int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	return b[:]
}

// ParseExit decodes the payload of FrameExit.
func ParseExit(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, errors.New("malformed exit frame")
	}
	return int(int32(binary.BigEndian.Uint32(p))), nil
}

// ResizePayload encodes a terminal size for FrameResize.
func ResizePayload(width, height uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return b[:]
}

// ParseResize decodes the payload of FrameResize.
func ParseResize(p []byte) (width, height uint16, err error) {
	if len(p) != 4 {
		return 0, 0, errors.New("malformed resize frame")
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), nil
}
